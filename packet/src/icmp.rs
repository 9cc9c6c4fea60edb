//! ICMP for IPv4 (RFC 792). Error messages carry the offending packet's IP header plus at
//! least 8 bytes of its payload; [`Packet::inner_offset`] says where that starts.

use crate::bytes::{array_at, be16_at, tail, u8_at};
use crate::checksum;
use crate::error::{segment, ReprError};
use crate::ParseError;

/// Byte ranges of the ICMP header.
pub mod field {
    use core::ops::{Range, RangeFrom};
    /// Message type.
    pub const TYPE: usize = 0;
    /// Code.
    pub const CODE: usize = 1;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 2..4;
    /// Queries: identifier. Errors: unused / pointer / next-hop MTU.
    pub const IDENT: Range<usize> = 4..6;
    /// Queries: sequence number.
    pub const SEQ_NUM: Range<usize> = 6..8;
    /// Query data, or the embedded packet of an error message.
    pub const BODY: RangeFrom<usize> = 8..;
}

/// Length of the ICMP header (type, code, checksum and the 4 type-specific bytes).
pub const HEADER_LEN: usize = 8;

/// ICMP message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// 0
    EchoReply,
    /// 3
    DstUnreachable,
    /// 4
    SourceQuench,
    /// 5
    Redirect,
    /// 8
    EchoRequest,
    /// 9
    RouterAdvert,
    /// 10
    RouterSolicit,
    /// 11
    TimeExceeded,
    /// 12
    ParamProblem,
    /// 13
    Timestamp,
    /// 14
    TimestampReply,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for Message {
    #[inline]
    fn from(value: u8) -> Self {
        match value {
            0 => Self::EchoReply,
            3 => Self::DstUnreachable,
            4 => Self::SourceQuench,
            5 => Self::Redirect,
            8 => Self::EchoRequest,
            9 => Self::RouterAdvert,
            10 => Self::RouterSolicit,
            11 => Self::TimeExceeded,
            12 => Self::ParamProblem,
            13 => Self::Timestamp,
            14 => Self::TimestampReply,
            other => Self::Unknown(other),
        }
    }
}

impl From<Message> for u8 {
    #[inline]
    fn from(value: Message) -> Self {
        match value {
            Message::EchoReply => 0,
            Message::DstUnreachable => 3,
            Message::SourceQuench => 4,
            Message::Redirect => 5,
            Message::EchoRequest => 8,
            Message::RouterAdvert => 9,
            Message::RouterSolicit => 10,
            Message::TimeExceeded => 11,
            Message::ParamProblem => 12,
            Message::Timestamp => 13,
            Message::TimestampReply => 14,
            Message::Unknown(other) => other,
        }
    }
}

/// True for error messages, whose body starts with the offending packet's IPv4 header:
/// destination unreachable, source quench, redirect, time exceeded, parameter problem.
#[inline]
pub const fn is_error(msg_type: u8) -> bool {
    matches!(msg_type, 3 | 4 | 5 | 11 | 12)
}

/// True for query/reply pairs whose bytes 4..6 are an identifier that ties a reply to its
/// request: echo (8/0), timestamp (13/14), information (15/16), address mask (17/18).
#[inline]
pub const fn has_ident(msg_type: u8) -> bool {
    matches!(msg_type, 0 | 8 | 13..=18)
}

/// The request a query reply answers (echo reply 0 → 8, timestamp reply 14 → 13,
/// information reply 16 → 15, address mask reply 18 → 17); any other type as it is. A flow
/// is classified as its opener sent it, so a reply re-checked against a new policy is
/// judged as its request.
#[inline]
pub const fn request_type(msg_type: u8) -> u8 {
    match msg_type {
        0 => 8,
        14 | 16 | 18 => msg_type - 1,
        t => t,
    }
}

