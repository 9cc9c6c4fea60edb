//! The compiled classifier and its lookup: a few decision trees (per address
//! family class, up to two) walked with one load per level, then a
//! short priority-ordered scan of the leaf's candidates. Keys of class 0
//! (IPv4 both ways) use their own 4-byte pointers (cuts of two 64-bit key
//! words), leaf blocks (a node's leaves inline, 16 bytes each) and 32-byte
//! IPv4 projections of the candidates.

use serde::{Deserialize, Serialize};

use crate::{prefix_mask, Key};

/// "No rule yet": larger than every rule index (compile caps rules below it).
pub(crate) const NO_RULE: u32 = u32::MAX;

/// Keys handled together by [`Classifier::lookup_bulk`]: one burst.
const BULK: usize = 32;
/// Tree levels `lookup_bulk` descends key by key before walking the burst
/// level by level (at 10k rules, the IPv4 tree's first three levels hold
/// 79 KiB; the fourth alone 226 KiB).
const BULK_DIRECT_LEVELS: usize = 3;

/// Key dimensions the trees cut: source, destination, protocol, source port,
/// destination port; and their widths in bits.
pub(crate) const DIMS: usize = 5;
pub(crate) const DIM_WIDTH: [u8; DIMS] = [128, 128, 8, 16, 16];
/// Most bits one cut takes (2^16 children).
pub(crate) const MAX_CUT_BITS: u8 = 16;
/// Most candidates one leaf may list.
pub(crate) const LEAF_MAX_LEN: usize = (1 << 24) - 1;

// Tree pointers are one u64 each, so that a level costs one load:
// - leaf:  bit 0 = 1, bits 1..25 candidate count, bits 25..64 first candidate
//   (index into `checks`); `EMPTY_LEAF` has no candidates;
// - inner: bit 0 = 0, bits 1..4 dimension, 4..9 cut bits, 9..17 bit offset
//   into the dimension, 17..64 index of the first child pointer in `nodes`.
// Small values for the common cases keep postcard's varints short.
pub(crate) const EMPTY_LEAF: u64 = 1;

pub(crate) fn leaf_pointer(start: usize, len: usize) -> u64 {
    1 | (len as u64) << 1 | (start as u64) << 25
}

pub(crate) fn inner_pointer(dim: usize, offset: u8, bits: u8, base: usize) -> u64 {
    (dim as u64) << 1 | u64::from(bits) << 4 | u64::from(offset) << 9 | (base as u64) << 17
}

// The IPv4 trees' pointers are one u32 each (half the bytes: at 10k rules the
// pointer load is the first cache miss of a lookup):
// - leaf:  bit 0 = 1, bits 1..6 candidate count (`V4_LONG_LEAF` = the count
//   is the `leaf_items` entry at the start, the candidates follow it), bits
//   6..32 first candidate;
// - inner: bit 0 = 0, bit 1 which 64-bit key word the cut reads (see
//   `V4_FIELD_AT`), bits 2..8 the cut's first bit counted from the word's
//   top, 8..12 cut bits - 1, bit 12 `V4_BLOCKS`, 13..32 index of the first
//   child in `v4_nodes` (or `v4_leaf_blocks` with `V4_BLOCKS`) / 2 (children
//   come in blocks of 2^bits ≥ 2 from index 0, so they all start at even
//   indices). A level then costs a select, two shifts and an add between
//   loads, with no per-dimension lookup.
pub(crate) const V4_LONG_LEAF: usize = 31;
/// The bit of an inner IPv4 pointer whose children are not pointers but
/// entries of `v4_leaf_blocks`, each the whole candidate list of a leaf.
pub(crate) const V4_BLOCKS: u64 = 1 << 12;
/// Most pointers, and most leaf blocks, the IPv4 trees may hold (a base of
/// 19 bits, times 2).
pub(crate) const MAX_V4_NODES: usize = 1 << 20;
/// Candidates in a leaf block: at most `BLOCK_LEN` candidate indices, then
/// `BLOCK_END` to the end.
pub(crate) const BLOCK_LEN: usize = 8;
pub(crate) const BLOCK_END: u16 = u16::MAX;

/// Where the IPv4 trees find each dimension: (key word, first bit from the
/// word's top). Word 0 is source address · destination address, word 1 is
/// protocol · source port · destination port · 24 zero bits.
pub(crate) const V4_FIELD_AT: [(u64, u8); DIMS] = [(0, 0), (0, 32), (1, 0), (1, 8), (1, 24)];

pub(crate) fn v4_leaf_pointer(start: usize, len: usize) -> u64 {
    1 | (len.min(V4_LONG_LEAF) as u64) << 1 | (start as u64) << 6
}

pub(crate) fn v4_inner_pointer(dim: usize, offset: u8, bits: u8, base: usize, blocks: bool) -> u64 {
    let (word, at) = V4_FIELD_AT[dim];
    let shift = u64::from(at.wrapping_add(offset) & 63);
    let blocks = if blocks { V4_BLOCKS } else { 0 };
    word << 1 | shift << 2 | u64::from(bits.wrapping_sub(1) & 15) << 8 | blocks | ((base >> 1) as u64) << 13
}

/// Whether inner pointer `p` of the IPv4 trees (if `V4`) leads to leaf
/// blocks.
#[inline(always)]
fn leads_to_blocks<const V4: bool>(p: u64) -> bool {
    V4 && p & V4_BLOCKS != 0
}

