//! What Rampart must survive, as checks a fuzzer (and the corpus replay in `tests/`) drive
//! with arbitrary bytes. Each check is one way bytes enter Rampart from outside:
//!
//! | check | bytes from | must hold |
//! |---|---|---|
//! | [`parse`] | a guest (frames) | no panic; every offset and length inside the frame; `validate` agrees with `parse`; the flow table's fast path gives both directions of a flow one key and one hash |
//! | [`firewall`] | a guest (bursts of frames) | the worker's burst pipeline, decisions, re-checks after a reload and the sweep never panic; only a passed first packet adds a flow; the sweep reports every flow it removes |
//! | [`config`] | the operator (TOML) | an error names its file and a line in the text; a config that validates compiles into an image the dataplane accepts as it is |
//! | [`image`] | the control process (shared memory) | an image that decodes is safe to run: the dataplane builds its runtime from it and decides packets with it |
//! | [`event`] | the dataplane (shared memory) | any record becomes one JSON log line with an `event_type`, real addresses and a bounded packet head |
//! | [`admin`] | an operator's client (the admin socket) | any request gets a JSON reply that says `ok`, and an error when not |
//!
//! A failed check panics; the fuzz binaries abort on it and libFuzzer saves the input.
//! `scripts/fuzz.sh` builds and runs them (stable Rust, SanitizerCoverage), `make fuzz`.

use rampart_pipeline::firewall::{Burst, Defaults, EndedFlows, Firewall, FwVerdict, RuleHistory};
use rampart_pipeline::runtime::Runtime;
use rampart_flow::{FlowTable, FlowTableConfig, FullPolicy};
use rampart_packet::build::{self, Frame};
use rampart_packet::{icmp, validate, FlowKey, TcpFlags};
use rampart_shm::{EventRecord, PolicyImage};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Frames per burst (a worker's burst).
const BURST: usize = 32;

/// The firewall check's policies: generation 1, then the reload to generation 2.
pub const FIREWALL_POLICY: &str = include_str!("../corpus/config/firewall.toml");
pub const FIREWALL_RELOAD: &str = include_str!("../corpus/config/firewall-reload.toml");

/// Any byte string: parsing never panics, an `Ok` describes bytes inside the frame,
/// `validate` gives the same verdict as `parse`, and the flow table prepares both
/// directions of the packet's flow alike.
pub fn parse(frame: &[u8]) {
    let parsed = rampart_packet::parse(frame);
    assert_eq!(validate(frame), parsed.map(|_| ()));
    let Ok(meta) = parsed else { return };
    let len = frame.len();
    assert!(meta.l3_offset() <= len);
    assert!(meta.l4_offset as usize <= len);
    let start = if meta.is_ip() { meta.l4_offset as usize + meta.l4_header_len(frame) } else { meta.l3_offset() };
    assert!(start + meta.payload_len as usize <= len);
    assert_eq!(meta.payload(frame).len(), meta.payload_len as usize);
    if let Some(inner) = meta.icmp_inner_offset() {
        assert!(inner <= len);
    }
    if let Some(key) = FlowKey::from_meta(&meta) {
        // The flow table's packed fast path agrees with the plain canonical key, and both
        // directions of a flow meet at one key and one hash.
        static TABLE: OnceLock<FlowTable> = OnceLock::new();
        let table = TABLE.get_or_init(table);
        let ((canonical, dir), (there, back_dir, back_hash)) = (key.canonical(), table.prepare(&key.reversed()));
        assert_eq!(table.prepare(&key), (canonical, dir, table.hash(&canonical)));
        assert_eq!((there, back_hash), (canonical, table.hash(&canonical)));
        if key != key.reversed() {
            assert_ne!(dir, back_dir);
        }
    }
}

/// Compiles a config the way `rampartctl check` does; panics if a config that validated
/// does not compile.
fn compile(text: &str) -> Option<PolicyImage> {
    let config = rampart_config::parse("fuzz.toml", text).ok()?;
    let (image, _warnings) = rampart_control::rules::check(&config).unwrap_or_else(|e| panic!("a validated config does not compile: {e}"));
    Some(image)
}

/// Any text as a config file: a rejected one names the file and a line of the text (0 when
/// no line applies); an accepted one compiles, and the image survives the trip through
/// shared memory unchanged and valid.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match rampart_config::parse("fuzz.toml", text) {
        Err(e) => {
            assert_eq!(e.file, "fuzz.toml");
            assert!(e.line <= text.lines().count() + 1, "line {} of a {}-line text: {e}", e.line, text.lines().count());
            assert!(!e.message.is_empty());
        }
        Ok(_) => {
            let image = compile(text).expect("parsed once already");
            let decoded = PolicyImage::decode(&image.encode()).unwrap_or_else(|e| panic!("the dataplane would refuse a compiled image: {e}"));
            assert_eq!(decoded, image);
        }
    }
}

