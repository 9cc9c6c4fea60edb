//! The per-packet metadata record and the [`parse`] entry point.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::bytes::{array_at, be16_at, slice, tail, u8_at};
use crate::ethernet::{self, ethertype, EtherType};
use crate::ip::{ipv4_mapped, protocol, IpProtocol};
use crate::tcp::TcpFlags;
use crate::{arp, icmp, icmpv6, ipv4, ipv6, tcp, udp, vlan, ParseError};

/// Network-layer kind, derived from the innermost EtherType.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum L3 {
    /// Any other EtherType: switched without inspection.
    Other = 0,
    /// IPv4.
    Ipv4 = 1,
    /// IPv6.
    Ipv6 = 2,
    /// ARP: switched, and checked by the guard.
    Arp = 3,
}

const MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

const FRAG_IS_FRAGMENT: u16 = 0x0001;
const FRAG_MORE: u16 = 0x0002;
const FRAG_OFFSET_MASK: u16 = 0xfff8;

const VLAN_VID_MASK: u16 = 0x0fff;
const VLAN_TAGGED: u16 = 0x1000;
const VLAN_DOUBLE: u16 = 0x2000;

/// What [`parse`] learnt about one frame: 64 bytes, one cache line's worth, `Copy`.
///
/// Conventions:
/// - **Addresses** are 16 bytes; IPv4 addresses are stored IPv4-mapped (`::ffff:a.b.c.d`,
///   see [`ipv4_mapped`]), and [`Meta::l3`] tells IPv4 from IPv6. For Ethernet/IPv4 ARP
///   they are the sender (`src_addr`) and target (`dst_addr`) protocol addresses; for other
///   frames they are zero.
/// - **Ports** are host order. TCP/UDP: the ports. ICMP/ICMPv6: `src_port` is
///   `type << 8 | code`, and `dst_port` the identifier for query messages that have one
///   (echo, and for ICMPv4 timestamp/information/address mask), else 0. Zero for other
///   protocols, for non-IP frames and for non-first fragments (which carry no L4 header).
/// - **Offsets** are from the start of the frame. `l4_offset` is where the upper-layer
///   header starts (after IPv4 options or IPv6 extension headers); for a non-first fragment
///   it is where the fragment data starts; 0 for non-IP frames.
/// - **`payload_len`** is the number of bytes after the L4 header that this packet carries
///   (TCP/ICMP: up to the IP length; UDP: up to the UDP length, or the IP length for a first
///   fragment; other protocols and non-first fragments: everything after `l4_offset` up to
///   the IP length). For ARP it is the ARP packet length; for other frames, the bytes after
///   the Ethernet/VLAN headers (saturated at 65535). Ethernet padding is never counted.
/// - **VLAN**: [`Meta::vlan`] is the outermost tag's VID (the S-tag for QinQ), `None` if
///   untagged; a priority-tagged frame gives `Some(0)`. [`Meta::inner_vlan`] reads a QinQ
///   C-tag from the frame.
/// - **Fragments**: `frag_id` is the IPv4 identification (always recorded) or the IPv6
///   Fragment header identification (0 without one). An IPv6 "atomic fragment" (offset 0,
///   M clear) is not a fragment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Meta {
    /// Source IP address (IPv4-mapped for IPv4 and ARP).
    pub src_addr: [u8; 16],
    /// Destination IP address (IPv4-mapped for IPv4 and ARP).
    pub dst_addr: [u8; 16],
    /// IPv4 identification, or IPv6 fragment identification.
    pub frag_id: u32,
    /// Destination MAC address.
    pub dst_mac: [u8; 6],
    /// Source MAC address.
    pub src_mac: [u8; 6],
    /// Innermost EtherType (after any VLAN tags), host order.
    pub ethertype: u16,
    /// Offset of the L4 header (see the type docs).
    pub l4_offset: u16,
    /// Source port, or ICMP `type << 8 | code`.
    pub src_port: u16,
    /// Destination port, or ICMP identifier.
    pub dst_port: u16,
    /// L4 payload bytes carried by this packet (see the type docs).
    pub payload_len: u16,
    /// Fragment offset in bytes | `FRAG_MORE` | `FRAG_IS_FRAGMENT` (offsets are multiples
    /// of 8, so the low three bits are free).
    frag: u16,
    /// Outer VID | `VLAN_TAGGED` | `VLAN_DOUBLE`.
    vlan: u16,
    /// Upper-layer protocol (after IPv6 extension headers); 0 for non-IP.
    pub ip_proto: u8,
    /// TCP flags; empty for other protocols.
    pub tcp_flags: TcpFlags,
}

