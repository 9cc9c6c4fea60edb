//! IPv4 header (RFC 791), options kept opaque. Checksums are not verified.

use crate::bytes::{array_at, be16_at, slice, u8_at};
use crate::ip::IpProtocol;
use crate::ParseError;

/// Byte ranges of the IPv4 header.
pub mod field {
    use core::ops::Range;
    /// Version (high nibble) and IHL (low nibble, in 32-bit words).
    pub const VER_IHL: usize = 0;
    /// DSCP (6 bits) and ECN (2 bits).
    pub const DSCP_ECN: usize = 1;
    /// Total length of header and data.
    pub const LENGTH: Range<usize> = 2..4;
    /// Identification.
    pub const IDENT: Range<usize> = 4..6;
    /// Flags (3 bits) and fragment offset (13 bits, 8-byte units).
    pub const FLG_OFF: Range<usize> = 6..8;
    /// Time to live.
    pub const TTL: usize = 8;
    /// Protocol.
    pub const PROTOCOL: usize = 9;
    /// Header checksum.
    pub const CHECKSUM: Range<usize> = 10..12;
    /// Source address.
    pub const SRC_ADDR: Range<usize> = 12..16;
    /// Destination address.
    pub const DST_ADDR: Range<usize> = 16..20;
    /// Start of options (up to IHL*4).
    pub const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;
/// Length of a header with the most options (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// An IPv4 address.
pub type Address = [u8; 4];

/// Read-only view of an IPv4 packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; getters on missing bytes return zero / empty.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap after checking version, IHL and total length against the buffer. A buffer
    /// longer than the total length is fine (link-layer padding); use [`Self::payload`].
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Ipv4Truncated);
        }
        if packet.version() != 4 {
            return Err(ParseError::Ipv4BadVersion);
        }
        let header_len = packet.header_len();
        if header_len < HEADER_LEN {
            return Err(ParseError::Ipv4BadIhl);
        }
        if len < header_len {
            return Err(ParseError::Ipv4Truncated);
        }
        let total_len = packet.total_len() as usize;
        if total_len < header_len || total_len > len {
            return Err(ParseError::Ipv4BadTotalLength);
        }
        Ok(packet)
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version nibble.
    #[inline]
    pub fn version(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::VER_IHL) >> 4
    }

    /// Header length in bytes (IHL * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        (u8_at(self.buffer.as_ref(), field::VER_IHL) & 0x0f) as usize * 4
    }

    /// Differentiated services code point.
    #[inline]
    pub fn dscp(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::DSCP_ECN) >> 2
    }

    /// Explicit congestion notification bits.
    #[inline]
    pub fn ecn(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::DSCP_ECN) & 0x03
    }

    /// Total length (header + data).
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Identification.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::IDENT.start)
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::FLG_OFF.start)
    }

    /// Don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in bytes (a multiple of 8, at most 65528).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// True if this packet is a fragment (MF set or non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    /// Time to live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::TTL)
    }

    /// Raw protocol number.
    #[inline]
    pub fn protocol_raw(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::PROTOCOL)
    }

    /// Protocol.
    #[inline]
    pub fn protocol(&self) -> IpProtocol {
        self.protocol_raw().into()
    }

    /// Header checksum as carried (not verified).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// Source address.
    #[inline]
    pub fn src_addr(&self) -> Address {
        array_at(self.buffer.as_ref(), field::SRC_ADDR.start)
    }

    /// Destination address.
    #[inline]
    pub fn dst_addr(&self) -> Address {
        array_at(self.buffer.as_ref(), field::DST_ADDR.start)
    }

    /// Raw options bytes (`20..IHL*4`), not interpreted.
    #[inline]
    pub fn options(&self) -> &[u8] {
        slice(self.buffer.as_ref(), field::OPTIONS, self.header_len())
    }

    /// Data after the header, up to the total length (padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        slice(
            self.buffer.as_ref(),
            self.header_len(),
            self.total_len() as usize,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HDR: [u8; 24] = [
        0x46, 0xb8, 0x00, 0x1c, // v4 ihl 6, dscp 46 ecn 0, total 28
        0xab, 0xcd, 0x20, 0x03, // ident, MF + offset 3 (24 bytes)
        0x40, 0x11, 0x00, 0x00, // ttl 64, udp, checksum
        10, 0, 0, 1, 10, 0, 0, 2, // addresses
        0x94, 0x04, 0x00, 0x00, // router alert option
    ];

    #[test]
    fn fields() {
        let mut buf = HDR.to_vec();
        buf.extend_from_slice(&[1, 2, 3, 4, 0xee, 0xee]); // 4 data bytes + 2 padding
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0xabcd);
        assert!(p.more_frags() && !p.dont_frag() && p.is_fragment());
        assert_eq!(p.frag_offset(), 24);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::Udp);
        assert_eq!(p.src_addr(), [10, 0, 0, 1]);
        assert_eq!(p.dst_addr(), [10, 0, 0, 2]);
        assert_eq!(p.options(), &[0x94, 0x04, 0, 0]);
        assert_eq!(p.payload(), &[1, 2, 3, 4]);
    }

    #[test]
    fn checks() {
        let mut buf = HDR.to_vec();
        buf.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            Packet::new_checked(&buf[..19]),
            Err(ParseError::Ipv4Truncated)
        );
        assert_eq!(
            Packet::new_checked(&buf[..23]),
            Err(ParseError::Ipv4Truncated)
        );
        assert_eq!(
            Packet::new_checked(&buf[..27]),
            Err(ParseError::Ipv4BadTotalLength)
        );
        buf[0] = 0x44;
        assert_eq!(Packet::new_checked(&buf[..]), Err(ParseError::Ipv4BadIhl));
        buf[0] = 0x65;
        assert_eq!(
            Packet::new_checked(&buf[..]),
            Err(ParseError::Ipv4BadVersion)
        );
        buf[0] = 0x46;
        buf[3] = 23;
        assert_eq!(
            Packet::new_checked(&buf[..]),
            Err(ParseError::Ipv4BadTotalLength)
        );
    }
}
