//! ICMPv6 (RFC 4443), plus the Neighbor Discovery target address (RFC 4861) the guard
//! needs. Error messages (types 0..=127) carry as much of the offending IPv6 packet as fits;
//! [`Packet::inner_offset`] says where that starts.

use crate::bytes::{array_at, be16_at, be32_at, put_be32, setters, tail, u8_at};
use crate::checksum::PseudoHeader;
use crate::error::{segment, ReprError};
use crate::ip::protocol;
use crate::{ethernet, ipv6, ParseError};

/// Byte ranges of the ICMPv6 header.
pub mod field {
    use core::ops::{Range, RangeFrom};
    /// Message type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Echo: identifier. Errors: unused / MTU / pointer.
    pub const IDENT: Range<usize> = 4..6;
    /// Echo: sequence number.
    pub const SEQ_NUM: Range<usize> = 6..8;
    /// Message body (echo data, embedded packet, ND fields).
    pub const BODY: RangeFrom<usize> = 8..;
    /// Neighbor Solicitation / Advertisement and Redirect: target address.
    pub const ND_TARGET: Range<usize> = 8..24;
}

/// Length of the ICMPv6 header (type, code, checksum and the 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;

/// ICMPv6 message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// 1
    DstUnreachable,
    /// 2
    PktTooBig,
    /// 3
    TimeExceeded,
    /// 4
    ParamProblem,
    /// 128
    EchoRequest,
    /// 129
    EchoReply,
    /// 130
    MldQuery,
    /// 131
    MldReport,
    /// 132
    MldDone,
    /// 133
    RouterSolicit,
    /// 134
    RouterAdvert,
    /// 135
    NeighborSolicit,
    /// 136
    NeighborAdvert,
    /// 137
    Redirect,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for Message {
    #[inline]
    fn from(value: u8) -> Self {
        match value {
            1 => Self::DstUnreachable,
            2 => Self::PktTooBig,
            3 => Self::TimeExceeded,
            4 => Self::ParamProblem,
            128 => Self::EchoRequest,
            129 => Self::EchoReply,
            130 => Self::MldQuery,
            131 => Self::MldReport,
            132 => Self::MldDone,
            133 => Self::RouterSolicit,
            134 => Self::RouterAdvert,
            135 => Self::NeighborSolicit,
            136 => Self::NeighborAdvert,
            137 => Self::Redirect,
            other => Self::Unknown(other),
        }
    }
}

impl From<Message> for u8 {
    #[inline]
    fn from(value: Message) -> Self {
        match value {
            Message::DstUnreachable => 1,
            Message::PktTooBig => 2,
            Message::TimeExceeded => 3,
            Message::ParamProblem => 4,
            Message::EchoRequest => 128,
            Message::EchoReply => 129,
            Message::MldQuery => 130,
            Message::MldReport => 131,
            Message::MldDone => 132,
            Message::RouterSolicit => 133,
            Message::RouterAdvert => 134,
            Message::NeighborSolicit => 135,
            Message::NeighborAdvert => 136,
            Message::Redirect => 137,
            Message::Unknown(other) => other,
        }
    }
}

/// True for error messages (types 0..=127), whose body starts with the offending packet's
/// IPv6 header.
#[inline]
pub const fn is_error(msg_type: u8) -> bool {
    msg_type < 128
}

/// True for echo request/reply, whose bytes 4..6 are an identifier.
#[inline]
pub const fn has_ident(msg_type: u8) -> bool {
    matches!(msg_type, 128 | 129)
}

/// The request an echo reply (129) answers (128); any other type as it is (see
/// [`crate::icmp::request_type`]).
#[inline]
pub const fn request_type(msg_type: u8) -> u8 {
    if msg_type == 129 {
        128
    } else {
        msg_type
    }
}