const _: () = assert!(core::mem::size_of::<Meta>() == 64);

impl Meta {
    /// Network-layer kind.
    #[inline]
    pub fn l3(&self) -> L3 {
        match self.ethertype {
            ethertype::IPV4 => L3::Ipv4,
            ethertype::IPV6 => L3::Ipv6,
            ethertype::ARP => L3::Arp,
            _ => L3::Other,
        }
    }

    /// True for IPv4 and IPv6.
    #[inline]
    pub fn is_ip(&self) -> bool {
        matches!(self.l3(), L3::Ipv4 | L3::Ipv6)
    }

    /// Innermost EtherType as an enum.
    #[inline]
    pub fn ether_type(&self) -> EtherType {
        self.ethertype.into()
    }

    /// Upper-layer protocol as an enum.
    #[inline]
    pub fn ip_protocol(&self) -> IpProtocol {
        self.ip_proto.into()
    }

    /// Number of VLAN tags (0, 1 or 2).
    #[inline]
    pub fn vlan_tags(&self) -> usize {
        (self.vlan & VLAN_TAGGED != 0) as usize + (self.vlan & VLAN_DOUBLE != 0) as usize
    }

    /// Offset of the L3 header: 14, 18 (one tag) or 22 (QinQ).
    #[inline]
    pub fn l3_offset(&self) -> usize {
        ethernet::HEADER_LEN + vlan::HEADER_LEN * self.vlan_tags()
    }

    /// VID of the outermost VLAN tag, `None` if untagged.
    #[inline]
    pub fn vlan(&self) -> Option<u16> {
        if self.vlan & VLAN_TAGGED != 0 {
            Some(self.vlan & VLAN_VID_MASK)
        } else {
            None
        }
    }

    /// VID of the inner (C-) tag of a QinQ frame, read from `frame` (the one parsed).
    #[inline]
    pub fn inner_vlan(&self, frame: &[u8]) -> Option<u16> {
        if self.vlan & VLAN_DOUBLE != 0 {
            Some(be16_at(frame, ethernet::HEADER_LEN + vlan::HEADER_LEN) & VLAN_VID_MASK)
        } else {
            None
        }
    }

