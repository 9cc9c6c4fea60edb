//! Memory layout: the 64-byte flow entry, the 64-byte bucket header, the IPv6 address
//! side array, and how keys and small fields are packed into them.
//!
//! Every field is an atomic so that concurrent readers and writers are defined behaviour
//! in Rust's memory model without any `unsafe`; data fields use `Relaxed` accesses (plain
//! `mov`s on x86-64) and the per-entry sequence word carries all the ordering (see
//! [`seq`] and the concurrency notes in `table/mod.rs`).

use core::mem::size_of;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use rampart_packet::{Direction, FlowKey};

use crate::FlowState;

/// Slots per bucket. 16 tags of 16 bits fill half of the bucket header's cache line.
pub(crate) const LANES: usize = 16;

/// The per-entry sequence word: identity generation plus two lock bits.
///
/// ```text
///  31                              3     2         1        0
/// +--------------------------------+----------+--------+-------+
/// | generation (bumped on claim    | OCCUPIED | STRUCT | WRITE |
/// |   and on free, never on update)|          |        |       |
/// +--------------------------------+----------+--------+-------+
/// ```
/// - `WRITE`: a packet is updating the flow's data (state, counters, TCP fields). The key
///   and identity cannot change meanwhile, so readers go on reading.
/// - `STRUCT`: the slot is being claimed (new key written) or freed. Readers treat the
///   slot as not matching.
/// - A reader trusts what it read only if the word, minus `WRITE`, is the same before
///   and after ("no use after reuse"): any free or re-claim in between changed the
///   generation. 29 generation bits: a reader would have to stall across 2^28 reuses of
///   one slot to be fooled.
pub(crate) mod seq {
    pub const WRITE: u32 = 1;
    pub const STRUCT: u32 = 2;
    pub const LOCKS: u32 = WRITE | STRUCT;
    pub const OCCUPIED: u32 = 4;
    pub const GEN_ONE: u32 = 8;

    /// The next generation after `word`, without lock and occupancy bits.
    #[inline]
    pub fn next_gen(word: u32) -> u32 {
        (word & !(GEN_ONE - 1)).wrapping_add(GEN_ONE)
    }
}

/// Bits of the entry's flag byte.
pub(crate) mod flag {
    // Bit 0 is spare (the IPv6 marker lives in the key word, where lookups compare it).
    /// The initiator is the canonical key's `Reverse` endpoint.
    pub const INIT_REV: u8 = 1 << 1;
    /// A valid packet from the responder has been seen.
    pub const REPLIED: u8 = 1 << 2;
    /// TCP picked up mid-stream: windows are not enforced.
    pub const LIBERAL: u8 = 1 << 3;
    /// TCP simultaneous open.
    pub const SIMOPEN: u8 = 1 << 4;
    /// TCP FIN seen from the Forward endpoint (`FIN_FWD << 1` for Reverse).
    pub const FIN_FWD: u8 = 1 << 5;
    /// TCP FIN seen from the Reverse endpoint.
    pub const FIN_REV: u8 = 1 << 6;
    const _: () = assert!(FIN_REV == FIN_FWD << 1, "FIN bits are indexed by direction");
    /// The Reverse endpoint sent the first FIN.
    pub const CLOSER_REV: u8 = 1 << 7;
}

/// One flow: 64 bytes, one cache line, so a hit costs one line beyond the bucket header.
///
/// | offset | field      | contents                                                    |
/// |-------:|------------|-------------------------------------------------------------|
/// | 0      | `seq`      | identity generation + lock bits (see `seq`)                 |
/// | 4      | `verdict`  | classifier result / rule index, set at insert               |
/// | 8      | `key_addrs`| last 4 bytes of src and dst address (all of IPv4)            |
/// | 16     | `key_rest` | src port, dst port, zone, protocol, V6 bit                  |
/// | 24     | `info`     | state · flags · owner guest · window-scale nibbles          |
/// | 28     | `last_ms`  | last valid packet, caller ms mod 2^32                        |
/// | 32     | `start_s`  | creation, caller seconds                                     |
/// | 36     | `maxwin`   | TCP max window per direction (u16 units of 2^scale each)    |
/// | 40     | `td_end`   | TCP highest seq + 1 per direction                           |
/// | 48     | `packets`  | valid packets per direction (u32, wrapping)                  |
/// | 56     | `bytes`    | bytes per direction (u32, wrapping)                          |
///
/// The full 39-byte key does not fit next to counters and TCP tracking, so IPv6 flows
/// keep their full addresses in a 32-byte side array indexed by the same slot (touched
/// only for IPv6; IPv4 flows compare 16 bytes inline). Linux's `td_maxend` is dropped
/// (see `tcp.rs`) and counters are 32-bit.
#[repr(C, align(64))]
#[derive(Default)]
pub struct FlowEntry {
    pub(crate) seq: AtomicU32,
    pub(crate) verdict: AtomicU32,
    pub(crate) key_addrs: AtomicU64,
    pub(crate) key_rest: AtomicU64,
    pub(crate) info: AtomicU32,
    pub(crate) last_ms: AtomicU32,
    pub(crate) start_s: AtomicU32,
    pub(crate) maxwin: AtomicU32,
    pub(crate) td_end: [AtomicU32; 2],
    pub(crate) packets: [AtomicU32; 2],
    pub(crate) bytes: [AtomicU32; 2],
}

