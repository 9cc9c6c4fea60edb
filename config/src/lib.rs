//! Rampart's configuration file: one TOML document read by both processes.
//!
//! The dataplane reads only `[dataplane]` (EAL cores, memory, file prefix,
//! shared-memory path) once at start; the control process reads all of it and
//! compiles ports, segments and policy into the image it publishes. Every
//! error names the file, the line, the field and what was expected, so an
//! operator can fix it without reading code. This crate knows nothing of DPDK
//! or shared memory.

mod model;
pub mod rules;
mod validate;

pub use model::*;
pub use validate::{warnings, ConfigError, Warning, MAX_PORTS, MAX_WORKERS};

use std::path::Path;

/// The default configuration `make demo` runs with (and the documented example).
pub const DEMO_CONFIG: &str = include_str!("../demo.toml");

/// Reads, parses and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        field: String::new(),
        message: format!("cannot read the file: {e}"),
    })?;
    parse(&path.display().to_string(), &text)
}

/// Parses and validates configuration text; `file` is used in error messages.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::new(text);
    let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        // Spanned<T> adds serde-private segments to the path; operators need only the field.
        let field = e.path().to_string().split(".$__").next().unwrap_or_default().to_string();
        let inner = e.into_inner();
        let line = inner.span().map(|s| line_of(text, s.start)).unwrap_or(0);
        let message = match inner.message() {
            "" => unexpected_at(text, inner.span().map(|s| s.start)),
            message => message.to_string(),
        };
        let message = name_the_rule(text, &field, &message);
        ConfigError { file: file.to_string(), line, field: if field == "." { String::new() } else { field }, message }
    })?;
    config.source = ConfigSource { file: file.to_string(), text: text.to_string() };
    validate::validate(&config)?;
    Ok(config)
}

/// The toml crate leaves the message of some syntax errors empty (a control character,
/// even inside a comment): say what stands where the error is.
fn unexpected_at(text: &str, offset: Option<usize>) -> String {
    let Some((before, after)) = offset.and_then(|at| Some((text.get(..at)?, text.get(at..)?))) else {
        return "invalid TOML".to_string();
    };
    let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
    match after.chars().next() {
        Some(c) if c.is_control() => format!("invalid TOML: control character U+{:04X} at column {column} (not allowed anywhere, comments included)", c as u32),
        Some(c) => format!("invalid TOML: unexpected {c:?} at column {column}"),
        None => "invalid TOML: unexpected end of file".to_string(),
    }
}

/// A serde error inside `rules[N]` knows the field path but not the rule, and
/// operators (and logs, metrics) know rules by their stable `id`: name it the
/// way validation errors do (`rule ID: ...`), read from the raw TOML because
/// the typed rule was never built.
fn name_the_rule(text: &str, field: &str, message: &str) -> String {
    let Some(index) = field.strip_prefix("rules[").and_then(|rest| rest.split(']').next()).and_then(|n| n.parse::<usize>().ok()) else {
        return message.to_string();
    };
    let raw: Option<toml::Table> = text.parse().ok();
    let rule = raw.as_ref().and_then(|t| t.get("rules")).and_then(|r| r.get(index));
    const NEED_ID: &str = "every rule needs a stable, unique `id` (1-32 characters of [A-Za-z0-9_-], e.g. id = \"allow-web\")";
    match rule.map(|r| r.get("id")) {
        Some(Some(id)) => match id.as_str() {
            Some(id) => format!("rule {id}: {message}"),
            None => message.to_string(),
        },
        // The rule has no id: say so, whichever of its fields serde tripped on first.
        Some(None) if message == "missing field `id`" => format!("{message}: {NEED_ID}"),
        Some(None) => format!("rule with no `id`: {message} (and {NEED_ID})"),
        None => message.to_string(),
    }
}

/// The admin socket named by a config file, read leniently: one-shot
/// commands must reach the control process even while the rest of the file
/// is being edited (a `reload` then reports the real error from the daemon).
pub fn control_socket(path: &Path) -> Result<String, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError { file: file.clone(), line: 0, field: String::new(), message: format!("cannot read the file: {e}") })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError {
        file,
        line: e.span().map(|s| line_of(&text, s.start)).unwrap_or(0),
        field: String::new(),
        message: e.message().to_string(),
    })?;
    Ok(table
        .get("control")
        .and_then(|c| c.get("socket"))
        .and_then(|s| s.as_str())
        .map(String::from)
        .unwrap_or_else(|| Control::default().socket))
}

