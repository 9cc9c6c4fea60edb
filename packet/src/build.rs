//! Whole frames from `Repr`s: Ethernet (+ VLAN tags) + IPv4/IPv6 (+ extension headers,
//! fragments) + TCP/UDP/ICMP/ICMPv6 + payload, with every length and checksum computed.
//!
//! For tests, fuzz seeds, tools and the rare answers the dataplane builds (rejects), not
//! for the per-packet path: every frame is a fresh `Vec<u8>`. A [`Frame`] is a plain value
//! with public fields; the one-liners ([`udp_v4`], [`tcp_v6`], [`icmp_echo_v4`],
//! [`arp_request`], ...) fill in the usual defaults (MACs [`SRC_MAC`] → [`DST_MAC`], TTL
//! 64, no tag, full checksums, no padding) and the chained setters change them.
//!
//! ```
//! use rampart_packet::build::{self, Checksums};
//! use rampart_packet::{parse, TcpFlags};
//!
//! let syn = build::tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 443, TcpFlags::SYN, b"")
//!     .vlan(100)
//!     .with_tcp(|t| t.options.mss = Some(1460))
//!     .pad(60)
//!     .build()
//!     .unwrap();
//! let meta = parse(&syn).unwrap();
//! assert_eq!((meta.vlan(), meta.dst_port, meta.tcp_flags.syn()), (Some(100), 443, true));
//!
//! // Two fragments of a UDP datagram, as a guest sending with checksum offload would.
//! let parts = build::udp_v6([0xfd; 16], 5000, [0xfe; 16], 5001, &[7; 40])
//!     .ident(9)
//!     .checksums(Checksums::PseudoOnly)
//!     .fragments(32)
//!     .unwrap();
//! assert!(parse(&parts[1]).unwrap().is_later_fragment());
//! ```

use crate::error::ReprError;
use crate::ip::IpProtocol;
use crate::{arp, ethernet, icmp, icmpv6, ipv4, ipv6, tcp, udp, vlan, EtherType};

/// Default source MAC (locally administered), the one the hand-made test frames use.
pub const SRC_MAC: ethernet::Address = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC.
pub const DST_MAC: ethernet::Address = [0x02, 0, 0, 0, 0, 0x02];

/// How [`Frame::build`] fills the checksum fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Checksums {
    /// Every checksum right: what a sender without offloads puts on the wire.
    #[default]
    Full,
    /// IPv4 header checksum right; TCP/UDP/ICMPv6 fields hold only the pseudo-header sum,
    /// as a guest sending with `VIRTIO_NET_HDR_F_NEEDS_CSUM` (or an mbuf set for TX
    /// checksum offload) leaves them; ICMP over IPv4 has no pseudo-header and gets 0. See
    /// [`crate::checksum`].
    PseudoOnly,
    /// Every checksum field 0 (the hand-made test frames; the parser never looks).
    Zero,
}

/// The layer above IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// TCP header; the frame's payload is the segment data.
    Tcp(tcp::Repr),
    /// UDP header; the frame's payload is the datagram data.
    Udp(udp::Repr),
    /// ICMP (IPv4 only); the payload is echo data or the quoted packet.
    Icmp(icmp::Repr),
    /// ICMPv6 (IPv6 only); the payload is echo data, the quoted packet or ND options.
    Icmpv6(icmpv6::Repr),
    /// No header: the payload is the whole upper layer (ESP, a hand-made header, ...).
    Raw(IpProtocol),
}

impl Transport {
    /// The IP protocol number this transport goes under.
    pub const fn protocol(&self) -> IpProtocol {
        match self {
            Transport::Tcp(_) => IpProtocol::Tcp,
            Transport::Udp(_) => IpProtocol::Udp,
            Transport::Icmp(_) => IpProtocol::Icmp,
            Transport::Icmpv6(_) => IpProtocol::Icmpv6,
            Transport::Raw(protocol) => *protocol,
        }
    }

