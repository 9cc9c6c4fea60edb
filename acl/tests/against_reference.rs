//! Property tests: the compiled classifier returns exactly what the linear
//! reference returns, for random rule sets (overlapping ranges, wildcards,
//! IPv4 and IPv6, prefixes that straddle both, ICMP, ingress bitmaps) and
//! keys biased to rule boundaries (prefix edges, range ends ± 1), under every
//! construction option; `lookup_bulk` agrees with `lookup`.

use proptest::prelude::*;
use rampart_acl::synth::Rng;
use rampart_acl::{reference, Classifier, CompileOptions, Key, Prefix, Rule};

/// A few clustered base addresses so that rules overlap often.
const V4_BASES: [[u8; 4]; 4] = [[10, 0, 0, 0], [10, 0, 0, 128], [10, 0, 1, 0], [192, 168, 0, 0]];

fn v6_base(i: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    if i > 0 {
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[7] = i;
    }
    a
}

fn prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        // IPv4, any length, near a few bases.
        (0..4usize, any::<u8>(), 0u8..=32).prop_map(|(b, low, len)| {
            let mut a = V4_BASES[b];
            a[3] |= low & 0x7f;
            Prefix::v4(a, len)
        }),
        // IPv6 (including ::/0, and short prefixes that also contain IPv4).
        (0u8..3, any::<u16>(), 0u8..=128).prop_map(|(b, low, len)| {
            let mut a = v6_base(b);
            a[14..].copy_from_slice(&low.to_be_bytes());
            Prefix::v6(a, len)
        }),
        Just(Prefix::ANY),
        Just(Prefix { addr: rampart_acl::v4_mapped([0; 4]), len: 96 }),
    ]
}

fn port_range() -> impl Strategy<Value = (u16, u16)> {
    let edge = prop_oneof![
        Just(0u16),
        Just(1),
        Just(79),
        Just(80),
        Just(81),
        Just(1023),
        Just(1024),
        Just(65534),
        Just(65535),
        any::<u16>()
    ];
    prop_oneof![
        2 => Just((0u16, 65535u16)),
        3 => (edge.clone(), edge).prop_map(|(a, b)| (a.min(b), a.max(b))),
        1 => any::<u16>().prop_map(|p| (p, p)),
    ]
}

fn rule() -> impl Strategy<Value = Rule> {
    let proto = prop_oneof![Just(None), Just(Some(6u8)), Just(Some(17)), Just(Some(1)), Just(Some(58))];
    let ingress = prop_oneof![
        4 => Just(u64::MAX),
        1 => Just(0u64),
        1 => (0u32..64).prop_map(|b| 1u64 << b),
        1 => any::<u64>(),
    ];
    (
        prop::collection::vec(prefix(), 0..3),
        prop::collection::vec(prefix(), 0..3),
        proto,
        port_range(),
        port_range(),
        prop::option::of(0u8..4),
        prop::option::of(0u8..3),
        ingress,
    )
        .prop_map(|(src, dst, proto, src_ports, dst_ports, icmp_type, icmp_code, ingress)| {
            let icmp = matches!(proto, Some(1) | Some(58));
            Rule {
                src,
                dst,
                proto,
                src_ports,
                dst_ports,
                icmp_type: icmp_type.filter(|_| icmp),
                icmp_code: icmp_code.filter(|_| icmp),
                ingress,
            }
        })
}

/// An address at or next to an edge of `p`.
fn address_near(rng: &mut Rng, p: &Prefix) -> [u8; 16] {
    let mask = if p.len == 0 { 0 } else { u128::MAX << (128 - u32::from(p.len)) };
    let base = u128::from_be_bytes(p.addr) & mask;
    let last = base | !mask;
    let a = match rng.below(6) {
        0 => base,
        1 => last,
        2 => base.wrapping_sub(1),
        3 => last.wrapping_add(1),
        _ => base | (u128::from(rng.next_u64()) & !mask),
    };
    a.to_be_bytes()
}

fn port_near(rng: &mut Rng, r: (u16, u16)) -> u16 {
    match rng.below(6) {
        0 => r.0,
        1 => r.1,
        2 => r.0.wrapping_sub(1),
        3 => r.1.wrapping_add(1),
        _ => rng.range(u64::from(r.0), u64::from(r.1)) as u16,
    }
}

