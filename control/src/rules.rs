//! Compiles the rule part of a config into the firewall image: each policy
//! rule expands into ACL rules (one per source guest × service × port
//! range, so a guest's ingress port stays paired with its own addresses),
//! which `rampart-acl` compiles into a first-match classifier. Also finds
//! rules that an earlier rule fully shadows.

use crate::compile::{SlotMap, Slots};
use rampart_acl::{Classifier, Key, Prefix, Rule};
use rampart_config::rules::{parse_endpoint, parse_ports, parse_protocol, parse_service, Cidr, Endpoint, RuleAction as CfgAction};
use rampart_config::{Config, Port, Warning};
use rampart_shm::{ConntrackImage, FirewallImage, PolicyImage, RuleAction, RuleImage};

fn prefix(c: Cidr) -> Prefix {
    Prefix { addr: c.addr, len: c.len }
}

fn addresses(p: &Port) -> Vec<Prefix> {
    p.addresses.iter().filter_map(|a| Cidr::parse(a.get_ref())).map(prefix).collect()
}

/// Sources of one rule: (ingress bitmap, source prefixes; empty = any).
fn sources(config: &Config, slots: &SlotMap, list: &[toml::Spanned<String>]) -> Vec<(u64, Vec<Prefix>)> {
    let mut any_port = Vec::new();
    let mut per_guest = Vec::new();
    let guest = |p: &Port| (1u64 << slots[p.name.get_ref()], addresses(p));
    for e in list {
        match parse_endpoint(e.get_ref()) {
            None | Some(Endpoint::Any) => return vec![(u64::MAX, Vec::new())],
            Some(Endpoint::Cidr(c)) => any_port.push(prefix(c)),
            Some(Endpoint::Set(n)) => any_port.extend(config.sets.addresses[&n].iter().filter_map(|a| Cidr::parse(a.get_ref())).map(prefix)),
            Some(ep) => per_guest.extend(ep.ports(config).unwrap_or_default().into_iter().map(guest)),
        }
    }
    if list.is_empty() {
        return vec![(u64::MAX, Vec::new())];
    }
    if !any_port.is_empty() {
        per_guest.push((u64::MAX, any_port));
    }
    per_guest
}

fn destinations(config: &Config, list: &[toml::Spanned<String>]) -> Vec<Prefix> {
    let mut out = Vec::new();
    for e in list {
        match parse_endpoint(e.get_ref()) {
            None | Some(Endpoint::Any) => return Vec::new(),
            Some(Endpoint::Cidr(c)) => out.push(prefix(c)),
            Some(Endpoint::Set(n)) => out.extend(config.sets.addresses[&n].iter().filter_map(|a| Cidr::parse(a.get_ref())).map(prefix)),
            Some(ep) => out.extend(ep.ports(config).unwrap_or_default().into_iter().flat_map(addresses)),
        }
    }
    out
}

/// (protocol, destination port ranges) pairs of one rule.
fn services(config: &Config, r: &rampart_config::rules::RuleCfg) -> Vec<rampart_config::rules::Service> {
    if !r.services.is_empty() {
        return r
            .services
            .iter()
            .flat_map(|s| config.sets.services[s.get_ref()].iter().filter_map(|x| parse_service(x.get_ref())))
            .collect();
    }
    let proto = r.protocol.as_ref().and_then(|p| parse_protocol(p.get_ref())).flatten();
    let ports = r.ports.as_ref().and_then(|p| parse_ports(p.get_ref())).unwrap_or_else(|| vec![(0, u16::MAX)]);
    vec![(proto, ports)]
}

/// Expands every policy rule; returns the ACL rules and, per ACL rule, its policy rule.
pub fn expand(config: &Config, slots: &SlotMap) -> (Vec<Rule>, Vec<u32>) {
    let (mut acl, mut owner) = (Vec::new(), Vec::new());
    for (ri, r) in config.rules.iter().enumerate() {
        let dst = destinations(config, &r.to);
        for (ingress, src) in sources(config, slots, &r.from) {
            for (proto, ranges) in services(config, r) {
                for range in ranges {
                    acl.push(Rule {
                        src: src.clone(),
                        dst: dst.clone(),
                        proto,
                        src_ports: (0, u16::MAX),
                        dst_ports: range,
                        icmp_type: r.icmp_type.as_ref().map(|v| *v.get_ref()),
                        icmp_code: r.icmp_code.as_ref().map(|v| *v.get_ref()),
                        ingress,
                    });
                    owner.push(ri as u32);
                }
            }
        }
    }
    (acl, owner)
}

