//! UDP header (RFC 768). Checksum not verified.

use crate::bytes::{be16_at, setters, slice, slice_mut};
use crate::checksum::PseudoHeader;
use crate::error::{len16, segment, ReprError};
use crate::ip::protocol;
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
    /// True if the checksum over the datagram (up to the length field) and `pseudo` is
    /// right, or is 0 ("none", allowed over IPv4 only).
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        let datagram = slice(self.buffer.as_ref(), 0, self.len() as usize);
        self.checksum() == 0 && matches!(pseudo, PseudoHeader::V4 { .. })
            || pseudo.verify(protocol::UDP, datagram)
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer. They leave the checksum stale: call [`Packet::fill_checksum`]
/// last, or patch it with [`crate::checksum::update`].
impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    setters! {
        /// Set the source port.
        set_src_port(u16) at field::SRC_PORT.start;
        /// Set the destination port.
        set_dst_port(u16) at field::DST_PORT.start;
        /// Set the length field (header + data).
        set_len(u16) at field::LENGTH.start;
        /// Set the checksum field.
        set_checksum(u16) at field::CHECKSUM.start;
    }
    /// Compute the checksum over the datagram (up to the length field) and `pseudo`, and
    /// store it; a result of 0 is stored as 0xffff (RFC 768: 0 means "no checksum").
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let datagram = slice(self.buffer.as_ref(), 0, self.len() as usize);
        let value = match pseudo.checksum(protocol::UDP, datagram) {
            0 => 0xffff,
            value => value,
        };
        self.set_checksum(value);
    }
    /// Data after the header up to the length field, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        slice_mut(self.buffer.as_mut(), HEADER_LEN, end)
    }
}

/// A UDP header; the length comes from the `payload` of [`Repr::emit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl Repr {
    /// Read a checked view (checksum not verified).
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ReprError> {
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
        })
    }

    /// Bytes of header: 8.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Header plus `payload_len` bytes of data.
    #[inline]
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len
    }

    /// Write header and `payload` at the start of `buf`, with the length and the checksum
    /// over them and `pseudo`; returns [`Self::buffer_len`].
    pub fn emit(
        &self,
        buf: &mut [u8],
        payload: &[u8],
        pseudo: &PseudoHeader,
    ) -> Result<usize, ReprError> {
        let len = len16(self.buffer_len(payload.len()))?;
        let segment = segment(buf, HEADER_LEN, payload)?;
        let mut packet = Packet::new_unchecked(&mut *segment);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.fill_checksum(pseudo);
        Ok(segment.len())
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
        let pseudo = PseudoHeader::V6 {
            src: [1; 16],
            dst: [2; 16],
        };
        let repr = Repr::parse(&u).unwrap();
        let mut out = [0u8; 10];
        assert_eq!(repr.emit(&mut out, b"ok", &pseudo), Ok(10));
        assert_eq!(out[..6], d[..6]);
        let mut view = Packet::new_checked(&mut out[..]).unwrap();
        assert!(view.verify_checksum(&pseudo));
        view.set_checksum(0);
        assert!(
            !view.verify_checksum(&pseudo),
            "0 is no checksum only over IPv4"
        );
        view.payload_mut()[0] = b'O';
        view.fill_checksum(&pseudo);
        assert!(view.verify_checksum(&pseudo));
        assert!(repr.emit(&mut out[..9], b"ok", &pseudo).is_err());
        d[5] = 7;
        assert_eq!(Packet::new_checked(&d[..]), Err(ParseError::UdpBadLength));
    }
}