    /// True for any IP fragment (MF set or non-zero offset).
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.frag & FRAG_IS_FRAGMENT != 0
    }

    /// True for the fragment at offset 0, the only one with an L4 header.
    #[inline]
    pub fn is_first_fragment(&self) -> bool {
        self.is_fragment() && self.frag_offset() == 0
    }

    /// True for a fragment at a non-zero offset: no L4 header, ports are 0.
    #[inline]
    pub fn is_later_fragment(&self) -> bool {
        self.is_fragment() && self.frag_offset() != 0
    }

    /// More-fragments flag.
    #[inline]
    pub fn more_fragments(&self) -> bool {
        self.frag & FRAG_MORE != 0
    }

    /// Fragment offset in bytes (0 if not a fragment).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        self.frag & FRAG_OFFSET_MASK
    }

    /// True if an L4 header was parsed at `l4_offset`: an IP packet that is not a
    /// non-first fragment.
    #[inline]
    pub fn has_l4_header(&self) -> bool {
        self.is_ip() && !self.is_later_fragment()
    }

    /// True if `src_port`/`dst_port` are TCP or UDP ports.
    #[inline]
    pub fn has_ports(&self) -> bool {
        self.has_l4_header() && matches!(self.ip_proto, protocol::TCP | protocol::UDP)
    }

    /// True for ICMP over IPv4 or ICMPv6 over IPv6 with its header parsed.
    #[inline]
    pub fn is_icmp(&self) -> bool {
        self.has_l4_header()
            && match self.l3() {
                L3::Ipv4 => self.ip_proto == protocol::ICMP,
                L3::Ipv6 => self.ip_proto == protocol::ICMPV6,
                _ => false,
            }
    }

    /// ICMP/ICMPv6 message type.
    #[inline]
    pub fn icmp_type(&self) -> Option<u8> {
        self.is_icmp().then_some((self.src_port >> 8) as u8)
    }

    /// ICMP/ICMPv6 code.
    #[inline]
    pub fn icmp_code(&self) -> Option<u8> {
        self.is_icmp().then_some(self.src_port as u8)
    }

    /// For an ICMP/ICMPv6 error message, the frame offset of the embedded (inner) IP
    /// header, i.e. `l4_offset + 8`. The inner packet may be cut short by its sender.
    #[inline]
    pub fn icmp_inner_offset(&self) -> Option<usize> {
        let msg_type = self.icmp_type()?;
        let is_error = match self.l3() {
            L3::Ipv4 => icmp::is_error(msg_type),
            _ => icmpv6::is_error(msg_type),
        };
        is_error.then_some(self.l4_offset as usize + icmp::HEADER_LEN)
    }

    /// Source IP address (`None` for non-IP frames other than Ethernet/IPv4 ARP).
    #[inline]
    pub fn src_ip(&self) -> Option<IpAddr> {
        self.ip(&self.src_addr)
    }

    /// Destination IP address (`None` for non-IP frames other than Ethernet/IPv4 ARP).
    #[inline]
    pub fn dst_ip(&self) -> Option<IpAddr> {
        self.ip(&self.dst_addr)
    }

    fn ip(&self, addr: &[u8; 16]) -> Option<IpAddr> {
        match self.l3() {
            L3::Ipv6 => Some(IpAddr::V6(Ipv6Addr::from(*addr))),
            L3::Ipv4 => Some(IpAddr::V4(Ipv4Addr::from(array_at::<4>(addr, 12)))),
            // parse fills ARP addresses (IPv4-mapped) only for Ethernet/IPv4 ARP.
            L3::Arp if array_at::<12>(addr, 0) == MAPPED_PREFIX => {
                Some(IpAddr::V4(Ipv4Addr::from(array_at::<4>(addr, 12))))
            }
            _ => None,
        }
    }

    /// Length of the L4 header at `l4_offset` in `frame` (the frame that was parsed): TCP
    /// data offset * 4, 8 for UDP and ICMP, 0 otherwise or if there is no L4 header.
    #[inline]
    pub fn l4_header_len(&self, frame: &[u8]) -> usize {
        if !self.has_l4_header() {
            return 0;
        }
        match self.ip_proto {
            protocol::TCP => {
                (u8_at(frame, self.l4_offset as usize + tcp::field::DATA_OFF) >> 4) as usize * 4
            }
            protocol::UDP => udp::HEADER_LEN,
            _ if self.is_icmp() => icmp::HEADER_LEN,
            _ => 0,
        }
    }

    /// The `payload_len` bytes of L4 payload in `frame` (the frame that was parsed); for
    /// non-IP frames, the bytes after the Ethernet/VLAN headers (ARP: the ARP packet).
    #[inline]
    pub fn payload<'a>(&self, frame: &'a [u8]) -> &'a [u8] {
        let start = if self.is_ip() {
            self.l4_offset as usize + self.l4_header_len(frame)
        } else {
            self.l3_offset()
        };
        slice(frame, start, start + self.payload_len as usize)
    }
}

/// Parse one Ethernet frame (no FCS) into a [`Meta`], or say why it must be dropped.
///
/// Never panics, never reads outside `frame`, never allocates, does not verify checksums.
/// Non-IP frames (ARP, unknown EtherTypes) parse successfully; a frame longer than the IP
/// length (Ethernet padding) is fine, a shorter one is an error.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Meta, ParseError> {
    parse_frame(frame)
}

/// Check one frame exactly as [`parse`] does (same errors), keeping nothing: for paths
/// whose decision does not depend on what the packet holds (a wire pair without a
/// firewall). The compiler drops the stores to the [`Meta`] from this copy.
#[inline]
pub fn validate(frame: &[u8]) -> Result<(), ParseError> {
    parse_frame(frame).map(|_| ())
}