/// The stateful firewall of a config: None when nothing needs it — no rules, every port's
/// default the same (then each port simply forwards or drops all it receives), and no port
/// in monitor mode (whose would-be drops the firewall finds).
/// With defaults that differ by direction, even without rules, flows the default forwards
/// are tracked so that their replies come back through a port that drops by default.
pub fn compile_firewall(config: &Config, slots: &Slots) -> Result<Option<FirewallImage>, String> {
    let mut defaults = config.ports.iter().map(|p| config.policy.default_for(*p.kind.get_ref()));
    let first = defaults.next();
    let monitored = config.ports.iter().any(|p| p.mode.unwrap_or(config.policy.mode) == rampart_config::Mode::Monitor);
    if config.rules.is_empty() && defaults.all(|d| Some(d) == first) && !monitored {
        return Ok(None);
    }
    let (acl_rules, acl_rule) = expand(config, &slots.ports);
    let acl = Classifier::compile(&acl_rules).map_err(|e| {
        // The classifier numbers ACL rules; operators know policy rule ids.
        let text = e.to_string();
        let id = text
            .strip_prefix("rule ")
            .and_then(|t| t.split(':').next())
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| acl_rule.get(n))
            .map(|&r| config.rules[r as usize].id.get_ref().clone());
        match id {
            Some(id) => format!("rule {id}: {text}"),
            None => text,
        }
    })?;
    let ct = &config.conntrack;
    Ok(Some(FirewallImage {
        rules: config
            .rules
            .iter()
            .map(|r| RuleImage {
                id: r.id.get_ref().clone(),
                counter: slots.rules.get(r.id.get_ref()).copied().unwrap_or(u16::MAX),
                action: match r.action.get_ref() {
                    CfgAction::Allow => RuleAction::Allow,
                    CfgAction::Deny => RuleAction::Deny,
                    CfgAction::Reject => RuleAction::Reject,
                    CfgAction::Log => RuleAction::Log,
                    CfgAction::Inspect => RuleAction::Inspect,
                },
                stateful: r.stateful,
                log: r.log || *r.action.get_ref() == CfgAction::Log,
            })
            .collect(),
        acl,
        acl_rule,
        conntrack: ConntrackImage { timeouts: ct.timeouts },
    }))
}

fn prefixes_cover(outer: &[Prefix], inner: &[Prefix]) -> bool {
    outer.is_empty() || (!inner.is_empty() && inner.iter().all(|i| outer.iter().any(|o| o.len <= i.len && o.contains(&i.addr))))
}

/// Whether ACL rule `a` matches everything `b` matches.
fn covers(a: &Rule, b: &Rule) -> bool {
    prefixes_cover(&a.src, &b.src)
        && prefixes_cover(&a.dst, &b.dst)
        && (a.proto.is_none() || a.proto == b.proto)
        && a.src_ports.0 <= b.src_ports.0
        && a.src_ports.1 >= b.src_ports.1
        && a.dst_ports.0 <= b.dst_ports.0
        && a.dst_ports.1 >= b.dst_ports.1
        && (a.icmp_type.is_none() || a.icmp_type == b.icmp_type)
        && (a.icmp_code.is_none() || a.icmp_code == b.icmp_code)
        && b.ingress & !a.ingress == 0
}

/// What `rampartctl check` does after the config validated: compiles the policy image (as
/// a fresh control process would) and gathers every warning: the config's own, rules
/// shadowed by earlier ones, and guests whose neighbour discovery the rules would drop.
pub fn check(config: &Config) -> Result<(PolicyImage, Vec<Warning>), String> {
    let mut warnings = rampart_config::warnings(config);
    let (image, slots) = crate::compile::compile(config, &Default::default())?;
    warnings.extend(shadowed(config, &slots.ports).into_iter().map(Warning));
    warnings.extend(neighbor_discovery_warnings(config, &slots).into_iter().map(Warning));
    Ok((image, warnings))
}