/// 1-based line number of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].bytes().filter(|&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> ConfigError {
        parse("t.toml", text).expect_err("config should be rejected")
    }

    #[test]
    fn demo_config_is_valid() {
        let c = parse("demo.toml", DEMO_CONFIG).unwrap();
        assert_eq!(c.ports.len(), 7);
        assert_eq!(c.ports[5].mode, Some(Mode::Monitor));
        assert!(!c.ports[2].enabled);
        assert_eq!((c.inspection.len(), c.inspection[0].signatures.len()), (1, 4));
        assert!(c.inspection_state.drop_flow);
        assert_eq!((c.anomalies.land, c.anomalies.low_ttl), (AnomalyAction::Drop, AnomalyAction::Alert));
        assert_eq!(c.ports[0].attachment(), Attachment::Segment("lan".into()));
    }

    #[test]
    fn syntax_error_names_line() {
        let e = err("[dataplane]\nmemory_mb = = 3\n");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn a_control_character_is_named_even_where_toml_gives_no_message() {
        // Found by the config fuzz target: the message was empty.
        let e = err("# comment\u{1}\n[dataplane]\n");
        assert_eq!(e.line, 1);
        assert_eq!(e.message, "invalid TOML: control character U+0001 at column 10 (not allowed anywhere, comments included)");
        let e = err("[dataplane]\n# é\u{0}\n");
        assert_eq!((e.line, e.message.contains("U+0000 at column 4")), (2, true), "{e}");
    }

    #[test]
    fn type_error_names_field_and_line() {
        let e = err("[dataplane]\nworker_cores = [1]\nmemory_mb = \"lots\"\n");
        assert_eq!(e.field, "dataplane.memory_mb");
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("t.toml:3: field `dataplane.memory_mb`"), "{e}");
    }

    #[test]
    fn idle_back_off_bounds_are_checked() {
        let c = parse("t.toml", "").unwrap();
        assert_eq!((c.dataplane.idle_sleep_us, c.dataplane.idle_sleep_max_us), (50, IDLE_SLEEP_MAX_US));
        let e = err("[dataplane]\nidle_sleep_us = 900\nidle_sleep_max_us = 800\n");
        assert_eq!((e.field.as_str(), e.line), ("dataplane.idle_sleep_us", 1), "{e}");
        assert!(e.message.contains("at most idle_sleep_max_us (800)"), "{e}");
        let e = err("[dataplane]\nidle_sleep_max_us = 200000\n");
        assert_eq!(e.field, "dataplane.idle_sleep_max_us");
        let poll = parse("t.toml", "[dataplane]\nidle_sleep_us = 0\n").unwrap();
        assert_eq!(poll.dataplane.idle_sleep_us, 0, "0: never sleep");
    }

    #[test]
    fn the_event_log_key_stays_outside_the_log_directory_and_rotation_is_bounded() {
        let c = parse("t.toml", "").unwrap();
        assert_eq!((c.control.event_key.as_str(), c.events.rotate_bytes, c.events.keep_files), ("/var/lib/rampart/eventlog.key", 128 << 20, 10));
        for key in ["/var/log/rampart/eventlog.key", "/var/log/rampart/keys/k"] {
            let e = err(&format!("[control]\nevent_log = \"/var/log/rampart/eve.json\"\nevent_key = \"{key}\"\n"));
            assert_eq!((e.field.as_str(), e.line), ("control.event_key", 1), "{e}");
            assert!(e.message.contains("outside its directory /var/log/rampart"), "{e}");
        }
        assert!(parse("t.toml", "[control]\nevent_log = \"/run/r/log/eve.json\"\nevent_key = \"/run/r/eventlog.key\"\n").is_ok());
        let e = err("[events]\nrotate_bytes = 1000\n");
        assert_eq!(e.field, "events.rotate_bytes");
    }

    #[test]
    fn the_guard_is_on_for_guests_and_learn_off_needs_bindings() {
        let port = |kind: &str, extra: &str| {
            let dev = if kind == "device" { "device = \"net_null0\"" } else { "socket = \"/tmp/g.sock\"" };
            format!("[[segments]]\nname = \"lan\"\n[[ports]]\nname = \"g\"\nkind = \"{kind}\"\n{dev}\nsegment = \"lan\"\n{extra}")
        };
        let guest = parse("t.toml", &port("vhost-server", "")).unwrap();
        assert!(guest.ports[0].guarded() && guest.ports[0].learns(), "guests are guarded and learn by default");
        assert_eq!((guest.guard.learn_timeout, guest.guard.max_macs_per_port), (300, 64));
        assert!(!parse("t.toml", &port("device", "")).unwrap().ports[0].guarded(), "uplinks are not");
        assert!(!parse("t.toml", &port("vhost-server", "anti_spoofing = false\n")).unwrap().ports[0].guarded());
        let router = parse("t.toml", &port("vhost-server", "serves = [\"dhcp\", \"ra\"]\n")).unwrap();
        assert_eq!(router.ports[0].serves, [Serve::Dhcp, Serve::Ra]);
        let e = err(&port("vhost-server", "macs = [\"52:54:00:00:00:01\"]\nlearn = \"off\"\n"));
        assert_eq!((e.field.as_str(), e.line), ("ports[0].learn", 9), "{e}");
        assert!(e.message.contains("list both, or set anti_spoofing = false"), "{e}");
        parse("t.toml", &port("vhost-server", "macs = [\"52:54:00:00:00:01\"]\naddresses = [\"10.0.0.1\"]\nlearn = \"off\"\n")).unwrap();
        let e = err(&port("vhost-server", "serves = [\"dns\"]\n"));
        assert!(e.message.contains("unknown variant `dns`"), "{e}");
    }

    #[test]
    fn unknown_field_rejected() {
        let e = err("[dataplane]\nworker_core = [1]\n");
        assert!(e.message.contains("unknown field"), "{e}");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn unknown_segment_names_port_field_and_line() {
        let e = err("[[segments]]\nname = \"lan\"\n[[ports]]\nname = \"a\"\nkind = \"vhost-server\"\nsocket = \"/tmp/a\"\nsegment = \"wan\"\n");
        assert_eq!(e.field, "ports[0].segment");
        assert_eq!(e.line, 7);
        assert!(e.message.contains("unknown segment \"wan\""));
    }

    #[test]
    fn wire_must_be_symmetric() {
        let e = err("[[ports]]\nname = \"a\"\nkind = \"device\"\ndevice = \"net_null0\"\nwire = \"b\"\n[[ports]]\nname = \"b\"\nkind = \"device\"\ndevice = \"net_null1\"\n");
        assert_eq!(e.field, "ports[0].wire");
        let ok = parse("t", "[[ports]]\nname = \"a\"\nkind = \"device\"\ndevice = \"net_null0\"\nwire = \"b\"\n[[ports]]\nname = \"b\"\nkind = \"device\"\ndevice = \"net_null1\"\nwire = \"a\"\n");
        assert!(ok.is_ok());
    }

    #[test]
    fn bad_mac_duplicate_names_and_missing_socket() {
        let base = "[[segments]]\nname = \"lan\"\n";
        let e = err(&format!("{base}[[ports]]\nname = \"a\"\nkind = \"vhost-server\"\nsocket = \"/s\"\nsegment = \"lan\"\nmacs = [\"zz\"]\n"));
        assert_eq!((e.field.as_str(), e.line), ("ports[0].macs[0]", 8));
        let e = err(&format!("{base}[[ports]]\nname = \"a\"\nkind = \"vhost-server\"\nsocket = \"/s\"\nsegment = \"lan\"\n[[ports]]\nname = \"a\"\nkind = \"vhost-server\"\nsocket = \"/t\"\nsegment = \"lan\"\n"));
        assert_eq!((e.field.as_str(), e.line), ("ports[1].name", 9));
        let e = err(&format!("{base}[[ports]]\nname = \"a\"\nkind = \"vhost-client\"\nsegment = \"lan\"\n"));
        assert_eq!(e.field, "ports[0].socket");
        let e = err("[dataplane]\nworker_cores = []\n");
        assert_eq!((e.field.as_str(), e.line), ("dataplane.worker_cores", 1));
    }

    #[test]
    fn rule_errors_name_the_rule_field_and_line() {
        let base = "[[segments]]\nname = \"lan\"\n[[ports]]\nname = \"web\"\nkind = \"vhost-server\"\nsocket = \"/s\"\nsegment = \"lan\"\ntags = [\"w\"]\naddresses = [\"10.0.0.5\"]\n[[ports]]\nname = \"db\"\nkind = \"vhost-server\"\nsocket = \"/t\"\nsegment = \"lan\"\n";
        let ok = parse("t", &format!("{base}[[rules]]\nid = \"r1\"\nfrom = [\"guest:db\"]\nto = [\"tag:w\"]\nprotocol = \"tcp\"\nports = \"80,443\"\naction = \"allow\"\n"));
        assert!(ok.is_ok(), "{ok:?}");
        let e = err(&format!("{base}[[rules]]\nid = \"r1\"\nto = [\"guest:db\"]\naction = \"allow\"\n"));
        assert_eq!((e.field.as_str(), e.line), ("rules[0].to[0]", 17));
        assert!(e.message.contains("rule r1") && e.message.contains("no `addresses`"), "{e}");
        let e = err(&format!("{base}[[rules]]\nid = \"r1\"\nports = \"80\"\naction = \"allow\"\n"));
        assert_eq!(e.field, "rules[0].ports");
        let e = err(&format!("{base}[[rules]]\nid = \"r1\"\naction = \"allow\"\n[[rules]]\nid = \"r1\"\naction = \"deny\"\n"));
        assert_eq!((e.field.as_str(), e.line), ("rules[1].id", 19));
        let e = err(&format!("{base}[[rules]]\nid = \"r1\"\nfrom = [\"tag:nope\"]\naction = \"allow\"\n"));
        assert!(e.message.contains("no port has tag"), "{e}");
        let e = err(&format!("{base}[[rules]]\nid = \"r1\"\naction = \"permit\"\n"));
        assert_eq!(e.field, "rules[0].action");
    }

    /// Serde errors inside a rule (before validation can see it) name the rule's
    /// stable id as well as file, line and field, like validation errors do.
    #[test]
    fn rule_deserializer_errors_name_the_rule_id() {
        let base = "[[segments]]\nname = \"lan\"\n[[rules]]\nid = \"first\"\naction = \"allow\"\n[[rules]]\n";
        let cases = [
            ("id = \"web-in\"\naction = \"permit\"\n", "rules[1].action", 8, "unknown variant `permit`"),
            ("id = \"web-in\"\nlog = \"yes\"\naction = \"allow\"\n", "rules[1].log", 8, "expected a boolean"),
            ("id = \"web-in\"\nprotocol = \"icmp\"\nicmp_type = 300\naction = \"allow\"\n", "rules[1].icmp_type", 9, "300"),
            // The id after the bad field: the raw TOML still has it.
            ("action = \"permit\"\nid = \"web-in\"\n", "rules[1].action", 7, "unknown variant `permit`"),
        ];
        for (rule, field, line, what) in cases {
            let e = err(&format!("{base}{rule}"));
            assert_eq!((e.field.as_str(), e.line), (field, line), "{e}");
            let text = e.to_string();
            assert!(text.starts_with(&format!("t.toml:{line}: field `{field}`: rule web-in: ")), "{text}");
            assert!(text.contains(what), "{text}");
        }
        // Inline-table rules are found too.
        let e = err("rules = [{ id = \"a\", action = \"allow\" }, { id = \"b\", action = 7 }]\n");
        assert_eq!(e.field, "rules[1].action");
        assert!(e.message.starts_with("rule b: "), "{e}");
    }

    #[test]
    fn rule_without_id_gives_a_clear_message() {
        let base = "[[rules]]\nid = \"first\"\naction = \"allow\"\n[[rules]]\n";
        let e = err(&format!("{base}action = \"permit\"\n"));
        assert_eq!((e.field.as_str(), e.line), ("rules[1].action", 5));
        assert!(e.message.contains("rule with no `id`") && e.message.contains("unknown variant `permit`"), "{e}");
        let e = err(&format!("{base}action = \"allow\"\n"));
        assert_eq!((e.field.as_str(), e.line), ("rules[1]", 4));
        assert!(e.message.starts_with("missing field `id`: every rule needs a stable, unique `id`"), "{e}");
        // A non-string id is itself the error; no id to name.
        let e = err(&format!("{base}id = 5\naction = \"allow\"\n"));
        assert_eq!((e.field.as_str(), e.message.as_str()), ("rules[1].id", "invalid type: integer `5`, expected a string"));
        // Errors outside rules are left alone.
        let e = err("[dataplane]\nmemory_mb = \"lots\"\n");
        assert!(!e.message.contains("rule"), "{e}");
    }

    #[test]
    fn mac_parser() {
        assert_eq!(parse_mac("52:54:00:00:00:0a"), Some([0x52, 0x54, 0, 0, 0, 0x0a]));
        assert_eq!(parse_mac("52:54:00:00:00"), None);
        assert_eq!(parse_mac("52:54:00:00:00:0a:01"), None);
        assert_eq!(parse_mac("5:54:00:00:00:0a"), None);
    }
}
