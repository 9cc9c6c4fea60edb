//! Rule list → [`Classifier`]: expand each rule into (source, destination)
//! candidates, group them by the address families of the keys they can match
//! and by whether they leave both addresses wide open, and build one decision
//! tree per group by recursive multi-bit cuts; leaves keep short,
//! priority-ordered candidate lists.

use std::collections::HashMap;

use crate::classifier::{
    Check, CheckV4, Classifier, Tree, FAMILY_CLASSES, CHECK_CODE_ANY, CHECK_PROTO_ANY, CHECK_TYPE_ANY, DIMS, DIM_WIDTH,
    BLOCK_END, BLOCK_LEN, LEAF_MAX_LEN, MAX_CUT_BITS, V4_LONG_LEAF,
};
use crate::{prefix_mask, Prefix, Rule, PROTO_ICMP, PROTO_ICMPV6};

/// Most rules a classifier takes (indices stay below the `u32` "no match").
pub const MAX_RULES: usize = 1 << 24;
/// Most (source prefix × destination prefix) pairs one rule may expand to.
pub const MAX_PAIRS_PER_RULE: usize = 1 << 16;
/// Most candidates (expanded pairs) in one classifier.
pub const MAX_ENTRIES: usize = 1 << 22;
/// Most tree pointers (8 bytes each) the compiled trees may hold.
const MAX_NODES: usize = 1 << 25;
/// Most candidate copies (64 bytes each) all leaves together may hold.
const MAX_LEAF_CHECKS: usize = 1 << 23;
// IPv4 leaf pointers hold a 26-bit start.
const _: () = assert!(MAX_LEAF_CHECKS + LEAF_MAX_LEN < 1 << 26);

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
    #[error("the rules expand to more than {MAX_ENTRIES} candidates, or their trees outgrow the classifier's memory budget; summarise address sets or narrow port ranges")]
    TooLarge,
}

/// Knobs of the tree construction. The defaults are what the benchmarks
/// chose; the others exist to measure alternatives and to stress the
/// construction in tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// A node with at most this many candidates becomes a leaf.
    pub leaf_size: usize,
    /// Space factor (HiCuts): a cut may make at most `space_factor × n`
    /// candidate copies plus child pointers out of a node of `n` candidates.
    pub space_factor: usize,
    /// Build a separate tree for candidates whose source and destination are
    /// both wide open (EffiCuts' separable trees), so those do not get copied
    /// into every child of every address cut.
    pub separate: bool,
}

impl Default for CompileOptions {
    fn default() -> CompileOptions {
        CompileOptions { leaf_size: 8, space_factor: 4, separate: true }
    }
}

/// One (rule, source prefix, destination prefix) combination.
#[derive(Clone, Copy, Debug)]
struct Entry {
    check: Check,
}

impl Entry {
    /// (prefix, length) of address dimension 0 (source) or 1 (destination).
    fn prefix(&self, dim: usize) -> (u128, u8) {
        if dim == 0 {
            (self.check.src, self.check.src_len)
        } else {
            (self.check.dst, self.check.dst_len)
        }
    }

    /// Inclusive range in ranged dimension 2 (protocol), 3 (source port) or 4
    /// (destination port).
    fn range(&self, dim: usize) -> (u32, u32) {
        let c = &self.check;
        match dim {
            2 if c.flags & CHECK_PROTO_ANY != 0 => (0, 255),
            2 => (u32::from(c.proto), u32::from(c.proto)),
            3 => (u32::from(c.sport_lo), u32::from(c.sport_hi)),
            _ => (u32::from(c.dport_lo), u32::from(c.dport_hi)),
        }
    }
}

/// Whether an address prefix leaves most of its family open: shorter than
/// /8 for IPv4, /16 for IPv6. Such candidates would be copied into most
/// children of a cut on that address.
fn wide(prefix: (u128, u8)) -> bool {
    let (addr, len) = prefix;
    let v4 = len >= 96 && addr >> 32 == 0xffff;
    if v4 {
        len < 104
    } else {
        len < 16
    }
}

/// Whether a prefix contains IPv4 (inside ::ffff:0:0/96) and IPv6
/// addresses.
fn families(prefix: (u128, u8)) -> (bool, bool) {
    let (addr, len) = prefix;
    let v4_space = 0xffffu128 << 32;
    let reaches_v4 = (addr ^ v4_space) & prefix_mask(u32::from(len.min(96))) == 0;
    let within_v4 = reaches_v4 && len >= 96;
    (reaches_v4, !within_v4)
}

