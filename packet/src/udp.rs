//! UDP header (RFC 768). Checksum not verified.

use crate::bytes::{be16_at, slice};
use crate::ParseError;

/// Byte ranges of the UDP header.
pub mod field {
    use core::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Length of header and data.
    pub const LENGTH: Range<usize> = 4..6;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 6..8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;

/// Read-only view of a UDP datagram.
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

    /// Wrap after checking the header and that the length is in `8..=buffer.len()`. (A
    /// first fragment carries only part of the datagram; [`crate::parse`] checks those
    /// itself.)
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::UdpTruncated);
        }
        let udp_len = packet.len() as usize;
        if udp_len < HEADER_LEN || udp_len > len {
            return Err(ParseError::UdpBadLength);
        }
        Ok(packet)
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::SRC_PORT.start)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::DST_PORT.start)
    }
    /// Length field (header + data).
    #[inline]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::LENGTH.start)
    }
    /// Checksum as carried (not verified).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Data after the header, up to the length field.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        slice(self.buffer.as_ref(), HEADER_LEN, self.len() as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_checks() {
        let mut d = vec![
            0x00, 0x35, 0xc0, 0x00, 0x00, 0x0a, 0x12, 0x34, b'o', b'k', 0xee,
        ];
        let u = Packet::new_checked(&d[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port()), (53, 0xc000));
        assert_eq!(u.len(), 10);
        assert_eq!(u.checksum(), 0x1234);
        assert_eq!(u.payload(), b"ok");
        assert_eq!(Packet::new_checked(&d[..7]), Err(ParseError::UdpTruncated));
        assert_eq!(Packet::new_checked(&d[..9]), Err(ParseError::UdpBadLength));
        d[5] = 7;
        assert_eq!(Packet::new_checked(&d[..]), Err(ParseError::UdpBadLength));
    }
}
