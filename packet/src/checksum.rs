//! The Internet checksum (RFC 1071), the IPv4/IPv6 pseudo-headers TCP, UDP and ICMPv6 sum
//! over, and incremental updates (RFC 1624) for rewriting a field without summing the whole
//! packet again.
//!
//! Sums are one's-complement sums folded to 16 bits and **not** complemented ([`sum`],
//! [`PseudoHeader::sum`]); a checksum field holds the complement of the sum ([`compute`]).
//! Parts can be summed apart and joined with [`combine`] as long as every part but the last
//! has an even length (the pseudo-header always has).
//!
//! ## Full checksums and pseudo-header-only fields
//!
//! A packet that will get its L4 checksum from an offload — a virtio-net guest sending with
//! `VIRTIO_NET_HDR_F_NEEDS_CSUM`, or a DPDK mbuf with `RTE_MBUF_F_TX_TCP_CKSUM` /
//! `RTE_MBUF_F_TX_UDP_CKSUM` — carries in its checksum field only the pseudo-header sum,
//! uncomplemented, and the device finishes the job. Rewriting an address in such a packet
//! must patch that partial sum with [`update_pseudo_only`], not with [`update`]: `update`
//! assumes a complemented full checksum and would leave a field the device then corrupts.
//! Which case a packet is in is said by its offload flags, never by its bytes;
//! [`holds_pseudo_only`] only checks that a field agrees with the pseudo-header (for tests
//! and debugging: a full checksum matches by chance once in 65535 packets).

use crate::ip::protocol;

/// One's-complement sum of `data` read as big-endian 16-bit words (an odd last byte is
/// padded with zero), folded to 16 bits, not complemented. Zero only for all-zero data.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    // Wider words sum to the same folded value (2^16 ≡ 1 mod 0xffff); a u64 cannot overflow
    // before 16 GiB of data. Summed in little-endian order and swapped once at the end (the
    // sum is byte-order independent, RFC 1071 §2(B)): no swap per word, so the loop over
    // four lanes vectorises.
    let (blocks, rest) = data.as_chunks::<16>();
    let mut lanes = [0u64; 4];
    for block in blocks {
        for (lane, word) in lanes.iter_mut().zip(block.as_chunks::<4>().0) {
            *lane += u32::from_le_bytes(*word) as u64;
        }
    }
    let (words, rest) = rest.as_chunks::<4>();
    let mut acc: u64 = lanes.iter().sum::<u64>() + words.iter().map(|w| u32::from_le_bytes(*w) as u64).sum::<u64>();
    let (pair, last) = rest.as_chunks::<2>();
    if let Some(pair) = pair.first() {
        acc += u16::from_le_bytes(*pair) as u64;
    }
    if let Some(&byte) = last.first() {
        acc += byte as u64;
    }
    fold(acc).swap_bytes()
}

#[inline]
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// One's-complement sum of two sums.
#[inline]
pub const fn combine(a: u16, b: u16) -> u16 {
    let s = a as u32 + b as u32;
    ((s & 0xffff) + (s >> 16)) as u16
}

/// The checksum field value for `data` (whose checksum field is zero): `!sum(data)`.
#[inline]
pub fn compute(data: &[u8]) -> u16 {
    !sum(data)
}

/// True if `data`, checksum field included, sums to 0xffff with `pseudo` (0 for none), i.e.
/// the checksum is right.
#[inline]
pub fn verify(pseudo: u16, data: &[u8]) -> bool {
    combine(pseudo, sum(data)) == 0xffff
}

/// The source and destination addresses a pseudo-header sums over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PseudoHeader {
    /// IPv4 (RFC 9293 §3.1, RFC 768).
    V4 {
        /// Source address.
        src: [u8; 4],
        /// Destination address.
        dst: [u8; 4],
    },
    /// IPv6 (RFC 8200 §8.1). The destination is the final one (after a Routing header).
    V6 {
        /// Source address.
        src: [u8; 16],
        /// Destination address.
        dst: [u8; 16],
    },
}