#[inline(always)]
fn parse_frame(frame: &[u8]) -> Result<Meta, ParseError> {
    let eth = ethernet::Packet::new_checked(frame)?;
    let mut meta = Meta {
        dst_mac: eth.dst_addr(),
        src_mac: eth.src_addr(),
        ..Meta::default()
    };
    let mut ether_type = eth.ethertype_raw();
    let mut l3 = ethernet::HEADER_LEN;
    if ether_type == ethertype::VLAN || ether_type == ethertype::QINQ {
        let outer = vlan::Packet::new_checked(tail(frame, l3))?;
        meta.vlan = outer.vid() | VLAN_TAGGED;
        ether_type = outer.ethertype_raw();
        l3 += vlan::HEADER_LEN;
        if ether_type == ethertype::VLAN {
            let inner = vlan::Packet::new_checked(tail(frame, l3))?;
            meta.vlan |= VLAN_DOUBLE;
            ether_type = inner.ethertype_raw();
            l3 += vlan::HEADER_LEN;
        }
        if ether_type == ethertype::VLAN || ether_type == ethertype::QINQ {
            return Err(ParseError::VlanTooManyTags);
        }
    }
    meta.ethertype = ether_type;
    let rest = tail(frame, l3);
    match ether_type {
        ethertype::IPV4 => parse_ipv4(&mut meta, rest, l3)?,
        ethertype::IPV6 => parse_ipv6(&mut meta, rest, l3)?,
        ethertype::ARP => parse_arp(&mut meta, rest)?,
        _ => meta.payload_len = rest.len().min(u16::MAX as usize) as u16,
    }
    Ok(meta)
}

#[inline(always)]
fn parse_arp(meta: &mut Meta, packet: &[u8]) -> Result<(), ParseError> {
    let arp = arp::Packet::new_checked(packet)?;
    // At most 8 + 2 * (255 + 255) = 1028: fits.
    meta.payload_len = arp.packet_len() as u16;
    if arp.is_ethernet_ipv4() {
        meta.src_addr = ipv4_mapped(arp.ipv4_sender());
        meta.dst_addr = ipv4_mapped(arp.ipv4_target());
    }
    Ok(())
}

#[inline(always)]
fn parse_ipv4(meta: &mut Meta, packet: &[u8], l3: usize) -> Result<(), ParseError> {
    let ip = ipv4::Packet::new_checked(packet)?;
    meta.src_addr = ipv4_mapped(ip.src_addr());
    meta.dst_addr = ipv4_mapped(ip.dst_addr());
    meta.frag_id = ip.ident() as u32;
    let proto = ip.protocol_raw();
    meta.ip_proto = proto;
    let header_len = ip.header_len();
    // l3 <= 22 and header_len <= 60: fits.
    meta.l4_offset = (l3 + header_len) as u16;
    // Bounded by the 16-bit total length, so every length below fits in u16.
    let segment = ip.payload();
    let mut first_fragment = false;
    if ip.is_fragment() {
        let offset = ip.frag_offset();
        let more = ip.more_frags();
        check_fragment(
            offset,
            segment.len(),
            more,
            proto,
            u16::MAX as usize - header_len,
        )?;
        meta.frag = offset | FRAG_IS_FRAGMENT | if more { FRAG_MORE } else { 0 };
        if offset != 0 {
            meta.payload_len = segment.len() as u16;
            return Ok(());
        }
        first_fragment = true;
    }
    parse_l4::<false>(meta, segment, proto, first_fragment)
}

