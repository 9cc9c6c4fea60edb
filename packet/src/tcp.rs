//! TCP header (RFC 9293). The view keeps options opaque and does not verify the checksum;
//! [`Repr`] reads and writes the common options.

use crate::bytes::{be16_at, be32_at, put_u8, setters, slice, slice_mut, tail, tail_mut, u8_at};
use crate::checksum::PseudoHeader;
use crate::error::{segment, ReprError};
use crate::ip::protocol;
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

impl From<TcpFlags> for u8 {
    #[inline]
    fn from(value: TcpFlags) -> Self {
        value.0
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
    /// True if the checksum over the whole buffer (the segment) and `pseudo` is right.
    pub fn verify_checksum(&self, pseudo: &PseudoHeader) -> bool {
        pseudo.verify(protocol::TCP, self.buffer.as_ref())
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
        /// Set the sequence number.
        set_seq_number(u32) at field::SEQ_NUM.start;
        /// Set the acknowledgment number.
        set_ack_number(u32) at field::ACK_NUM.start;
        /// Set the flags.
        set_flags(TcpFlags as u8) at field::FLAGS;
        /// Set the window size (unscaled).
        set_window_len(u16) at field::WINDOW.start;
        /// Set the checksum field.
        set_checksum(u16) at field::CHECKSUM.start;
        /// Set the urgent pointer.
        set_urgent_at(u16) at field::URGENT.start;
    }
    /// Set the header length in bytes (a multiple of 4, at most 60), clearing the reserved
    /// bits.
    #[inline]
    pub fn set_header_len(&mut self, value: usize) {
        put_u8(
            self.buffer.as_mut(),
            field::DATA_OFF,
            ((value / 4) as u8) << 4,
        );
    }
    /// Compute the checksum over the whole buffer (the segment) and `pseudo`, and store it.
    pub fn fill_checksum(&mut self, pseudo: &PseudoHeader) {
        self.set_checksum(0);
        let value = pseudo.checksum(protocol::TCP, self.buffer.as_ref());
        self.set_checksum(value);
    }
    /// Raw options bytes, writable.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        slice_mut(self.buffer.as_mut(), field::OPTIONS, end)
    }
    /// Segment data after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        tail_mut(self.buffer.as_mut(), start)
    }
}

/// Option kinds [`Options`] knows (RFC 9293, RFC 7323, RFC 2018).
mod option {
    pub const EOL: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const TIMESTAMPS: u8 = 8;
}

/// The TCP options a handshake carries. Parsing skips NOPs, stops at EOL and skips other
/// kinds (SACK blocks, MD5, ...); emitting writes the known ones in the order Linux does,
/// NOP-padded to a multiple of 4 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// Maximum segment size.
    pub mss: Option<u16>,
    /// Window scale shift count.
    pub window_scale: Option<u8>,
    /// SACK permitted.
    pub sack_permitted: bool,
    /// Timestamps: (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

impl Options {
    /// Encoded length in bytes (a multiple of 4, at most 20).
    pub const fn len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        if self.timestamps.is_some() {
            len += 12; // SACK-permitted or two NOPs, then the 10-byte option
        } else if self.sack_permitted {
            len += 4;
        }
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// True if there are no options.
    pub const fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Read the options bytes of a header.
    pub fn parse(mut bytes: &[u8]) -> Result<Options, ReprError> {
        let mut options = Options::default();
        while let [kind, rest @ ..] = bytes {
            match *kind {
                option::EOL => break,
                option::NOP => {
                    bytes = rest;
                    continue;
                }
                _ => {}
            }
            let len = *rest.first().ok_or(ReprError::TcpBadOption)? as usize;
            let body = bytes.get(2..len).ok_or(ReprError::TcpBadOption)?;
            match (*kind, body) {
                (option::MSS, &[a, b]) => options.mss = Some(u16::from_be_bytes([a, b])),
                (option::WINDOW_SCALE, &[shift]) => options.window_scale = Some(shift),
                (option::SACK_PERMITTED, &[]) => options.sack_permitted = true,
                (option::TIMESTAMPS, &[a, b, c, d, e, f, g, h]) => {
                    let val = u32::from_be_bytes([a, b, c, d]);
                    options.timestamps = Some((val, u32::from_be_bytes([e, f, g, h])));
                }
                (
                    option::MSS
                    | option::WINDOW_SCALE
                    | option::SACK_PERMITTED
                    | option::TIMESTAMPS,
                    _,
                ) => return Err(ReprError::TcpBadOption),
                _ => {}
            }
            bytes = &bytes[len..];
        }
        Ok(options)
    }

