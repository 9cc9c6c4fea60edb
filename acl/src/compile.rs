//! Rule list → [`Classifier`]: expand each rule into (source, destination)
//! candidates, place every candidate in the first table whose mask it fits
//! without overfilling a bucket, then lay the tables out as open-addressing
//! arrays.

use std::collections::HashMap;

use crate::classifier::{
    hash_words, pack_misc, Check, Classifier, Slot, Table, CHECK_CODE_ANY, CHECK_PROTO_ANY,
    CHECK_TYPE_ANY,
};
use crate::{prefix_mask, Prefix, Rule, PROTO_ICMP, PROTO_ICMPV6};

/// Most rules a classifier takes (indices stay below the `u32` "no match").
pub const MAX_RULES: usize = 1 << 24;
/// Most (source prefix × destination prefix) pairs one rule may expand to.
pub const MAX_PAIRS_PER_RULE: usize = 1 << 16;
/// Most candidates (expanded pairs, with port-range copies) in one classifier.
pub const MAX_ENTRIES: usize = 1 << 22;

/// Why a rule list cannot be compiled. Rule numbers are 0-based positions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("rule {rule}: prefix length {len} is longer than 128 bits (write IPv4 prefixes as ::ffff:a.b.c.d/96+n)")]
    PrefixTooLong { rule: usize, len: u8 },
    #[error("rule {rule}: {field} port range {lo}-{hi} is empty; write the low end first")]
    EmptyPortRange { rule: usize, field: &'static str, lo: u16, hi: u16 },
    #[error("rule {rule}: ICMP type/code need protocol 1 (ICMP) or 58 (ICMPv6), not {proto:?}")]
    IcmpWithoutIcmpProtocol { rule: usize, proto: Option<u8> },
    #[error("{count} rules are more than the classifier takes ({MAX_RULES}); merge rules with address sets")]
    TooManyRules { count: usize },
    #[error("rule {rule}: {count} source × destination prefix pairs are more than {MAX_PAIRS_PER_RULE}; split the rule or summarise its address sets")]
    RuleTooLarge { rule: usize, count: usize },
    #[error("the rules expand to more than {MAX_ENTRIES} candidates; summarise address sets or narrow port ranges")]
    TooLarge,
}

/// Knobs of the table construction. The defaults are what the benchmarks
/// chose; the others exist to measure alternatives and to stress the
/// construction in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Candidates one bucket may collect before a candidate goes to a more
    /// specific table instead (it may still be exceeded when even the exact
    /// mask cannot separate rules, e.g. identical addresses, varied ranges).
    pub max_bucket: usize,
    /// Merge mask types (TupleMerge): a candidate may go into any table whose
    /// mask is no more specific than its own. `false` = one table per exact
    /// mask type, as VPP's hash ACL does.
    pub merge: bool,
    /// Most bucket copies a port range may be split into to fit a table that
    /// hashes a port prefix.
    pub max_port_copies: u32,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions { max_bucket: 8, merge: true, max_port_copies: 4 }
    }
}

/// What a table hashes: prefix lengths of the addresses and ports, and
/// whether the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Mask {
    src_len: u8,
    dst_len: u8,
    proto: bool,
    sport_len: u8,
    dport_len: u8,
}

impl Mask {
    fn words(&self) -> [u64; 5] {
        let src = prefix_mask(u32::from(self.src_len));
        let dst = prefix_mask(u32::from(self.dst_len));
        let proto = if self.proto { 0xff } else { 0 };
        [
            (src >> 64) as u64,
            src as u64,
            (dst >> 64) as u64,
            dst as u64,
            pack_misc(proto, port_mask(self.sport_len), port_mask(self.dport_len)),
        ]
    }
}

fn port_mask(len: u8) -> u16 {
    u16::MAX.checked_shl(16u32.saturating_sub(u32::from(len))).unwrap_or(0)
}

/// Number of aligned `2^(16-len)` port blocks the range touches.
fn port_copies(range: (u16, u16), len: u8) -> u32 {
    let shift = 16 - u32::from(len.min(16));
    ((u32::from(range.1) >> shift) - (u32::from(range.0) >> shift)) + 1
}

