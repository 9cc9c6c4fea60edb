//! ICMP for IPv4 (RFC 792). Error messages carry the offending packet's IP header plus at
//! least 8 bytes of its payload; [`Packet::inner_offset`] says where that starts.

use crate::bytes::{be16_at, tail, u8_at};
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
        assert_eq!(crate::icmpv6::request_type(136), 136, "neighbour advertisement is not an echo reply");
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
}