#[inline(always)]
fn parse_ipv6(meta: &mut Meta, packet: &[u8], l3: usize) -> Result<(), ParseError> {
    let ip = ipv6::Packet::new_checked(packet)?;
    meta.src_addr = ip.src_addr();
    meta.dst_addr = ip.dst_addr();
    let payload = ip.payload();
    let chain = ipv6::walk_ext_headers(ip.next_header_raw(), payload)?;
    let proto = chain.upper_layer;
    meta.ip_proto = proto;
    // At most 8 extension headers of at most 2048 bytes each: l4_offset fits in u16.
    meta.l4_offset = (l3 + ipv6::HEADER_LEN + chain.upper_offset) as u16;
    let segment = tail(payload, chain.upper_offset);
    let mut first_fragment = false;
    if let Some(fragment) = chain.fragment {
        meta.frag_id = fragment.ident;
        if fragment.offset != 0 || fragment.more {
            let data_len = payload.len().saturating_sub(fragment.data_offset);
            check_fragment(
                fragment.offset,
                data_len,
                fragment.more,
                proto,
                u16::MAX as usize,
            )?;
            meta.frag =
                fragment.offset | FRAG_IS_FRAGMENT | if fragment.more { FRAG_MORE } else { 0 };
            if fragment.offset != 0 {
                meta.payload_len = segment.len() as u16;
                return Ok(());
            }
            first_fragment = true;
        }
    }
    parse_l4::<true>(meta, segment, proto, first_fragment)
}

/// Fragment sanity shared by IPv4 and IPv6: non-last fragments carry a multiple of 8
/// bytes, the reassembled packet stays within `limit`, and no TCP fragment sits at offset 8.
#[inline(always)]
fn check_fragment(
    offset: u16,
    data_len: usize,
    more: bool,
    proto: u8,
    limit: usize,
) -> Result<(), ParseError> {
    if (more && !data_len.is_multiple_of(8)) || offset as usize + data_len > limit {
        return Err(ParseError::FragmentBadLength);
    }
    if offset == 8 && proto == protocol::TCP {
        return Err(ParseError::FragmentBadOffset);
    }
    Ok(())
}

/// Parse the upper-layer header of a non-fragment or first fragment. `segment` ends at the
/// IP length. In a first fragment a header cut short is [`ParseError::FragmentTooSmall`].
#[inline(always)]
fn parse_l4<const V6: bool>(
    meta: &mut Meta,
    segment: &[u8],
    proto: u8,
    first_fragment: bool,
) -> Result<(), ParseError> {
    let cut_short = |error| {
        if first_fragment {
            ParseError::FragmentTooSmall
        } else {
            error
        }
    };
    match proto {
        protocol::TCP => {
            let tcp = tcp::Packet::new_checked(segment).map_err(cut_short)?;
            meta.src_port = tcp.src_port();
            meta.dst_port = tcp.dst_port();
            meta.tcp_flags = tcp.flags();
            meta.payload_len = segment.len().saturating_sub(tcp.header_len()) as u16;
        }
        protocol::UDP => {
            if segment.len() < udp::HEADER_LEN {
                return Err(cut_short(ParseError::UdpTruncated));
            }
            let udp = udp::Packet::new_unchecked(segment);
            let udp_len = udp.len() as usize;
            // A first fragment carries only the start of the datagram the length describes.
            if udp_len < udp::HEADER_LEN || (!first_fragment && udp_len > segment.len()) {
                return Err(ParseError::UdpBadLength);
            }
            meta.src_port = udp.src_port();
            meta.dst_port = udp.dst_port();
            let end = if first_fragment {
                segment.len()
            } else {
                udp_len
            };
            meta.payload_len = end.saturating_sub(udp::HEADER_LEN) as u16;
        }
        protocol::ICMP if !V6 => {
            let icmp = icmp::Packet::new_checked(segment).map_err(cut_short)?;
            let msg_type = icmp.msg_type_raw();
            meta.src_port = (msg_type as u16) << 8 | icmp.code() as u16;
            if icmp::has_ident(msg_type) {
                meta.dst_port = icmp.echo_ident();
            }
            meta.payload_len = segment.len().saturating_sub(icmp::HEADER_LEN) as u16;
        }
        protocol::ICMPV6 if V6 => {
            let icmp = icmpv6::Packet::new_checked(segment).map_err(cut_short)?;
            let msg_type = icmp.msg_type_raw();
            meta.src_port = (msg_type as u16) << 8 | icmp.code() as u16;
            if icmpv6::has_ident(msg_type) {
                meta.dst_port = icmp.echo_ident();
            }
            meta.payload_len = segment.len().saturating_sub(icmpv6::HEADER_LEN) as u16;
        }
        _ => meta.payload_len = segment.len() as u16,
    }
    Ok(())
}