    const fn header_len(&self) -> usize {
        match self {
            Transport::Tcp(repr) => repr.header_len(),
            Transport::Udp(repr) => repr.header_len(),
            Transport::Icmp(repr) => repr.header_len(),
            Transport::Icmpv6(repr) => repr.header_len(),
            Transport::Raw(_) => 0,
        }
    }

    /// Offset of the checksum field in the transport header.
    const fn checksum_offset(&self) -> Option<usize> {
        match self {
            Transport::Tcp(_) => Some(tcp::field::CHECKSUM.start),
            Transport::Udp(_) => Some(udp::field::CHECKSUM.start),
            Transport::Icmp(_) | Transport::Icmpv6(_) => Some(icmp::field::CHECKSUM.start),
            Transport::Raw(_) => None,
        }
    }
}

/// An IPv6 extension header of the Hop-by-Hop / Routing / Destination Options form: next
/// header and length are filled in, `data` (the bytes after them) is zero-padded to a
/// multiple of 8 bytes in all (zero bytes are Pad1 options). AH is not supported, and the
/// transport checksum uses the fixed header's destination even after a Routing header.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtHeader {
    /// Its own type (`HopByHop`, `Ipv6Route`, `Ipv6Opts`).
    pub kind: IpProtocol,
    /// Contents after the 2-byte prefix.
    pub data: Vec<u8>,
}

/// What the Ethernet header carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    /// IPv4: `protocol` and `payload_len` of the header are set by the builder.
    Ipv4 {
        /// Header fields.
        ip: ipv4::Repr,
        /// Upper layer.
        transport: Transport,
    },
    /// IPv6: `next_header` and `payload_len` of the header are set by the builder.
    Ipv6 {
        /// Fixed header fields.
        ip: ipv6::Repr,
        /// Extension headers, in order, before the transport (and before the Fragment
        /// header [`Frame::fragments`] adds).
        ext_headers: Vec<ExtHeader>,
        /// Identification of the Fragment header [`Frame::fragments`] adds.
        frag_ident: u32,
        /// Upper layer.
        transport: Transport,
    },
    /// Ethernet/IPv4 ARP; the frame's payload, if any, follows it.
    Arp(arp::Repr),
    /// Any other EtherType: the frame's payload follows the Ethernet header.
    Other(EtherType),
}

/// A frame to build. The `ethertype` of `ethernet` is set from `network`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Addresses and tag.
    pub ethernet: ethernet::Repr,
    /// Network and transport layers.
    pub network: Network,
    /// Bytes after the innermost header.
    pub payload: Vec<u8>,
    /// Zero-pad the frame to at least this many bytes (60: the Ethernet minimum without
    /// FCS).
    pub min_len: usize,
    /// How checksum fields are filled.
    pub checksums: Checksums,
}

fn frame(network: Network, payload: &[u8]) -> Frame {
    Frame {
        ethernet: ethernet::Repr {
            src_addr: SRC_MAC,
            dst_addr: DST_MAC,
            outer_vlan: None,
            vlan: None,
            ethertype: EtherType::Unknown(0),
        },
        network,
        payload: payload.to_vec(),
        min_len: 0,
        checksums: Checksums::Full,
    }
}

/// An IPv4 packet carrying `transport` and `payload` (TTL 64, identification 0).
pub fn ipv4(src: ipv4::Address, dst: ipv4::Address, transport: Transport, payload: &[u8]) -> Frame {
    let ip = ipv4::Repr::new(src, dst, transport.protocol(), 0);
    frame(Network::Ipv4 { ip, transport }, payload)
}

/// An IPv6 packet carrying `transport` and `payload` (hop limit 64, no extension headers).
pub fn ipv6(src: ipv6::Address, dst: ipv6::Address, transport: Transport, payload: &[u8]) -> Frame {
    let ip = ipv6::Repr::new(src, dst, transport.protocol(), 0);
    let network = Network::Ipv6 {
        ip,
        ext_headers: Vec::new(),
        frag_ident: 0,
        transport,
    };
    frame(network, payload)
}