    /// Write the options into `buf` (at least [`Self::len`] bytes).
    fn emit(&self, buf: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            crate::bytes::put_bytes(buf, at, bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            let [a, b] = mss.to_be_bytes();
            put(&[option::MSS, 4, a, b]);
        }
        match (self.timestamps, self.sack_permitted) {
            (Some((val, ecr)), sack) => {
                if sack {
                    put(&[option::SACK_PERMITTED, 2]);
                } else {
                    put(&[option::NOP, option::NOP]);
                }
                put(&[option::TIMESTAMPS, 10]);
                put(&val.to_be_bytes());
                put(&ecr.to_be_bytes());
            }
            (None, true) => put(&[option::NOP, option::NOP, option::SACK_PERMITTED, 2]),
            (None, false) => {}
        }
        if let Some(shift) = self.window_scale {
            put(&[option::NOP, option::WINDOW_SCALE, 3, shift]);
        }
    }
}

/// A TCP header with its options; the data is the `payload` of [`Repr::emit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq_number: u32,
    /// Acknowledgment number.
    pub ack_number: u32,
    /// Flags.
    pub flags: TcpFlags,
    /// Window size (unscaled).
    pub window_len: u16,
    /// Urgent pointer.
    pub urgent_at: u16,
    /// Options.
    pub options: Options,
}

impl Repr {
    /// A segment from `src_port` to `dst_port` with `flags`, sequence and acknowledgment
    /// numbers 0, window 65535, no options.
    pub const fn new(src_port: u16, dst_port: u16, flags: u8) -> Repr {
        Repr {
            src_port,
            dst_port,
            seq_number: 0,
            ack_number: 0,
            flags: TcpFlags(flags),
            window_len: u16::MAX,
            urgent_at: 0,
            options: Options {
                mss: None,
                window_scale: None,
                sack_permitted: false,
                timestamps: None,
            },
        }
    }

    /// Read a checked view (checksum not verified).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ReprError> {
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            options: Options::parse(packet.options())?,
        })
    }

    /// Header length with options (the data offset * 4).
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Header plus `payload_len` bytes of data.
    #[inline]
    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        self.header_len() + payload_len
    }

    /// Write header, options and `payload` at the start of `buf`, with the checksum over
    /// them and `pseudo`; returns [`Self::buffer_len`].
    pub fn emit(
        &self,
        buf: &mut [u8],
        payload: &[u8],
        pseudo: &PseudoHeader,
    ) -> Result<usize, ReprError> {
        let header_len = self.header_len();
        let segment = segment(buf, header_len, payload)?;
        let mut packet = Packet::new_unchecked(&mut *segment);
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_at);
        self.options.emit(packet.options_mut());
        packet.fill_checksum(pseudo);
        Ok(segment.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let all = Options {
            mss: Some(1460),
            window_scale: Some(7),
            sack_permitted: true,
            timestamps: Some((1, 2)),
        };
        let mut buf = [0u8; 20];
        all.emit(&mut buf);
        assert_eq!(
            buf,
            [2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1, 3, 3, 7]
        );
        assert_eq!(Options::parse(&buf), Ok(all));
        // EOL ends the list; unknown kinds are skipped; a bad length is an error.
        assert_eq!(Options::parse(&[1, 0, 2, 4, 0, 1]), Ok(Options::default()));
        assert_eq!(
            Options::parse(&[30, 3, 0, 3, 3, 2]).map(|o| o.window_scale),
            Ok(Some(2))
        );
        for bad in [&[2, 4, 5][..], &[2, 3, 5], &[30, 1], &[30], &[8, 2]] {
            assert_eq!(Options::parse(bad), Err(ReprError::TcpBadOption), "{bad:?}");
        }
    }

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
        let pseudo = PseudoHeader::V4 {
            src: [10, 0, 0, 1],
            dst: [10, 0, 0, 2],
        };
        let repr = Repr::parse(&t).unwrap();
        assert_eq!(repr.options.mss, Some(1460));
        let mut out = vec![0u8; repr.buffer_len(2)];
        assert_eq!(repr.emit(&mut out, b"hi", &pseudo), Ok(26));
        let view = Packet::new_checked(&out[..]).unwrap();
        assert!(view.verify_checksum(&pseudo));
        assert_eq!(out[..16], s[..16]);
        assert_eq!(out[18..], s[18..]);
        let mut view = Packet::new_checked(&mut out[..]).unwrap();
        view.set_flags(TcpFlags(TcpFlags::RST));
        view.payload_mut()[0] = b'H';
        assert!(!view.verify_checksum(&pseudo));
        view.fill_checksum(&pseudo);
        assert!(view.verify_checksum(&pseudo));
        assert_eq!(view.payload(), b"Hi");
        s[12] = 0x40;
        assert_eq!(
            Packet::new_checked(&s[..]),
            Err(ParseError::TcpBadDataOffset)
        );
    }
}
