//! The parser against idstools' (PyPI `idstools`, installed by `scripts/deps.sh`): a
//! seeded set of ET-Open-shaped rules from `tests/inspection/gen_et_rules.py` is parsed
//! here, dumped as the JSON `tests/inspection/crosscheck_idstools.py` expects (its
//! docstring is the schema), and that script compares it with what idstools makes of the
//! same file: header fields, sid/gid/rev, msg and contents of every rule both load, an
//! entry for every rule idstools parses, and at least 95 % of the plain tcp/udp rules
//! loaded.
//!
//! python3 and idstools are required: without them the test fails (it never skips).

use rampart_signatures::parse::{parse_rules, Classifications, Skipped, Vars};
use rampart_signatures::{
    AddrMatch, Cidr, PayloadCheck, PortMatch, SigAction, SigProto, Signature,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How many rules to generate (about 8 % come out commented out).
const COUNT: u32 = 3000;
/// The generator's seed: fixed, so a failure reproduces.
const SEED: u32 = 20_240_601;
const INSTALL_HINT: &str =
    "run scripts/deps.sh (it installs python3 and idstools==0.6.5), then re-run";

/// `tests/inspection` at the repository root.
fn inspection_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/inspection")
}

/// Runs `python3 args`, failing the test with the install hint if python3 cannot start.
fn python3(args: &[&std::ffi::OsStr]) -> Output {
    Command::new("python3")
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run python3 ({error}): {INSTALL_HINT}"))
}