/// Frames the image check decides with every decoded image (a UDP query, its reply, TCP
/// SYN, ICMP echo, IPv6 UDP, ARP).
fn sample_frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/parse/");
        ["ipv4_udp", "ipv4_tcp_syn", "icmp_echo", "icmp_dest_unreachable", "ipv6_tcp", "arp_request"]
            .iter()
            .map(|name| std::fs::read(format!("{dir}{name}")).unwrap_or_else(|e| panic!("sample frame {name}: {e}")))
            .collect()
    })
}

fn table() -> FlowTable {
    FlowTable::new(&FlowTableConfig { capacity: 256, full_policy: FullPolicy::EvictOldest, hash_seed: Some(1), ..Default::default() }).expect("a valid table size")
}

/// Any bytes as a published policy image: decoding never panics, and an image that decodes
/// (and so validated) builds the dataplane's runtime and decides packets on every port.
pub fn image(data: &[u8]) {
    let Ok(image) = PolicyImage::decode(data) else { return };
    let history = Arc::new(RuleHistory::default());
    let rt = Runtime::build(1, &image, Some, None, &history);
    let flows = table();
    for (local, port) in rt.ports.iter().enumerate() {
        for frame in sample_frames() {
            let Ok(meta) = rampart_packet::parse(frame) else { continue };
            let _ = rt.decide(local as u8, &meta);
            if let Some(fw) = &rt.firewall {
                let _ = fw.check(&flows, &meta, frame, port.slot as u8, port.zone, 10, &mut EndedFlows::new());
            }
        }
    }
}

/// Any 80 bytes as an event record from the dataplane: one JSON object with an
/// `event_type`, whatever the kind, codes, port, length and clock say.
pub fn event(data: &[u8]) {
    let word = |i: usize| data.get(i..i + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let half = |i: usize| data.get(i..i + 2).map_or(0, |b| u16::from_le_bytes(b.try_into().unwrap()));
    let mut rec = EventRecord { seq: word(0), tsc: word(8), kind: half(16), port: half(18), code: half(20), len: half(22), value: word(24), data: [0; 32] };
    for (d, s) in rec.data.iter_mut().zip(data.iter().skip(32)) {
        *d = *s;
    }
    let clock = rampart_control::events::Clock { tsc_hz: word(64), tsc0: word(72), real0: word(80) };
    let names = BTreeMap::from([(0u16, "guest-a".to_string()), (1, "uplink".to_string())]);
    let rules = ["allow-dns".to_string(), "deny-rest".to_string()];
    let line = rampart_control::events::to_json(&rec, half(88) as usize, &clock, &names, &rules);
    match line.get("event_type").and_then(|t| t.as_str()) {
        // Addresses are printed as addresses, whatever the 32 bytes held.
        Some("flow") => {
            for end in ["src_ip", "dest_ip"] {
                assert!(line[end].as_str().is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok()), "{line}");
            }
        }
        // A summary of held-back drop records carries a count and no packet.
        Some("drop") if line["drop"].get("summary").is_some() => {
            assert!(line["drop"]["summary"]["held_back_total"].is_u64() && line["drop"].get("packet_head").is_none(), "{line}");
        }
        // The packet head is the record's bytes as hex, at most all 32 of them.
        Some("drop") => {
            let head = line["drop"]["packet_head"].as_str().unwrap_or_default();
            assert!(head.len() <= 64 && head.len() == 2 * (rec.len as usize).min(32), "{line}");
        }
        Some(_) => {}
        None => panic!("a log line without event_type: {line}"),
    }
}