/// The coarser length a new table gets: IPv4 prefixes (inside ::ffff:0:0/96)
/// round down to octets, IPv6 to 16 bits, so that neighbouring lengths share
/// a table and the table count stays small.
fn coarse_len(len: u8) -> u8 {
    if len >= 96 {
        96 + (len - 96) / 8 * 8
    } else {
        len / 16 * 16
    }
}

/// Port prefix length a new table hashes for this range: exact ports hash
/// all 16 bits, ranges within at most two 256-port blocks hash the high byte,
/// wider ranges nothing.
fn coarse_port_len(range: (u16, u16)) -> u8 {
    if range.0 == range.1 {
        16
    } else if port_copies(range, 8) <= 2 {
        8
    } else {
        0
    }
}

/// One (rule, source prefix, destination prefix) combination.
#[derive(Clone, Copy, Debug)]
struct Entry {
    check: Check,
}

impl Entry {
    fn sport(&self) -> (u16, u16) {
        (self.check.sport_lo, self.check.sport_hi)
    }
    fn dport(&self) -> (u16, u16) {
        (self.check.dport_lo, self.check.dport_hi)
    }
    fn proto_exact(&self) -> bool {
        self.check.flags & CHECK_PROTO_ANY == 0
    }

    /// The mask a table would need to hash this entry at full precision.
    fn exact_mask(&self, merge: bool) -> Mask {
        let port_len = |r: (u16, u16)| if merge { coarse_port_len(r) } else if r.0 == r.1 { 16 } else { 0 };
        Mask {
            src_len: self.check.src_len,
            dst_len: self.check.dst_len,
            proto: self.proto_exact(),
            sport_len: port_len(self.sport()),
            dport_len: port_len(self.dport()),
        }
    }

    fn coarse_mask(&self) -> Mask {
        let exact = self.exact_mask(true);
        Mask { src_len: coarse_len(exact.src_len), dst_len: coarse_len(exact.dst_len), ..exact }
    }

    /// Whether a table with `mask` can hold this entry, and in how many
    /// bucket copies.
    fn fits(&self, mask: &Mask, max_port_copies: u32) -> Option<u32> {
        if mask.src_len > self.check.src_len
            || mask.dst_len > self.check.dst_len
            || (mask.proto && !self.proto_exact())
        {
            return None;
        }
        let copies = port_copies(self.sport(), mask.sport_len) * port_copies(self.dport(), mask.dport_len);
        (copies <= max_port_copies).then_some(copies)
    }

    /// The masked keys this entry occupies in a table with `mask`: one per
    /// port block its ranges touch.
    fn bucket_keys(&self, mask: &Mask, mut emit: impl FnMut([u64; 5])) {
        let m = mask.words();
        let src = self.check.src;
        let dst = self.check.dst;
        let proto = if mask.proto { self.check.proto } else { 0 };
        let blocks = |range: (u16, u16), len: u8| {
            let shift = 16 - u32::from(len.min(16));
            let first = u32::from(range.0) >> shift;
            let last = u32::from(range.1) >> shift;
            (first..=last).map(move |b| (b << shift) as u16)
        };
        for sport in blocks(self.sport(), mask.sport_len) {
            for dport in blocks(self.dport(), mask.dport_len) {
                emit([
                    (src >> 64) as u64 & m[0],
                    src as u64 & m[1],
                    (dst >> 64) as u64 & m[2],
                    dst as u64 & m[3],
                    pack_misc(proto, sport, dport) & m[4],
                ]);
            }
        }
    }
}

struct TableBuilder {
    mask: Mask,
    /// Masked key → indices into the entry list, in rule order.
    buckets: HashMap<[u64; 5], Vec<u32>>,
}

impl TableBuilder {
    fn new(mask: Mask) -> TableBuilder {
        TableBuilder { mask, buckets: HashMap::new() }
    }