const _: () = assert!(size_of::<FlowEntry>() == 64);

/// Full IPv6 addresses of an entry (src then dst, as little-endian words).
#[repr(C, align(32))]
#[derive(Default)]
pub(crate) struct V6Addrs {
    pub words: [AtomicU64; 4],
}

const _: () = assert!(size_of::<V6Addrs>() == 32);

/// Bucket header: one cache line with a 16-bit tag per slot (0 = free) and the insert
/// lock. Lookups read only `tags` and `spilled`.
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Bucket {
    /// 16 lanes of 16-bit tags, four per word.
    pub tags: [AtomicU64; 4],
    /// Serialises inserts whose key maps to this bucket (see `table/insert.rs`).
    pub lock: AtomicU32,
    /// How many flows whose primary bucket is this one live in their secondary bucket:
    /// lookups that miss here look there only if this is non-zero.
    pub spilled: AtomicU32,
}

const _: () = assert!(size_of::<Bucket>() == 64);

/// A bucket followed by the entries of its lanes. A lookup reads the bucket's tags, then
/// the matching lane's entry: kept together they share a 4 KiB page, so a lookup costs
/// at most one TLB miss instead of one per array (on a VM whose memory is backed by
/// small host pages that is a nested page walk saved per packet).
#[repr(C, align(64))]
#[derive(Default)]
pub(crate) struct Group {
    pub bucket: Bucket,
    pub entries: [FlowEntry; LANES],
}

const _: () = assert!(size_of::<Group>() == 64 * (LANES + 1));

const LANE_LOW15: u64 = 0x7fff_7fff_7fff_7fff;
const LANE_HIGH: u64 = 0x8000_8000_8000_8000;

/// Bit i set iff 16-bit lane i of `x` is zero (exact, no borrow false positives).
#[inline]
fn zero_lanes(x: u64) -> u16 {
    let y = !(((x & LANE_LOW15).wrapping_add(LANE_LOW15)) | x) & LANE_HIGH;
    ((y >> 15) & 1 | (y >> 30) & 2 | (y >> 45) & 4 | (y >> 60) & 8) as u16
}

impl Bucket {
    /// Lanes whose tag equals `tag` (a hint: keys still have to be compared).
    /// SSE2 (baseline on x86-64): two 8-lane compares, packed to bytes, one movemask.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    pub fn matching(&self, tag: u16) -> u16 {
        use core::arch::x86_64::{_mm_cmpeq_epi16, _mm_movemask_epi8, _mm_packs_epi16, _mm_set1_epi16, _mm_set_epi64x};
        let words = [0, 1, 2, 3].map(|i| self.tags[i].load(Relaxed) as i64);
        // SSE2 is in the x86-64 baseline target features, so every x86-64 CPU has it.
        // SAFETY: the intrinsics need only SSE2 (always present, above) and compute on
        // values in registers: no memory is accessed through them.
        unsafe {
            let pattern = _mm_set1_epi16(tag as i16);
            // Lane j of word i is 16-bit element 4i + j: the numbering of `zero_lanes`.
            let low = _mm_cmpeq_epi16(_mm_set_epi64x(words[1], words[0]), pattern);
            let high = _mm_cmpeq_epi16(_mm_set_epi64x(words[3], words[2]), pattern);
            // Equal elements are -1, others 0; a signed saturating pack keeps that per byte.
            _mm_movemask_epi8(_mm_packs_epi16(low, high)) as u16
        }
    }

    /// Lanes whose tag equals `tag` (portable form of the SSE2 version).
    #[cfg(not(target_arch = "x86_64"))]
    #[inline]
    pub fn matching(&self, tag: u16) -> u16 {
        self.matching_swar(tag)
    }

    /// [`Self::matching`] on 64-bit words, four lanes at a time.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    #[inline]
    pub fn matching_swar(&self, tag: u16) -> u16 {
        let pattern = tag as u64 * 0x0001_0001_0001_0001;
        let mut mask = 0;
        for (i, word) in self.tags.iter().enumerate() {
            mask |= zero_lanes(word.load(Relaxed) ^ pattern) << (4 * i);
        }
        mask
    }

    /// Lanes whose tag is 0 (free, or being freed/claimed).
    #[inline]
    pub fn free(&self) -> u16 {
        self.matching(0)
    }
}

