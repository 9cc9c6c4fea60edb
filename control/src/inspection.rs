//! Loads the `[[inspection]]` rule sets of a configuration: rule files (globs, relative to
//! the configuration file) and inline signatures, parsed with each set's variables and
//! classification, into the [`InspectionImage`] the dataplane runs. Errors name the file,
//! line and keyword; rules that use keywords outside the supported subset are skipped and
//! reported per file ([`Loaded::files`]), never silently.

use rampart_config::Config;
use rampart_shm::InspectionImage;
use rampart_signatures::engine::{Database, DbStats};
use rampart_signatures::parse::{parse_rule, parse_rules, Classifications, Parsed, RuleFile, Vars};
use std::path::{Path, PathBuf};

/// What loading found: the image, and what each file (or a set's inline signatures)
/// contributed.
pub struct Loaded {
    pub image: InspectionImage,
    /// (file, what it held), in load order.
    pub files: Vec<(String, RuleFile)>,
    pub stats: DbStats,
}

impl Loaded {
    /// Lines for `rampartctl check`: one per file, then the matcher's totals.
    pub fn report(&self) -> Vec<String> {
        let mut out: Vec<String> = self.files.iter().map(|(f, r)| format!("inspection: {f}: {}", r.summary())).collect();
        let s = &self.stats;
        out.push(format!(
            "inspection: {} signatures ({} prefilter patterns, {} checked on every packet, {} matched per packet only: they need positions, sizes, byte_test/byte_jump or pcre, which a segment boundary would change), {} pcre DFAs ({} KiB), {} with flowbits ({} of {} names), matcher {} KiB",
            s.signatures,
            s.prefilter_patterns,
            s.always_candidates,
            s.per_packet_only,
            s.pcres,
            s.pcre_memory_bytes.div_ceil(1024),
            s.flowbit_signatures,
            s.flowbit_names,
            rampart_signatures::engine::MAX_FLOWBITS,
            s.memory_bytes.div_ceil(1024)
        ));
        out
    }
}

/// Loads every rule set; None when the configuration has none.
pub fn load(config: &Config) -> Result<Option<Loaded>, String> {
    if config.inspection.is_empty() {
        return Ok(None);
    }
    let base = Path::new(&config.source.file).parent().map(Path::to_path_buf).unwrap_or_default();
    let mut files = Vec::new();
    let mut signatures = Vec::new();
    for (i, set) in config.inspection.iter().enumerate() {
        let mut vars = Vars::suricata_defaults();
        for (name, value) in &set.vars {
            vars.set(name, value.get_ref());
        }
        let classes = match &set.classification {
            Some(path) => {
                let path = resolve(&base, path.get_ref());
                let text = read(&path)?;
                Classifications::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())?
            }
            None => Classifications::default(),
        };
        for pattern in &set.rules {
            let paths = expand(&base, pattern.get_ref()).map_err(|e| format!("inspection[{i}].rules: {e}"))?;
            for path in paths {
                let name = path.display().to_string();
                let file = parse_rules(&read(&path)?, &name, &vars, &classes).map_err(|e| e.to_string())?;
                signatures.extend(file.signatures.iter().cloned());
                files.push((name, file));
            }
        }
        if !set.signatures.is_empty() {
            let mut inline = RuleFile::default();
            for sig in &set.signatures {
                let line = rampart_config::line_of(&config.source.text, sig.span().start) as u32;
                match parse_rule(sig.get_ref(), &config.source.file, line, &vars, &classes).map_err(|e| e.to_string())? {
                    Parsed::Signature(s) => inline.signatures.push(s),
                    Parsed::Skipped(s) => inline.skipped.push(s),
                }
            }
            signatures.extend(inline.signatures.iter().cloned());
            files.push((format!("{} (inspection[{i}].signatures)", config.source.file), inline));
        }
    }
    let mut seen = std::collections::HashMap::new();
    for s in &signatures {
        if let Some(first) = seen.insert((s.gid, s.sid), &s.origin) {
            return Err(format!("{}:{}: sid: gid {} sid {} is also defined at {}:{}", s.origin.file, s.origin.line, s.gid, s.sid, first.file, first.line));
        }
    }
    let st = &config.inspection_state;
    let image = InspectionImage { signatures, counters: Vec::new(), tail: st.tail as u16, idle_timeout_ms: st.idle_timeout as u64 * 1000, drop_flow: st.drop_flow };
    // Build the matcher once here, so that a set the dataplane could not build is rejected
    // before it is published (and `rampartctl check` reports what it costs).
    let db = Database::build(image.signatures.clone(), image.tail as usize).map_err(|e| format!("inspection: {e}"))?;
    Ok(Some(Loaded { stats: db.stats(), image, files }))
}

fn resolve(base: &Path, path: &str) -> PathBuf {
    match Path::new(path) {
        p if p.is_absolute() => p.to_path_buf(),
        p => base.join(p),
    }
}