/// Mask of `bits` bits starting `offset` bits from the top.
fn bit_range(offset: u8, bits: u8) -> u128 {
    prefix_mask(u32::from(offset) + u32::from(bits)) & !prefix_mask(u32::from(offset))
}

/// What a node's position in the tree says about the keys that reach it.
#[derive(Clone, Copy, Debug, Default)]
struct Region {
    /// Address dimensions: the bits already cut (a key's value there is
    /// known; cutting them again separates nothing).
    cut: [u128; 2],
    /// Ranged dimensions: how many top bits are fixed, and their value.
    fixed: [u8; 3],
    value: [u32; 3],
}

impl Region {
    /// The inclusive interval ranged dimension `dim` (2..5) covers.
    fn interval(&self, dim: usize) -> (u32, u32) {
        let r = dim - 2;
        let free = u32::from(DIM_WIDTH[dim]) - u32::from(self.fixed[r]);
        let start = self.value[r] << free;
        (start, start + ((1u32 << free) - 1))
    }
}

/// A cut: children are selected by `bits` bits of dimension `dim` starting
/// `offset` bits from its most significant end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cut {
    dim: usize,
    offset: u8,
    bits: u8,
}

impl Cut {
    /// The inclusive range of children a candidate belongs to.
    fn span(&self, entry: &Entry, region: &Region) -> (u32, u32) {
        let k = u32::from(self.bits);
        let all = (0, (1u32 << k) - 1);
        if self.dim < 2 {
            let (addr, len) = entry.prefix(self.dim);
            let (off, len) = (u32::from(self.offset), u32::from(len));
            if len <= off {
                return all;
            }
            let fixed = (len - off).min(k);
            // The `fixed` bits of `addr` after `off`, shifted to the top of the child index.
            let top = ((addr << off) >> (128 - fixed)) as u32;
            let free = k - fixed;
            (top << free, ((top + 1) << free) - 1)
        } else {
            let (lo, hi) = entry.range(self.dim);
            let (start, end) = region.interval(self.dim);
            let shift = u32::from(DIM_WIDTH[self.dim]) - u32::from(self.offset) - k;
            ((lo.max(start) - start) >> shift, (hi.min(end) - start) >> shift)
        }
    }

    fn child_region(&self, region: &Region, child: u32) -> Region {
        let mut r = *region;
        if self.dim < 2 {
            r.cut[self.dim] |= bit_range(self.offset, self.bits);
        } else {
            let i = self.dim - 2;
            r.fixed[i] += self.bits;
            r.value[i] = r.value[i] << self.bits | child;
        }
        r
    }

}

/// The IPv4 tree pointer for `cut` with children from `base`.
fn v4_pointer(cut: Cut, base: usize, blocks: bool) -> u64 {
    let mut offset = cut.offset;
    if cut.dim < 2 {
        // IPv4 trees start with the 96 bits of ::ffff:0:0/96 marked as cut,
        // so address cuts lie in the last 32 bits.
        debug_assert!(offset >= 96);
        offset = offset.wrapping_sub(96);
    }
    // Blocks of 2^bits ≥ 2 children from index 0: `base` is even.
    debug_assert!(base.is_multiple_of(2));
    crate::classifier::v4_inner_pointer(cut.dim, offset, cut.bits, base, blocks)
}

struct Builder<'a> {
    entries: &'a [Entry],
    options: &'a CompileOptions,
    /// Building the IPv4 trees (class 0, into their own `nodes`): address
    /// cuts are numbered within the IPv4 address.
    v4: bool,
    nodes: Vec<u64>,
    leaf_items: Vec<u32>,
    /// Leaf lists already stored (per tree), so equal leaves share storage.
    leaves: HashMap<Vec<u32>, u64>,
    /// Whether nodes whose children are all short leaves store them as leaf
    /// blocks (IPv4 trees, fewer than `BLOCK_END` candidates).
    blocks: bool,
    leaf_blocks: Vec<[u16; BLOCK_LEN]>,
    budget_exceeded: bool,
}