impl PseudoHeader {
    /// Sum of the pseudo-header for an upper-layer packet of `protocol` and `len` bytes
    /// (header and data): what an offloading sender leaves in the checksum field.
    #[inline]
    pub fn sum(&self, protocol: u8, len: usize) -> u16 {
        let addrs = match self {
            Self::V4 { src, dst } => combine(sum(src), sum(dst)),
            Self::V6 { src, dst } => combine(sum(src), sum(dst)),
        };
        // IPv4 carries a 16-bit length, IPv6 a 32-bit one; both sum the same way.
        let len = len as u64;
        combine(
            addrs,
            fold(protocol as u64 + (len >> 32) + (len & 0xffff_ffff)),
        )
    }

    /// The checksum field value for an upper-layer packet `data` (checksum field zero).
    #[inline]
    pub fn checksum(&self, protocol: u8, data: &[u8]) -> u16 {
        !combine(self.sum(protocol, data.len()), sum(data))
    }

    /// True if `data` (checksum field included) carries a right checksum.
    #[inline]
    pub fn verify(&self, protocol: u8, data: &[u8]) -> bool {
        verify(self.sum(protocol, data.len()), data)
    }
}

/// RFC 1624 eqn. 3: the checksum after the 16-bit-aligned bytes `old` of the summed data
/// become `new` (same length, even unless it ends the data), given the full, complemented
/// `checksum` before. Equals recomputing the checksum from scratch.
///
/// Use [`update_pseudo_only`] for a field that holds a pseudo-header sum (see the module
/// docs). A UDP-over-IPv4 checksum of 0 means "none" and must be left alone; a UDP result
/// of 0 must be sent as 0xffff (RFC 768).
#[inline]
pub fn update(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    !update_pseudo_only(!checksum, old, new)
}

/// The partial (pseudo-header only, uncomplemented) sum a checksum field holds for an
/// offloaded packet, after the pseudo-header bytes `old` become `new`. See the module docs.
#[inline]
pub fn update_pseudo_only(partial: u16, old: &[u8], new: &[u8]) -> u16 {
    combine(combine(partial, !sum(old)), sum(new))
}

/// [`update`] for one 16-bit field.
#[inline]
pub fn update16(checksum: u16, old: u16, new: u16) -> u16 {
    update(checksum, &old.to_be_bytes(), &new.to_be_bytes())
}

/// [`update`] for one 32-bit field (16-bit aligned), e.g. a TCP sequence number.
#[inline]
pub fn update32(checksum: u16, old: u32, new: u32) -> u16 {
    update(checksum, &old.to_be_bytes(), &new.to_be_bytes())
}

/// [`update`] for an IPv4 address replaced: use it on the IPv4 header checksum and on the
/// TCP/UDP checksum (the address is in their pseudo-header).
#[inline]
pub fn update_ipv4_addr(checksum: u16, old: &[u8; 4], new: &[u8; 4]) -> u16 {
    update(checksum, old, new)
}

/// [`update`] for an IPv6 address replaced, on a TCP/UDP/ICMPv6 checksum.
#[inline]
pub fn update_ipv6_addr(checksum: u16, old: &[u8; 16], new: &[u8; 16]) -> u16 {
    update(checksum, old, new)
}

/// True if an L4 checksum `field` equals the pseudo-header sum of its packet (`protocol`,
/// `len` bytes): the form an offloading sender leaves. Only the offload flags say for sure
/// which form a packet is in; see the module docs.
#[inline]
pub fn holds_pseudo_only(field: u16, pseudo: &PseudoHeader, protocol: u8, len: usize) -> bool {
    field == pseudo.sum(protocol, len)
}