/// UDP over IPv4.
pub fn udp_v4(
    src: ipv4::Address,
    src_port: u16,
    dst: ipv4::Address,
    dst_port: u16,
    payload: &[u8],
) -> Frame {
    ipv4(
        src,
        dst,
        Transport::Udp(udp::Repr { src_port, dst_port }),
        payload,
    )
}

/// UDP over IPv6.
pub fn udp_v6(
    src: ipv6::Address,
    src_port: u16,
    dst: ipv6::Address,
    dst_port: u16,
    payload: &[u8],
) -> Frame {
    ipv6(
        src,
        dst,
        Transport::Udp(udp::Repr { src_port, dst_port }),
        payload,
    )
}

/// TCP over IPv4 with `flags` ([`crate::TcpFlags`] bits), sequence and acknowledgment 0,
/// window 65535, no options (see [`Frame::with_tcp`]).
pub fn tcp_v4(
    src: ipv4::Address,
    src_port: u16,
    dst: ipv4::Address,
    dst_port: u16,
    flags: u8,
    payload: &[u8],
) -> Frame {
    let tcp = tcp::Repr::new(src_port, dst_port, flags);
    ipv4(src, dst, Transport::Tcp(tcp), payload)
}

/// TCP over IPv6 (defaults as [`tcp_v4`]).
pub fn tcp_v6(
    src: ipv6::Address,
    src_port: u16,
    dst: ipv6::Address,
    dst_port: u16,
    flags: u8,
    payload: &[u8],
) -> Frame {
    let tcp = tcp::Repr::new(src_port, dst_port, flags);
    ipv6(src, dst, Transport::Tcp(tcp), payload)
}

/// Any ICMP message: `payload` is the echo data, or the quoted packet of an error (see
/// [`Frame::ip_packet`]).
pub fn icmp_v4(src: ipv4::Address, dst: ipv4::Address, repr: icmp::Repr, payload: &[u8]) -> Frame {
    ipv4(src, dst, Transport::Icmp(repr), payload)
}

/// ICMP echo request.
pub fn icmp_echo_v4(
    src: ipv4::Address,
    dst: ipv4::Address,
    ident: u16,
    seq_no: u16,
    payload: &[u8],
) -> Frame {
    icmp_v4(src, dst, icmp::Repr::EchoRequest { ident, seq_no }, payload)
}

/// Any ICMPv6 message: `payload` is the echo data, the quoted packet of an error, or ND
/// options (see [`icmpv6::link_layer_option`]).
pub fn icmpv6(src: ipv6::Address, dst: ipv6::Address, repr: icmpv6::Repr, payload: &[u8]) -> Frame {
    ipv6(src, dst, Transport::Icmpv6(repr), payload)
}

/// ICMPv6 echo request.
pub fn icmpv6_echo(
    src: ipv6::Address,
    dst: ipv6::Address,
    ident: u16,
    seq_no: u16,
    payload: &[u8],
) -> Frame {
    icmpv6(
        src,
        dst,
        icmpv6::Repr::EchoRequest { ident, seq_no },
        payload,
    )
}

/// ARP who-has `target_ip` tell `sender_ip`, broadcast from `sender_mac`.
pub fn arp_request(
    sender_mac: ethernet::Address,
    sender_ip: ipv4::Address,
    target_ip: ipv4::Address,
) -> Frame {
    let repr = arp::Repr {
        operation: arp::Operation::Request,
        source_hardware_addr: sender_mac,
        source_protocol_addr: sender_ip,
        target_hardware_addr: [0; 6],
        target_protocol_addr: target_ip,
    };
    frame(Network::Arp(repr), &[]).macs(sender_mac, [0xff; 6])
}