/// Where a walk ends: a leaf's run in `leaf_items`, or a leaf block.
enum Reached<'a> {
    Run(&'a [u32]),
    Block(&'a [u16; BLOCK_LEN]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pointer {
    Leaf { start: usize, len: usize },
    Inner { dim: usize, bits: u32, offset: u32, base: usize, blocks: bool },
}

#[inline(always)]
fn decode<const V4: bool>(p: u64) -> Pointer {
    if V4 {
        if p & 1 == 1 {
            return Pointer::Leaf { start: (p >> 6) as usize, len: ((p >> 1) & 31) as usize };
        }
        let (word, shift) = ((p >> 1) & 1, ((p >> 2) & 63) as u8);
        // The last field of that word starting at or before the cut; a cut
        // past its end (or past the ports) fails `validate`'s width check.
        let dim = V4_FIELD_AT.iter().rposition(|&(w, at)| w == word && at <= shift).unwrap_or(0);
        return Pointer::Inner {
            dim,
            bits: ((p >> 8) & 15) as u32 + 1,
            offset: u32::from(shift.wrapping_sub(V4_FIELD_AT[dim].1)),
            base: ((p >> 13) as usize) << 1,
            blocks: p & V4_BLOCKS != 0,
        };
    }
    if p & 1 == 1 {
        Pointer::Leaf { start: (p >> 25) as usize, len: ((p >> 1) & 0xff_ffff) as usize }
    } else {
        Pointer::Inner {
            dim: ((p >> 1) & 7) as usize,
            bits: ((p >> 4) & 31) as u32,
            offset: ((p >> 9) & 0xff) as u32,
            base: (p >> 17) as usize,
            blocks: false,
        }
    }
}

pub(crate) const CHECK_PROTO_ANY: u8 = 1;
pub(crate) const CHECK_TYPE_ANY: u8 = 2;
pub(crate) const CHECK_CODE_ANY: u8 = 4;

/// One (rule, source prefix, destination prefix) combination, checked field by
/// field against a key once a tree has narrowed the candidates down to a
/// leaf. It holds everything the rule asks for, so the tree only has to be
/// conservative (never drop a candidate that could match), not exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(C, align(64))]
pub(crate) struct Check {
    pub src: u128,
    pub dst: u128,
    pub ingress: u64,
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub rule: u32,
    pub src_len: u8,
    pub dst_len: u8,
    pub proto: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// `CHECK_*_ANY` bits.
    pub flags: u8,
}

// One check per cache line: a bucket's candidates are read with few misses.
const _: () = assert!(std::mem::size_of::<Check>() == 64);

impl Check {
    #[inline(always)]
    fn matches(&self, key: &Prepared) -> bool {
        // Non-short-circuit `&`: a handful of ALU ops beats unpredictable
        // branches on every field.
        let src = (key.src ^ self.src) & prefix_mask(u32::from(self.src_len)) == 0;
        let dst = (key.dst ^ self.dst) & prefix_mask(u32::from(self.dst_len)) == 0;
        let (sport, dport) = (key.sport(), key.dport());
        let sport = (self.sport_lo <= sport) & (sport <= self.sport_hi);
        let dport = (self.dport_lo <= dport) & (dport <= self.dport_hi);
        let proto = self.flags & CHECK_PROTO_ANY != 0 || self.proto == key.proto();
        let itype = self.flags & CHECK_TYPE_ANY != 0 || self.icmp_type == key.icmp_type;
        let icode = self.flags & CHECK_CODE_ANY != 0 || self.icmp_code == key.icmp_code;
        let ingress = self.ingress == u64::MAX || self.ingress & key.ingress_bit != 0;
        src & dst & sport & dport & proto & itype & icode & ingress
    }
}

/// [`CheckV4::flags`]: the rule takes any protocol.
pub(crate) const V4_PROTO_ANY: u32 = 1 << 30;
/// [`CheckV4::flags`]: the rule also asks for ICMP type/code or an ingress
/// slot, checked with the full [`Check`] it was projected from.
pub(crate) const V4_EXTENDED: u32 = 1 << 31;

/// A candidate as keys with IPv4 source and destination see it: 32 bytes
/// (half the footprint of a [`Check`]), 32-bit compares with precomputed
/// masks instead of 128-bit ones. `v4_checks[i]` is always exactly
/// [`CheckV4::project`] of `checks[i]` (`validate` recomputes it), which the
/// lookup reads for the fields left out (ICMP type/code, ingress) when
/// `V4_EXTENDED` says the rule has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(C, align(32))]
pub(crate) struct CheckV4 {
    pub src: u32,
    pub src_mask: u32,
    pub dst: u32,
    pub dst_mask: u32,
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    /// Rule index (low 24 bits, below `MAX_RULES`) and protocol (high 8).
    pub rule_proto: u32,
    /// `V4_*` flags.
    pub flags: u32,
}

const _: () = assert!(std::mem::size_of::<CheckV4>() == 32);

/// The IPv4 part of a 128-bit prefix, for keys known to be IPv4: a prefix
/// of `::ffff:0:0/96` itself or shorter (it reaches IPv4 at all) contains
/// every IPv4 address, a longer one the addresses under its last 32 bits.
fn v4_part(addr: u128, len: u8) -> (u32, u32) {
    let len = u32::from(len.min(128));
    let mask = u32::MAX.checked_shl(128u32.saturating_sub(len).min(32)).unwrap_or(0);
    (addr as u32 & mask, mask)
}

impl CheckV4 {
    /// `check` for IPv4 keys. Only exact for a check whose prefixes reach
    /// IPv4, which is all the IPv4 trees hold.
    pub fn project(check: &Check) -> CheckV4 {
        let (src, src_mask) = v4_part(check.src, check.src_len);
        let (dst, dst_mask) = v4_part(check.dst, check.dst_len);
        let extended = check.flags & (CHECK_TYPE_ANY | CHECK_CODE_ANY) != CHECK_TYPE_ANY | CHECK_CODE_ANY
            || check.ingress != u64::MAX;
        let mut flags = 0;
        if check.flags & CHECK_PROTO_ANY != 0 {
            flags |= V4_PROTO_ANY;
        }
        if extended {
            flags |= V4_EXTENDED;
        }
        CheckV4 {
            src,
            src_mask,
            dst,
            dst_mask,
            sport_lo: check.sport_lo,
            sport_hi: check.sport_hi,
            dport_lo: check.dport_lo,
            dport_hi: check.dport_hi,
            rule_proto: (check.rule & 0xff_ffff) | u32::from(check.proto) << 24,
            flags,
        }
    }

    #[inline(always)]
    fn rule(&self) -> u32 {
        self.rule_proto & 0xff_ffff
    }

    /// Whether the key matches, apart from the extended fields.
    #[inline(always)]
    fn matches(&self, key: &Prepared) -> bool {
        // One word that is 0 only on a match, and one branch on it: which
        // field differs varies from candidate to candidate, so a branch per
        // field mispredicts. A port is in `lo..=hi` when `port - lo` (mod
        // 2^16) is at most `hi - lo` (`validate` checks `lo <= hi`).
        let addresses = ((key.src4() ^ self.src) & self.src_mask) | ((key.dst4() ^ self.dst) & self.dst_mask);
        let sport = key.sport().wrapping_sub(self.sport_lo) > self.sport_hi.wrapping_sub(self.sport_lo);
        let dport = key.dport().wrapping_sub(self.dport_lo) > self.dport_hi.wrapping_sub(self.dport_lo);
        let proto = (self.rule_proto >> 24 ^ u32::from(key.proto())) & !(self.flags << 1 >> 31).wrapping_neg();
        addresses | u32::from(sport) | u32::from(dport) | proto == 0
    }
}

/// One decision tree: the root pointer and the best rule anywhere in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tree {
    pub root: u64,
    pub min_rule: u32,
}