/// Read-only view of an ICMP message.
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
            return Err(ParseError::IcmpTruncated);
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
    /// Identifier (queries; see [`has_ident`]).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::IDENT.start)
    }
    /// Sequence number (queries).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::SEQ_NUM.start)
    }
    /// True for error messages.
    #[inline]
    pub fn is_error(&self) -> bool {
        is_error(self.msg_type_raw())
    }
    /// Offset, relative to the ICMP header, of the embedded IPv4 header of an error
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
    /// Bytes after the 8-byte header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), field::BODY.start)
    }
    /// Bytes 4..8, whose meaning depends on the type (identifier and sequence number,
    /// pointer, next-hop MTU, unused).
    #[inline]
    pub fn header_data(&self) -> [u8; 4] {
        array_at(self.buffer.as_ref(), field::IDENT.start)
    }
    /// True if the checksum over the whole buffer (the message) is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, self.buffer.as_ref())
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer. They leave the checksum stale: call [`Packet::fill_checksum`]
/// last.
impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    header_setters!(Message);
    /// Compute the checksum over the whole buffer (the message) and store it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let value = checksum::compute(self.buffer.as_ref());
        self.set_checksum(value);
    }
}

/// The setters of the 8-byte header layout ICMP and ICMPv6 share, for the view of each
/// (`$message` is its message type).
macro_rules! header_setters {
    ($message:ty) => {
        $crate::bytes::setters! {
            /// Set the message type.
            set_msg_type($message as u8) at field::TYPE;
            /// Set the code.
            set_code(u8) at field::CODE;
            /// Set the checksum field.
            set_checksum(u16) at field::CHECKSUM.start;
            /// Set the identifier (echo and the other queries).
            set_echo_ident(u16) at field::IDENT.start;
            /// Set the sequence number (echo and the other queries).
            set_echo_seq_no(u16) at field::SEQ_NUM.start;
            /// Set bytes 4..8 (see [`Packet::header_data`]).
            set_header_data([u8; 4]) at field::IDENT.start;
        }
        /// Bytes after the 8-byte header, writable.
        #[inline]
        pub fn payload_mut(&mut self) -> &mut [u8] {
            $crate::bytes::tail_mut(self.buffer.as_mut(), field::BODY.start)
        }
    };
}
pub(crate) use header_setters;

/// An ICMP header. What follows it — echo data, or the quoted IPv4 header and at least 8
/// bytes of its payload for an error — is the `payload` of [`Repr::emit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Repr {
    /// Echo request (type 8, code 0).
    EchoRequest {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Echo reply (type 0, code 0).
    EchoReply {
        /// Identifier.
        ident: u16,
        /// Sequence number.
        seq_no: u16,
    },
    /// Destination unreachable (type 3).
    DstUnreachable {
        /// Code (3 = port unreachable, 4 = fragmentation needed, 13 = prohibited, ...).
        code: u8,
        /// Next-hop MTU (RFC 1191) for code 4; 0 otherwise.
        next_hop_mtu: u16,
    },
    /// Time exceeded (type 11).
    TimeExceeded {
        /// Code (0 = TTL exceeded in transit, 1 = reassembly time exceeded).
        code: u8,
    },
    /// Parameter problem (type 12).
    ParamProblem {
        /// Code.
        code: u8,
        /// Offset of the offending byte in the quoted header.
        pointer: u8,
    },
    /// Any message no variant above describes exactly (another type, an echo with a
    /// non-zero code, an error with non-zero unused bytes), kept whole.
    Unknown {
        /// Message type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Bytes 4..8.
        header_data: [u8; 4],
    },
}

