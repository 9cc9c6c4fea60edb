//! Semantic checks that serde cannot express: references between ports and
//! segments, uniqueness, limits. The first error wins and names its line.

use crate::{line_of, parse_mac, Config, PortKind};
use std::collections::{HashMap, HashSet};
use toml::Spanned;

/// Most ports one dataplane serves (the shared-memory counter layout holds this many).
pub const MAX_PORTS: usize = 64;
/// Most worker lcores.
pub const MAX_WORKERS: usize = 16;

/// A configuration error: where it is and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {}{message}", if field.is_empty() { String::new() } else { format!("field `{field}`: ") })]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// Something legal but probably not meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning(pub String);

struct Checker<'a> {
    config: &'a Config,
}

impl Checker<'_> {
    fn err<T>(&self, span: Option<std::ops::Range<usize>>, field: String, message: String) -> Result<T, ConfigError> {
        Err(ConfigError {
            file: self.config.source.file.clone(),
            line: span.map(|s| line_of(&self.config.source.text, s.start)).unwrap_or(0),
            field,
            message,
        })
    }

    fn at<T, U>(&self, s: &Spanned<U>, field: String, message: String) -> Result<T, ConfigError> {
        self.err(Some(s.span()), field, message)
    }

    /// The line of a `[dataplane]`-style table header, for fields that have no span of their own.
    fn table_span(&self, table: &str) -> Option<std::ops::Range<usize>> {
        let header = format!("[{table}]");
        self.config.source.text.find(&header).map(|i| i..i + header.len())
    }
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.len() <= 32 && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn validate(config: &Config) -> Result<(), ConfigError> {
    let c = Checker { config };
    let dp = &config.dataplane;
    let dps = c.table_span("dataplane");
    if dp.worker_cores.is_empty() || dp.worker_cores.len() > MAX_WORKERS {
        return c.err(dps, "dataplane.worker_cores".into(), format!("expected 1 to {MAX_WORKERS} CPU numbers"));
    }
    let mut seen = HashSet::new();
    for cpu in &dp.worker_cores {
        if !seen.insert(cpu) {
            return c.err(dps, "dataplane.worker_cores".into(), format!("CPU {cpu} is listed twice"));
        }
    }
    if dp.memory_mb < 64 {
        return c.err(dps, "dataplane.memory_mb".into(), "expected at least 64 (MiB)".into());
    }
    if dp.mbufs < 1024 {
        return c.err(dps, "dataplane.mbufs".into(), "expected at least 1024".into());
    }
    if dp.idle_sleep_max_us > 100_000 {
        return c.err(dps, "dataplane.idle_sleep_max_us".into(), "expected at most 100000 (µs)".into());
    }
    let ctl = &config.control;
    let log_dir = std::path::Path::new(&ctl.event_log).parent().unwrap_or(std::path::Path::new(""));
    let key_dir = std::path::Path::new(&ctl.event_key).parent().unwrap_or(std::path::Path::new(""));
    if if log_dir.as_os_str().is_empty() { key_dir.as_os_str().is_empty() } else { key_dir.starts_with(log_dir) } {
        return c.err(
            c.table_span("control"),
            "control.event_key".into(),
            format!("the event log's key must be kept outside its directory {} (whoever may read the log must not read the key)", log_dir.display()),
        );
    }
    let ev = &config.events;
    if ev.rotate_bytes != 0 && ev.rotate_bytes < 65_536 {
        return c.err(c.table_span("events"), "events.rotate_bytes".into(), "expected 0 (never) or at least 65536 (bytes)".into());
    }
    let an = &config.anomalies;
    if !(64..=65535).contains(&an.icmp_max_bytes) {
        return c.err(c.table_span("anomalies"), "anomalies.icmp_max_bytes".into(), "expected 64 to 65535 (bytes)".into());
    }
    let st = &config.inspection_state;
    let sts = c.table_span("inspection_state");
    if st.tail == 0 || st.tail > 256 {
        return c.err(sts, "inspection_state.tail".into(), "expected 1 to 256 (bytes)".into());
    }
    if st.streams_per_worker == 0 || st.streams_per_worker > 1 << 22 {
        return c.err(sts, "inspection_state.streams_per_worker".into(), format!("expected 1 to {}", 1 << 22));
    }
    if st.idle_timeout == 0 {
        return c.err(sts, "inspection_state.idle_timeout".into(), "expected at least 1 (s)".into());
    }
    for (i, set) in config.inspection.iter().enumerate() {
        if set.rules.is_empty() && set.signatures.is_empty() {
            return c.err(c.table_span("inspection"), format!("inspection[{i}]"), "a rule set needs `rules` (files) or `signatures`".into());
        }
        for (name, v) in &set.vars {
            if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
                return c.at(v, format!("inspection[{i}].vars.{name}"), "variable names are letters, digits and _ (written without the $)".into());
            }
        }
    }
    if dp.idle_sleep_us > dp.idle_sleep_max_us {
        return c.err(dps, "dataplane.idle_sleep_us".into(), format!("expected at most idle_sleep_max_us ({})", dp.idle_sleep_max_us));
    }
    if !valid_name(&dp.file_prefix) {
        return c.err(dps, "dataplane.file_prefix".into(), "expected 1-32 characters of [A-Za-z0-9_-]".into());
    }
    if !dp.shm.starts_with('/') {
        return c.err(dps, "dataplane.shm".into(), "expected an absolute path".into());
    }
    if dp.file_mode & !0o660 != 0 {
        return c.err(dps, "dataplane.file_mode".into(), "expected 0o600 or 0o660 (no world access)".into());
    }

    let mut segments = HashSet::new();
    for (i, s) in config.segments.iter().enumerate() {
        let field = format!("segments[{i}].name");
        if !valid_name(s.name.get_ref()) {
            return c.at(&s.name, field, "expected 1-32 characters of [A-Za-z0-9_-]".into());
        }
        if !segments.insert(s.name.get_ref().as_str()) {
            return c.at(&s.name, field, format!("segment \"{}\" is defined twice", s.name.get_ref()));
        }
    }

    if config.ports.len() > MAX_PORTS {
        return c.err(None, "ports".into(), format!("at most {MAX_PORTS} ports are supported"));
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, p) in config.ports.iter().enumerate() {
        if !valid_name(p.name.get_ref()) {
            return c.at(&p.name, format!("ports[{i}].name"), "expected 1-32 characters of [A-Za-z0-9_-]".into());
        }
        if names.insert(p.name.get_ref(), i).is_some() {
            return c.at(&p.name, format!("ports[{i}].name"), format!("port \"{}\" is defined twice", p.name.get_ref()));
        }
    }
    let mut sockets = HashSet::new();
    for (i, p) in config.ports.iter().enumerate() {
        let f = |name: &str| format!("ports[{i}].{name}");
        match p.kind.get_ref() {
            PortKind::VhostServer | PortKind::VhostClient => {
                let Some(sock) = &p.socket else {
                    return c.at(&p.kind, f("socket"), "a vhost port needs `socket = \"/path/to/vhost.sock\"`".into());
                };
                if !sock.get_ref().starts_with('/') || sock.get_ref().contains(',') {
                    return c.at(sock, f("socket"), "expected an absolute path without commas".into());
                }
                if !sockets.insert(sock.get_ref().as_str()) {
                    return c.at(sock, f("socket"), "this socket path is used by another port".into());
                }
                if let Some(d) = &p.device {
                    return c.at(d, f("device"), "`device` is for kind = \"device\"; a vhost port has only `socket`".into());
                }
            }
            PortKind::Device => {
                let Some(dev) = &p.device else {
                    return c.at(&p.kind, f("device"), "a device port needs `device = \"net_tap0,iface=x\"` (any DPDK device string)".into());
                };
                if dev.get_ref().trim().is_empty() {
                    return c.at(dev, f("device"), "expected a DPDK device string".into());
                }
                if let Some(s) = &p.socket {
                    return c.at(s, f("socket"), "`socket` is for vhost ports; a device port has only `device`".into());
                }
            }
        }
        if let Some(q) = &p.queues {
            if *q.get_ref() == 0 || *q.get_ref() as usize > MAX_WORKERS {
                return c.at(q, f("queues"), format!("expected 1 to {MAX_WORKERS}"));
            }
        }
        for (j, m) in p.macs.iter().enumerate() {
            if parse_mac(m.get_ref()).is_none() {
                return c.at(m, format!("ports[{i}].macs[{j}]"), "expected a MAC address like 52:54:00:12:34:56".into());
            }
        }
        match (&p.segment, &p.wire) {
            (Some(s), Some(_)) => {
                return c.at(s, f("segment"), "a port is either in a `segment` or one end of a `wire`, not both".into())
            }
            (None, None) => {
                return c.at(&p.name, f("segment"), "expected `segment = \"NAME\"` or `wire = \"PEER-PORT\"`".into())
            }
            (Some(s), None) => {
                if !segments.contains(s.get_ref().as_str()) {
                    let known: Vec<_> = segments.iter().copied().collect();
                    return c.at(s, f("segment"), format!("unknown segment \"{}\" (defined: {})", s.get_ref(), known.join(", ")));
                }
            }
            (None, Some(w)) => {
                let Some(&j) = names.get(w.get_ref().as_str()) else {
                    return c.at(w, f("wire"), format!("unknown port \"{}\"", w.get_ref()));
                };
                if j == i {
                    return c.at(w, f("wire"), "a port cannot be wired to itself".into());
                }
                let peer = &config.ports[j];
                let back = peer.wire.as_ref().map(|x| x.get_ref().as_str());
                if peer.segment.is_some() || back != Some(p.name.get_ref().as_str()) {
                    return c.at(w, f("wire"), format!("port \"{}\" must say `wire = \"{}\"` too", w.get_ref(), p.name.get_ref()));
                }
            }
        }
    }
    validate_rules(&c)
}