/// A key in the entry's packed form, plus the full address words for IPv6 and hashing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PackedKey {
    pub addrs: u64,
    pub rest: u64,
    /// src_addr then dst_addr as little-endian u64 words.
    pub words: [u64; 4],
}

const MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];
/// The first 12 bytes of an address read as a little-endian u128 (bits 0–95), and their
/// value in an IPv4-mapped address.
const PREFIX_BITS: u128 = (1 << 96) - 1;
const MAPPED_BITS: u128 = 0xffff << 80;

impl PackedKey {
    #[inline(always)]
    pub fn new(key: &FlowKey) -> PackedKey {
        PackedKey::from_parts(
            u128::from_le_bytes(key.src_addr),
            u128::from_le_bytes(key.dst_addr),
            key.src_port,
            key.dst_port,
            key.zone,
            key.proto,
        )
    }

    /// The packed form of a key whose addresses are given as little-endian u128s (whole
    /// registers: no byte-wise copies for the packet path to wait on).
    #[inline(always)]
    pub fn from_parts(src: u128, dst: u128, src_port: u16, dst_port: u16, zone: u16, proto: u8) -> PackedKey {
        let v6 = src & PREFIX_BITS != MAPPED_BITS || dst & PREFIX_BITS != MAPPED_BITS;
        PackedKey {
            addrs: (src >> 96) as u64 | ((dst >> 96) as u64) << 32,
            rest: src_port as u64
                | (dst_port as u64) << 16
                | (zone as u64) << 32
                | (proto as u64) << 48
                | (v6 as u64) << 56,
            words: [src as u64, (src >> 64) as u64, dst as u64, (dst >> 64) as u64],
        }
    }

    /// The canonical key of a packet-order key, packed, and the packet's direction: the
    /// same as [`FlowKey::canonical`] then [`PackedKey::new`], on whole words.
    #[inline(always)]
    pub fn canonical(key: &FlowKey) -> (PackedKey, Direction) {
        let (src, dst) = (u128::from_le_bytes(key.src_addr), u128::from_le_bytes(key.dst_addr));
        // Byte order is address order: compare as big-endian numbers.
        if (src.swap_bytes(), key.src_port) <= (dst.swap_bytes(), key.dst_port) {
            (PackedKey::from_parts(src, dst, key.src_port, key.dst_port, key.zone, key.proto), Direction::Forward)
        } else {
            (PackedKey::from_parts(dst, src, key.dst_port, key.src_port, key.zone, key.proto), Direction::Reverse)
        }
    }

    #[inline]
    pub fn is_v6(&self) -> bool {
        self.rest >> 56 != 0
    }

    /// Rebuild the key from an entry's packed fields and (IPv6) side-array words.
    pub fn unpack(addrs: u64, rest: u64, v6_words: Option<[u64; 4]>) -> FlowKey {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        match v6_words {
            Some(w) => {
                src[..8].copy_from_slice(&w[0].to_le_bytes());
                src[8..].copy_from_slice(&w[1].to_le_bytes());
                dst[..8].copy_from_slice(&w[2].to_le_bytes());
                dst[8..].copy_from_slice(&w[3].to_le_bytes());
            }
            None => {
                src[..12].copy_from_slice(&MAPPED_PREFIX);
                dst[..12].copy_from_slice(&MAPPED_PREFIX);
                src[12..].copy_from_slice(&(addrs as u32).to_le_bytes());
                dst[12..].copy_from_slice(&((addrs >> 32) as u32).to_le_bytes());
            }
        }
        FlowKey {
            src_addr: src,
            dst_addr: dst,
            src_port: rest as u16,
            dst_port: (rest >> 16) as u16,
            zone: (rest >> 32) as u16,
            proto: (rest >> 48) as u8,
        }
    }
}