impl Repr {
    /// Read a checked view (checksum not verified).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ReprError> {
        let (msg_type, code, data) = (packet.msg_type_raw(), packet.code(), packet.header_data());
        let [a, b, c, d] = data;
        let (high, low) = (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]));
        Ok(match (msg_type, code, data) {
            (8, 0, _) => Repr::EchoRequest {
                ident: high,
                seq_no: low,
            },
            (0, 0, _) => Repr::EchoReply {
                ident: high,
                seq_no: low,
            },
            (3, code, [0, 0, _, _]) => Repr::DstUnreachable {
                code,
                next_hop_mtu: low,
            },
            (11, code, [0, 0, 0, 0]) => Repr::TimeExceeded { code },
            (12, code, [pointer, 0, 0, 0]) => Repr::ParamProblem { code, pointer },
            _ => Repr::Unknown {
                msg_type,
                code,
                header_data: data,
            },
        })
    }

    /// Type, code and bytes 4..8.
    fn fields(&self) -> (u8, u8, [u8; 4]) {
        let pair = |high: u16, low: u16| {
            let ([a, b], [c, d]) = (high.to_be_bytes(), low.to_be_bytes());
            [a, b, c, d]
        };
        match *self {
            Repr::EchoRequest { ident, seq_no } => (8, 0, pair(ident, seq_no)),
            Repr::EchoReply { ident, seq_no } => (0, 0, pair(ident, seq_no)),
            Repr::DstUnreachable { code, next_hop_mtu } => (3, code, pair(0, next_hop_mtu)),
            Repr::TimeExceeded { code } => (11, code, [0; 4]),
            Repr::ParamProblem { code, pointer } => (12, code, [pointer, 0, 0, 0]),
            Repr::Unknown {
                msg_type,
                code,
                header_data,
            } => (msg_type, code, header_data),
        }
    }

    /// Bytes of header: 8.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus `payload_len` bytes.
    #[inline]
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Write header and `payload` at the start of `buf`, with the checksum over them (ICMP
    /// has no pseudo-header); returns [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8], payload: &[u8]) -> Result<usize, ReprError> {
        let segment = segment(buf, HEADER_LEN, payload)?;
        let (msg_type, code, data) = self.fields();
        let mut packet = Packet::new_unchecked(&mut *segment);
        packet.set_msg_type(msg_type.into());
        packet.set_code(code);
        packet.set_header_data(data);
        packet.fill_checksum();
        Ok(segment.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_their_requests() {
        let pairs = [(0, 8), (14, 13), (16, 15), (18, 17)];
        for (reply, request) in pairs {
            assert_eq!(request_type(reply), request);
            assert_eq!(request_type(request), request, "a request stays itself");
        }
        assert_eq!(request_type(3), 3, "not a query");
        assert_eq!(crate::icmpv6::request_type(129), 128);
        assert_eq!(crate::icmpv6::request_type(128), 128);
        assert_eq!(
            crate::icmpv6::request_type(136),
            136,
            "neighbour advertisement is not an echo reply"
        );
    }

    #[test]
    fn echo_and_error() {
        let echo = [8, 0, 0xf7, 0xfe, 0x12, 0x34, 0, 1, b'x'];
        let p = Packet::new_checked(&echo[..]).unwrap();
        assert_eq!(p.msg_type(), Message::EchoRequest);
        assert_eq!(
            (p.echo_ident(), p.echo_seq_no(), p.checksum()),
            (0x1234, 1, 0xf7fe)
        );
        assert_eq!(p.inner_offset(), None);
        assert_eq!(p.payload(), b"x");
        let unreach = [3, 3, 0, 0, 0, 0, 0, 0, 0x45, 0];
        let p = Packet::new_checked(&unreach[..]).unwrap();
        assert_eq!(p.msg_type(), Message::DstUnreachable);
        assert_eq!(p.code(), 3);
        assert_eq!(p.inner_offset(), Some(8));
        assert_eq!(p.inner_packet(), Some(&[0x45, 0][..]));
        assert_eq!(
            Packet::new_checked(&echo[..7]),
            Err(ParseError::IcmpTruncated)
        );
        assert!(has_ident(0) && has_ident(18) && !has_ident(3));
    }

    #[test]
    fn repr_round_trips_and_checksum() {
        let repr = Repr::EchoRequest {
            ident: 0x1234,
            seq_no: 1,
        };
        let mut out = [0u8; 9];
        assert_eq!(repr.emit(&mut out, b"x"), Ok(9));
        let p = Packet::new_checked(&out[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(Repr::parse(&p), Ok(repr));
        for (bytes, repr) in [
            (
                [3, 4, 0, 0, 0, 0, 5, 0xdc],
                Repr::DstUnreachable {
                    code: 4,
                    next_hop_mtu: 1500,
                },
            ),
            (
                [12, 0, 0, 0, 20, 0, 0, 0],
                Repr::ParamProblem {
                    code: 0,
                    pointer: 20,
                },
            ),
            (
                [3, 3, 0, 0, 1, 0, 0, 0],
                Repr::Unknown {
                    msg_type: 3,
                    code: 3,
                    header_data: [1, 0, 0, 0],
                },
            ),
        ] {
            let p = Packet::new_checked(&bytes[..]).unwrap();
            assert_eq!(Repr::parse(&p), Ok(repr));
            let mut out = [0u8; 8];
            repr.emit(&mut out, &[]).unwrap();
            assert_eq!(out[4..], bytes[4..]);
        }
        for t in 0..=255u8 {
            assert_eq!(u8::from(Message::from(t)), t);
        }
    }
}