fn validate_rules(c: &Checker) -> Result<(), ConfigError> {
    use crate::rules::{parse_endpoint, parse_ports, parse_protocol, parse_service, Cidr, Endpoint};
    let config = c.config;
    for (i, p) in config.ports.iter().enumerate() {
        for (j, a) in p.addresses.iter().enumerate() {
            if Cidr::parse(a.get_ref()).is_none() {
                return c.at(a, format!("ports[{i}].addresses[{j}]"), "expected an address or prefix like 10.0.0.5 or 10.0.0.0/24 (host bits zero)".into());
            }
        }
        if let Some(l) = p.learn.as_ref().filter(|_| p.guarded() && !p.learns()) {
            if p.macs.is_empty() || p.addresses.is_empty() {
                return c.at(l, format!("ports[{i}].learn"), "with learn = \"off\" the guard lets the port send only from its `macs` and `addresses`: list both, or set anti_spoofing = false".into());
            }
        }
        for (j, t) in p.tags.iter().enumerate() {
            if !valid_name(t.get_ref()) {
                return c.at(t, format!("ports[{i}].tags[{j}]"), "expected 1-32 characters of [A-Za-z0-9_-]".into());
            }
        }
    }
    for (name, list) in &config.sets.addresses {
        for (j, a) in list.iter().enumerate() {
            if Cidr::parse(a.get_ref()).is_none() {
                return c.at(a, format!("sets.addresses.{name}[{j}]"), "expected an address or prefix like 10.0.0.0/8".into());
            }
        }
    }
    for (name, list) in &config.sets.services {
        for (j, s) in list.iter().enumerate() {
            if parse_service(s.get_ref()).is_none() {
                return c.at(s, format!("sets.services.{name}[{j}]"), "expected a service like tcp/80, udp/1000-2000, icmp".into());
            }
        }
    }
    let ct = &config.conntrack;
    if !(1024..=1 << 26).contains(&ct.table_size) {
        return c.err(c.table_span("conntrack"), "conntrack.table_size".into(), "expected 1024 to 67108864 entries".into());
    }
    let mut ids = HashSet::new();
    for (i, r) in config.rules.iter().enumerate() {
        let f = |name: &str| format!("rules[{i}].{name}");
        if !valid_name(r.id.get_ref()) {
            return c.at(&r.id, f("id"), "expected 1-32 characters of [A-Za-z0-9_-]".into());
        }
        if !ids.insert(r.id.get_ref().as_str()) {
            return c.at(&r.id, f("id"), format!("rule id \"{}\" is used twice; ids must be stable and unique", r.id.get_ref()));
        }
        for (side, list) in [("from", &r.from), ("to", &r.to)] {
            for (j, e) in list.iter().enumerate() {
                let field = format!("rules[{i}].{side}[{j}]");
                let Some(ep) = parse_endpoint(e.get_ref()) else {
                    return c.at(e, field, format!("rule {}: expected any, guest:NAME, tag:TAG, segment:NAME, set:NAME or an address/prefix", r.id.get_ref()));
                };
                let guests = ep.ports(config).unwrap_or_default();
                let missing = match &ep {
                    Endpoint::Guest(g) if guests.is_empty() => Some(format!("unknown guest \"{g}\"")),
                    Endpoint::Tag(t) if guests.is_empty() => Some(format!("no port has tag \"{t}\"")),
                    Endpoint::Segment(s) if !config.segments.iter().any(|x| x.name.get_ref() == s) => Some(format!("unknown segment \"{s}\"")),
                    Endpoint::Segment(s) if guests.is_empty() => Some(format!("segment \"{s}\" has no ports")),
                    Endpoint::Set(n) if !config.sets.addresses.contains_key(n) => Some(format!("unknown address set \"{n}\"")),
                    _ => None,
                };
                if let Some(why) = missing {
                    return c.at(e, field, format!("rule {}: {why}", r.id.get_ref()));
                }
                if side == "to" {
                    if let Some(p) = guests.iter().find(|p| p.addresses.is_empty()) {
                        return c.at(e, field, format!("rule {}: guest \"{}\" has no `addresses`, which a rule needs to match traffic to it", r.id.get_ref(), p.name.get_ref()));
                    }
                }
            }
        }
        let proto = match &r.protocol {
            Some(p) => match parse_protocol(p.get_ref()) {
                Some(x) => x,
                None => return c.at(p, f("protocol"), format!("rule {}: expected tcp, udp, icmp, icmpv6, any or a number", r.id.get_ref())),
            },
            None => None,
        };
        if let Some(ports) = &r.ports {
            if parse_ports(ports.get_ref()).is_none() {
                return c.at(ports, f("ports"), format!("rule {}: expected ports like \"80,443,8000-8080\"", r.id.get_ref()));
            }
            if !matches!(proto, Some(6) | Some(17) | Some(132)) {
                return c.at(ports, f("ports"), format!("rule {}: ports need protocol = \"tcp\", \"udp\" or \"sctp\"", r.id.get_ref()));
            }
            if !r.services.is_empty() {
                return c.at(ports, f("ports"), format!("rule {}: use either `ports` or `services`, not both", r.id.get_ref()));
            }
        }
        for (j, s) in r.services.iter().enumerate() {
            if !config.sets.services.contains_key(s.get_ref()) {
                return c.at(s, format!("rules[{i}].services[{j}]"), format!("rule {}: unknown service set \"{}\"", r.id.get_ref(), s.get_ref()));
            }
            if let Some(p) = &r.protocol {
                return c.at(p, f("protocol"), format!("rule {}: use either `protocol`/`ports` or `services`, not both", r.id.get_ref()));
            }
        }
        if *r.action.get_ref() == crate::rules::RuleAction::Inspect && config.inspection.is_empty() {
            return c.at(&r.action, f("action"), format!("rule {}: action \"inspect\" needs signatures: add an [[inspection]] rule set", r.id.get_ref()));
        }
        if *r.action.get_ref() == crate::rules::RuleAction::Inspect && !r.stateful {
            return c.at(&r.action, f("action"), format!("rule {}: inspection keeps state per flow: an \"inspect\" rule must be stateful", r.id.get_ref()));
        }
        for (name, v) in [("icmp_type", &r.icmp_type), ("icmp_code", &r.icmp_code)] {
            if let Some(v) = v {
                if !matches!(proto, Some(1) | Some(58)) {
                    return c.at(v, f(name), format!("rule {}: {name} needs protocol = \"icmp\" or \"icmpv6\"", r.id.get_ref()));
                }
            }
        }
    }
    Ok(())
}

