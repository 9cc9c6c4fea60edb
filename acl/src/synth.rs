//! Deterministic synthetic rule sets and keys for benchmarks and tests (not
//! part of the API). The "mixed" set follows what operators write: host
//! pairs, services open to any source, subnet-to-subnet rules with ranges,
//! ICMP rules, a few ingress-restricted rules, some IPv6; addresses cluster in
//! a few dozen sites, as real address plans do.

use crate::{v4_mapped, Key, Prefix, Rule, PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};

/// splitmix64: small, fast, good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

const WELL_KNOWN: [u16; 12] = [22, 25, 53, 80, 123, 443, 993, 3306, 5432, 6379, 8080, 8443];

/// A random IPv4 host in one of 48 sites (10.0-31/16, 172.16-23/16,
/// 192.168/16, 15 public /16s).
fn v4_host(rng: &mut Rng) -> [u8; 4] {
    let site = rng.below(48) as u8;
    let (a, b) = match site {
        0..=31 => (10, site),
        32..=39 => (172, 16 + site - 32),
        40 => (192, 168),
        _ => (100 + site, site.wrapping_mul(37)),
    };
    [a, b, rng.below(256) as u8, rng.below(256) as u8]
}

/// A random IPv6 host in one of 16 sites 2001:db8:s::/48, 16 subnets each.
fn v6_host(rng: &mut Rng) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
    a[5] = rng.below(16) as u8;
    a[7] = rng.below(16) as u8;
    a[8..].copy_from_slice(&rng.next_u64().to_be_bytes());
    a
}

fn prefix(rng: &mut Rng, v6: bool, v4_len: (u64, u64), v6_len: (u64, u64)) -> Prefix {
    if v6 {
        Prefix::v6(v6_host(rng), rng.range(v6_len.0, v6_len.1) as u8)
    } else {
        Prefix::v4(v4_host(rng), rng.range(v4_len.0, v4_len.1) as u8)
    }
}

fn port_range(rng: &mut Rng, single: u64, range: u64, wide: u64) -> (u16, u16) {
    let roll = rng.below(100);
    if roll < single {
        let p = if rng.percent(50) { rng.pick(&WELL_KNOWN) } else { rng.range(1, 65535) as u16 };
        (p, p)
    } else if roll < single + range {
        let lo = rng.range(1, 60000) as u16;
        (lo, lo.saturating_add(rng.range(1, 2000) as u16))
    } else if roll < single + range + wide {
        (1024, 65535)
    } else {
        (0, 65535)
    }
}

/// `n` rules of the mix described in the module docs.
pub fn mixed_rules(n: usize, seed: u64) -> Vec<Rule> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| mixed_rule(&mut rng)).collect()
}

fn mixed_rule(rng: &mut Rng) -> Rule {
    let mut rule = Rule::default();
    let v6 = rng.percent(10);
    let kind = rng.below(100);
    if kind < 40 {
        // Host pair: one service between two hosts.
        let (s, d) = if v6 {
            (Prefix::v6(v6_host(rng), 128), Prefix::v6(v6_host(rng), 128))
        } else {
            (Prefix::v4(v4_host(rng), 32), Prefix::v4(v4_host(rng), 32))
        };
        rule.src = vec![s];
        rule.dst = vec![d];
        rule.proto = Some(if rng.percent(75) { PROTO_TCP } else { PROTO_UDP });
        rule.dst_ports = port_range(rng, 90, 10, 0);
        if rng.percent(10) {
            rule.src_ports = port_range(rng, 50, 50, 0);
        }
    } else if kind < 70 {
        // A service open to any source.
        rule.dst = vec![prefix(rng, v6, (16, 32), (48, 128))];
        match rng.below(10) {
            0..=5 => {
                rule.proto = Some(PROTO_TCP);
                rule.dst_ports = port_range(rng, 60, 35, 5);
            }
            6..=8 => {
                rule.proto = Some(PROTO_UDP);
                rule.dst_ports = port_range(rng, 60, 35, 5);
            }
            _ => {}
        }
    } else {
        // Subnet to subnet.
        rule.src = vec![prefix(rng, v6, (12, 32), (32, 128))];
        rule.dst = vec![prefix(rng, v6, (12, 32), (32, 128))];
        if rng.percent(10) {
            // An address set.
            rule.dst.push(prefix(rng, v6, (16, 32), (48, 128)));
        }
        match rng.below(100) {
            0..=34 => {
                rule.proto = Some(PROTO_TCP);
                rule.src_ports = port_range(rng, 10, 10, 20);
                rule.dst_ports = port_range(rng, 40, 40, 10);
            }
            35..=59 => {
                rule.proto = Some(PROTO_UDP);
                rule.src_ports = port_range(rng, 10, 10, 20);
                rule.dst_ports = port_range(rng, 40, 40, 10);
            }
            60..=79 => {
                rule.proto = Some(if v6 { PROTO_ICMPV6 } else { PROTO_ICMP });
                if rng.percent(70) {
                    rule.icmp_type = Some(if v6 {
                        rng.pick(&[1, 2, 3, 128, 129, 135, 136])
                    } else {
                        rng.pick(&[0, 3, 5, 8, 11, 13])
                    });
                    if rng.percent(30) {
                        rule.icmp_code = Some(rng.below(16) as u8);
                    }
                }
            }
            80..=89 => rule.proto = Some(rng.pick(&[47, 50, 132])),
            _ => {}
        }
    }
    if rng.percent(15) {
        rule.ingress = 0;
        for _ in 0..rng.range(1, 3) {
            rule.ingress |= 1 << rng.below(16);
        }
    }
    rule
}

