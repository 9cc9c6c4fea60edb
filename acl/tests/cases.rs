//! Hand-written cases for the semantics most likely to be got wrong.

use rampart_acl::{reference, v4_mapped, Classifier, CompileError, Key, Prefix, Rule};

fn v4(a: [u8; 4]) -> [u8; 16] {
    v4_mapped(a)
}

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    a[15] = last;
    a
}

fn tcp(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16) -> Key {
    Key { src, dst, proto: 6, src_port: sport, dst_port: dport, ..Key::default() }
}

/// Compiles, checks every key against the reference, and returns the verdicts.
fn classify(rules: &[Rule], keys: &[Key]) -> Vec<Option<u32>> {
    let c = Classifier::compile(rules).expect("compile");
    c.validate().expect("valid");
    let mut bulk = vec![None; keys.len()];
    c.lookup_bulk(keys, &mut bulk);
    keys.iter()
        .zip(&bulk)
        .map(|(k, b)| {
            let got = c.lookup(k);
            assert_eq!(got, reference::first_match(rules, k), "key {k:?}");
            assert_eq!(*b, got, "bulk, key {k:?}");
            got
        })
        .collect()
}

#[test]
fn empty_rule_list_matches_nothing() {
    let c = Classifier::compile(&[]).unwrap();
    c.validate().unwrap();
    assert_eq!(c.rule_count(), 0);
    assert_eq!(c.lookup(&Key::default()), None);
    let mut out = [Some(7); 3];
    c.lookup_bulk(&[Key::default(); 3], &mut out);
    assert_eq!(out, [None; 3]);
}

#[test]
fn ipv4_rules_never_match_ipv6_keys_and_vice_versa() {
    let rules = vec![
        // 0.0.0.0/0 is ::ffff:0:0/96: every IPv4 address, no IPv6 one.
        Rule { src: vec![Prefix::v4([0, 0, 0, 0], 0)], ..Rule::default() },
        Rule { dst: vec![Prefix::v6(v6(0), 32)], ..Rule::default() },
        // ::/0 is any address of either family.
        Rule { src: vec![Prefix::ANY], ..Rule::default() },
    ];
    let keys = [
        tcp(v4([10, 0, 0, 1]), v4([10, 0, 0, 2]), 1, 2),
        tcp(v6(1), v6(2), 1, 2),
        tcp(v6(1), v4([10, 0, 0, 2]), 1, 2),
        tcp([0; 16], [0; 16], 1, 2),
    ];
    assert_eq!(classify(&rules, &keys), [Some(0), Some(1), Some(2), Some(2)]);

    let only_v4 = vec![Rule { dst: vec![Prefix::v4([10, 0, 0, 0], 8)], ..Rule::default() }];
    assert_eq!(
        classify(&only_v4, &[tcp(v6(1), v6(2), 1, 2), tcp(v6(1), v4([10, 9, 9, 9]), 1, 2)]),
        [None, Some(0)]
    );
}

#[test]
fn prefix_edges() {
    let rules = vec![Rule { dst: vec![Prefix::v4([192, 168, 4, 0], 22)], ..Rule::default() }];
    let keys = [
        tcp(v4([1, 1, 1, 1]), v4([192, 168, 3, 255]), 1, 1),
        tcp(v4([1, 1, 1, 1]), v4([192, 168, 4, 0]), 1, 1),
        tcp(v4([1, 1, 1, 1]), v4([192, 168, 7, 255]), 1, 1),
        tcp(v4([1, 1, 1, 1]), v4([192, 168, 8, 0]), 1, 1),
    ];
    assert_eq!(classify(&rules, &keys), [None, Some(0), Some(0), None]);
}

#[test]
fn port_range_boundaries() {
    let rules = vec![
        Rule { proto: Some(6), dst_ports: (80, 80), ..Rule::default() },
        Rule { proto: Some(6), dst_ports: (1024, 2047), src_ports: (0, 1023), ..Rule::default() },
        Rule { dst_ports: (65535, 65535), ..Rule::default() },
    ];
    let a = v4([10, 0, 0, 1]);
    let keys = [
        tcp(a, a, 5, 79),
        tcp(a, a, 5, 80),
        tcp(a, a, 5, 81),
        tcp(a, a, 1023, 1023),
        tcp(a, a, 1023, 1024),
        tcp(a, a, 1023, 2047),
        tcp(a, a, 1024, 2047),
        tcp(a, a, 0, 2048),
        tcp(a, a, 0, 65535),
        Key { proto: 17, ..tcp(a, a, 5, 80) },
    ];
    assert_eq!(
        classify(&rules, &keys),
        [None, Some(0), None, None, Some(1), Some(1), None, None, Some(2), None]
    );
}