/// The `info` word: state, flags, owner and the two window-scale nibbles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Info {
    pub state: FlowState,
    pub flags: u8,
    pub owner: u8,
    pub wscale: [u8; 2],
}

impl Info {
    #[inline]
    pub fn unpack(word: u32) -> Info {
        Info {
            state: FlowState::from_u8(word as u8),
            flags: (word >> 8) as u8,
            owner: (word >> 16) as u8,
            wscale: [(word >> 24) as u8 & 0xf, (word >> 28) as u8 & 0xf],
        }
    }

    #[inline]
    pub fn pack(&self) -> u32 {
        self.state as u32
            | (self.flags as u32) << 8
            | (self.owner as u32) << 16
            | ((self.wscale[0] & 0xf) as u32) << 24
            | ((self.wscale[1] & 0xf) as u32) << 28
    }
}

#[inline]
pub(crate) fn pack_maxwin(maxwin: [u16; 2]) -> u32 {
    maxwin[0] as u32 | (maxwin[1] as u32) << 16
}

#[inline]
pub(crate) fn unpack_maxwin(word: u32) -> [u16; 2] {
    [word as u16, (word >> 16) as u16]
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering::Relaxed;

    #[test]
    fn tag_matching_is_exact() {
        let b = Bucket::default();
        b.tags[0].store(0x0001_0000_8000_0001, Relaxed);
        b.tags[3].store(0x0000_0001_0000_0000, Relaxed);
        assert_eq!(b.matching(1), 0b0100_0000_0000_1001);
        assert_eq!(b.matching(0x8000), 0b10);
        assert_eq!(b.free(), !0b0100_0000_0000_1011);
    }

    #[test]
    fn tag_matching_agrees_with_the_portable_form() {
        let b = Bucket::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..2000u64 {
            for w in &b.tags {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Few distinct tags, so lanes often match: tags 0..=3 and 0x8000..=0x8003.
                let lanes = (0..4).fold(0u64, |acc, j| acc | ((x >> (8 * j)) & 0x8003) << (16 * j));
                w.store(lanes, Relaxed);
            }
            for tag in [0u16, 1, 2, 3, 0x8000, 0x8003, 0xffff, round as u16] {
                assert_eq!(b.matching(tag), b.matching_swar(tag), "round {round} tag {tag:#x}");
            }
        }
    }

    #[test]
    fn key_round_trip() {
        let mut v4 = FlowKey {
            src_port: 1234,
            dst_port: 80,
            proto: 6,
            zone: 7,
            ..Default::default()
        };
        v4.src_addr[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 1]);
        v4.dst_addr[10..].copy_from_slice(&[0xff, 0xff, 10, 0, 0, 2]);
        let p = PackedKey::new(&v4);
        assert!(!p.is_v6());
        assert_eq!(PackedKey::unpack(p.addrs, p.rest, None), v4);

        let v6 = FlowKey {
            src_addr: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            dst_addr: [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
            ..v4
        };
        let p = PackedKey::new(&v6);
        assert!(p.is_v6());
        assert_eq!(PackedKey::unpack(p.addrs, p.rest, Some(p.words)), v6);

        // A key with only one mapped address is IPv6.
        let mixed = FlowKey { src_addr: v4.src_addr, ..v6 };
        assert!(PackedKey::new(&mixed).is_v6());
        // The canonical key packed on words is the canonical key packed.
        for k in [v4, v4.reversed(), v6, v6.reversed(), mixed, mixed.reversed()] {
            let (c, dir) = k.canonical();
            assert_eq!(PackedKey::canonical(&k), (PackedKey::new(&c), dir));
        }
        let same_addr = FlowKey { dst_addr: v4.src_addr, ..v4 };
        assert_eq!(PackedKey::canonical(&same_addr).1, same_addr.canonical().1);
        assert_eq!(PackedKey::canonical(&same_addr.reversed()).1, same_addr.reversed().canonical().1);
    }

    #[test]
    fn info_round_trip() {
        let info = Info {
            state: FlowState::TcpLastAck,
            flags: 0xa5,
            owner: 200,
            wscale: [14, 15],
        };
        assert_eq!(Info::unpack(info.pack()), info);
    }
}
