//! IPv6 fixed header (RFC 8200) and a bounded walk over its extension headers.

use crate::bytes::{
    array_at, be16_at, be32_at, put_be16, put_be32, setters, slice, slice_mut, tail, u8_at,
};
use crate::checksum::PseudoHeader;
use crate::error::{check_room, len16, ReprError};
use crate::ip::{protocol, IpProtocol};
use crate::ParseError;

/// Byte ranges of the fixed header.
pub mod field {
    use core::ops::{Range, RangeFrom};
    /// Version (4 bits), traffic class (8 bits), flow label (20 bits).
    pub const VER_TC_FLOW: Range<usize> = 0..4;
    /// Payload length (everything after the fixed header).
    pub const LENGTH: Range<usize> = 4..6;
    /// Next header.
    pub const NXT_HDR: usize = 6;
    /// Hop limit.
    pub const HOP_LIMIT: usize = 7;
    /// Source address.
    pub const SRC_ADDR: Range<usize> = 8..24;
    /// Destination address.
    pub const DST_ADDR: Range<usize> = 24..40;
    /// Payload (extension headers and upper layer).
    pub const PAYLOAD: RangeFrom<usize> = 40..;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Most extension headers [`walk_ext_headers`] accepts before giving up with
/// [`ParseError::Ipv6TooManyExtHeaders`]; bounds the per-packet work.
pub const MAX_EXT_HEADERS: usize = 8;

/// An IPv6 address.
pub type Address = [u8; 16];

/// Read-only view of an IPv6 packet.
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

    /// Wrap after checking version and payload length against the buffer. A longer buffer
    /// is fine (link-layer padding); use [`Self::payload`]. Jumbograms (payload length 0
    /// with a Jumbo option) are not supported: their payload is taken as empty.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::Ipv6Truncated);
        }
        if packet.version() != 6 {
            return Err(ParseError::Ipv6BadVersion);
        }
        if HEADER_LEN + packet.payload_len() as usize > len {
            return Err(ParseError::Ipv6BadPayloadLength);
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
        u8_at(self.buffer.as_ref(), 0) >> 4
    }

    /// Traffic class.
    #[inline]
    pub fn traffic_class(&self) -> u8 {
        (be16_at(self.buffer.as_ref(), 0) >> 4) as u8
    }

    /// Flow label (20 bits).
    #[inline]
    pub fn flow_label(&self) -> u32 {
        be32_at(self.buffer.as_ref(), 0) & 0x000f_ffff
    }

    /// Payload length.
    #[inline]
    pub fn payload_len(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::LENGTH.start)
    }

    /// Raw next header.
    #[inline]
    pub fn next_header_raw(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::NXT_HDR)
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        self.next_header_raw().into()
    }

    /// Hop limit.
    #[inline]
    pub fn hop_limit(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::HOP_LIMIT)
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

    /// Bytes after the fixed header, up to the payload length (padding excluded).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        slice(
            self.buffer.as_ref(),
            HEADER_LEN,
            HEADER_LEN + self.payload_len() as usize,
        )
    }
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// The pseudo-header of the packet's upper layer (with this destination: a Routing
    /// header's final destination is the caller's to substitute).
    #[inline]
    pub fn pseudo_header(&self) -> PseudoHeader {
        PseudoHeader::V6 {
            src: self.src_addr(),
            dst: self.dst_addr(),
        }
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer.
impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    #[inline]
    fn set_ver_tc_flow(&mut self, mask: u32, bits: u32) {
        let value = be32_at(self.buffer.as_ref(), 0) & !mask | bits & mask;
        put_be32(self.buffer.as_mut(), field::VER_TC_FLOW.start, value);
    }

    /// Set the version nibble (the low 4 bits of `value`).
    #[inline]
    pub fn set_version(&mut self, value: u8) {
        self.set_ver_tc_flow(0xf000_0000, (value as u32) << 28);
    }

    /// Set the traffic class.
    #[inline]
    pub fn set_traffic_class(&mut self, value: u8) {
        self.set_ver_tc_flow(0x0ff0_0000, (value as u32) << 20);
    }

    /// Set the flow label (the low 20 bits of `value`).
    #[inline]
    pub fn set_flow_label(&mut self, value: u32) {
        self.set_ver_tc_flow(0x000f_ffff, value);
    }

    setters! {
        /// Set the payload length.
        set_payload_len(u16) at field::LENGTH.start;
        /// Set the next header.
        set_next_header(IpProtocol as u8) at field::NXT_HDR;
        /// Set the hop limit.
        set_hop_limit(u8) at field::HOP_LIMIT;
        /// Set the source address.
        set_src_addr(Address) at field::SRC_ADDR.start;
        /// Set the destination address.
        set_dst_addr(Address) at field::DST_ADDR.start;
    }

    /// Bytes after the fixed header up to the payload length, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + self.payload_len() as usize;
        slice_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// The IPv6 fixed header. Extension headers are part of the payload; the builder
/// ([`crate::build`]) chains them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source address.
    pub src_addr: Address,
    /// Destination address.
    pub dst_addr: Address,
    /// Next header (the first extension header, or the upper layer).
    pub next_header: IpProtocol,
    /// Bytes after the fixed header.
    pub payload_len: usize,
    /// Hop limit.
    pub hop_limit: u8,
    /// Traffic class.
    pub traffic_class: u8,
    /// Flow label (20 bits).
    pub flow_label: u32,
}

