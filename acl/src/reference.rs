//! The slow, obviously correct classifier the compiled one is tested against:
//! scan the rules in order, return the first that matches.

use crate::{Key, Rule};

/// Index of the first rule of `rules` that matches `key`, if any.
pub fn first_match(rules: &[Rule], key: &Key) -> Option<u32> {
    rules.iter().position(|rule| rule_matches(rule, key)).map(|i| i as u32)
}

/// Whether one rule matches `key`, field by field as documented on [`Rule`].
pub fn rule_matches(rule: &Rule, key: &Key) -> bool {
    let src = rule.src.is_empty() || rule.src.iter().any(|p| p.contains(&key.src));
    let dst = rule.dst.is_empty() || rule.dst.iter().any(|p| p.contains(&key.dst));
    let proto = rule.proto.is_none_or(|p| p == key.proto);
    let sport = rule.src_ports.0 <= key.src_port && key.src_port <= rule.src_ports.1;
    let dport = rule.dst_ports.0 <= key.dst_port && key.dst_port <= rule.dst_ports.1;
    let icmp_type = rule.icmp_type.is_none_or(|t| t == key.icmp_type);
    let icmp_code = rule.icmp_code.is_none_or(|c| c == key.icmp_code);
    let ingress = rule.ingress == u64::MAX
        || (key.ingress < 64 && rule.ingress & (1u64 << key.ingress) != 0);
    src && dst && proto && sport && dport && icmp_type && icmp_code && ingress
}
