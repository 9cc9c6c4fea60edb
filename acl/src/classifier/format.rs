//! The compiled image's layout: tree pointers (64-bit for the general trees, 32-bit for
//! the IPv4 trees) and how they encode leaves, cuts and leaf blocks; the candidates
//! ([`Check`], and [`CheckV4`], its projection for IPv4 keys) and the trees' headers; the
//! family classes of keys. The compiler writes this format, `validate` checks it, the
//! lookup reads it.

use serde::{Deserialize, Serialize};

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
pub(super) fn leads_to_blocks<const V4: bool>(p: u64) -> bool {
    V4 && p & V4_BLOCKS != 0
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Pointer {
    Leaf { start: usize, len: usize },
    Inner { dim: usize, bits: u32, offset: u32, base: usize, blocks: bool },
}

#[inline(always)]
pub(super) fn decode<const V4: bool>(p: u64) -> Pointer {
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
}

/// One decision tree: the root pointer and the best rule anywhere in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tree {
    pub root: u64,
    pub min_rule: u32,
}

/// Field widths in bits as the IPv4 trees cut them.
pub(crate) const DIM_WIDTH_V4: [u8; DIMS] = [32, 32, 8, 16, 16];

/// Keys fall in four classes by the families of their source and
/// destination addresses (bit 0: source is IPv6, bit 1: destination is IPv6;
/// IPv4 = inside ::ffff:0:0/96). Each class has its own trees, so that cuts
/// on IPv4 bits never have to carry IPv6 candidates along, and vice versa.
pub(crate) const FAMILY_CLASSES: usize = 4;

#[inline(always)]
pub(crate) fn family_class(src: u128, dst: u128) -> usize {
    usize::from(src >> 32 != 0xffff) | usize::from(dst >> 32 != 0xffff) << 1
}