impl Repr {
    /// A header with hop limit 64, traffic class 0 and flow label 0.
    #[inline]
    pub const fn new(
        src_addr: Address,
        dst_addr: Address,
        next_header: IpProtocol,
        payload_len: usize,
    ) -> Repr {
        Repr {
            src_addr,
            dst_addr,
            next_header,
            payload_len,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
    }

    /// Read a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ReprError> {
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len() as usize,
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// Bytes of header [`Self::emit`] writes: 40.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus payload.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// The pseudo-header of the upper layer.
    #[inline]
    pub const fn pseudo_header(&self) -> PseudoHeader {
        PseudoHeader::V6 {
            src: self.src_addr,
            dst: self.dst_addr,
        }
    }

    /// Write the fixed header at the start of `buf` (the payload is the caller's, after
    /// it); returns [`Self::header_len`]. Jumbograms are not supported.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ReprError> {
        check_room(buf, HEADER_LEN)?;
        let payload_len = len16(self.payload_len)?;
        let mut packet = Packet::new_unchecked(&mut buf[..HEADER_LEN]);
        packet.set_ver_tc_flow(!0, 6 << 28);
        packet.set_traffic_class(self.traffic_class);
        packet.set_flow_label(self.flow_label);
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        Ok(HEADER_LEN)
    }
}

/// True for the next-header values [`walk_ext_headers`] steps over: Hop-by-Hop, Routing,
/// Fragment, Destination Options and AH. Everything else (including ESP, whose contents are
/// encrypted, and No Next Header) ends the walk as the upper-layer protocol.
#[inline]
pub const fn is_extension_header(next_header: u8) -> bool {
    matches!(
        next_header,
        protocol::HOPOPT
            | protocol::IPV6_ROUTE
            | protocol::IPV6_FRAG
            | protocol::IPV6_OPTS
            | protocol::AH
    )
}

/// Byte ranges of the generic extension header prefix and of the Fragment header.
pub mod ext_field {
    use core::ops::Range;
    /// Next header (every extension header).
    pub const NXT_HDR: usize = 0;
    /// Length (units depend on the header type; not used by Fragment).
    pub const LENGTH: usize = 1;
    /// Fragment header: offset (13 bits, 8-byte units), 2 reserved bits, M flag.
    pub const FRAG_OFF_M: Range<usize> = 2..4;
    /// Fragment header: identification.
    pub const FRAG_IDENT: Range<usize> = 4..8;
}