    fn has_room(&self, entry: &Entry, max_bucket: usize) -> bool {
        let mut room = true;
        entry.bucket_keys(&self.mask, |k| {
            room &= self.buckets.get(&k).map_or(0, Vec::len) < max_bucket;
        });
        room
    }

    fn insert(&mut self, entry: &Entry, index: u32) {
        entry.bucket_keys(&self.mask, |k| self.buckets.entry(k).or_default().push(index));
    }
}

impl Classifier {
    /// Compiles an ordered rule list (index = priority, 0 first) with the
    /// default options.
    pub fn compile(rules: &[Rule]) -> Result<Classifier, CompileError> {
        Classifier::compile_with(rules, &CompileOptions::default())
    }

    /// Compiles with explicit construction knobs (benchmarks and tests).
    pub fn compile_with(rules: &[Rule], options: &CompileOptions) -> Result<Classifier, CompileError> {
        if rules.len() > MAX_RULES {
            return Err(CompileError::TooManyRules { count: rules.len() });
        }
        let entries = expand(rules)?;

        // Place entries in rule order, so tables are created in the order of
        // their best rule and that order is the lookup order.
        let mut tables: Vec<TableBuilder> = Vec::new();
        let mut by_mask: HashMap<Mask, usize> = HashMap::new();
        let mut placed = 0usize;
        for (index, entry) in entries.iter().enumerate() {
            let index = index as u32;
            let chosen = if options.merge {
                let existing = tables.iter().position(|t| {
                    entry.fits(&t.mask, options.max_port_copies).is_some()
                        && t.has_room(entry, options.max_bucket)
                });
                existing.unwrap_or_else(|| {
                    // Prefer a new coarse table; if that mask exists it is full
                    // here, so use the entry's own precise mask (a table that
                    // may exceed `max_bucket` only for indistinguishable keys).
                    let coarse = entry.coarse_mask();
                    let mask = if by_mask.contains_key(&coarse) { entry.exact_mask(true) } else { coarse };
                    *by_mask.entry(mask).or_insert_with(|| {
                        tables.push(TableBuilder::new(mask));
                        tables.len() - 1
                    })
                })
            } else {
                let mask = entry.exact_mask(false);
                *by_mask.entry(mask).or_insert_with(|| {
                    tables.push(TableBuilder::new(mask));
                    tables.len() - 1
                })
            };
            let table = &mut tables[chosen];
            placed += entry.fits(&table.mask, u32::MAX).unwrap_or(1) as usize;
            if placed > MAX_ENTRIES {
                return Err(CompileError::TooLarge);
            }
            table.insert(entry, index);
        }

        let mut checks = Vec::with_capacity(placed);
        let tables = tables.into_iter().map(|t| lay_out(t, &entries, &mut checks)).collect();
        Ok(Classifier { rule_count: rules.len() as u32, tables, checks })
    }
}

/// Turns a table's buckets into an open-addressing array (load ≤ 1/2) whose
/// slots point at contiguous runs of `checks`.
fn lay_out(table: TableBuilder, entries: &[Entry], checks: &mut Vec<Check>) -> Table {
    // Keys whose 64-bit hashes collide share a slot: candidates are fully
    // checked anyway, so merging them is correct.
    let mut by_hash: HashMap<u64, Vec<u32>> = HashMap::with_capacity(table.buckets.len());
    for (key, list) in table.buckets {
        by_hash.entry(hash_words(&key)).or_default().extend(list);
    }
    let mut groups: Vec<(u64, Vec<u32>)> = by_hash.into_iter().collect();
    // Deterministic output for identical input.
    groups.sort_unstable_by_key(|g| g.0);

    let capacity = (groups.len() * 2).next_power_of_two().max(2);
    let mut slots = vec![Slot::default(); capacity];
    let mut max_probe = 0u32;
    let mut min_rule = u32::MAX;
    for (hash, mut list) in groups {
        list.sort_unstable();
        list.dedup();
        let start = checks.len() as u32;
        checks.extend(list.iter().map(|&i| entries[i as usize].check));
        min_rule = min_rule.min(entries[list[0] as usize].check.rule);
        let mut i = hash as usize & (capacity - 1);
        let mut probe = 0;
        while slots[i].len != 0 {
            i = (i + 1) & (capacity - 1);
            probe += 1;
        }
        slots[i] = Slot { hash, start, len: list.len() as u32 };
        max_probe = max_probe.max(probe);
    }
    Table { masks: table.mask.words(), min_rule, max_probe, slots }
}