/// The compiled form of an ordered rule list. Built by
/// [`Classifier::compile`](crate::Classifier::compile) in the control
/// process, shipped with serde (postcard) inside the policy image, checked
/// with [`Classifier::validate`] by the dataplane, then only read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classifier {
    pub(crate) rule_count: u32,
    /// The trees for each address family class of keys (see
    /// [`family_class`]): class `c` owns `trees[class_start[c]..class_start[c + 1]]`,
    /// sorted by `min_rule`, so a lookup stops at the first tree that cannot
    /// beat the match it already has.
    pub(crate) trees: Vec<Tree>,
    pub(crate) class_start: [u32; FAMILY_CLASSES + 1],
    /// Child pointer arrays of all inner nodes; children always come after
    /// the pointer that leads to them, so every walk moves forward and ends.
    pub(crate) nodes: Vec<u64>,
    /// Leaf candidate lists: runs of indices into `checks`, each increasing.
    pub(crate) leaf_items: Vec<u32>,
    /// Every candidate once, in rule order (so increasing indices mean
    /// increasing rule numbers).
    pub(crate) checks: Vec<Check>,
    /// The trees of class 0 (IPv4 source and destination) have their own
    /// pointers, whose address cuts count bits within the 32-bit IPv4
    /// address; their leaves' indices select from `v4_checks`.
    pub(crate) v4_nodes: Vec<u32>,
    /// The children of IPv4 tree nodes whose children are all leaves of at
    /// most `BLOCK_LEN` candidates (when there are fewer than `BLOCK_END`
    /// candidates): each is the leaf's list itself, so reaching it costs one
    /// load less than a leaf pointer and its run in `leaf_items`.
    pub(crate) v4_leaf_blocks: Vec<[u16; BLOCK_LEN]>,
    /// `checks` as IPv4 keys see them: `v4_checks[i]` is
    /// `CheckV4::project(&checks[i], i)`.
    pub(crate) v4_checks: Vec<CheckV4>,
}

/// Field widths in bits as the IPv4 trees cut them.
pub(crate) const DIM_WIDTH_V4: [u8; DIMS] = [32, 32, 8, 16, 16];

/// A key rearranged once per lookup into the shapes trees and checks use:
/// one cache line, which `lookup_bulk` builds for every key of a burst.
#[derive(Clone, Copy, Default)]
pub(crate) struct Prepared {
    /// The two words the IPv4 trees cut (`V4_FIELD_AT`), built for every
    /// key: the candidate checks take protocol and ports from word 1, and
    /// IPv4 addresses from word 0. (The other trees cut `Prepared::field`,
    /// built per level: keeping all five 128-bit fields here made the
    /// struct three times as large, which `lookup_bulk` pays for in every
    /// key of a burst.)
    words4: [u64; 2],
    src: u128,
    dst: u128,
    /// `1 << ingress` for slots 0..64, 0 above (only "any" rules match those).
    ingress_bit: u64,
    icmp_type: u8,
    icmp_code: u8,
    /// [`family_class`] of the key.
    class: u8,
}

const _: () = assert!(std::mem::size_of::<Prepared>() == 64);

impl Prepared {
    #[inline(always)]
    pub fn new(key: &Key) -> Prepared {
        let src = u128::from_be_bytes(key.src);
        let dst = u128::from_be_bytes(key.dst);
        let words4 = [
            (src as u64) << 32 | u64::from(dst as u32),
            u64::from(key.proto) << 56 | u64::from(key.src_port) << 40 | u64::from(key.dst_port) << 24,
        ];
        Prepared {
            words4,
            src,
            dst,
            ingress_bit: 1u64.checked_shl(u32::from(key.ingress)).unwrap_or(0),
            icmp_type: key.icmp_type,
            icmp_code: key.icmp_code,
            class: family_class(src, dst) as u8,
        }
    }

    #[inline(always)]
    fn src4(&self) -> u32 {
        (self.words4[0] >> 32) as u32
    }

    #[inline(always)]
    fn dst4(&self) -> u32 {
        self.words4[0] as u32
    }

    #[inline(always)]
    fn proto(&self) -> u8 {
        (self.words4[1] >> 56) as u8
    }

    #[inline(always)]
    fn sport(&self) -> u16 {
        (self.words4[1] >> 40) as u16
    }

    #[inline(always)]
    fn dport(&self) -> u16 {
        (self.words4[1] >> 24) as u16
    }

    /// Dimension `dim` left-aligned in 128 bits, so that any cut is
    /// `(field << offset) >> (128 - bits)`.
    #[inline(always)]
    fn field(&self, dim: usize) -> Option<u128> {
        Some(match dim {
            0 => self.src,
            1 => self.dst,
            2 => u128::from(self.proto()) << 120,
            3 => u128::from(self.sport()) << 112,
            4 => u128::from(self.dport()) << 112,
            _ => return None,
        })
    }
}

impl Classifier {
    /// Number of rules the classifier was compiled from (rule indices are
    /// below it).
    pub fn rule_count(&self) -> usize {
        self.rule_count as usize
    }

    /// Number of decision trees (at most 2 per address family class).
    pub fn tree_count(&self) -> usize {
        self.trees.len()
    }

    /// Number of candidate references stored in leaves.
    pub fn check_count(&self) -> usize {
        let in_blocks = self.v4_leaf_blocks.iter().flatten().filter(|&&c| c != BLOCK_END).count();
        self.leaf_items.len() + in_blocks
    }

    /// Number of tree pointers.
    pub fn node_count(&self) -> usize {
        self.nodes.len() + self.v4_nodes.len()
    }

    /// Bytes of lookup structures in memory.
    pub fn memory_bytes(&self) -> usize {
        self.checks.len() * std::mem::size_of::<Check>()
            + self.leaf_items.len() * 4
            + self.nodes.len() * 8
            + self.v4_nodes.len() * 4
            + self.v4_leaf_blocks.len() * std::mem::size_of::<[u16; BLOCK_LEN]>()
            + self.v4_checks.len() * std::mem::size_of::<CheckV4>()
            + self.trees.len() * std::mem::size_of::<Tree>()
    }