/// Guests that use IPv6 (an IPv6 address among their `addresses`) whose neighbour
/// solicitations the policy drops: they could reach no one over IPv6. Rampart switches
/// ARP whatever the rules, but neighbour discovery is ICMPv6 and meets the rules (a guest
/// may not send router advertisements or redirects to the others, or carry data out in
/// ND options, unless a rule lets it).
pub fn neighbor_discovery_warnings(config: &Config, slots: &Slots) -> Vec<String> {
    let Ok(Some(fw)) = compile_firewall(config, slots) else { return Vec::new() };
    let mut out = Vec::new();
    for p in &config.ports {
        let v6: Vec<[u8; 16]> = p.addresses.iter().filter_map(|a| a.get_ref().split('/').next()?.parse::<std::net::Ipv6Addr>().ok()).map(|a| a.octets()).collect();
        let Some(&global) = v6.first() else { continue };
        let slot = slots.ports[p.name.get_ref()] as u8;
        let link_local = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).octets();
        let solicited = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, 1).octets();
        let allowed = [link_local, global].iter().all(|src| {
            let key = Key { src: *src, dst: solicited, proto: 58, icmp_type: 135, ingress: slot, ..Default::default() };
            match fw.acl.lookup(&key).map(|i| fw.rules[fw.acl_rule[i as usize] as usize].action) {
                Some(action) => matches!(action, RuleAction::Allow | RuleAction::Log | RuleAction::Inspect),
                None => config.policy.default_for(*p.kind.get_ref()) == rampart_config::DefaultAction::Forward,
            }
        });
        if !allowed {
            out.push(format!(
                "port {} has IPv6 addresses but the policy drops its neighbour solicitations (ICMPv6 type 135): \
                 allow them, e.g. a rule with from = [\"fe80::/10\", \"guest:{}\"] (link-local sources are not among its addresses), protocol = \"icmpv6\"",
                p.name.get_ref(),
                p.name.get_ref()
            ));
        }
    }
    out
}