fn random_address(rng: &mut Rng) -> [u8; 16] {
    if rng.percent(60) {
        let mut a = V4_BASES[rng.below(4) as usize];
        a[3] = rng.below(256) as u8;
        rampart_acl::v4_mapped(a)
    } else {
        let mut a = v6_base(rng.below(3) as u8);
        a[14..].copy_from_slice(&(rng.below(65536) as u16).to_be_bytes());
        a
    }
}

/// Keys near the edges of random rules' fields, mixed with random ones.
fn keys(rules: &[Rule], seed: u64, n: usize) -> Vec<Key> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let (r1, r2, r3) = (rng.below(65536) as u16, rng.below(65536) as u16, rng.below(64) as u8);
            let mut key = Key {
                src: random_address(&mut rng),
                dst: random_address(&mut rng),
                proto: rng.pick(&[6, 17, 1, 58, 47]),
                src_port: rng.pick(&[0, 80, 1024, 65535, r1]),
                dst_port: rng.pick(&[0, 80, 1024, 65535, r2]),
                icmp_type: rng.below(4) as u8,
                icmp_code: rng.below(3) as u8,
                ingress: rng.pick(&[0, 1, 5, 63, 64, 200, r3]),
            };
            if !rules.is_empty() && rng.percent(80) {
                let r = &rules[rng.below(rules.len() as u64) as usize];
                if let Some(p) = r.src.get(rng.below(r.src.len().max(1) as u64) as usize) {
                    key.src = address_near(&mut rng, p);
                }
                if let Some(p) = r.dst.get(rng.below(r.dst.len().max(1) as u64) as usize) {
                    key.dst = address_near(&mut rng, p);
                }
                if let Some(p) = r.proto {
                    if rng.percent(90) {
                        key.proto = p;
                    }
                }
                key.src_port = port_near(&mut rng, r.src_ports);
                key.dst_port = port_near(&mut rng, r.dst_ports);
                if let Some(t) = r.icmp_type {
                    key.icmp_type = t;
                }
                if let Some(c) = r.icmp_code {
                    key.icmp_code = c;
                }
                if r.ingress != u64::MAX && r.ingress != 0 && rng.percent(80) {
                    let slots: Vec<u8> = (0..64).filter(|b| r.ingress >> b & 1 == 1).collect();
                    key.ingress = rng.pick(&slots);
                }
            }
            key
        })
        .collect()
}

fn option_sets() -> Vec<CompileOptions> {
    vec![
        CompileOptions::default(),
        // Tiny leaves and no room to copy: deep trees, many cuts.
        CompileOptions { leaf_size: 1, space_factor: 1, separate: true },
        CompileOptions { leaf_size: 2, space_factor: 16, separate: false },
        CompileOptions { leaf_size: 64, space_factor: 4, separate: true },
    ]
}

fn check_agreement(rules: &[Rule], seed: u64) -> Result<(), TestCaseError> {
    let keys = keys(rules, seed, 300);
    let want: Vec<Option<u32>> = keys.iter().map(|k| reference::first_match(rules, k)).collect();
    for options in option_sets() {
        let c = Classifier::compile_with(rules, &options).expect("valid rules compile");
        prop_assert_eq!(c.validate(), Ok(()));
        prop_assert_eq!(c.rule_count(), rules.len());
        for (k, w) in keys.iter().zip(&want) {
            prop_assert_eq!(c.lookup(k), *w, "key {:?} options {:?}", k, options);
        }
        let mut out = vec![Some(u32::MAX); keys.len()];
        c.lookup_bulk(&keys, &mut out);
        prop_assert_eq!(&out, &want, "bulk, options {:?}", options);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn small_rule_sets_match_reference(rules in prop::collection::vec(rule(), 0..12), seed in any::<u64>()) {
        check_agreement(&rules, seed)?;
    }

    #[test]
    fn larger_rule_sets_match_reference(rules in prop::collection::vec(rule(), 20..120), seed in any::<u64>()) {
        check_agreement(&rules, seed)?;
    }
}