/// ARP `sender_ip` is-at `sender_mac`, sent to `target_mac`.
pub fn arp_reply(
    sender_mac: ethernet::Address,
    sender_ip: ipv4::Address,
    target_mac: ethernet::Address,
    target_ip: ipv4::Address,
) -> Frame {
    let repr = arp::Repr {
        operation: arp::Operation::Reply,
        source_hardware_addr: sender_mac,
        source_protocol_addr: sender_ip,
        target_hardware_addr: target_mac,
        target_protocol_addr: target_ip,
    };
    frame(Network::Arp(repr), &[]).macs(sender_mac, target_mac)
}

/// A frame of another EtherType (LLDP, ...) carrying `payload`.
pub fn raw(ethertype: EtherType, payload: &[u8]) -> Frame {
    frame(Network::Other(ethertype), payload)
}

impl Frame {
    /// Set the source and destination MACs.
    pub fn macs(mut self, src: ethernet::Address, dst: ethernet::Address) -> Frame {
        self.ethernet.src_addr = src;
        self.ethernet.dst_addr = dst;
        self
    }

    /// Add an 802.1Q tag with `vid` (PCP 0); set `ethernet.vlan` for other fields.
    pub fn vlan(mut self, vid: u16) -> Frame {
        self.ethernet.vlan = Some(vlan::Repr::new(vid));
        self
    }

    /// Add an 802.1ad S-tag with `outer_vid` around an 802.1Q C-tag with `inner_vid`
    /// (QinQ, PCP 0).
    pub fn qinq(mut self, outer_vid: u16, inner_vid: u16) -> Frame {
        self.ethernet.outer_vlan = Some(vlan::Repr::new(outer_vid));
        self.vlan(inner_vid)
    }

    /// Set the IPv4 TTL or the IPv6 hop limit.
    pub fn ttl(mut self, ttl: u8) -> Frame {
        match &mut self.network {
            Network::Ipv4 { ip, .. } => ip.ttl = ttl,
            Network::Ipv6 { ip, .. } => ip.hop_limit = ttl,
            Network::Arp(_) | Network::Other(_) => {}
        }
        self
    }

    /// Set the IPv4 identification (the low 16 bits) or the identification of the IPv6
    /// Fragment header [`Self::fragments`] adds.
    pub fn ident(mut self, ident: u32) -> Frame {
        match &mut self.network {
            Network::Ipv4 { ip, .. } => ip.ident = ident as u16,
            Network::Ipv6 { frag_ident, .. } => *frag_ident = ident,
            Network::Arp(_) | Network::Other(_) => {}
        }
        self
    }

    /// Change the IPv4 header (DF, DSCP, a fragment offset for a hand-made fragment, ...).
    pub fn with_ipv4(mut self, change: impl FnOnce(&mut ipv4::Repr)) -> Frame {
        if let Network::Ipv4 { ip, .. } = &mut self.network {
            change(ip);
        }
        self
    }

    /// Change the IPv6 fixed header (traffic class, flow label, ...).
    pub fn with_ipv6(mut self, change: impl FnOnce(&mut ipv6::Repr)) -> Frame {
        if let Network::Ipv6 { ip, .. } = &mut self.network {
            change(ip);
        }
        self
    }

    /// Change the TCP header (sequence numbers, window, options, ...).
    pub fn with_tcp(mut self, change: impl FnOnce(&mut tcp::Repr)) -> Frame {
        if let Network::Ipv4 {
            transport: Transport::Tcp(tcp),
            ..
        }
        | Network::Ipv6 {
            transport: Transport::Tcp(tcp),
            ..
        } = &mut self.network
        {
            change(tcp);
        }
        self
    }

    /// Append an IPv6 extension header (see [`ExtHeader`]); nothing for other frames.
    pub fn ext_header(mut self, kind: IpProtocol, data: &[u8]) -> Frame {
        if let Network::Ipv6 { ext_headers, .. } = &mut self.network {
            ext_headers.push(ExtHeader {
                kind,
                data: data.to_vec(),
            });
        }
        self
    }