/// Checks every rule and expands it into one entry per (source, destination)
/// prefix pair, in rule order. Rules that can never match (an empty ingress
/// bitmap) produce none.
fn expand(rules: &[Rule]) -> Result<Vec<Entry>, CompileError> {
    let mut entries = Vec::with_capacity(rules.len());
    for (rule_index, rule) in rules.iter().enumerate() {
        for p in rule.src.iter().chain(&rule.dst) {
            if p.len > 128 {
                return Err(CompileError::PrefixTooLong { rule: rule_index, len: p.len });
            }
        }
        for (field, (lo, hi)) in [("source", rule.src_ports), ("destination", rule.dst_ports)] {
            if lo > hi {
                return Err(CompileError::EmptyPortRange { rule: rule_index, field, lo, hi });
            }
        }
        if (rule.icmp_type.is_some() || rule.icmp_code.is_some())
            && !matches!(rule.proto, Some(PROTO_ICMP) | Some(PROTO_ICMPV6))
        {
            return Err(CompileError::IcmpWithoutIcmpProtocol { rule: rule_index, proto: rule.proto });
        }
        if rule.ingress == 0 {
            continue;
        }
        let src = normalise(&rule.src);
        let dst = normalise(&rule.dst);
        let count = src.len() * dst.len();
        if count > MAX_PAIRS_PER_RULE {
            return Err(CompileError::RuleTooLarge { rule: rule_index, count });
        }
        if entries.len() + count > MAX_ENTRIES {
            return Err(CompileError::TooLarge);
        }
        let mut flags = 0;
        if rule.proto.is_none() {
            flags |= CHECK_PROTO_ANY;
        }
        if rule.icmp_type.is_none() {
            flags |= CHECK_TYPE_ANY;
        }
        if rule.icmp_code.is_none() {
            flags |= CHECK_CODE_ANY;
        }
        for s in &src {
            for d in &dst {
                entries.push(Entry {
                    check: Check {
                        src: s.0,
                        dst: d.0,
                        ingress: rule.ingress,
                        sport_lo: rule.src_ports.0,
                        sport_hi: rule.src_ports.1,
                        dport_lo: rule.dst_ports.0,
                        dport_hi: rule.dst_ports.1,
                        rule: rule_index as u32,
                        src_len: s.1,
                        dst_len: d.1,
                        proto: rule.proto.unwrap_or(0),
                        icmp_type: rule.icmp_type.unwrap_or(0),
                        icmp_code: rule.icmp_code.unwrap_or(0),
                        flags,
                    },
                });
            }
        }
    }
    Ok(entries)
}

/// A prefix set as (address with host bits cleared, length), without
/// duplicates or prefixes inside another of the set; empty = `::/0`.
fn normalise(prefixes: &[Prefix]) -> Vec<(u128, u8)> {
    if prefixes.is_empty() {
        return vec![(0, 0)];
    }
    let mut set: Vec<(u128, u8)> = prefixes
        .iter()
        .map(|p| (u128::from_be_bytes(p.addr) & prefix_mask(u32::from(p.len)), p.len))
        .collect();
    // Shorter first: a prefix is dropped when an earlier kept one covers it.
    set.sort_unstable_by_key(|&(a, l)| (l, a));
    set.dedup();
    let mut kept: Vec<(u128, u8)> = Vec::with_capacity(set.len());
    if set.len() <= 64 {
        for (a, l) in set {
            if !kept.iter().any(|&(ka, kl)| (a & prefix_mask(u32::from(kl))) == ka) {
                kept.push((a, l));
            }
        }
    } else {
        // Large sets: only drop exact duplicates (done) to stay linear.
        kept = set;
    }
    kept
}