#[test]
fn icmp_type_and_code() {
    let rules = vec![
        Rule { proto: Some(1), icmp_type: Some(3), icmp_code: Some(4), ..Rule::default() },
        Rule { proto: Some(1), icmp_type: Some(8), ..Rule::default() },
        Rule { proto: Some(58), icmp_type: Some(128), ..Rule::default() },
    ];
    let icmp = |proto, t, c| Key { src: v4([10, 0, 0, 1]), dst: v4([10, 0, 0, 2]), proto, icmp_type: t, icmp_code: c, ..Key::default() };
    let keys = [icmp(1, 3, 4), icmp(1, 3, 3), icmp(1, 8, 0), icmp(1, 8, 9), icmp(58, 8, 0), icmp(58, 128, 0), icmp(1, 128, 0)];
    assert_eq!(classify(&rules, &keys), [Some(0), None, Some(1), Some(1), None, Some(2), None]);
}

#[test]
fn ingress_bitmap() {
    let rules = vec![
        Rule { ingress: 1 << 3 | 1 << 63, ..Rule::default() },
        Rule { ingress: 0, ..Rule::default() },
        Rule { ingress: u64::MAX, proto: Some(17), ..Rule::default() },
    ];
    let k = |ingress, proto| Key { ingress, proto, ..tcp(v4([1, 2, 3, 4]), v4([5, 6, 7, 8]), 1, 2) };
    let keys = [k(3, 6), k(63, 6), k(4, 6), k(64, 6), k(200, 17), k(2, 17)];
    assert_eq!(classify(&rules, &keys), [Some(0), Some(0), None, None, Some(2), Some(2)]);
}

#[test]
fn first_match_wins_and_address_sets_are_unions() {
    let rules = vec![
        Rule { src: vec![Prefix::v4([10, 1, 0, 0], 16), Prefix::v6(v6(0), 64)], proto: Some(6), dst_ports: (22, 22), ..Rule::default() },
        Rule { src: vec![Prefix::v4([10, 0, 0, 0], 8)], ..Rule::default() },
        Rule::default(),
    ];
    let keys = [
        tcp(v4([10, 1, 2, 3]), v4([1, 1, 1, 1]), 9, 22),
        tcp(v6(7), v6(8), 9, 22),
        tcp(v4([10, 2, 2, 3]), v4([1, 1, 1, 1]), 9, 22),
        tcp(v4([11, 1, 2, 3]), v4([1, 1, 1, 1]), 9, 22),
    ];
    assert_eq!(classify(&rules, &keys), [Some(0), Some(0), Some(1), Some(2)]);
}

/// A broad rule early in a region must not hide a later rule in the part of
/// the region it does not cover (regression: subtrees shared across a port
/// cut pruned behind a rule that covered only some of the siblings).
#[test]
fn partial_cover_does_not_prune_siblings() {
    let rules = vec![
        Rule { dst_ports: (0, 0), ..Rule::default() },
        Rule { dst: vec![Prefix::ANY], dst_ports: (0, 65534), ..Rule::default() },
        Rule { dst_ports: (0, 0), ..Rule::default() },
        Rule { src: vec![Prefix::v4([10, 0, 0, 0], 0)], dst_ports: (4096, 4096), ingress: 1, ..Rule::default() },
        Rule { ingress: 1, ..Rule::default() },
    ];
    let key = tcp(v4([10, 0, 1, 226]), v4([10, 0, 0, 78]), 24304, 65535);
    for options in [
        rampart_acl::CompileOptions::default(),
        rampart_acl::CompileOptions { leaf_size: 2, space_factor: 16, separate: false },
    ] {
        let c = Classifier::compile_with(&rules, &options).unwrap();
        assert_eq!(c.lookup(&key), Some(4));
    }
}

#[test]
fn invalid_rules_are_rejected_with_the_rule_number() {
    let bad_len = vec![Rule::default(), Rule { src: vec![Prefix { addr: [0; 16], len: 129 }], ..Rule::default() }];
    assert_eq!(Classifier::compile(&bad_len).unwrap_err(), CompileError::PrefixTooLong { rule: 1, len: 129 });
    let bad_range = vec![Rule { dst_ports: (10, 9), ..Rule::default() }];
    assert!(matches!(Classifier::compile(&bad_range), Err(CompileError::EmptyPortRange { rule: 0, .. })));
    let bad_icmp = vec![Rule { proto: Some(6), icmp_type: Some(8), ..Rule::default() }];
    assert!(matches!(Classifier::compile(&bad_icmp), Err(CompileError::IcmpWithoutIcmpProtocol { rule: 0, .. })));
    let message = Classifier::compile(&bad_icmp).unwrap_err().to_string();
    assert!(message.contains("rule 0") && message.contains("protocol 1"), "{message}");
}