    /// How the IPv4 structures' bytes are spent, for tuning: sizes of the
    /// arrays, leaf blocks by candidate count, and leaf blocks by the
    /// longest block of their node.
    #[doc(hidden)]
    pub fn layout_report(&self) -> String {
        let block_len = |b: &[u16; BLOCK_LEN]| b.iter().position(|&c| c == BLOCK_END).unwrap_or(BLOCK_LEN);
        let mut by_len = [0usize; BLOCK_LEN + 1];
        for b in &self.v4_leaf_blocks {
            by_len[block_len(b)] += 1;
        }
        let mut by_widest = [0usize; BLOCK_LEN + 1];
        for &p in &self.v4_nodes {
            if let Pointer::Inner { bits, blocks: true, base, .. } = decode::<true>(u64::from(p)) {
                let blocks = self.v4_leaf_blocks.get(base..base.saturating_add(1 << bits)).unwrap_or(&[]);
                by_widest[blocks.iter().map(block_len).max().unwrap_or(0)] += blocks.len();
            }
        }
        // KiB of distinct child arrays (pointers or blocks) at each depth of
        // the IPv4 trees (shared subtrees counted once).
        let mut by_depth = Vec::new();
        let mut level: Vec<u64> = self.trees.get(..self.class_start[1] as usize).unwrap_or(&[]).iter().map(|t| t.root).collect();
        let mut seen = std::collections::HashSet::new();
        while !level.is_empty() {
            let (mut bytes, mut below) = (0, Vec::new());
            for &p in &level {
                if let Pointer::Inner { bits, base, blocks, .. } = decode::<true>(p) {
                    if seen.insert((base, blocks)) {
                        let n = 1usize << bits;
                        bytes += n * if blocks { 16 } else { 4 };
                        if !blocks {
                            below.extend(self.v4_nodes.get(base..base.saturating_add(n)).unwrap_or(&[]).iter().map(|&q| u64::from(q)));
                        }
                    }
                }
            }
            by_depth.push(bytes / 1024);
            level = below;
        }
        format!(
            "IPv4 tree KiB by depth {by_depth:?}; IPv4 pointers {} KiB, other pointers {} KiB, leaf runs {} KiB, leaf blocks {} KiB ({} by length {by_len:?}; \
             under nodes whose longest block is 0..=8: {by_widest:?}), candidates {} KiB, IPv4 candidates {} KiB",
            self.v4_nodes.len() * 4 / 1024,
            self.nodes.len() * 8 / 1024,
            self.leaf_items.len() * 4 / 1024,
            self.v4_leaf_blocks.len() * 16 / 1024,
            self.v4_leaf_blocks.len(),
            self.checks.len() * 64 / 1024,
            self.v4_checks.len() * 32 / 1024,
        )
    }

    /// (trees walked, levels descended, candidates checked) for one lookup —
    /// for tuning.
    #[doc(hidden)]
    pub fn lookup_cost(&self, key: &Key) -> (u32, u32, u32) {
        let key = Prepared::new(key);
        let (mut trees, mut levels, mut checked) = (0, 0, 0);
        let mut best = NO_RULE;
        for tree in self.trees_for(&key) {
            if tree.min_rule >= best {
                break;
            }
            trees += 1;
            best = if key.class == 0 {
                let reached = self.walk::<true>(tree.root, &key, &mut levels);
                self.scan::<true>(reached, &key, best, &mut checked)
            } else {
                let reached = self.walk::<false>(tree.root, &key, &mut levels);
                self.scan::<false>(reached, &key, best, &mut checked)
            };
        }
        (trees, levels, checked)
    }

    /// Index of the first rule matching `key`, or `None`.
    ///
    /// Never allocates and never panics, whatever the classifier holds: every
    /// index is read with `get` and every walk only moves forward (an
    /// unvalidated classifier can only give wrong answers, never read out of
    /// bounds or loop).
    #[inline]
    pub fn lookup(&self, key: &Key) -> Option<u32> {
        let key = Prepared::new(key);
        let best = if key.class == 0 { self.lookup_in::<true>(&key) } else { self.lookup_in::<false>(&key) };
        (best != NO_RULE).then_some(best)
    }

    #[inline(always)]
    fn lookup_in<const V4: bool>(&self, key: &Prepared) -> u32 {
        let mut best = NO_RULE;
        for tree in self.trees_for(key) {
            if tree.min_rule >= best {
                break;
            }
            let reached = self.walk::<V4>(tree.root, key, &mut 0);
            best = self.scan::<V4>(reached, key, best, &mut 0);
        }
        best
    }

    /// Classifies a burst: `out[i] = lookup(&keys[i])` for every `i` both
    /// slices have. Takes the keys 32 at a time, sorted by class; walks
    /// each tree's top levels key by key (they stay in cache), then the
    /// rest level by level, prefetching every key's next pointer before
    /// reading any, so the cache misses of the group overlap instead of
    /// queueing one after another.
    pub fn lookup_bulk(&self, keys: &[Key], out: &mut [Option<u32>]) {
        for (keys, out) in keys.chunks(BULK).zip(out.chunks_mut(BULK)) {
            let n = keys.len().min(out.len());
            let mut burst = Burst {
                prepared: std::array::from_fn(|j| keys.get(j).map_or(Prepared::default(), Prepared::new)),
                best: [NO_RULE; BULK],
                by_class: [0; BULK],
                at: [EMPTY_LEAF; BULK],
                min_index: [0; BULK],
                next: [0; BULK],
                walking: [0; BULK],
                at_leaf: [0; BULK],
                in_block: [0; BULK],
            };
            // The burst's keys sorted by class (a counting sort, without
            // branches), so that each tree goes over its own keys only.
            let mut class_end = [0usize; FAMILY_CLASSES];
            for p in &burst.prepared[..n] {
                class_end[usize::from(p.class) % FAMILY_CLASSES] += 1;
            }
            for c in 1..FAMILY_CLASSES {
                class_end[c] += class_end[c - 1];
            }
            // Where each class's keys start.
            let mut fill = [0usize; FAMILY_CLASSES];
            fill[1..].copy_from_slice(&class_end[..FAMILY_CLASSES - 1]);
            for (i, p) in burst.prepared[..n].iter().enumerate() {
                let slot = &mut fill[usize::from(p.class) % FAMILY_CLASSES];
                burst.by_class[*slot % BULK] = i as u8;
                *slot += 1;
            }
            let mut first = 0;
            for (class, &end) in class_end.iter().enumerate() {
                let keys = first..end;
                first = end;
                if keys.is_empty() {
                    continue;
                }
                let start = self.class_start.get(class).copied().unwrap_or(0) as usize;
                let end = self.class_start.get(class + 1).copied().unwrap_or(0) as usize;
                for tree in self.trees.get(start..end).unwrap_or(&[]) {
                    if class == 0 {
                        self.bulk_tree::<true>(tree, keys.clone(), &mut burst);
                    } else {
                        self.bulk_tree::<false>(tree, keys.clone(), &mut burst);
                    }
                }
            }
            for (o, &b) in out.iter_mut().zip(&burst.best[..n]) {
                *o = (b != NO_RULE).then_some(b);
            }
        }
    }