impl Builder<'_> {
    /// The best cut for a node's candidates, if any cut separates them.
    fn choose_cut(&self, list: &[u32], region: &Region) -> Option<Cut> {
        let n = list.len();
        let budget = self.options.space_factor.max(1) * n;
        let mut best: Option<(usize, usize, Cut)> = None; // (largest child, total copies, cut)
        let mut counts: Vec<u32> = Vec::new();
        // (dimension, offset, most useful bits) worth trying.
        let mut tries: Vec<(usize, u8, u8)> = Vec::with_capacity(8);
        for (dim, &width) in DIM_WIDTH.iter().enumerate() {
            if dim < 2 {
                let useful = self.useful_bits(list, dim, region.cut[dim]);
                // The first useful bit, and the first at or after 96 (where
                // IPv4 addresses start), each with the run of uncut bits
                // that follows.
                for from in [0u32, 96] {
                    let candidates = useful & !prefix_mask(from);
                    if candidates == 0 {
                        continue;
                    }
                    let offset = candidates.leading_zeros();
                    let run = (region.cut[dim] << offset).leading_zeros().min(128 - offset);
                    if !tries.iter().any(|t| t.0 == dim && u32::from(t.1) == offset) {
                        tries.push((dim, offset as u8, run.min(u32::from(MAX_CUT_BITS)) as u8));
                    }
                }
            } else {
                let r = dim - 2;
                let free = width - region.fixed[r];
                let (start, end) = region.interval(dim);
                let useful = list.iter().any(|&i| {
                    let (lo, hi) = self.entries[i as usize].range(dim);
                    lo > start || hi < end
                });
                if free > 0 && useful {
                    tries.push((dim, region.fixed[r], free));
                }
            }
        }
        for (dim, offset, max_bits) in tries {
            let mut dim_best: Option<(usize, usize, Cut)> = None;
            for bits in 1..=max_bits.min(MAX_CUT_BITS) {
                let cut = Cut { dim, offset, bits };
                let children = 1usize << bits;
                if bits > 1 && children > budget {
                    break;
                }
                counts.clear();
                counts.resize(children + 1, 0);
                let mut total = 0usize;
                for &i in list {
                    let (a, b) = cut.span(&self.entries[i as usize], region);
                    counts[a as usize] = counts[a as usize].wrapping_add(1);
                    counts[b as usize + 1] = counts[b as usize + 1].wrapping_sub(1);
                    total += (b - a + 1) as usize;
                }
                if bits > 1 && total + children > budget {
                    break;
                }
                let mut running = 0u32;
                let mut largest = 0u32;
                for c in &counts[..children] {
                    running = running.wrapping_add(*c);
                    largest = largest.max(running);
                }
                dim_best = Some((largest as usize, total, cut));
            }
            if let Some(candidate) = dim_best {
                let better = match best {
                    None => true,
                    Some(b) => (candidate.0, candidate.1) < (b.0, b.1),
                };
                if better {
                    best = Some(candidate);
                }
            }
        }
        best.filter(|b| b.0 < n).map(|b| b.2)
    }

    /// Whether `entry` matches every key that can reach a node with `region`:
    /// all its address bits were cut on the way (and so agree with the key),
    /// its ranges contain the region's, and it asks nothing of ICMP or
    /// ingress.
    fn covers(&self, entry: &Entry, region: &Region) -> bool {
        let c = &entry.check;
        let addresses = (0..2).all(|d| prefix_mask(u32::from(entry.prefix(d).1)) & !region.cut[d] == 0);
        let ranges = (2..DIMS).all(|d| {
            let (lo, hi) = entry.range(d);
            let (start, end) = region.interval(d);
            lo <= start && end <= hi
        });
        let rest = c.flags & (CHECK_TYPE_ANY | CHECK_CODE_ANY) == CHECK_TYPE_ANY | CHECK_CODE_ANY
            && c.ingress == u64::MAX;
        addresses && ranges && rest
    }

    /// Bits of address dimension `dim` worth cutting: constrained by some
    /// candidate, not cut yet, and not a bit on which all candidates that
    /// constrain it agree (such as IPv4's ::ffff:0:0/96 within the IPv4
    /// trees: every key there has those bits, cutting them separates nothing).
    fn useful_bits(&self, list: &[u32], dim: usize, cut: u128) -> u128 {
        let mut constrained = 0u128;
        // Per bit, whether a constraining candidate has it set / clear.
        let (mut ones, mut zeros) = (0u128, 0u128);
        for &i in list {
            let (addr, len) = self.entries[i as usize].prefix(dim);
            let mask = prefix_mask(u32::from(len));
            constrained |= mask;
            ones |= addr & mask;
            zeros |= !addr & mask;
        }
        constrained & ones & zeros & !cut
    }

    /// Drops the candidates after one that matches every key reaching a node
    /// with `region`: they can never be the first match there.
    fn prune(&self, list: &mut Vec<u32>, region: &Region) {
        if let Some(first_total) = list.iter().position(|&i| self.covers(&self.entries[i as usize], region)) {
            list.truncate(first_total + 1);
        }
    }

    /// Builds the subtree for `list` (candidate indices in priority order)
    /// and returns the pointer to it.
    fn build(&mut self, mut list: Vec<u32>, region: Region) -> u64 {
        self.prune(&mut list, &region);
        if list.is_empty() {
            return crate::classifier::EMPTY_LEAF;
        }
        let cut = if list.len() <= self.options.leaf_size || self.budget_exceeded {
            None
        } else {
            self.choose_cut(&list, &region)
        };
        let Some(cut) = cut else { return self.leaf(list) };

        let children = 1usize << cut.bits;
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); children];
        for &i in &list {
            let (a, b) = cut.span(&self.entries[i as usize], &region);
            for c in a..=b {
                lists[c as usize].push(i);
            }
        }
        drop(list);
        if self.blocks && self.blocks_pay(&lists) {
            return self.leaf_blocks(cut, &region, lists);
        }
        let base = self.nodes.len();
        if base + children > if self.v4 { crate::classifier::MAX_V4_NODES } else { MAX_NODES } {
            self.budget_exceeded = true;
        }
        self.nodes.resize(base + children, crate::classifier::EMPTY_LEAF);
        // Siblings with equal candidate lists share one subtree after an
        // address cut: their regions are the same, so everything below is
        // too. (After a cut of a ranged dimension the regions differ, and
        // with them what `covers` prunes; equal leaves still share storage.)
        let mut shared: HashMap<Vec<u32>, u64> = HashMap::new();
        for (c, child) in lists.into_iter().enumerate() {
            let shareable = cut.dim < 2;
            let pointer = match shared.get(&child) {
                Some(&p) if shareable => p,
                _ => {
                    let key = shareable.then(|| child.clone());
                    let p = self.build(child, cut.child_region(&region, c as u32));
                    if let Some(key) = key {
                        shared.insert(key, p);
                    }
                    p
                }
            };
            self.nodes[base + c] = pointer;
        }
        if self.v4 {
            return v4_pointer(cut, base, false);
        }
        crate::classifier::inner_pointer(cut.dim, cut.offset, cut.bits, base)
    }

    /// Whether a node's children (candidate lists) are all leaves that fit a
    /// leaf block, and blocks at most double their bytes: 16 bytes a child
    /// instead of a 4-byte pointer each plus their distinct lists at 4 bytes
    /// a candidate (a port cut into many children with the same few lists
    /// stays with pointers).
    fn blocks_pay(&self, lists: &[Vec<u32>]) -> bool {
        if lists.iter().any(|l| l.len() > self.options.leaf_size.min(BLOCK_LEN)) {
            return false;
        }
        let mut distinct: Vec<&Vec<u32>> = lists.iter().collect();
        distinct.sort_unstable();
        distinct.dedup();
        lists.len() <= distinct.iter().map(|l| l.len()).sum()
    }

    /// The children of an IPv4 node that are all leaves of at most
    /// `BLOCK_LEN` candidates, stored as leaf blocks.
    fn leaf_blocks(&mut self, cut: Cut, region: &Region, lists: Vec<Vec<u32>>) -> u64 {
        let base = self.leaf_blocks.len();
        if base + lists.len() > crate::classifier::MAX_V4_NODES {
            self.budget_exceeded = true;
        }
        for (c, mut list) in lists.into_iter().enumerate() {
            self.prune(&mut list, &cut.child_region(region, c as u32));
            let mut block = [BLOCK_END; BLOCK_LEN];
            for (slot, &i) in block.iter_mut().zip(&list) {
                *slot = i as u16;
            }
            self.leaf_blocks.push(block);
        }
        v4_pointer(cut, base, true)
    }

    fn leaf(&mut self, list: Vec<u32>) -> u64 {
        if let Some(&p) = self.leaves.get(&list) {
            return p;
        }
        let start = self.leaf_items.len();
        if start + list.len() > MAX_LEAF_CHECKS || list.len() > LEAF_MAX_LEN {
            self.budget_exceeded = true;
        }
        let p = if self.v4 {
            // IPv4 pointers have 5 bits of count: longer lists store theirs
            // in front of the candidates.
            if list.len() >= V4_LONG_LEAF {
                self.leaf_items.push(list.len() as u32);
            }
            crate::classifier::v4_leaf_pointer(start, list.len())
        } else {
            crate::classifier::leaf_pointer(start, list.len())
        };
        self.leaf_items.extend_from_slice(&list);
        self.leaves.insert(list, p);
        p
    }
}