/// Rules that can never match because one earlier rule covers all they match.
pub fn shadowed(config: &Config, slots: &SlotMap) -> Vec<String> {
    let (acl, owner) = expand(config, slots);
    let mut by_rule: Vec<Vec<&Rule>> = vec![Vec::new(); config.rules.len()];
    for (a, &o) in acl.iter().zip(&owner) {
        by_rule[o as usize].push(a);
    }
    let mut out = Vec::new();
    for (ri, mine) in by_rule.iter().enumerate() {
        if mine.is_empty() {
            continue;
        }
        if let Some(earlier) = (0..ri).find(|&e| mine.iter().all(|m| by_rule[e].iter().any(|t| covers(t, m)))) {
            out.push(format!(
                "rule {} is shadowed by earlier rule {} and never matches",
                config.rules[ri].id.get_ref(),
                config.rules[earlier].id.get_ref()
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[dataplane]
worker_cores = [1]
[[segments]]
name = "lan"
[[ports]]
name = "web"
kind = "vhost-server"
socket = "/tmp/web.sock"
segment = "lan"
tags = ["frontend"]
addresses = ["10.0.0.10"]
[[ports]]
name = "db"
kind = "vhost-server"
socket = "/tmp/db.sock"
segment = "lan"
addresses = ["10.0.0.20", "fd00::20"]
[sets.addresses]
admins = ["192.168.7.0/24"]
[sets.services]
sql = ["tcp/5432", "tcp/3306"]
"#;

    fn compile(rules: &str) -> (Config, FirewallImage, SlotMap) {
        let config = rampart_config::parse("t.toml", &format!("{BASE}{rules}")).unwrap();
        let (_, slots) = crate::compile::compile(&config, &Slots::default()).unwrap();
        let fw = compile_firewall(&config, &slots).unwrap().unwrap();
        (config, fw, slots.ports)
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        rampart_acl::v4_mapped(a)
    }

    fn key(src: [u8; 4], dst: [u8; 4], proto: u8, dport: u16, ingress: u8) -> Key {
        Key { src: v4(src), dst: v4(dst), proto, src_port: 40000, dst_port: dport, ingress, ..Default::default() }
    }

    #[test]
    fn guests_tags_sets_and_services_compile_to_first_match() {
        let (_, fw, slots) = compile(
            r#"
[[rules]]
id = "web-to-db"
from = ["tag:frontend"]
to = ["guest:db"]
services = ["sql"]
action = "allow"
[[rules]]
id = "admins-ssh"
from = ["set:admins"]
protocol = "tcp"
ports = "22"
action = "allow"
[[rules]]
id = "no-db-out"
from = ["guest:db"]
action = "reject"
"#,
        );
        let (web, db) = (slots["web"] as u8, slots["db"] as u8);
        let rule = |k: &Key| fw.acl.lookup(k).map(|i| fw.rules[fw.acl_rule[i as usize] as usize].id.clone());
        assert_eq!(rule(&key([10, 0, 0, 10], [10, 0, 0, 20], 6, 5432, web)).as_deref(), Some("web-to-db"));
        assert_eq!(rule(&key([10, 0, 0, 10], [10, 0, 0, 20], 6, 3306, web)).as_deref(), Some("web-to-db"));
        assert_eq!(rule(&key([10, 0, 0, 10], [10, 0, 0, 20], 6, 80, web)), None, "not a sql port");
        assert_eq!(rule(&key([10, 0, 0, 20], [10, 0, 0, 10], 6, 5432, db)).as_deref(), Some("no-db-out"));
        assert_eq!(rule(&key([10, 0, 0, 10], [10, 0, 0, 20], 6, 5432, db)), None, "web's address from db's port matches neither guest's rules");
        assert_eq!(rule(&key([192, 168, 7, 9], [10, 0, 0, 20], 6, 22, web)).as_deref(), Some("admins-ssh"));
        assert_eq!(fw.rules[2].action, RuleAction::Reject);
        assert_eq!(fw.conntrack.timeouts.tcp_established, 432_000, "Linux default for established TCP");
    }

    #[test]
    fn a_segment_names_every_port_attached_to_it() {
        let (config, fw, slots) = compile(
            r#"
[[segments]]
name = "dmz"
[[ports]]
name = "edge"
kind = "vhost-server"
socket = "/tmp/edge.sock"
segment = "dmz"
[[rules]]
id = "lan-to-db"
from = ["segment:lan"]
to = ["guest:db"]
protocol = "tcp"
action = "allow"
"#,
        );
        let (web, db, edge) = (slots["web"] as u8, slots["db"] as u8, slots["edge"] as u8);
        let rule = |k: &Key| fw.acl.lookup(k).map(|i| fw.rules[fw.acl_rule[i as usize] as usize].id.clone());
        assert_eq!(rule(&key([10, 0, 0, 10], [10, 0, 0, 20], 6, 5432, web)).as_deref(), Some("lan-to-db"), "from a lan port, with its address");
        assert_eq!(rule(&key([10, 0, 0, 20], [10, 0, 0, 20], 6, 5432, db)).as_deref(), Some("lan-to-db"));
        assert_eq!(rule(&key([10, 0, 0, 10], [10, 0, 0, 20], 6, 5432, edge)), None, "the dmz port is not in lan");
        assert_eq!(rule(&key([10, 9, 9, 9], [10, 0, 0, 20], 6, 5432, web)), None, "a lan port spoofing another address");
        let e = rampart_config::parse("t.toml", &format!("{BASE}[[rules]]\nid = \"x\"\nfrom = [\"segment:nowhere\"]\naction = \"allow\"\n")).unwrap_err();
        assert!(e.field == "rules[0].from[0]" && e.message.contains("unknown segment \"nowhere\""), "{e}");
        assert!(config.rules[0].from[0].get_ref().starts_with("segment:"));
    }

    #[test]
    fn guests_whose_neighbour_discovery_is_dropped_are_warned_about() {
        let warnings = |rules: &str| {
            let config = rampart_config::parse("t.toml", &format!("[policy]\ndefault_action = \"drop\"\n{BASE}{rules}")).unwrap();
            let (_, slots) = crate::compile::compile(&config, &Slots::default()).unwrap();
            neighbor_discovery_warnings(&config, &slots)
        };
        let tcp = "[[rules]]\nid = \"tcp\"\nprotocol = \"tcp\"\naction = \"allow\"\n";
        let w = warnings(tcp);
        assert_eq!(w.len(), 1, "only db has an IPv6 address: {w:?}");
        assert!(w[0].starts_with("port db has IPv6 addresses but the policy drops its neighbour solicitations"), "{w:?}");
        let nd = "[[rules]]\nid = \"nd\"\nfrom = [\"fe80::/10\", \"guest:db\"]\nprotocol = \"icmpv6\"\naction = \"allow\"\n";
        assert_eq!(warnings(&format!("{tcp}{nd}")), Vec::<String>::new(), "from its link-local and its own address");
        let own_only = "[[rules]]\nid = \"nd\"\nfrom = [\"guest:db\"]\nprotocol = \"icmpv6\"\naction = \"allow\"\n";
        assert_eq!(warnings(own_only).len(), 1, "guest:db means its addresses: solicitations from its link-local address are still dropped");
    }

    #[test]
    fn shadowed_rules_are_reported() {
        let (config, _, slots) = compile(
            r#"
[[rules]]
id = "all-tcp"
protocol = "tcp"
action = "allow"
[[rules]]
id = "web-http"
from = ["guest:web"]
protocol = "tcp"
ports = "80"
action = "deny"
[[rules]]
id = "udp-dns"
protocol = "udp"
ports = "53"
action = "allow"
"#,
        );
        assert_eq!(shadowed(&config, &slots), vec!["rule web-http is shadowed by earlier rule all-tcp and never matches".to_string()]);
    }
}