    /// Zero-pad the frame to at least `min_len` bytes (60 for a minimum-size frame).
    pub fn pad(mut self, min_len: usize) -> Frame {
        self.min_len = min_len;
        self
    }

    /// Choose how checksum fields are filled.
    pub fn checksums(mut self, checksums: Checksums) -> Frame {
        self.checksums = checksums;
        self
    }

    /// The frame's bytes.
    ///
    /// Errors: [`ReprError::TooLong`] if a length does not fit its field.
    pub fn build(&self) -> Result<Vec<u8>, ReprError> {
        match &self.network {
            Network::Ipv4 { .. } | Network::Ipv6 { .. } => {
                self.assemble(&self.upper_layer()?, None)
            }
            Network::Arp(repr) => {
                let mut body = vec![0; repr.buffer_len()];
                repr.emit(&mut body)?;
                body.extend_from_slice(&self.payload);
                self.finish(EtherType::Arp, &body)
            }
            Network::Other(ethertype) => self.finish(*ethertype, &self.payload),
        }
    }

    /// The bytes after the Ethernet header, without padding: what an ICMP error quotes.
    pub fn ip_packet(&self) -> Result<Vec<u8>, ReprError> {
        let mut frame = self.clone().pad(0).build()?;
        frame.drain(..self.ethernet.header_len());
        Ok(frame)
    }

    /// The packet cut into fragments of at most `data_len` bytes of upper-layer data each
    /// (rounded down to a multiple of 8, at least 8): the IPv4 offset and MF flag set, or
    /// an IPv6 Fragment header (identification [`Self::ident`]) after the extension
    /// headers. Lengths and the transport checksum are those of the whole datagram, so
    /// the first fragment's UDP length says more than it carries; DF is left as it is. A
    /// frame that is not IP gives itself alone.
    ///
    /// Errors: [`ReprError::TooLong`] if the datagram reaches past offset 65528.
    pub fn fragments(&self, data_len: usize) -> Result<Vec<Vec<u8>>, ReprError> {
        if !matches!(self.network, Network::Ipv4 { .. } | Network::Ipv6 { .. }) {
            return Ok(vec![self.build()?]);
        }
        let datagram = self.upper_layer()?;
        let step = (data_len / 8).max(1) * 8;
        let count = datagram.len().div_ceil(step).max(1);
        (0..count)
            .map(|i| {
                let start = i * step;
                let end = (start + step).min(datagram.len());
                let offset = u16::try_from(start)
                    .ok()
                    .filter(|&offset| offset <= 0xfff8)
                    .ok_or(ReprError::TooLong { len: start })?;
                self.assemble(&datagram[start..end], Some((offset, i + 1 < count)))
            })
            .collect()
    }

    /// Transport header and payload, checksummed as [`Self::checksums`] says.
    fn upper_layer(&self) -> Result<Vec<u8>, ReprError> {
        let (pseudo, transport) = match &self.network {
            Network::Ipv4 { ip, transport } => (ip.pseudo_header(), transport),
            Network::Ipv6 { ip, transport, .. } => (ip.pseudo_header(), transport),
            Network::Arp(_) | Network::Other(_) => return Ok(self.payload.clone()),
        };
        let mut segment = vec![0; transport.header_len() + self.payload.len()];
        let payload = &self.payload;
        match transport {
            Transport::Tcp(repr) => repr.emit(&mut segment, payload, &pseudo)?,
            Transport::Udp(repr) => repr.emit(&mut segment, payload, &pseudo)?,
            Transport::Icmp(repr) => repr.emit(&mut segment, payload)?,
            Transport::Icmpv6(repr) => repr.emit(&mut segment, payload, &pseudo)?,
            Transport::Raw(_) => {
                segment.copy_from_slice(payload);
                0
            }
        };
        let field = match self.checksums {
            Checksums::Full => None,
            Checksums::Zero => Some(0),
            Checksums::PseudoOnly => {
                let proto = transport.protocol().into();
                Some(match crate::checksum::has_pseudo_header(proto) {
                    true => pseudo.sum(proto, segment.len()),
                    false => 0,
                })
            }
        };
        if let (Some(value), Some(at)) = (field, transport.checksum_offset()) {
            crate::bytes::put_be16(&mut segment, at, value);
        }
        Ok(segment)
    }

