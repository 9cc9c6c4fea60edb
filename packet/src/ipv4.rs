//! IPv4 header (RFC 791), options kept opaque. Checksums are not verified.

use crate::bytes::{array_at, be16_at, put_be16, put_masked_u8, setters, slice, slice_mut, u8_at};
use crate::checksum::{self, PseudoHeader};
use crate::error::{check_room, len16, ReprError};
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

    /// True if the header checksum is right (not used by [`crate::parse`]).
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, slice(self.buffer.as_ref(), 0, self.header_len()))
    }

    /// The pseudo-header of the packet's upper layer.
    #[inline]
    pub fn pseudo_header(&self) -> PseudoHeader {
        PseudoHeader::V4 {
            src: self.src_addr(),
            dst: self.dst_addr(),
        }
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer. They leave the header checksum stale: call
/// [`Packet::fill_checksum`] last (or patch it with [`checksum::update`]).
impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Set the version nibble (the low 4 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        put_masked_u8(self.buffer.as_mut(), field::VER_IHL, 0xf0, value << 4);
    }

    /// Set the header length in bytes (a multiple of 4, at most 60; stored as IHL).
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        put_masked_u8(
            self.buffer.as_mut(),
            field::VER_IHL,
            0x0f,
            (value / 4) as u8,
        );
    }

    /// Set the differentiated services code point (the low 6 bits of `value`).
    #[inline]
    pub fn set_dscp(&mut self, value: u8) {
        put_masked_u8(self.buffer.as_mut(), field::DSCP_ECN, 0xfc, value << 2);
    }

    /// Set the ECN bits (the low 2 bits of `value`).
    #[inline]
    pub fn set_ecn(&mut self, value: u8) {
        put_masked_u8(self.buffer.as_mut(), field::DSCP_ECN, 0x03, value);
    }

    setters! {
        /// Set the total length.
        set_total_len(u16) at field::LENGTH.start;
        /// Set the identification.
        set_ident(u16) at field::IDENT.start;
        /// Set the time to live.
        set_ttl(u8) at field::TTL;
        /// Set the protocol.
        set_protocol(IpProtocol as u8) at field::PROTOCOL;
        /// Set the header checksum field.
        set_checksum(u16) at field::CHECKSUM.start;
        /// Set the source address.
        set_src_addr(Address) at field::SRC_ADDR.start;
        /// Set the destination address.
        set_dst_addr(Address) at field::DST_ADDR.start;
    }

    #[inline]
    fn set_flags_offset(&mut self, mask: u16, bits: u16) {
        let value = self.flags_offset() & !mask | bits & mask;
        put_be16(self.buffer.as_mut(), field::FLG_OFF.start, value);
    }

    /// Set the don't-fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        self.set_flags_offset(FLAG_DF, if value { FLAG_DF } else { 0 });
    }

    /// Set the more-fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        self.set_flags_offset(FLAG_MF, if value { FLAG_MF } else { 0 });
    }

    /// Set the fragment offset in bytes (a multiple of 8; the low 3 bits are dropped).
    #[inline]
    pub fn set_frag_offset(&mut self, value: u16) {
        self.set_flags_offset(OFFSET_MASK, value >> 3);
    }

    /// Compute the header checksum (options included) and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header = slice(self.buffer.as_ref(), 0, self.header_len());
        let value = checksum::compute(header);
        self.set_checksum(value);
    }

    /// Raw options bytes, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        slice_mut(self.buffer.as_mut(), field::OPTIONS, end)
    }

    /// Data after the header up to the total length, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len() as usize);
        slice_mut(self.buffer.as_mut(), start, end)
    }
}

/// An IPv4 header. [`Repr::parse`] accepts options and skips them; [`Repr::emit`] writes a
/// 20-byte header without options, with the header checksum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Address,
    /// Destination address.
    pub dst_addr: Address,
    /// Protocol of the payload.
    pub protocol: IpProtocol,
    /// Bytes after the header (the total length is 20 more).
    pub payload_len: usize,
    /// Time to live.
    pub ttl: u8,
    /// Identification.
    pub ident: u16,
    /// Differentiated services code point (6 bits).
    pub dscp: u8,
    /// ECN bits (2 bits).
    pub ecn: u8,
    /// Don't-fragment flag.
    pub dont_frag: bool,
    /// More-fragments flag.
    pub more_frags: bool,
    /// Fragment offset in bytes (a multiple of 8, at most 65528).
    pub frag_offset: u16,
}

impl Repr {
    /// A header with TTL 64, identification 0, no DSCP/ECN, not a fragment, DF clear.
    #[inline]
    pub const fn new(
        src_addr: Address,
        dst_addr: Address,
        protocol: IpProtocol,
        payload_len: usize,
    ) -> Repr {
        Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl: 64,
            ident: 0,
            dscp: 0,
            ecn: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
        }
    }

    /// Read a checked view (options skipped, checksum not verified).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ReprError> {
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: packet.payload().len(),
            ttl: packet.ttl(),
            ident: packet.ident(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
        })
    }

    /// Bytes of header [`Self::emit`] writes: 20.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload: the total length.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// The pseudo-header of the upper layer.
    #[inline]
    pub const fn pseudo_header(&self) -> PseudoHeader {
        PseudoHeader::V4 {
            src: self.src_addr,
            dst: self.dst_addr,
        }
    }

    /// Write the header, checksum included, at the start of `buf` (the payload is the
    /// caller's, after it); returns [`Self::header_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ReprError> {
        check_room(buf, HEADER_LEN)?;
        let total_len = len16(self.buffer_len())?;
        let mut packet = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_dscp(self.dscp);
        packet.set_ecn(self.ecn);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        put_be16(packet.buffer, field::FLG_OFF.start, 0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(HEADER_LEN)
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
    fn setters_and_repr() {
        let mut buf = HDR.to_vec();
        buf.extend_from_slice(&[1, 2, 3, 4]);
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_ttl(1);
        p.set_dont_frag(true);
        p.set_more_frags(false);
        p.set_frag_offset(0);
        p.set_src_addr([192, 0, 2, 1]);
        p.options_mut()[1] = 4;
        p.payload_mut()[0] = 9;
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.dont_frag() && !p.is_fragment());
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(repr.payload_len, 4);
        assert_eq!(
            (repr.ttl, repr.dscp, repr.src_addr),
            (1, 46, [192, 0, 2, 1])
        );
        // Emitting drops the options: a 20-byte header, same fields.
        let mut out = vec![0u8; repr.buffer_len()];
        assert_eq!(repr.emit(&mut out), Ok(20));
        let q = Packet::new_checked(&out[..]).unwrap();
        assert!(q.verify_checksum());
        assert_eq!(Repr::parse(&q), Ok(repr));
        let long = Repr::new([0; 4], [0; 4], IpProtocol::Udp, 65516);
        assert_eq!(long.emit(&mut out), Err(ReprError::TooLong { len: 65536 }));
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