/// Read-only view of an ICMPv6 message.
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

    /// Wrap after checking that the 8-byte header is present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::Icmpv6Truncated);
        }
        Ok(Self { buffer })
    }

    /// Raw message type.
    #[inline]
    pub fn msg_type_raw(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::TYPE)
    }
    /// Message type.
    #[inline]
    pub fn msg_type(&self) -> Message {
        self.msg_type_raw().into()
    }
    /// Code.
    #[inline]
    pub fn code(&self) -> u8 {
        u8_at(self.buffer.as_ref(), field::CODE)
    }
    /// Checksum as carried (not verified).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Echo identifier.
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::IDENT.start)
    }
    /// Echo sequence number.
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::SEQ_NUM.start)
    }
    /// True for error messages.
    #[inline]
    pub fn is_error(&self) -> bool {
        is_error(self.msg_type_raw())
    }
    /// Offset, relative to the ICMPv6 header, of the embedded IPv6 header of an error
    /// message; `None` for other messages.
    #[inline]
    pub fn inner_offset(&self) -> Option<usize> {
        if self.is_error() {
            Some(field::BODY.start)
        } else {
            None
        }
    }
    /// The embedded packet of an error message (possibly truncated by the sender).
    #[inline]
    pub fn inner_packet(&self) -> Option<&[u8]> {
        self.inner_offset()
            .map(|offset| tail(self.buffer.as_ref(), offset))
    }
    /// Target address of a Neighbor Solicitation/Advertisement or Redirect, if the message
    /// is one of those and long enough.
    #[inline]
    pub fn nd_target(&self) -> Option<[u8; 16]> {
        let is_nd = matches!(self.msg_type_raw(), 135..=137);
        if is_nd && self.buffer.as_ref().len() >= field::ND_TARGET.end {
            Some(array_at(self.buffer.as_ref(), field::ND_TARGET.start))
        } else {
            None
        }
    }
    /// Bytes after the 8-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), field::BODY.start)
    }
    /// Bytes 4..8, whose meaning depends on the type (identifier and sequence number, MTU,
    /// pointer, flags, unused).
    #[inline]
    pub fn header_data(&self) -> [u8; 4] {
        array_at(self.buffer.as_ref(), field::IDENT.start)
    }
    /// True if the checksum over the whole buffer (the message) and `pseudo` is right.
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        pseudo.verify(protocol::ICMPV6, self.buffer.as_ref())
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer. They leave the checksum stale: call [`Packet::fill_checksum`]
/// last.
impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    crate::icmp::header_setters!(Message);
    setters! {
        /// Set the Neighbor Discovery target address (bytes 8..24; dropped if the buffer is
        /// shorter).
        set_nd_target(ipv6::Address) at field::ND_TARGET.start;
    }
    /// Compute the checksum over the whole buffer (the message) and `pseudo`, and store it.
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let value = pseudo.checksum(protocol::ICMPV6, self.buffer.as_ref());
        self.set_checksum(value);
    }
}

/// Neighbor Discovery option types carrying a link-layer address (RFC 4861 §4.6.1).
pub mod nd_option {
    /// Source link-layer address.
    pub const SOURCE_LINK_LAYER_ADDR: u8 = 1;
    /// Target link-layer address.
    pub const TARGET_LINK_LAYER_ADDR: u8 = 2;
}

/// The 8-byte ND option carrying a MAC address, to put in the payload of a solicitation
/// or advertisement: `kind` is one of [`nd_option`].
#[inline]
pub const fn link_layer_option(kind: u8, mac: ethernet::Address) -> [u8; 8] {
    let [a, b, c, d, e, f] = mac;
    [kind, 1, a, b, c, d, e, f]
}

/// Neighbor Advertisement flags (the high bits of byte 4).
pub mod nd_flags {
    /// Router.
    pub const ROUTER: u8 = 0x80;
    /// Solicited.
    pub const SOLICITED: u8 = 0x40;
    /// Override.
    pub const OVERRIDE: u8 = 0x20;
}

/// An ICMPv6 message's fixed part. What follows it — echo data, as much of the offending
/// packet as fits for an error, ND options — is the `payload` of [`Repr::emit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Repr {
    /// Destination unreachable (type 1).
    DstUnreachable {
        /// Code (1 = prohibited, 4 = port unreachable, ...).
        code: u8,
    },
    /// Packet too big (type 2, code 0).
    PktTooBig {
        /// MTU of the next hop.
        mtu: u32,
    },
    /// Time exceeded (type 3).
    TimeExceeded {
        /// Code (0 = hop limit, 1 = reassembly).
        code: u8,
    },
    /// Parameter problem (type 4).
    ParamProblem {
        /// Code.
        code: u8,
        /// Offset of the offending byte in the quoted packet.
        pointer: u32,
    },
    /// Echo request (type 128, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Echo reply (type 129, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Router solicitation (type 133, code 0); options in the payload.
    RouterSolicit,
    /// Router advertisement (type 134, code 0, 16 bytes); options (prefix information, MTU,
    /// source link-layer address) in the payload.
    RouterAdvert {
        /// Current hop limit (0 = unspecified).
        hop_limit: u8,
        /// Flags byte (M = 0x80, O = 0x40, ...).
        flags: u8,
        /// Router lifetime in seconds.
        router_lifetime: u16,
        /// Reachable time in milliseconds.
        reachable_time: u32,
        /// Retransmission timer in milliseconds.
        retrans_time: u32,
    },
    /// Neighbor solicitation (type 135, code 0, 24 bytes).
    NeighborSolicit {
        /// Target address.
        target: ipv6::Address,
    },
    /// Neighbor advertisement (type 136, code 0, 24 bytes).
    NeighborAdvert {
        /// Flags byte ([`nd_flags`]).
        flags: u8,
        /// Target address.
        target: ipv6::Address,
    },
    /// Any message no variant above describes exactly (another type, a non-zero code where
    /// 0 is required, non-zero reserved bytes), its first 8 bytes kept whole.
    Unknown {
        /// Message type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Bytes 4..8.
        header_data: [u8; 4],
    },
}