/// Any bytes as an admin-socket request (`{"cmd": ...}`, filters and all) to a control
/// process with no dataplane attached: a JSON reply with a boolean `ok`, and a non-empty
/// `error` when it is false. (`reload` rereads a config file that is not there.)
pub fn admin(data: &[u8]) {
    use rampart_control::{admin, daemon, events::EventLog};
    static DAEMON: OnceLock<daemon::Daemon> = OnceLock::new();
    let d = DAEMON.get_or_init(|| {
        let config = rampart_config::parse("fuzz.toml", FIREWALL_POLICY).expect("the fuzz policy is valid");
        let log = EventLog::open(std::path::Path::new("/dev/null")).expect("/dev/null opens");
        daemon::Daemon::new(std::path::Path::new("/nonexistent/rampart-fuzz.toml"), config, log).expect("the fuzz policy compiles")
    });
    let Ok(request) = std::str::from_utf8(data) else { return };
    let reply = serde_json::to_value(admin::handle(d, request)).expect("a reply encodes as JSON");
    match reply.get("ok").and_then(|ok| ok.as_bool()) {
        Some(true) => {}
        Some(false) => assert!(reply.get("error").and_then(|e| e.as_str()).is_some_and(|e| !e.is_empty()), "{reply}"),
        None => panic!("a reply without ok: {reply}"),
    }
}

/// The firewall of a compiled policy, as the dataplane builds it.
fn firewall_of(gen: u64, text: &str, history: &mut RuleHistory) -> (Firewall, Vec<u8>) {
    let image = compile(text).expect("the firewall check's policies are valid");
    let fw = image.firewall.clone().expect("the firewall check's policies have rules");
    history.record(gen, &fw.rules);
    let ports = image.ports.iter().map(|p| p.slot as u8).collect();
    (Firewall::new(fw, Defaults::of(&image.ports), gen, Arc::new(history.clone())), ports)
}

/// What one pass of [`firewall`] decided.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdicts {
    /// Passed, of which `created` opened a tracked flow.
    pub passed: u32,
    pub created: u32,
    pub dropped: u32,
    pub rejected: u32,
}

/// Bytes as a guest's bursts: byte 0 picks the ingress port (and, bit 7, generation 1's
/// defaults: some drop, or all forward), then each frame is a length byte and that many
/// bytes (up to 32 frames). The burst is decided under generation 1
/// twice (first packets, then hits), then after a reload to generation 2 (re-checks), and
/// the sweep after that reload runs over the table: no panic, no flow added but by a
/// passed first packet, every removal reported. Returns what each pass decided.
pub fn firewall(data: &[u8]) -> [Verdicts; 3] {
    static POLICIES: OnceLock<([Firewall; 2], Firewall, Vec<u8>)> = OnceLock::new();
    let (gen1s, gen2, ports) = POLICIES.get_or_init(|| {
        let mut history = RuleHistory::default();
        let (gen1, ports) = firewall_of(1, FIREWALL_POLICY, &mut history);
        // The same rules where every default forwards (so untracked).
        let open = FIREWALL_POLICY.replace("from_uplinks = \"drop\"", "from_uplinks = \"forward\"");
        let (gen1_open, _) = firewall_of(1, &open, &mut history);
        let (gen2, _) = firewall_of(2, FIREWALL_RELOAD, &mut history);
        ([gen1, gen1_open], gen2, ports)
    });
    let mut passes = [Verdicts::default(); 3];
    let Some((&pick, mut rest)) = data.split_first() else { return passes };
    // Byte 0: the port (low bits), and with bit 7 the policy whose defaults all forward.
    let (ingress, zone) = (ports[(pick & 0x7f) as usize % ports.len()], 0);
    let gen1 = &gen1s[(pick >> 7) as usize];
    let mut frames = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        frames.push(&tail[..len]);
        rest = &tail[len..];
        if frames.len() == BURST {
            break;
        }
    }
    let flows = table();
    for ((now, fw), seen) in [(10, gen1), (20, gen1), (30, gen2)].into_iter().zip(&mut passes) {
        let mut burst = Burst::default();
        burst.fill(&flows, zone, frames.iter().copied());
        for (i, frame) in frames.iter().enumerate() {
            let Ok(meta) = burst.meta(i) else { continue };
            let before = flows.len();
            let verdict = fw.check_looked_up(&flows, meta, frame, ingress, zone, now, burst.lookup(&flows, i), &mut EndedFlows::new());
            let created = matches!(verdict, FwVerdict::Pass { created: true, .. });
            assert!(flows.len() <= before + created as u32, "only a passed first packet adds a flow: {verdict:?}");
            match verdict {
                FwVerdict::Pass { .. } => (seen.passed, seen.created) = (seen.passed + 1, seen.created + created as u32),
                FwVerdict::Drop(..) => seen.dropped += 1,
                FwVerdict::Reject(_) => seen.rejected += 1,
            }
        }
    }
    let (mut cursor, mut removed) = (0, 0);
    let live = flows.len();
    flows.revisit_step(&mut cursor, flows.slots(), 40, |r| gen2.revisit(r), |_, _| removed += 1);
    assert!(flows.len() + removed == live, "the sweep reports every flow it removes");
    passes
}