/// Length of the Fragment header, and the minimum length of any extension header.
pub const FRAGMENT_HEADER_LEN: usize = 8;

/// Read-only view of one extension header of type `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    kind: u8,
}

impl<T: AsRef<[u8]>> ExtHeader<T> {
    /// Wrap without checking; getters on missing bytes return zero / empty.
    #[inline]
    pub const fn new_unchecked(kind: u8, buffer: T) -> Self {
        Self { buffer, kind }
    }

    /// Wrap after checking that the whole header (per its length field) is present.
    #[inline]
    pub fn new_checked(kind: u8, buffer: T) -> Result<Self, ParseError> {
        let header = Self { buffer, kind };
        let len = header.buffer.as_ref().len();
        if len < FRAGMENT_HEADER_LEN || len < header.header_len() {
            return Err(ParseError::Ipv6ExtHeaderTruncated);
        }
        Ok(header)
    }

    /// Raw next header.
    #[inline]
    pub fn next_header_raw(&self) -> u8 {
        u8_at(self.buffer.as_ref(), ext_field::NXT_HDR)
    }

    /// Next header.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        self.next_header_raw().into()
    }

    /// Total length in bytes: 8 for Fragment, (len+2)*4 for AH (RFC 4302),
    /// (len+1)*8 for the others.
    #[inline]
    pub fn header_len(&self) -> usize {
        let len = u8_at(self.buffer.as_ref(), ext_field::LENGTH) as usize;
        match self.kind {
            protocol::IPV6_FRAG => FRAGMENT_HEADER_LEN,
            protocol::AH => (len + 2) * 4,
            _ => (len + 1) * 8,
        }
    }

    /// Header contents after the 2-byte prefix.
    #[inline]
    pub fn data(&self) -> &[u8] {
        slice(self.buffer.as_ref(), 2, self.header_len())
    }

    /// Fragment header: offset in bytes (meaningful only for kind 44).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        be16_at(self.buffer.as_ref(), ext_field::FRAG_OFF_M.start) & 0xfff8
    }

    /// Fragment header: more-fragments flag (meaningful only for kind 44).
    #[inline]
    pub fn more_frags(&self) -> bool {
        be16_at(self.buffer.as_ref(), ext_field::FRAG_OFF_M.start) & 1 != 0
    }

    /// Fragment header: identification (meaningful only for kind 44).
    #[inline]
    pub fn frag_ident(&self) -> u32 {
        be32_at(self.buffer.as_ref(), ext_field::FRAG_IDENT.start)
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer.
impl<T: AsRef<[u8]> + AsMut<[u8]>> ExtHeader<T> {
    setters! {
        /// Set the next header.
        set_next_header(IpProtocol as u8) at ext_field::NXT_HDR;
        /// Set the raw length byte (units per [`Self::header_len`]; unused by Fragment).
        set_length_raw(u8) at ext_field::LENGTH;
        /// Fragment header: set the identification.
        set_frag_ident(u32) at ext_field::FRAG_IDENT.start;
    }

    /// Fragment header: set offset (bytes, a multiple of 8) and more-fragments flag; the
    /// reserved bits are cleared.
    #[inline]
    pub fn set_frag_offset_more(&mut self, offset: u16, more: bool) {
        let value = offset & 0xfff8 | more as u16;
        put_be16(self.buffer.as_mut(), ext_field::FRAG_OFF_M.start, value);
    }

    /// Header contents after the 2-byte prefix, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        slice_mut(self.buffer.as_mut(), 2, end)
    }
}

/// A Fragment extension header (RFC 8200 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragmentRepr {
    /// Next header of the fragmentable part.
    pub next_header: IpProtocol,
    /// Offset in bytes (a multiple of 8).
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
}