const RA_LEN: usize = 16;
const ND_LEN: usize = field::ND_TARGET.end;

impl Repr {
    /// Read a checked view (checksum not verified). [`ReprError::IcmpTruncatedBody`] for a
    /// router advertisement or neighbour message cut short.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ReprError> {
        let buf = packet.buffer.as_ref();
        let (msg_type, code, data) = (packet.msg_type_raw(), packet.code(), packet.header_data());
        let [a, b, c, d] = data;
        let (high, low, word) = (
            u16::from_be_bytes([a, b]),
            u16::from_be_bytes([c, d]),
            u32::from_be_bytes(data),
        );
        let need = |len: usize| {
            if buf.len() < len {
                Err(ReprError::IcmpTruncatedBody)
            } else {
                Ok(())
            }
        };
        Ok(match (msg_type, code, data) {
            (1, code, [0, 0, 0, 0]) => Repr::DstUnreachable { code },
            (2, 0, _) => Repr::PktTooBig { mtu: word },
            (3, code, [0, 0, 0, 0]) => Repr::TimeExceeded { code },
            (4, code, _) => Repr::ParamProblem {
                code,
                pointer: word,
            },
            (128, 0, _) => Repr::EchoRequest {
                ident: high,
                seq_no: low,
            },
            (129, 0, _) => Repr::EchoReply {
                ident: high,
                seq_no: low,
            },
            (133, 0, [0, 0, 0, 0]) => Repr::RouterSolicit,
            (134, 0, [hop_limit, flags, _, _]) => {
                need(RA_LEN)?;
                Repr::RouterAdvert {
                    hop_limit,
                    flags,
                    router_lifetime: low,
                    reachable_time: be32_at(buf, 8),
                    retrans_time: be32_at(buf, 12),
                }
            }
            (135, 0, [0, 0, 0, 0]) => {
                need(ND_LEN)?;
                Repr::NeighborSolicit {
                    target: array_at(buf, field::ND_TARGET.start),
                }
            }
            (136, 0, [flags, 0, 0, 0]) => {
                need(ND_LEN)?;
                Repr::NeighborAdvert {
                    flags,
                    target: array_at(buf, field::ND_TARGET.start),
                }
            }
            _ => Repr::Unknown {
                msg_type,
                code,
                header_data: data,
            },
        })
    }

    /// Type, code and bytes 4..8.
    fn fields(&self) -> (u8, u8, [u8; 4]) {
        let pair = |high: u16, low: u16| (high as u32) << 16 | low as u32;
        let (msg_type, code, word) = match *self {
            Repr::DstUnreachable { code } => (1, code, 0),
            Repr::PktTooBig { mtu } => (2, 0, mtu),
            Repr::TimeExceeded { code } => (3, code, 0),
            Repr::ParamProblem { code, pointer } => (4, code, pointer),
            Repr::EchoRequest { ident, seq_no } => (128, 0, pair(ident, seq_no)),
            Repr::EchoReply { ident, seq_no } => (129, 0, pair(ident, seq_no)),
            Repr::RouterSolicit => (133, 0, 0),
            Repr::RouterAdvert {
                hop_limit,
                flags,
                router_lifetime,
                ..
            } => (
                134,
                0,
                pair(u16::from_be_bytes([hop_limit, flags]), router_lifetime),
            ),
            Repr::NeighborSolicit { .. } => (135, 0, 0),
            Repr::NeighborAdvert { flags, .. } => (136, 0, (flags as u32) << 24),
            Repr::Unknown {
                msg_type,
                code,
                header_data,
            } => (msg_type, code, u32::from_be_bytes(header_data)),
        };
        (msg_type, code, word.to_be_bytes())
    }

    /// Length of the fixed part: 8, 16 for a router advertisement, 24 for neighbour
    /// solicitations and advertisements.
    #[inline]
    pub const fn header_len(&self) -> usize {
        match self {
            Repr::RouterAdvert { .. } => RA_LEN,
            Repr::NeighborSolicit { .. } | Repr::NeighborAdvert { .. } => ND_LEN,
            _ => HEADER_LEN,
        }
    }

    /// Fixed part plus `payload_len` bytes.
    #[inline]
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        self.header_len() + payload_len
    }

    /// Write the fixed part and `payload` at the start of `buf`, with the checksum over them
    /// and `pseudo`; returns [`Self::buffer_len`].
    pub fn emit(
        &self,
        buf: &mut [u8],
        payload: &[u8],
        pseudo: &PseudoHeader,
    ) -> Result<usize, ReprError> {
        let segment = segment(buf, self.header_len(), payload)?;
        let (msg_type, code, data) = self.fields();
        let mut packet = Packet::new_unchecked(&mut *segment);
        packet.set_msg_type(msg_type.into());
        packet.set_code(code);
        packet.set_header_data(data);
        match *self {
            Repr::RouterAdvert {
                reachable_time,
                retrans_time,
                ..
            } => {
                put_be32(packet.buffer, 8, reachable_time);
                put_be32(packet.buffer, 12, retrans_time);
            }
            Repr::NeighborSolicit { target } | Repr::NeighborAdvert { target, .. } => {
                packet.set_nd_target(target)
            }
            _ => {}
        }
        packet.fill_checksum(pseudo);
        Ok(segment.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_error_and_nd() {
        let echo = [128, 0, 0, 0, 0xbe, 0xef, 0, 7];
        let p = Packet::new_checked(&echo[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!((p.echo_ident(), p.echo_seq_no()), (0xbeef, 7));
        assert_eq!(p.inner_offset(), None);
        assert_eq!(p.nd_target(), None);
        let too_big = [2, 0, 0, 0, 0, 0, 5, 0xdc, 0x60];
        let p = Packet::new_checked(&too_big[..]).unwrap();
        assert_eq!(p.msg_type(), Message::PktTooBig);
        assert_eq!(p.inner_packet(), Some(&[0x60][..]));
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
        let p = Packet::new_checked(&ns[..]).unwrap();
        assert_eq!(p.msg_type(), Message::NeighborSolicit);
        assert_eq!(p.nd_target().map(|a| a[15]), Some(9));
        assert_eq!(Packet::new_checked(&ns[..23]).unwrap().nd_target(), None);
        assert_eq!(
            Packet::new_checked(&ns[..7]),
            Err(ParseError::Icmpv6Truncated)
        );
    }

    #[test]
    fn repr_round_trips() {
        let pseudo = PseudoHeader::V6 {
            src: [0xfe; 16],
            dst: [0xff; 16],
        };
        let target = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let option = link_layer_option(nd_option::TARGET_LINK_LAYER_ADDR, [2, 0, 0, 0, 0, 1]);
        for repr in [
            Repr::NeighborAdvert {
                flags: nd_flags::SOLICITED | nd_flags::OVERRIDE,
                target,
            },
            Repr::NeighborSolicit { target },
            Repr::RouterAdvert {
                hop_limit: 64,
                flags: 0x40,
                router_lifetime: 1800,
                reachable_time: 30000,
                retrans_time: 1000,
            },
            Repr::RouterSolicit,
            Repr::PktTooBig { mtu: 1280 },
        ] {
            let mut out = vec![0u8; repr.buffer_len(option.len())];
            assert_eq!(repr.emit(&mut out, &option, &pseudo), Ok(out.len()));
            let p = Packet::new_checked(&out[..]).unwrap();
            assert!(p.verify_checksum(&pseudo));
            assert_eq!(Repr::parse(&p), Ok(repr));
            assert_eq!(&out[repr.header_len()..], &option);
        }
        let short = [136, 0, 0, 0, 0x60, 0, 0, 0, 0xfe, 0x80];
        assert_eq!(
            Repr::parse(&Packet::new_checked(&short[..]).unwrap()),
            Err(ReprError::IcmpTruncatedBody)
        );
        for t in 0..=255u8 {
            assert_eq!(u8::from(Message::from(t)), t);
        }
    }
}