    /// One tree for the keys `b.by_class[keys]` (those of the tree's class).
    #[inline(always)]
    fn bulk_tree<const V4: bool>(&self, tree: &Tree, keys: std::ops::Range<usize>, b: &mut Burst) {
        // Lists of keys, as indices into the burst: walking (`next` is the
        // pointer to read, already prefetched), at a leaf pointer (`at`), in
        // a leaf block (`next`). The lists are kept without branches on the
        // keys' paths (these would mispredict about once per key and level):
        // every key is written to the next free slot of each list, which
        // only counts it if it belongs there (a list never holds more keys
        // than the burst, and `% BULK` keeps the write in bounds, which the
        // counts already do).
        let mut lists = Lists { walking: 0, at_leaf: 0, in_block: 0 };
        for k in keys {
            let i = usize::from(b.by_class[k % BULK]);
            if tree.min_rule < b.best[i] {
                // The top levels directly, one key after the other, as
                // `walk` does: they are small and shared by every key, so
                // they stay in cache, and a dependent load that hits costs
                // less than a pass over the burst.
                let (mut p, mut min_index) = (tree.root, 0);
                for _ in 0..BULK_DIRECT_LEVELS {
                    let Some(next) = child_index::<V4>(p, &b.prepared[i]) else { break };
                    if leads_to_blocks::<V4>(p) || next < min_index {
                        break;
                    }
                    let Some(q) = self.node::<V4>(next) else { break };
                    (p, min_index) = (q, next + 1);
                }
                b.min_index[i] = min_index;
                self.bulk_step::<V4>(i, p, b, &mut lists);
            }
        }
        // One pass per level: read each walking key's pointer (prefetched
        // by the previous pass, a whole burst ago), then compute and
        // prefetch where it leads.
        while lists.walking > 0 {
            let walking = std::mem::replace(&mut lists.walking, 0);
            for w in 0..walking {
                let i = usize::from(b.walking[w % BULK]);
                let next = b.next[i];
                let p = match self.node::<V4>(next) {
                    Some(p) if next >= b.min_index[i] => p,
                    _ => EMPTY_LEAF,
                };
                b.min_index[i] = next.wrapping_add(1);
                self.bulk_step::<V4>(i, p, b, &mut lists);
            }
        }
        for &i in &b.in_block[..lists.in_block.min(BULK)] {
            let i = usize::from(i);
            let reached = self.v4_leaf_blocks.get(b.next[i]).map(Reached::Block);
            b.best[i] = self.scan::<V4>(reached, &b.prepared[i], b.best[i], &mut 0);
        }
        for &i in &b.at_leaf[..lists.at_leaf.min(BULK)] {
            let i = usize::from(i);
            let reached = self.leaf::<V4>(b.at[i]).map(Reached::Run);
            b.best[i] = self.scan::<V4>(reached, &b.prepared[i], b.best[i], &mut 0);
        }
    }

    /// Key `i` of the burst has reached pointer `p`: files it in the list
    /// it now belongs to and prefetches what it reads next (the child
    /// pointer, the leaf block or the leaf's run), with no branch on `p`.
    #[inline(always)]
    fn bulk_step<const V4: bool>(&self, i: usize, p: u64, b: &mut Burst, lists: &mut Lists) {
        // No branch on the kind of pointer (a key reaching a leaf pointer
        // would mispredict): for IPv4 the child index is computed anyway.
        let (inner, next) = if V4 {
            (p & 1 == 0, v4_child_index(p, &b.prepared[i]))
        } else {
            let child = child_index::<V4>(p, &b.prepared[i]);
            (child.is_some(), child.unwrap_or(0))
        };
        let blocks = inner && leads_to_blocks::<V4>(p);
        b.at[i] = p;
        b.next[i] = next;
        let block_line = self.v4_leaf_blocks.as_ptr().wrapping_add(next).cast::<u8>();
        let run_line = self.leaf_items.as_ptr().wrapping_add(leaf_start::<V4>(p)).cast::<u8>();
        let child_line = std::hint::select_unpredictable(blocks, block_line, self.node_address::<V4>(next));
        prefetch(std::hint::select_unpredictable(inner, child_line, run_line));
        b.walking[lists.walking % BULK] = i as u8;
        lists.walking += usize::from(inner & !blocks);
        b.in_block[lists.in_block % BULK] = i as u8;
        lists.in_block += usize::from(blocks);
        b.at_leaf[lists.at_leaf % BULK] = i as u8;
        lists.at_leaf += usize::from(!inner);
    }

    /// The trees for the key's address family class.
    #[inline(always)]
    fn trees_for(&self, key: &Prepared) -> &[Tree] {
        let class = usize::from(key.class);
        let start = self.class_start.get(class).copied().unwrap_or(0) as usize;
        let end = self.class_start.get(class + 1).copied().unwrap_or(0) as usize;
        self.trees.get(start..end).unwrap_or(&[])
    }

    /// Pointer `i` of the IPv4 trees or of the others.
    #[inline(always)]
    fn node<const V4: bool>(&self, i: usize) -> Option<u64> {
        if V4 {
            self.v4_nodes.get(i).map(|&p| u64::from(p))
        } else {
            self.nodes.get(i).copied()
        }
    }

    /// The address of pointer `i` (only for prefetching: it may be out of
    /// bounds).
    #[inline(always)]
    fn node_address<const V4: bool>(&self, i: usize) -> *const u8 {
        if V4 {
            self.v4_nodes.as_ptr().wrapping_add(i).cast()
        } else {
            self.nodes.as_ptr().wrapping_add(i).cast()
        }
    }

    /// The candidate indices of leaf pointer `p` (`None` for an inner or
    /// broken pointer).
    #[inline(always)]
    fn leaf<const V4: bool>(&self, p: u64) -> Option<&[u32]> {
        let Pointer::Leaf { start, len } = decode::<V4>(p) else { return None };
        if V4 && len == V4_LONG_LEAF {
            let len = *self.leaf_items.get(start)? as usize;
            let first = start.checked_add(1)?;
            return self.leaf_items.get(first..first.saturating_add(len));
        }
        self.leaf_items.get(start..start.saturating_add(len))
    }