impl Classifier {
    /// Compiles an ordered rule list (index = priority, 0 first) with the
    /// default options.
    pub fn compile(rules: &[Rule]) -> Result<Classifier, CompileError> {
        Classifier::compile_with(rules, &CompileOptions::default())
    }

    /// Compiles with explicit construction knobs (benchmarks and tests). A rule set
    /// whose trees would outgrow the pointer budget with these knobs (tiny leaves and a
    /// large space factor can do that to a few dozen rules) is compiled again with
    /// leaves twice as large, which gives shallower, smaller trees, until it fits:
    /// `TooLarge` only when even leaves of 65,536 candidates do not.
    pub fn compile_with(rules: &[Rule], options: &CompileOptions) -> Result<Classifier, CompileError> {
        let mut options = options.clone();
        loop {
            match Self::compile_once(rules, &options) {
                Err(CompileError::TooLarge) if options.leaf_size < 1 << 16 => {
                    options.leaf_size = (options.leaf_size * 2).max(1);
                }
                result => return result,
            }
        }
    }

    fn compile_once(rules: &[Rule], options: &CompileOptions) -> Result<Classifier, CompileError> {
        if rules.len() > MAX_RULES {
            return Err(CompileError::TooManyRules { count: rules.len() });
        }
        let entries = expand(rules)?;

        // Per key family class (see `family_class`), the candidates that can
        // match such keys, so IPv6 candidates are not copied into every child
        // of a cut on IPv4 bits and vice versa. Within a class, separable
        // trees (EffiCuts): candidates leaving both addresses wide open would
        // be copied into every child of every address cut, so they get their
        // own tree, cut on protocol and ports. (Separating candidates open in
        // just one address as well measured slower: two trees per lookup.)
        let mut groups: Vec<Vec<u32>> = vec![Vec::new(); FAMILY_CLASSES * 2];
        for (i, e) in entries.iter().enumerate() {
            let separable = usize::from(options.separate && wide(e.prefix(0)) && wide(e.prefix(1)));
            let (src_v4, src_v6) = families(e.prefix(0));
            let (dst_v4, dst_v6) = families(e.prefix(1));
            for class in 0..FAMILY_CLASSES {
                let src_ok = if class & 1 == 0 { src_v4 } else { src_v6 };
                let dst_ok = if class & 2 == 0 { dst_v4 } else { dst_v6 };
                if src_ok && dst_ok {
                    groups[class * 2 + separable].push(i as u32);
                }
            }
        }

        // Class 0 comes first, built into what becomes `v4_nodes`.
        let mut builder = Builder {
            entries: &entries,
            options,
            v4: true,
            nodes: Vec::new(),
            leaf_items: Vec::new(),
            leaves: HashMap::new(),
            blocks: entries.len() < usize::from(BLOCK_END),
            leaf_blocks: Vec::new(),
            budget_exceeded: false,
        };
        let mut v4_nodes = Vec::new();
        let mut trees: Vec<Tree> = Vec::new();
        let mut class_start = [0u32; FAMILY_CLASSES + 1];
        for (g, list) in groups.into_iter().enumerate() {
            let class = g / 2;
            if g % 2 == 0 {
                class_start[class] = trees.len() as u32;
            }
            if let Some(&first) = list.first() {
                let min_rule = entries[first as usize].check.rule;
                builder.leaves.clear();
                // Keys of this class have IPv4 addresses inside
                // ::ffff:0:0/96: those 96 bits are known, as if cut.
                let mut region = Region::default();
                for (d, v6) in [(0, class & 1 != 0), (1, class & 2 != 0)] {
                    if !v6 {
                        region.cut[d] = prefix_mask(96);
                    }
                }
                let root = builder.build(list, region);
                trees.push(Tree { root, min_rule });
            }
            if g % 2 == 1 {
                trees[class_start[class] as usize..].sort_by_key(|t| t.min_rule);
            }
            if g == 1 {
                v4_nodes = std::mem::take(&mut builder.nodes);
                builder.v4 = false;
                builder.blocks = false;
            }
        }
        class_start[FAMILY_CLASSES] = trees.len() as u32;
        if builder.budget_exceeded {
            return Err(CompileError::TooLarge);
        }
        Ok(Classifier {
            rule_count: rules.len() as u32,
            trees,
            class_start,
            nodes: builder.nodes,
            leaf_items: builder.leaf_items,
            checks: entries.iter().map(|e| e.check).collect(),
            v4_nodes: v4_nodes.into_iter().map(|p| p as u32).collect(),
            v4_leaf_blocks: builder.leaf_blocks,
            v4_checks: entries.iter().map(|e| CheckV4::project(&e.check)).collect(),
        })
    }
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