/// Fails the test, with the install hint, unless python3 can import idstools.
fn require_idstools() {
    let out = python3(&["-c".as_ref(), "import idstools.rule".as_ref()]);
    assert!(
        out.status.success(),
        "python3 cannot import idstools ({}): {INSTALL_HINT}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// The text before the first `(` of the rule starting at 1-based `line`, trimmed, with
/// `\`-continued lines joined as `parse_rules` joins them (the `\` dropped, nothing
/// inserted) and the rule trimmed before the split, as `parse_rules` does.
fn raw_header(lines: &[&str], line: u32) -> String {
    let start = usize::try_from(line).expect("line fits usize") - 1;
    let mut rule = String::new();
    for current in &lines[start..] {
        match current.trim_end().strip_suffix('\\') {
            Some(head) => rule.push_str(head),
            None => {
                rule.push_str(current);
                break;
            }
        }
    }
    let rule = rule.trim();
    let header = rule.find('(').map_or(rule, |open| &rule[..open]);
    header.trim().to_string()
}

/// An address field as the schema's `{"include": ["addr/len"], "exclude": [...]}`.
fn addrs(field: &AddrMatch) -> Value {
    let list = |cidrs: &[Cidr]| -> Vec<String> {
        cidrs
            .iter()
            .map(|cidr| format!("{}/{}", cidr.addr, cidr.len))
            .collect()
    };
    json!({"include": list(&field.include), "exclude": list(&field.exclude)})
}

/// A port field as the schema's `{"include": [[lo, hi]], "exclude": [...]}`.
fn ports(field: &PortMatch) -> Value {
    let list = |ranges: &[(u16, u16)]| -> Vec<[u16; 2]> {
        ranges.iter().map(|&(lo, hi)| [lo, hi]).collect()
    };
    json!({"include": list(&field.include), "exclude": list(&field.exclude)})
}

/// Bytes as lower-case hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loaded rule's entry.
fn loaded_entry(signature: &Signature, lines: &[&str]) -> Value {
    let action = match signature.action {
        SigAction::Alert => "alert",
        SigAction::Drop => "drop",
        SigAction::Reject => "reject",
        SigAction::Pass => "pass",
    };
    let proto = match signature.proto {
        SigProto::Tcp => "tcp",
        SigProto::Udp => "udp",
        SigProto::Icmp => "icmp",
        SigProto::Ip => "ip",
    };
    let content: Vec<String> = signature
        .checks
        .iter()
        .filter_map(|check| match check {
            PayloadCheck::Content(content) => Some(hex(&content.bytes)),
            _ => None,
        })
        .collect();
    json!({
        "sid": signature.sid,
        "gid": signature.gid,
        "rev": signature.rev,
        "msg": signature.msg,
        "action": action,
        "proto": proto,
        "src": addrs(&signature.src),
        "src_port": ports(&signature.src_ports),
        "direction": if signature.bidirectional { "<>" } else { "->" },
        "dst": addrs(&signature.dst),
        "dst_port": ports(&signature.dst_ports),
        "content": content,
        "raw_header": raw_header(lines, signature.origin.line),
        "line": signature.origin.line,
    })
}

/// A skipped rule's entry.
fn skipped_entry(skipped: &Skipped) -> Value {
    json!({"sid": skipped.sid, "skipped": true, "keywords": skipped.keywords, "line": skipped.line})
}

/// The numbers of the script's summary line
/// `crosscheck: N rules, loaded L (P % of plain tcp/udp), skipped S, agree A, disagree D`:
/// N, L, S, A, D (P left out).
fn summary_numbers(line: &str) -> Option<[u64; 5]> {
    let rest = line.strip_prefix("crosscheck: ")?;
    let (rules, rest) = rest.split_once(" rules, loaded ")?;
    let (loaded, rest) = rest.split_once(" (")?;
    let (_, rest) = rest.split_once(" % of plain tcp/udp), skipped ")?;
    let (skipped, rest) = rest.split_once(", agree ")?;
    let (agree, disagree) = rest.split_once(", disagree ")?;
    let mut numbers = [0; 5];
    for (slot, text) in numbers
        .iter_mut()
        .zip([rules, loaded, skipped, agree, disagree])
    {
        *slot = text.trim().parse().ok()?;
    }
    Some(numbers)
}

#[test]
fn parser_agrees_with_idstools_on_et_shaped_rules() {
    require_idstools();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("idstools_crosscheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the temp dir");
    let rules_path = dir.join("et.rules");
    let json_path = dir.join("rampart.json");

    let generator = inspection_dir().join("gen_et_rules.py");
    let (count, seed) = (COUNT.to_string(), SEED.to_string());
    let out = python3(&[
        generator.as_os_str(),
        "--count".as_ref(),
        count.as_ref(),
        "--seed".as_ref(),
        seed.as_ref(),
        "--out".as_ref(),
        rules_path.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{} failed ({}): {}",
        generator.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    let text = std::fs::read_to_string(&rules_path).expect("read the generated rules");
    let file = rules_path.display().to_string();
    let parsed = parse_rules(
        &text,
        &file,
        &Vars::suricata_defaults(),
        &Classifications::default(),
    )
    .unwrap_or_else(|error| {
        panic!("parse_rules failed on the generated rules (seed {SEED}): {error}")
    });
    println!("rampart: {}", parsed.summary());

    let lines: Vec<&str> = text.lines().collect();
    let entries: Vec<Value> = parsed
        .signatures
        .iter()
        .map(|signature| loaded_entry(signature, &lines))
        .chain(parsed.skipped.iter().map(skipped_entry))
        .collect();
    let dump = serde_json::to_string_pretty(&entries).expect("serialize the entries");
    std::fs::write(&json_path, dump).expect("write the JSON");

    let checker = inspection_dir().join("crosscheck_idstools.py");
    let out = python3(&[
        checker.as_os_str(),
        rules_path.as_os_str(),
        json_path.as_os_str(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    let summary = stdout.lines().find_map(summary_numbers);
    assert!(
        out.status.success(),
        "{} exited with {} (seed {SEED}; inputs kept in {}): see its output above",
        checker.display(),
        out.status,
        dir.display()
    );
    let [rules, loaded, skipped, _, disagree] = summary.unwrap_or_else(|| {
        panic!("no `crosscheck: ...` summary line in the script's output:\n{stdout}")
    });
    assert_eq!(disagree, 0, "the script reports disagreements yet exited 0");
    let ours =
        u64::try_from(parsed.signatures.len() + parsed.skipped.len()).expect("count fits u64");
    assert_eq!(
        loaded + skipped,
        ours,
        "idstools matched {loaded} loaded + {skipped} skipped rules, rampart has {ours} entries"
    );
    assert_eq!(
        rules, ours,
        "idstools parsed {rules} enabled rules, rampart has {ours} entries"
    );
    std::fs::remove_dir_all(&dir).expect("remove the temp dir");
}