    /// Follows `root` down to where `key`'s candidates are (`None` if the
    /// structure is broken), counting the levels in `levels`.
    #[inline(always)]
    fn walk<const V4: bool>(&self, root: u64, key: &Prepared, levels: &mut u32) -> Option<Reached<'_>> {
        let mut p = root;
        let mut min_index = 0;
        while let Some(i) = child_index::<V4>(p, key) {
            *levels += 1;
            if leads_to_blocks::<V4>(p) {
                return self.v4_leaf_blocks.get(i).map(Reached::Block);
            }
            if i < min_index {
                return None;
            }
            p = self.node::<V4>(i)?;
            min_index = i + 1;
        }
        self.leaf::<V4>(p).map(Reached::Run)
    }

    /// Whether IPv4 candidate `c` = `v4_checks[i]` matches, extended fields
    /// included.
    #[inline(always)]
    fn v4_matches(&self, c: &CheckV4, i: u32, key: &Prepared) -> bool {
        c.matches(key) && (c.flags & V4_EXTENDED == 0 || self.checks.get(i as usize).is_some_and(|full| full.matches(key)))
    }

    /// Best of `best` and the first of the `reached` candidates matching
    /// `key`, counting the candidates checked in `checked`.
    #[inline(always)]
    fn scan<const V4: bool>(&self, reached: Option<Reached<'_>>, key: &Prepared, best: u32, checked: &mut u32) -> u32 {
        match reached {
            Some(Reached::Run(run)) => self.scan_in::<V4>(run.iter().copied(), key, best, checked),
            Some(Reached::Block(block)) => {
                let run = block.iter().map_while(|&i| (i != BLOCK_END).then_some(u32::from(i)));
                self.scan_in::<true>(run, key, best, checked)
            }
            None => best,
        }
    }

    #[inline(always)]
    fn scan_in<const V4: bool>(&self, candidates: impl Iterator<Item = u32>, key: &Prepared, best: u32, checked: &mut u32) -> u32 {
        for i in candidates {
            let (rule, matches) = if V4 {
                let Some(c) = self.v4_checks.get(i as usize) else { break };
                if c.rule() >= best {
                    break;
                }
                (c.rule(), self.v4_matches(c, i, key))
            } else {
                let Some(c) = self.checks.get(i as usize) else { break };
                if c.rule >= best {
                    break;
                }
                (c.rule, c.matches(key))
            };
            *checked += 1;
            if matches {
                return rule;
            }
        }
        best
    }

    /// Checks every internal index, offset and invariant the lookup relies
    /// on, so that a classifier decoded from an untrusted or corrupted image
    /// is rejected here rather than used. (Lookups cannot read out of bounds,
    /// panic or loop even without this; skipping it can only produce wrong
    /// verdicts.)
    pub fn validate(&self) -> Result<(), String> {
        if self.rule_count == NO_RULE || self.rule_count as usize > crate::MAX_RULES {
            return Err(format!("rule count {} is out of range", self.rule_count));
        }
        for (i, check) in self.checks.iter().enumerate() {
            if check.rule >= self.rule_count {
                return Err(format!(
                    "candidate {i} names rule {} but there are {} rules",
                    check.rule, self.rule_count
                ));
            }
            if check.src_len > 128 || check.dst_len > 128 {
                return Err(format!("candidate {i} has a prefix longer than 128 bits"));
            }
            if check.sport_lo > check.sport_hi || check.dport_lo > check.dport_hi {
                return Err(format!("candidate {i} has an empty port range"));
            }
            if check.flags & !(CHECK_PROTO_ANY | CHECK_TYPE_ANY | CHECK_CODE_ANY) != 0 {
                return Err(format!("candidate {i} has unknown flag bits {:#x}", check.flags));
            }
        }
        if self.checks.windows(2).any(|w| w[0].rule > w[1].rule) {
            return Err("candidates are not in rule order".into());
        }
        if self.v4_checks.len() != self.checks.len()
            || self.v4_checks.iter().zip(&self.checks).any(|(c, full)| CheckV4::project(full) != *c)
        {
            return Err("the IPv4 candidates are not those of the candidates".into());
        }
        let starts = &self.class_start;
        if starts[0] != 0
            || starts.windows(2).any(|w| w[0] > w[1] || w[1] - w[0] > 2)
            || starts[FAMILY_CLASSES] as usize != self.trees.len()
        {
            return Err(format!("tree classes {starts:?} do not partition the {} trees", self.trees.len()));
        }
        let mut previous_min = 0;
        for (t, tree) in self.trees.iter().enumerate() {
            if starts.contains(&(t as u32)) {
                previous_min = 0;
            }
            if tree.min_rule < previous_min || tree.min_rule >= self.rule_count {
                return Err(format!("tree {t}: trees are not ordered by their best rule"));
            }
            previous_min = tree.min_rule;
            let v4 = t < starts[1] as usize;
            if v4 && tree.root > u64::from(u32::MAX) {
                return Err(format!("tree {t} root: {:#x} is not an IPv4 tree pointer", tree.root));
            }
            self.validate_pointer(tree.root, None, v4).map_err(|e| format!("tree {t} root: {e}"))?;
        }
        for (i, &p) in self.nodes.iter().enumerate() {
            self.validate_pointer(p, Some(i), false).map_err(|e| format!("tree node {i}: {e}"))?;
        }
        for (i, &p) in self.v4_nodes.iter().enumerate() {
            self.validate_pointer(u64::from(p), Some(i), true).map_err(|e| format!("IPv4 tree node {i}: {e}"))?;
        }
        for (i, block) in self.v4_leaf_blocks.iter().enumerate() {
            let len = block.iter().position(|&c| c == BLOCK_END).unwrap_or(BLOCK_LEN);
            let (run, rest) = block.split_at(len);
            if rest.iter().any(|&c| c != BLOCK_END) {
                return Err(format!("leaf block {i}: candidates after its end"));
            }
            if run.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("leaf block {i}: candidates are not in rule order"));
            }
            if run.last().is_some_and(|&c| usize::from(c) >= self.checks.len()) {
                return Err(format!("leaf block {i}: candidate past the {} candidates", self.checks.len()));
            }
        }
        Ok(())
    }

    /// One pointer, found at `nodes[at]` (or a root if `None`), of the IPv4
    /// trees or the others.
    fn validate_pointer(&self, p: u64, at: Option<usize>, v4: bool) -> Result<(), String> {
        let decoded = if v4 { decode::<true>(p) } else { decode::<false>(p) };
        match decoded {
            Pointer::Leaf { start, len } => {
                let items = if v4 { self.leaf::<true>(p) } else { self.leaf::<false>(p) };
                let Some(candidates) = items else {
                    return Err(format!(
                        "leaf candidates {start}..+{len} past the {} stored",
                        self.leaf_items.len()
                    ));
                };
                if candidates.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("leaf candidates are not in rule order".into());
                }
                if candidates.last().is_some_and(|&i| i as usize >= self.checks.len()) {
                    return Err(format!("leaf candidate past the {} candidates", self.checks.len()));
                }
            }
            Pointer::Inner { dim, bits, offset, base, blocks } => {
                if dim >= DIMS {
                    return Err(format!("cut dimension {dim} does not exist"));
                }
                let width = if v4 { DIM_WIDTH_V4[dim] } else { DIM_WIDTH[dim] };
                if bits == 0 || bits > u32::from(MAX_CUT_BITS) || offset + bits > u32::from(width) {
                    return Err(format!("cut of {bits} bits at offset {offset} does not fit dimension {dim}"));
                }
                if blocks {
                    // Leaf blocks hold no pointers: no walk goes on from them.
                    let stored = self.v4_leaf_blocks.len();
                    if base.saturating_add(1 << bits) > stored {
                        return Err(format!("leaf blocks {base}..+{} past the {stored} stored", 1u32 << bits));
                    }
                    return Ok(());
                }
                if at.is_some_and(|at| base <= at) {
                    return Err("child pointers do not come after their parent".into());
                }
                let nodes = if v4 { self.v4_nodes.len() } else { self.nodes.len() };
                if base.saturating_add(1 << bits) > nodes {
                    return Err(format!("children {base}..+{} past the {nodes} pointers", 1u32 << bits));
                }
            }
        }
        Ok(())
    }
}