/// The files a `rules` entry names, sorted; a pattern that matches none is an error (a
/// typo must not turn inspection off).
fn expand(base: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = resolve(base, pattern);
    let text = full.to_str().ok_or_else(|| format!("{pattern}: not valid UTF-8"))?;
    let mut paths: Vec<PathBuf> = glob::glob(text).map_err(|e| format!("{pattern}: {e}"))?.filter_map(Result::ok).filter(|p| p.is_file()).collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!("{}: no rule file matches", full.display()));
    }
    Ok(paths)
}

/// Rule files and classification files are read whole, up to this size.
const MAX_FILE_BYTES: u64 = 256 << 20;

/// A regular file's text, at most [`MAX_FILE_BYTES`] (not a device, a FIFO or a directory).
fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let fail = |e: &dyn std::fmt::Display| format!("{}: cannot read: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
    let meta = file.metadata().map_err(|e| fail(&e))?;
    if !meta.is_file() {
        return Err(fail(&"not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(fail(&format!("{} bytes, more than {MAX_FILE_BYTES}", meta.len())));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES).read_to_string(&mut text).map_err(|e| fail(&e))?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration in `dir` whose rule set reads `rules/*.rules` (and `extra` TOML).
    fn config(dir: &Path, extra: &str) -> Config {
        let text = format!("[[inspection]]\nrules = [\"rules/*.rules\"]\nvars = {{ HOME_NET = \"[10.0.0.0/24]\" }}\n{extra}");
        let file = dir.join("rampart.toml");
        std::fs::write(&file, &text).unwrap();
        rampart_config::load(&file).unwrap()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rampart-inspection-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("rules")).unwrap();
        d
    }

    #[test]
    fn loads_files_by_glob_and_inline_rules_and_reports_what_it_skipped() {
        let d = dir("load");
        std::fs::write(d.join("rules/a.rules"), "# a comment\n\
            alert tcp $HOME_NET any -> any 80 (msg:\"one\"; content:\"abc\"; sid:1;)\n\
            drop udp any any -> $HOME_NET 53 (msg:\"two\"; content:\"|00 01|\"; sid:2;)\n\
            alert http any any -> any any (msg:\"needs http\"; http.uri; content:\"/x\"; sid:3;)\n\
            # alert tcp any any -> any any (msg:\"off\"; sid:4;)\n").unwrap();
        std::fs::write(d.join("rules/b.rules"), "alert tcp any any -> any any (msg:\"pcre\"; pcre:\"/a+/\"; sid:5;)\n\
            alert tcp any any -> any any (msg:\"backreference\"; pcre:\"/(a)\\1/\"; sid:7;)\n").unwrap();
        std::fs::write(d.join("rules/ignored.txt"), "not a rule file\n").unwrap();
        let c = config(&d, "signatures = ['pass tcp any any -> any 22 (msg:\"inline\"; content:\"ssh\"; flowbits:set,ssh; sid:6;)']\n");
        let loaded = load(&c).unwrap().unwrap();
        let sids: Vec<u32> = loaded.image.signatures.iter().map(|s| s.sid).collect();
        assert_eq!(sids, [1, 2, 5, 6]);
        assert_eq!(loaded.image.signatures[0].src.include.len(), 1, "$HOME_NET from the config");
        assert_eq!(loaded.files.len(), 3, "two files (sorted) and the inline rules");
        let report = loaded.report();
        assert!(report[0].contains("a.rules") && report[0].contains("2 loaded") && report[0].contains("1 skipped"), "{report:?}");
        assert!(report[0].contains("1 commented out"), "{report:?}");
        assert!(report[1].contains("b.rules") && report[1].contains("1 loaded, 1 skipped (pcre:unsupported ×1)"), "{report:?}");
        assert!(report[3].contains("4 signatures") && report[3].contains("1 pcre DFAs"), "{report:?}");
        assert!(report[3].contains("1 with flowbits (1 of 256 names)"), "{report:?}");
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let d = dir("errors");
        std::fs::write(d.join("rules/a.rules"), "\nalert tcp $NOPE any -> any any (msg:\"x\"; sid:1;)\n").unwrap();
        let e = load(&config(&d, "")).err().unwrap();
        assert!(e.contains("a.rules:2") && e.contains("NOPE"), "{e}");
        // A duplicate gid:sid across files.
        std::fs::write(d.join("rules/a.rules"), "alert tcp any any -> any any (msg:\"x\"; content:\"a\"; sid:7;)\n").unwrap();
        std::fs::write(d.join("rules/b.rules"), "alert tcp any any -> any any (msg:\"y\"; content:\"b\"; sid:7;)\n").unwrap();
        let e = load(&config(&d, "")).err().unwrap();
        assert!(e.contains("b.rules:1") && e.contains("sid 7") && e.contains("a.rules:1"), "{e}");
        // A pattern that matches nothing is an error, not inspection turned off.
        std::fs::remove_file(d.join("rules/a.rules")).unwrap();
        std::fs::remove_file(d.join("rules/b.rules")).unwrap();
        let e = load(&config(&d, "")).err().unwrap();
        assert!(e.contains("no rule file matches"), "{e}");
    }
}