/// The pseudo-header-carrying protocols an IP layer sums for: TCP, UDP and ICMPv6. ICMP
/// over IPv4 sums only its own bytes.
#[inline]
pub const fn has_pseudo_header(proto: u8) -> bool {
    matches!(proto, protocol::TCP | protocol::UDP | protocol::ICMPV6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 §3's example: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(compute(&data), !0xddf2);
        assert_eq!(sum(&data[..7]), combine(sum(&data[..6]), 0xf600));
        assert_eq!(sum(&[]), 0);
    }

    /// An IPv4 header captured on the wire (the Wikipedia example: checksum b861).
    const CAPTURED: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn captured_ipv4_header() {
        assert!(verify(0, &CAPTURED));
        let mut zeroed = CAPTURED;
        zeroed[10..12].fill(0);
        assert_eq!(compute(&zeroed), 0xb861);
        // TTL 64 → 63: RFC 1624's case.
        let updated = update16(0xb861, 0x4011, 0x3f11);
        zeroed[8] = 0x3f;
        assert_eq!(updated, compute(&zeroed));
    }

    /// A UDP/IPv4 datagram from a capture (DNS query 10.0.0.1:54321 → 10.0.0.2:53, "hello").
    #[test]
    fn pseudo_headers() {
        let pseudo = PseudoHeader::V4 {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
        };
        let mut udp = [
            0xd4, 0x31, 0x00, 0x35, 0x00, 0x0d, 0, 0, b'h', b'e', b'l', b'l', b'o',
        ];
        // 0a00 + 0001 + 0a00 + 0002 + 0011 (protocol) + 000d (length).
        assert_eq!(pseudo.sum(17, udp.len()), 0x1421);
        let c = pseudo.checksum(17, &udp);
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        assert!(pseudo.verify(17, &udp));
        let v6 = PseudoHeader::V6 {
            src: [0; 16],
            dst: [0; 16],
        };
        assert_eq!(v6.sum(58, 0x1_0002), 58 + 1 + 2);
        assert!(holds_pseudo_only(0x1421, &pseudo, 17, 13));
        assert!(has_pseudo_header(58) && !has_pseudo_header(1));
    }

    proptest! {
        /// The wide, little-endian sum equals RFC 1071's word-by-word one at every length.
        #[test]
        fn sum_equals_the_word_by_word_definition(data in prop::collection::vec(any::<u8>(), 0..2100)) {
            let mut acc: u32 = 0;
            for pair in data.chunks(2) {
                acc += u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]) as u32;
                acc = (acc & 0xffff) + (acc >> 16);
            }
            prop_assert_eq!(sum(&data), acc as u16);
        }

        /// Replacing any aligned field — an address, say — by update equals a full
        /// recomputation, and the pseudo-only update equals the new pseudo-header sum.
        #[test]
        fn incremental_equals_full(
            mut data in prop::collection::vec(any::<u8>(), 20..80),
            at in 0usize..8,
            new in any::<[u8; 16]>(),
            width in prop::sample::select(vec![2usize, 4, 16]),
        ) {
            prop_assume!(data.iter().any(|&b| b != 0));
            let at = (at * 2).min(data.len() - width) & !1;
            let before = compute(&data);
            let old = data[at..at + width].to_vec();
            data[at..at + width].copy_from_slice(&new[..width]);
            prop_assume!(data.iter().any(|&b| b != 0));
            prop_assert_eq!(update(before, &old, &new[..width]), compute(&data));
        }

        #[test]
        fn pseudo_only_update(src in any::<[u8; 16]>(), dst in any::<[u8; 16]>(), new in any::<[u8; 16]>(), len in 0usize..70000) {
            let before = PseudoHeader::V6 { src, dst }.sum(6, len);
            let after = PseudoHeader::V6 { src: new, dst }.sum(6, len);
            prop_assert_eq!(update_pseudo_only(before, &src, &new), after);
            let (s4, n4) = ([src[0], src[1], src[2], src[3]], [new[0], new[1], new[2], new[3]]);
            let before = PseudoHeader::V4 { src: s4, dst: [1, 2, 3, 4] }.sum(17, len);
            let after = PseudoHeader::V4 { src: n4, dst: [1, 2, 3, 4] }.sum(17, len);
            prop_assert_eq!(update_pseudo_only(before, &s4, &n4), after);
        }
    }
}