/// How many keys of a burst each list of [`Classifier::bulk_tree`] holds.
struct Lists {
    walking: usize,
    at_leaf: usize,
    in_block: usize,
}

/// The per-burst state of [`Classifier::lookup_bulk`].
struct Burst {
    prepared: [Prepared; BULK],
    best: [u32; BULK],
    /// The keys (indices into the burst) sorted by class.
    by_class: [u8; BULK],
    /// Per key: the pointer reached, and the smallest index its next step
    /// may read (the forward-only rule of `walk`).
    at: [u64; BULK],
    min_index: [usize; BULK],
    /// Per key: the index its next step reads (the leaf block, once in one).
    next: [usize; BULK],
    /// Keys still walking, at a leaf pointer, in a leaf block, as indices
    /// into the burst.
    walking: [u8; BULK],
    at_leaf: [u8; BULK],
    in_block: [u8; BULK],
}

/// Keys fall in four classes by the families of their source and
/// destination addresses (bit 0: source is IPv6, bit 1: destination is IPv6;
/// IPv4 = inside ::ffff:0:0/96). Each class has its own trees, so that cuts
/// on IPv4 bits never have to carry IPv6 candidates along, and vice versa.
pub(crate) const FAMILY_CLASSES: usize = 4;

#[inline(always)]
pub(crate) fn family_class(src: u128, dst: u128) -> usize {
    usize::from(src >> 32 != 0xffff) | usize::from(dst >> 32 != 0xffff) << 1
}

/// The index in `nodes` (`v4_nodes` if `V4`) an inner pointer sends `key`
/// to; `None` for a leaf.
#[inline(always)]
fn child_index<const V4: bool>(p: u64, key: &Prepared) -> Option<usize> {
    if V4 {
        return (p & 1 == 0).then(|| v4_child_index(p, key));
    }
    let Pointer::Inner { dim, bits, offset, base, .. } = decode::<V4>(p) else { return None };
    let field = key.field(dim)?;
    let child = field.wrapping_shl(offset).wrapping_shr(128u32.wrapping_sub(bits)) as usize;
    Some(base.wrapping_add(child))
}

/// The index an inner IPv4 pointer sends `key` to (garbage for a leaf).
#[inline(always)]
fn v4_child_index(p: u64, key: &Prepared) -> usize {
    // Wrapping shifts: a corrupt pointer gives a wrong index, never a panic.
    let word = std::hint::select_unpredictable(p & 2 == 0, key.words4[0], key.words4[1]);
    let shift = ((p >> 2) & 63) as u32;
    let bits = ((p >> 8) & 15) as u32 + 1;
    let child = word.wrapping_shl(shift).wrapping_shr(64 - bits) as usize;
    (((p >> 13) as usize) << 1).wrapping_add(child)
}

/// Where leaf pointer `p`'s run starts in `leaf_items` (garbage for an
/// inner pointer: only for prefetching).
#[inline(always)]
fn leaf_start<const V4: bool>(p: u64) -> usize {
    (if V4 { p >> 6 } else { p >> 25 }) as usize
}