/// Legal but suspicious settings worth telling the operator about.
pub fn warnings(config: &Config) -> Vec<Warning> {
    let mut out = Vec::new();
    if config.dataplane.worker_cores.contains(&config.dataplane.main_core) {
        out.push(Warning(format!(
            "dataplane.main_core {} is also a worker core: the worker shares its CPU with the main lcore",
            config.dataplane.main_core
        )));
    }
    if !config.inspection.is_empty() && !config.rules.iter().any(|r| *r.action.get_ref() == crate::rules::RuleAction::Inspect) {
        out.push(Warning("[[inspection]] rule sets are loaded, but no rule has action = \"inspect\": no flow is inspected".into()));
    }
    let ct = &config.conntrack;
    let quotas: u64 = config.ports.iter().map(|p| ct.quota_of(p, config.ports.len()) as u64).sum();
    if quotas > ct.table_size as u64 {
        out.push(Warning(format!(
            "the ports' flow quotas (max_flows, conntrack.max_flows_per_guest) add up to {quotas} flows, more than conntrack.table_size = {}: \
             one guest can fill the table and stop the others from opening flows",
            ct.table_size
        )));
    }
    for s in &config.segments {
        let n = config.ports.iter().filter(|p| p.segment.as_ref().map(|x| x.get_ref()) == Some(s.name.get_ref())).count();
        if n < 2 {
            out.push(Warning(format!("segment \"{}\" has {n} port(s): nothing to switch between", s.name.get_ref())));
        }
    }
    out
}
