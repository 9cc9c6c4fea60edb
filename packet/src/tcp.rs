//! TCP header (RFC 9293). Options kept opaque; checksum not verified.

use crate::bytes::{be16_at, be32_at, slice, tail, u8_at};
use crate::ParseError;

/// Byte ranges of the TCP header.
pub mod field {
    use core::ops::Range;
    /// Source port.
    pub const SRC_PORT: Range<usize> = 0..2;
    /// Destination port.
    pub const DST_PORT: Range<usize> = 2..4;
    /// Sequence number.
    pub const SEQ_NUM: Range<usize> = 4..8;
    /// Acknowledgment number.
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset (high nibble, 32-bit words) and reserved bits.
    pub const DATA_OFF: usize = 12;
    /// Flags (CWR ECE URG ACK PSH RST SYN FIN).
    pub const FLAGS: usize = 13;
    /// Window.
    pub const WINDOW: Range<usize> = 14..16;
    /// Checksum.
    pub const CHECKSUM: Range<usize> = 16..18;
    /// Urgent pointer.
    pub const URGENT: Range<usize> = 18..20;
    /// Start of options (up to data offset * 4).
    pub const OPTIONS: usize = 20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// The eight TCP flag bits of byte 13 (the NS bit of byte 12 is not kept).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// PSH
    pub const PSH: u8 = 0x08;
    /// ACK
    pub const ACK: u8 = 0x10;
    /// URG
    pub const URG: u8 = 0x20;
    /// ECE
    pub const ECE: u8 = 0x40;
    /// CWR
    pub const CWR: u8 = 0x80;

    /// True if every bit of `mask` is set.
    #[inline]
    pub const fn contains(self, mask: u8) -> bool {
        self.0 & mask == mask
    }
    /// FIN set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }
    /// SYN set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }
    /// RST set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }
    /// ACK set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }
}

impl core::fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("-")?;
        }
        Ok(())
    }
}

/// Read-only view of a TCP segment.
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

    /// Wrap after checking the fixed header and that the data offset is in `5..=len/4`.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self { buffer };
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(ParseError::TcpTruncated);
        }
        let header_len = packet.header_len();
        if header_len < HEADER_LEN || header_len > len {
            return Err(ParseError::TcpBadDataOffset);
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
    /// Sequence number.
    #[inline]
    pub fn seq_number(&self) -> u32 {
        be32_at(self.buffer.as_ref(), field::SEQ_NUM.start)
    }
    /// Acknowledgment number.
    #[inline]
    pub fn ack_number(&self) -> u32 {
        be32_at(self.buffer.as_ref(), field::ACK_NUM.start)
    }
    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        (u8_at(self.buffer.as_ref(), field::DATA_OFF) >> 4) as usize * 4
    }
    /// Flags.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(u8_at(self.buffer.as_ref(), field::FLAGS))
    }
    /// Window size (unscaled).
    #[inline]
    pub fn window_len(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::WINDOW.start)
    }
    /// Checksum as carried (not verified).
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Urgent pointer.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::URGENT.start)
    }
    /// Raw options bytes.
    #[inline]
    pub fn options(&self) -> &[u8] {
        slice(self.buffer.as_ref(), field::OPTIONS, self.header_len())
    }
    /// Segment data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), self.header_len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_checks() {
        let mut s = vec![
            0x30, 0x39, 0x00, 0x50, // 12345 → 80
            0, 0, 0, 1, 0, 0, 0, 2, // seq, ack
            0x60, 0x12, 0xff, 0xff, // doff 6, SYN|ACK, window
            0xbe, 0xef, 0, 0, // checksum, urgent
            2, 4, 5, 0xb4, // MSS 1460
            b'h', b'i',
        ];
        let t = Packet::new_checked(&s[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (12345, 80));
        assert_eq!((t.seq_number(), t.ack_number()), (1, 2));
        assert_eq!(t.header_len(), 24);
        assert_eq!(t.flags(), TcpFlags(TcpFlags::SYN | TcpFlags::ACK));
        assert!(t.flags().syn() && t.flags().ack() && !t.flags().rst() && !t.flags().fin());
        assert_eq!(format!("{:?}", t.flags()), "SYN|ACK");
        assert_eq!(format!("{:?}", TcpFlags(0)), "-");
        assert_eq!(t.window_len(), 0xffff);
        assert_eq!(t.checksum(), 0xbeef);
        assert_eq!(t.urgent_at(), 0);
        assert_eq!(t.options(), &[2, 4, 5, 0xb4]);
        assert_eq!(t.payload(), b"hi");
        assert_eq!(Packet::new_checked(&s[..19]), Err(ParseError::TcpTruncated));
        assert_eq!(
            Packet::new_checked(&s[..23]),
            Err(ParseError::TcpBadDataOffset)
        );
        s[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&s[..]),
            Err(ParseError::TcpBadDataOffset)
        );
    }
}