    /// IP header (and extension headers, and a Fragment header for `fragment`: offset and
    /// more-fragments) in front of `upper`, then Ethernet.
    fn assemble(&self, upper: &[u8], fragment: Option<(u16, bool)>) -> Result<Vec<u8>, ReprError> {
        let mut packet = Vec::new();
        match &self.network {
            Network::Ipv4 { ip, transport } => {
                let mut ip = *ip;
                ip.protocol = transport.protocol();
                ip.payload_len = upper.len();
                if let Some((offset, more)) = fragment {
                    ip.frag_offset = ip.frag_offset.saturating_add(offset);
                    ip.more_frags |= more;
                }
                packet.resize(ip.header_len(), 0);
                ip.emit(&mut packet)?;
                if self.checksums == Checksums::Zero {
                    ipv4::Packet::new_unchecked(&mut packet[..]).set_checksum(0);
                }
            }
            Network::Ipv6 {
                ip,
                ext_headers,
                frag_ident,
                transport,
            } => {
                let mut chain = Vec::new();
                let kinds = ext_headers.iter().map(|h| h.kind);
                let fragment_kind = fragment.map(|_| IpProtocol::Ipv6Frag);
                let mut next = kinds.chain(fragment_kind).chain([transport.protocol()]);
                let first = next.next().unwrap_or(IpProtocol::Ipv6NoNxt);
                for header in ext_headers {
                    // The length byte counts 8-byte units after the first: at most 2048 bytes.
                    if header.data.len() + 2 > 2048 {
                        return Err(ReprError::TooLong {
                            len: header.data.len() + 2,
                        });
                    }
                    let start = chain.len();
                    chain.push(next.next().unwrap_or(IpProtocol::Ipv6NoNxt).into());
                    chain.push(0);
                    chain.extend_from_slice(&header.data);
                    chain.resize(start + (header.data.len() + 2).div_ceil(8).max(1) * 8, 0);
                    chain[start + 1] = ((chain.len() - start) / 8 - 1) as u8;
                }
                if let Some((offset, more)) = fragment {
                    let repr = ipv6::FragmentRepr {
                        next_header: transport.protocol(),
                        offset,
                        more,
                        ident: *frag_ident,
                    };
                    let start = chain.len();
                    chain.resize(start + repr.header_len(), 0);
                    repr.emit(&mut chain[start..])?;
                }
                let mut ip = *ip;
                ip.next_header = first;
                ip.payload_len = chain.len() + upper.len();
                packet.resize(ip.header_len(), 0);
                ip.emit(&mut packet)?;
                packet.extend_from_slice(&chain);
            }
            Network::Arp(_) | Network::Other(_) => {}
        }
        packet.extend_from_slice(upper);
        let ethertype = match self.network {
            Network::Ipv6 { .. } => EtherType::Ipv6,
            _ => EtherType::Ipv4,
        };
        self.finish(ethertype, &packet)
    }

    /// Ethernet header with `ethertype`, then `body`, then padding.
    fn finish(&self, ethertype: EtherType, body: &[u8]) -> Result<Vec<u8>, ReprError> {
        let ethernet = ethernet::Repr {
            ethertype,
            ..self.ethernet
        };
        let mut frame = vec![0; ethernet.header_len()];
        ethernet.emit(&mut frame)?;
        frame.extend_from_slice(body);
        if frame.len() < self.min_len {
            frame.resize(self.min_len, 0);
        }
        Ok(frame)
    }
}