impl FragmentRepr {
    /// Read a checked view of kind 44.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(header: &ExtHeader<T>) -> FragmentRepr {
        FragmentRepr {
            next_header: header.next_header(),
            offset: header.frag_offset(),
            more: header.more_frags(),
            ident: header.frag_ident(),
        }
    }

    /// Bytes [`Self::emit`] writes: 8.
    #[inline]
    pub const fn header_len(&self) -> usize {
        FRAGMENT_HEADER_LEN
    }

    /// Write the header at the start of `buf`; returns 8.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ReprError> {
        check_room(buf, FRAGMENT_HEADER_LEN)?;
        let mut header = ExtHeader::new_unchecked(protocol::IPV6_FRAG, &mut *buf);
        header.set_next_header(self.next_header);
        header.set_length_raw(0);
        header.set_frag_offset_more(self.offset, self.more);
        header.set_frag_ident(self.ident);
        Ok(FRAGMENT_HEADER_LEN)
    }
}

/// What a Fragment header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fragment {
    /// Offset in bytes.
    pub offset: u16,
    /// More-fragments flag.
    pub more: bool,
    /// Identification.
    pub ident: u32,
    /// Offset of the fragmentable part (just after the Fragment header), relative to the
    /// start of the IPv6 payload.
    pub data_offset: usize,
}

/// Result of [`walk_ext_headers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ExtChain {
    /// The first next-header value that is not a walked extension header. For a non-first
    /// fragment it is the Fragment header's next header, whatever that is.
    pub upper_layer: u8,
    /// Offset of the upper-layer header relative to the start of the IPv6 payload.
    pub upper_offset: usize,
    /// Number of extension headers walked.
    pub count: u8,
    /// The Fragment header, if one was seen.
    pub fragment: Option<Fragment>,
}