/// Hints the CPU to start loading the cache line at `address`, which may
/// be any address at all.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is in
    // the baseline target features). A prefetch is only a hint: it never
    // faults, whatever the address (unmapped, out of bounds or null), and
    // has no effect on memory contents; the pointer is never dereferenced.
    // SAFETY: the reasons are stated just above.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    fn compiled() -> Classifier {
        let c = Classifier::compile(&synth::mixed_rules(400, 3)).unwrap();
        c.validate().unwrap();
        c
    }

    /// Applies `corrupt` and expects `validate` to name the problem.
    fn rejects(what: &str, corrupt: impl FnOnce(&mut Classifier)) {
        let mut c = compiled();
        corrupt(&mut c);
        let err = c.validate().expect_err(what);
        assert!(!err.is_empty(), "{what}");
        // And lookups on it stay safe.
        for k in synth::keys(&synth::mixed_rules(400, 3), 200, 75, 1) {
            let _ = c.lookup(&k);
        }
    }

    /// For every candidate that can match IPv4 keys, its projection (plus the
    /// full check when extended) agrees with the full check on IPv4 keys,
    /// including keys on and next to prefix and range edges.
    #[test]
    fn v4_projection_agrees_with_full_check() {
        let rules = synth::mixed_rules(2000, 5);
        let c = Classifier::compile(&rules).unwrap();
        let mut rng = synth::Rng::new(17);
        let v4_space = 0xffffu128 << 32;
        let mut compared = 0;
        for (full, v4) in c.checks.iter().zip(&c.v4_checks) {
            let reaches = |a: u128, l: u8| (a ^ v4_space) & prefix_mask(u32::from(l.min(96))) == 0;
            if !(reaches(full.src, full.src_len) && reaches(full.dst, full.dst_len)) {
                continue;
            }
            for _ in 0..40 {
                let near = |rng: &mut synth::Rng, a: u128| match rng.below(4) {
                    0 => a as u32,
                    1 => (a as u32).wrapping_sub(1),
                    2 => (a as u32) | (rng.next_u64() as u32 >> rng.below(32)),
                    _ => rng.next_u64() as u32,
                };
                let port = |rng: &mut synth::Rng, lo: u16, hi: u16| match rng.below(5) {
                    0 => lo,
                    1 => hi,
                    2 => lo.wrapping_sub(1),
                    3 => hi.wrapping_add(1),
                    _ => rng.next_u64() as u16,
                };
                let key = Key {
                    src: crate::v4_mapped(near(&mut rng, full.src).to_be_bytes()),
                    dst: crate::v4_mapped(near(&mut rng, full.dst).to_be_bytes()),
                    proto: if rng.percent(70) { full.proto } else { rng.next_u64() as u8 },
                    src_port: port(&mut rng, full.sport_lo, full.sport_hi),
                    dst_port: port(&mut rng, full.dport_lo, full.dport_hi),
                    icmp_type: if rng.percent(70) { full.icmp_type } else { rng.below(4) as u8 },
                    icmp_code: if rng.percent(70) { full.icmp_code } else { rng.below(4) as u8 },
                    ingress: rng.below(20) as u8,
                };
                let p = Prepared::new(&key);
                assert_eq!(p.class, 0);
                let projected = v4.matches(&p) && (v4.flags & V4_EXTENDED == 0 || full.matches(&p));
                assert_eq!(projected, full.matches(&p), "{full:?} {v4:?} {key:?}");
                compared += 1;
            }
        }
        assert!(compared > 10_000);
    }

    /// Leaves of 31 or more candidates (IPv4 pointers keep the count in
    /// front of them): rules no cut separates, none covering the others.
    #[test]
    fn long_ipv4_leaves() {
        let mut rules = Vec::new();
        for i in 0..80u8 {
            rules.push(crate::Rule {
                dst: vec![crate::Prefix::v4([10, 0, 0, 0], 8)],
                ingress: 1 << (i % 8) | 1 << 9,
                ..Default::default()
            });
        }
        let c = Classifier::compile(&rules).unwrap();
        c.validate().unwrap();
        let long = |p: u64| matches!(decode::<true>(p), Pointer::Leaf { len: V4_LONG_LEAF, .. });
        assert!(c.v4_nodes.iter().any(|&p| long(u64::from(p))) || long(c.trees[0].root));
        for ingress in 0..12u8 {
            for dst in [[10, 1, 2, 3], [11, 0, 0, 1]] {
                let key = Key {
                    src: crate::v4_mapped([1, 2, 3, 4]),
                    dst: crate::v4_mapped(dst),
                    proto: 6,
                    src_port: 1,
                    dst_port: 2,
                    icmp_type: 0,
                    icmp_code: 0,
                    ingress,
                };
                assert_eq!(c.lookup(&key), crate::reference::first_match(&rules, &key), "{key:?}");
            }
        }
    }

    fn first_inner(c: &Classifier) -> usize {
        c.nodes.iter().position(|&p| p & 1 == 0).expect("an inner pointer")
    }

    #[test]
    fn validate_rejects_broken_structures() {
        rejects("child block past the end", |c| {
            let i = first_inner(c);
            c.nodes[i] = inner_pointer(0, 96, 16, c.nodes.len());
        });
        rejects("backward pointer (a cycle)", |c| {
            let i = first_inner(c);
            c.nodes[i] = inner_pointer(1, 96, 1, i);
        });
        rejects("unknown dimension", |c| {
            let i = first_inner(c);
            c.nodes[i] = (c.nodes[i] & !(7 << 1)) | 6 << 1;
        });
        rejects("cut past the field", |c| {
            let general = c.class_start[1] as usize;
            c.trees[general].root = inner_pointer(2, 4, 8, 0);
        });
        rejects("IPv4 cut past the field", |c| c.trees[0].root = v4_inner_pointer(2, 4, 8, 0, false));
        rejects("leaf past the end", |c| c.trees[0].root = leaf_pointer(c.leaf_items.len(), 2));
        rejects("leaf item past the candidates", |c| {
            let n = c.checks.len() as u32;
            *c.leaf_items.last_mut().unwrap() = n;
        });
        rejects("rule beyond the rule count", |c| c.checks[0].rule = c.rule_count);
        rejects("prefix longer than 128", |c| c.checks[0].src_len = 200);
        rejects("empty port range", |c| {
            c.checks[0].dport_lo = 10;
            c.checks[0].dport_hi = 9;
        });
        let v4_inner = |c: &Classifier| c.v4_nodes.iter().position(|&p| p & 1 == 0).expect("an IPv4 inner pointer");
        rejects("IPv4 cut past the 32-bit address", |c| {
            let i = v4_inner(c);
            c.v4_nodes[i] = v4_inner_pointer(1, 30, 4, (i + 2) & !1, false) as u32;
        });
        rejects("IPv4 child block past the end", |c| {
            let i = v4_inner(c);
            c.v4_nodes[i] = v4_inner_pointer(0, 0, 8, c.v4_nodes.len(), false) as u32;
        });
        rejects("IPv4 backward pointer", |c| {
            let i = v4_inner(c);
            c.v4_nodes[i] = v4_inner_pointer(0, 0, 1, i & !1, false) as u32;
        });
        rejects("IPv4 cut past the ports", |c| {
            let i = v4_inner(c);
            c.v4_nodes[i] = (c.v4_nodes[i] & !0xff) | 1 << 1 | 40 << 2;
        });
        rejects("IPv4 leaf past the end", |c| c.v4_nodes[0] = v4_leaf_pointer(c.leaf_items.len() - 1, 2) as u32);
        rejects("IPv4 root wider than 32 bits", |c| c.trees[0].root |= 1 << 40);
        rejects("IPv4 candidate differs from its candidate", |c| c.v4_checks[3].dst_mask ^= 1 << 7);
        rejects("IPv4 candidate loses its extended flag", |c| {
            let i = c.v4_checks.iter().position(|v| v.flags & V4_EXTENDED != 0).expect("an extended rule");
            c.v4_checks[i].flags &= !V4_EXTENDED;
        });
        rejects("IPv4 candidates missing", |c| {
            c.v4_checks.pop();
        });
        let v4_blocks = |c: &Classifier| {
            c.v4_nodes.iter().position(|&p| u64::from(p) & (V4_BLOCKS | 1) == V4_BLOCKS).expect("a leaf block node")
        };
        rejects("leaf blocks past the end", |c| {
            let i = v4_blocks(c);
            c.v4_nodes[i] = v4_inner_pointer(3, 0, 2, c.v4_leaf_blocks.len() - 2, true) as u32;
        });
        let block_of_two = |c: &Classifier| c.v4_leaf_blocks.iter().position(|b| b[1] != BLOCK_END).expect("a block of two");
        rejects("leaf block candidate past the candidates", |c| {
            let b = block_of_two(c);
            c.v4_leaf_blocks[b][1] = c.checks.len() as u16;
        });
        rejects("leaf block out of rule order", |c| {
            let b = block_of_two(c);
            c.v4_leaf_blocks[b].swap(0, 1);
        });
        rejects("leaf block candidates after its end", |c| {
            let b = c.v4_leaf_blocks.iter().position(|b| b[0] != BLOCK_END && b[1] == BLOCK_END).expect("a block of one");
            c.v4_leaf_blocks[b][2] = 0;
        });
        rejects("tree classes", |c| c.class_start[2] = 100);
        rejects("long IPv4 leaf past the end", |c| {
            c.leaf_items.extend([5, 2]);
            c.v4_nodes[0] = v4_leaf_pointer(c.leaf_items.len() - 2, V4_LONG_LEAF) as u32;
        });
        rejects("long IPv4 leaf length word", |c| {
            let start = c.leaf_items.len();
            c.leaf_items.extend([u32::MAX, 1, 2]);
            c.v4_nodes[0] = v4_leaf_pointer(start, V4_LONG_LEAF) as u32;
        });
        rejects("trees out of order", |c| {
            c.trees.swap(0, 1);
            c.class_start = [0, 2, 2, 2, 2];
            c.trees[0].min_rule = 5;
            c.trees[1].min_rule = 1;
        });
    }
}