/// The committed seeds of `target` (`corpus/<target>/`), by file name.
pub fn committed_seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, std::fs::read(e.path()).ok()?)))
        .collect();
    seeds.sort();
    seeds
}

/// The bytes [`event`] reads as `rec` (with a 1 GHz clock).
fn event_seed(rec: &EventRecord) -> Vec<u8> {
    let mut b = Vec::with_capacity(90);
    b.extend_from_slice(&rec.seq.to_le_bytes());
    b.extend_from_slice(&rec.tsc.to_le_bytes());
    for half in [rec.kind, rec.port, rec.code, rec.len] {
        b.extend_from_slice(&half.to_le_bytes());
    }
    b.extend_from_slice(&rec.value.to_le_bytes());
    b.extend_from_slice(&rec.data);
    for word in [1_000_000_000u64, 0, 1_700_000_000_000_000_000] {
        b.extend_from_slice(&word.to_le_bytes());
    }
    b.extend_from_slice(&0u16.to_le_bytes());
    b
}

/// Seeds built from the code, so they follow format changes: (target, name, bytes).
/// - `config`: the built-in demo config;
/// - `image`: every config seed compiled, as the control process publishes it;
/// - `event`: one record of each kind the dataplane writes;
/// - `admin`: one request of each kind, filters included;
/// - `firewall`: a burst of each sample frame, and one of them all.
pub fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use rampart_shm::ring::{EventKind, FlowEndCode, FlowEventData};
    let mut seeds = vec![("config", "demo.toml".to_string(), rampart_config::DEMO_CONFIG.as_bytes().to_vec())];
    let configs = committed_seeds("config").into_iter().chain([("demo.toml".to_string(), rampart_config::DEMO_CONFIG.as_bytes().to_vec())]);
    for (name, text) in configs {
        if let Some(image) = std::str::from_utf8(&text).ok().and_then(compile) {
            seeds.push(("image", name.replace(".toml", ".image"), image.encode()));
        }
    }
    let (data, value) = FlowEventData::pack(&[0; 16], &[1; 16], 40000, 53, 17, Some(0));
    let flow = EventRecord { tsc: 5_000_000_000, port: 0, data, value, ..Default::default() };
    let records = [
        ("flow-start", EventRecord { kind: EventKind::FlowStart as u16, ..flow }),
        ("flow-end", EventRecord { kind: EventKind::FlowEnd as u16, code: FlowEndCode::Evicted as u16, ..flow }),
        ("drop", EventRecord { kind: EventKind::Malformed as u16, code: 3, value: 60, ..Default::default() }.with_data(&[0xff; 20])),
        ("port-up", EventRecord { kind: EventKind::PortUp as u16, port: 1, ..Default::default() }.with_data(b"link up")),
        ("policy", EventRecord { kind: EventKind::PolicyRejected as u16, value: 7, ..Default::default() }.with_data(b"bad image")),
        ("pong", EventRecord { kind: EventKind::Pong as u16, value: 9, ..Default::default() }),
        ("dumped", EventRecord { kind: EventKind::FlowsDumped as u16, value: 2, ..Default::default() }),
    ];
    seeds.extend(records.iter().map(|(name, rec)| ("event", name.to_string(), event_seed(rec))));
    let requests = [
        ("status", r#"{"cmd":"status"}"#),
        ("stats", r#"{"cmd":"stats"}"#),
        ("reload", r#"{"cmd":"reload"}"#),
        ("flows", r#"{"cmd":"flows","guest":"a","address":"10.0.0.0/24","port":53,"state":"established"}"#),
        ("flows-v6", r#"{"cmd":"flows","address":"fd00::1/64","kill":true}"#),
        ("unknown", r#"{"cmd":"frobnicate"}"#),
    ];
    seeds.extend(requests.iter().map(|(name, r)| ("admin", name.to_string(), r.as_bytes().to_vec())));
    let frames: Vec<_> = committed_seeds("parse").into_iter().filter(|(_, f)| f.len() <= u8::MAX as usize).collect();
    let burst = |pick: u8, frames: &mut dyn Iterator<Item = &Vec<u8>>| {
        let mut b = vec![pick];
        for f in frames {
            b.push(f.len() as u8);
            b.extend_from_slice(f);
        }
        b
    };
    for (i, (name, frame)) in frames.iter().enumerate() {
        seeds.push(("firewall", name.clone(), burst(i as u8, &mut [frame, frame].into_iter())));
    }
    seeds.push(("firewall", "all".to_string(), burst(0, &mut frames.iter().map(|(_, f)| f))));
    // Bursts the policy has rules for (10.0.0.1 is guest a, 10.0.0.2 guest b), each packet
    // and its reply (addresses and ports swapped).
    type End = ([u8; 4], u16);
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let frame = |f: Frame| f.pad(60).build().expect("a valid frame");
    let dns = |(src, sport): End, (dst, dport): End| frame(build::udp_v4(src, sport, dst, dport, b"hello"));
    let tcp = |(src, sport): End, (dst, dport): End, flags, ack| frame(build::tcp_v4(src, sport, dst, dport, flags, b"").with_tcp(|t| (t.seq_number, t.ack_number) = (1, ack)));
    let echo = |src, dst, repr| frame(build::icmp_v4(src, dst, repr, b"ping"));
    let sample = |name: &str| frames.iter().find(|(n, _)| n == name).map(|(_, f)| f.clone()).unwrap_or_default();
    let (ssh, web) = (tcp((a, 40000), (b, 22), TcpFlags::SYN, 0), tcp((a, 40000), (b, 80), TcpFlags::SYN, 0));
    let syn_ack = tcp((b, 80), (a, 40000), TcpFlags::SYN | TcpFlags::ACK, 2); // acknowledges the SYN (sequence 1)
    let (ping, pong) = (icmp::Repr::EchoRequest { ident: 0x1234, seq_no: 1 }, icmp::Repr::EchoReply { ident: 0x1234, seq_no: 1 });
    let exchanges = [
        ("dns", vec![dns((a, 40000), (b, 53)), dns((b, 53), (a, 40000)), dns((a, 40000), (b, 53))]),
        ("tcp", vec![ssh, web, syn_ack]),
        ("ping", vec![echo(a, b, ping), echo(b, a, pong)]),
        ("errors", vec![sample("icmp_dest_unreachable"), sample("icmpv6_packet_too_big")]),
    ];
    for (name, frames) in exchanges {
        for pick in [0u8, 1, 2, 0x80, 0x82] {
            seeds.push(("firewall", format!("{name}-from-{pick}"), burst(pick, &mut frames.iter())));
        }
    }
    seeds
}

/// Runs `target`'s check on `data`.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "parse" => parse(data),
        "config" => config(data),
        "image" => image(data),
        "event" => event(data),
        "firewall" => drop(firewall(data)),
        "admin" => admin(data),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// The fuzz targets, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: [&str; 6] = ["parse", "firewall", "config", "image", "event", "admin"];