/// A random address inside `prefixes` (or anywhere, if empty).
fn address_in(rng: &mut Rng, prefixes: &[Prefix]) -> [u8; 16] {
    if prefixes.is_empty() {
        return if rng.percent(85) { v4_mapped(v4_host(rng)) } else { v6_host(rng) };
    }
    let p = prefixes[rng.below(prefixes.len() as u64) as usize];
    let mask = crate::prefix_mask(u32::from(p.len.min(128)));
    let host = u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64());
    ((u128::from_be_bytes(p.addr) & mask) | (host & !mask)).to_be_bytes()
}

fn port_in(rng: &mut Rng, range: (u16, u16)) -> u16 {
    match rng.below(8) {
        0 => range.0,
        1 => range.1,
        _ => rng.range(u64::from(range.0), u64::from(range.1)) as u16,
    }
}

/// `n` keys: `hit_percent` % built inside a uniformly chosen rule (so many
/// match deep in the list, or an earlier overlapping rule), the rest random
/// hosts and ports (mostly misses).
pub fn keys(rules: &[Rule], n: usize, hit_percent: u64, seed: u64) -> Vec<Key> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            if !rules.is_empty() && rng.percent(hit_percent) {
                let rule = &rules[rng.below(rules.len() as u64) as usize];
                let proto = rule.proto.unwrap_or_else(|| rng.pick(&[PROTO_TCP, PROTO_UDP, PROTO_ICMP]));
                let slots: Vec<u8> = (0..64).filter(|b| rule.ingress >> b & 1 == 1).collect();
                // As the parser fills keys: ports only for port protocols,
                // type/code only for ICMP.
                let ports = matches!(proto, PROTO_TCP | PROTO_UDP | 132);
                let icmp = matches!(proto, PROTO_ICMP | PROTO_ICMPV6);
                Key {
                    src: address_in(&mut rng, &rule.src),
                    dst: address_in(&mut rng, &rule.dst),
                    proto,
                    src_port: if ports { port_in(&mut rng, rule.src_ports) } else { 0 },
                    dst_port: if ports { port_in(&mut rng, rule.dst_ports) } else { 0 },
                    icmp_type: if icmp { rule.icmp_type.unwrap_or_else(|| rng.below(256) as u8) } else { 0 },
                    icmp_code: if icmp { rule.icmp_code.unwrap_or_else(|| rng.below(16) as u8) } else { 0 },
                    ingress: if slots.is_empty() { rng.below(16) as u8 } else { rng.pick(&slots) },
                }
            } else {
                Key {
                    src: address_in(&mut rng, &[]),
                    dst: address_in(&mut rng, &[]),
                    proto: rng.pick(&[PROTO_TCP, PROTO_TCP, PROTO_UDP, PROTO_ICMP]),
                    src_port: rng.range(1024, 65535) as u16,
                    dst_port: if rng.percent(50) { rng.pick(&WELL_KNOWN) } else { rng.range(1, 65535) as u16 },
                    icmp_type: 0,
                    icmp_code: 0,
                    ingress: rng.below(16) as u8,
                }
            }
        })
        .collect()
}
