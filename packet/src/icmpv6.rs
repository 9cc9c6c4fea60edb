//! ICMPv6 (RFC 4443), plus the Neighbor Discovery target address (RFC 4861) the guard
//! needs. Error messages (types 0..=127) carry as much of the offending IPv6 packet as fits;
//! [`Packet::inner_offset`] says where that starts.

use crate::bytes::{array_at, be16_at, tail, u8_at};
use crate::ParseError;

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
}