/// Walk the extension headers of `payload` (the bytes after the fixed header, as bounded
/// by the payload length) starting from the fixed header's next header.
///
/// Rules: at most [`MAX_EXT_HEADERS`] headers; Hop-by-Hop only first and at most one
/// Fragment header ([`ParseError::Ipv6BadExtHeaderOrder`]); every header must fit
/// ([`ParseError::Ipv6ExtHeaderTruncated`], or [`ParseError::FragmentTooSmall`] once a
/// first fragment's Fragment header has been seen, as RFC 7112 requires the whole chain in
/// the first fragment). The walk stops after the Fragment header of a non-first fragment,
/// since what follows is opaque fragment data.
#[inline]
pub fn walk_ext_headers(first: u8, payload: &[u8]) -> Result<ExtChain, ParseError> {
    let mut chain = ExtChain {
        upper_layer: first,
        ..ExtChain::default()
    };
    let mut truncated = ParseError::Ipv6ExtHeaderTruncated;
    let mut pos = 0usize;
    let mut next = first;
    while is_extension_header(next) {
        match next {
            protocol::HOPOPT if chain.count != 0 => return Err(ParseError::Ipv6BadExtHeaderOrder),
            protocol::IPV6_FRAG if chain.fragment.is_some() => {
                return Err(ParseError::Ipv6BadExtHeaderOrder)
            }
            _ => {}
        }
        if chain.count as usize >= MAX_EXT_HEADERS {
            return Err(ParseError::Ipv6TooManyExtHeaders);
        }
        chain.count += 1;
        let header = ExtHeader::new_unchecked(next, tail(payload, pos));
        let rest = payload.len().saturating_sub(pos);
        let len = header.header_len();
        if rest < FRAGMENT_HEADER_LEN || rest < len {
            return Err(truncated);
        }
        pos += len;
        let kind = next;
        next = header.next_header_raw();
        if kind == protocol::IPV6_FRAG {
            let fragment = Fragment {
                offset: header.frag_offset(),
                more: header.more_frags(),
                ident: header.frag_ident(),
                data_offset: pos,
            };
            chain.fragment = Some(fragment);
            if fragment.offset != 0 {
                break;
            }
            if fragment.more {
                truncated = ParseError::FragmentTooSmall;
            }
        }
    }
    chain.upper_layer = next;
    chain.upper_offset = pos;
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_header() {
        let mut p = vec![0x6a, 0xb1, 0x23, 0x45, 0, 2, 59, 64];
        p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        p.extend_from_slice(&[0xaa, 0xbb, 0xcc]);
        let ip = Packet::new_checked(&p[..]).unwrap();
        assert_eq!(ip.traffic_class(), 0xab);
        assert_eq!(ip.flow_label(), 0x12345);
        assert_eq!(ip.payload_len(), 2);
        assert_eq!(ip.next_header(), IpProtocol::Ipv6NoNxt);
        assert_eq!(ip.hop_limit(), 64);
        assert_eq!(ip.src_addr()[15], 1);
        assert_eq!(ip.dst_addr()[15], 2);
        assert_eq!(ip.payload(), &[0xaa, 0xbb]);
        assert_eq!(
            Packet::new_checked(&p[..41]),
            Err(ParseError::Ipv6BadPayloadLength)
        );
        assert_eq!(
            Packet::new_checked(&p[..39]),
            Err(ParseError::Ipv6Truncated)
        );
        let repr = Repr::parse(&ip).unwrap();
        let mut out = [0u8; 42];
        assert_eq!(repr.emit(&mut out), Ok(40));
        out[40..].copy_from_slice(&p[40..42]);
        assert_eq!(out, p[..42]);
        let mut view = Packet::new_checked(&mut out[..]).unwrap();
        view.set_traffic_class(1);
        view.set_flow_label(0xfffff);
        view.set_hop_limit(1);
        view.payload_mut()[1] = 0;
        assert_eq!(
            (view.version(), view.traffic_class(), view.flow_label()),
            (6, 1, 0xfffff)
        );
        assert_eq!(view.payload(), &[0xaa, 0]);
        p[0] = 0x4a;
        assert_eq!(Packet::new_checked(&p[..]), Err(ParseError::Ipv6BadVersion));
    }

    #[test]
    fn fragment_repr() {
        let repr = FragmentRepr {
            next_header: IpProtocol::Udp,
            offset: 1448,
            more: true,
            ident: 0xdead_beef,
        };
        let mut out = [0xffu8; 8];
        assert_eq!(repr.emit(&mut out), Ok(8));
        assert_eq!(out, [17, 0, 0x05, 0xa9, 0xde, 0xad, 0xbe, 0xef]);
        let header = ExtHeader::new_checked(44, &out[..]).unwrap();
        assert_eq!(FragmentRepr::parse(&header), repr);
    }

    #[test]
    fn walk_lengths_per_kind() {
        // HBH (len 1 → 16 bytes) → AH (len 2 → 16 bytes) → Fragment (8) → TCP
        let mut p = vec![51, 1, 1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        p.extend_from_slice(&[44, 2, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 7]);
        let chain = walk_ext_headers(0, &p).unwrap();
        assert_eq!(chain.upper_layer, 6);
        assert_eq!(chain.upper_offset, 40);
        assert_eq!(chain.count, 3);
        assert_eq!(
            chain.fragment,
            Some(Fragment {
                offset: 0,
                more: false,
                ident: 7,
                data_offset: 40
            })
        );
        assert_eq!(
            walk_ext_headers(0, &p[..39]),
            Err(ParseError::Ipv6ExtHeaderTruncated)
        );
        assert_eq!(
            walk_ext_headers(0, &p[..7]),
            Err(ParseError::Ipv6ExtHeaderTruncated)
        );
        assert_eq!(walk_ext_headers(6, &[]).unwrap().upper_offset, 0);
        let h = ExtHeader::new_checked(0, &p[..16]).unwrap();
        assert_eq!(h.header_len(), 16);
        assert_eq!(h.next_header(), IpProtocol::Ah);
        assert_eq!(h.data().len(), 14);
    }
}
