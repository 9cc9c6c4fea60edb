//! 802.1Q / 802.1ad VLAN tag. The view starts at the TCI, i.e. just after the TPID, which
//! the enclosing header (Ethernet or an outer tag) carries in its EtherType field.

use crate::bytes::{be16_at, setters, tail, tail_mut};
use crate::ethernet::EtherType;
use crate::ParseError;

/// Byte ranges of a VLAN tag (relative to the TCI).
pub mod field {
    use core::ops::{Range, RangeFrom};
    /// Tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub const TCI: Range<usize> = 0..2;
    /// EtherType of what follows (or the TPID of an inner tag).
    pub const ETHERTYPE: Range<usize> = 2..4;
    /// Everything after the tag.
    pub const PAYLOAD: RangeFrom<usize> = 4..;
}

/// Length a tag adds to a frame.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// Read-only view of a VLAN tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wrap without checking; getters on missing bytes return zero.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// Wrap after checking that the 4 tag bytes are present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::VlanTruncated);
        }
        Ok(Self { buffer })
    }

    /// Raw tag control information.
    #[inline]
    pub fn tci(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::TCI.start)
    }

    /// Priority code point (0..=7).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (0..=4095; 0 means priority-tagged only).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Raw EtherType after the tag.
    #[inline]
    pub fn ethertype_raw(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// EtherType after the tag.
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        self.ethertype_raw().into()
    }

    /// Bytes after the tag.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), field::PAYLOAD.start)
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer.
impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    setters! {
        /// Set the raw tag control information.
        set_tci(u16) at field::TCI.start;
        /// Set the EtherType after the tag.
        set_ethertype(EtherType as u16) at field::ETHERTYPE.start;
    }

    /// Set the priority code point (the low 3 bits of `value`).
    #[inline]
    pub fn set_pcp(&mut self, value: u8) {
        self.set_tci(self.tci() & 0x1fff | ((value as u16 & 7) << 13));
    }

    /// Set the drop eligible indicator.
    #[inline]
    pub fn set_dei(&mut self, value: bool) {
        self.set_tci(self.tci() & !0x1000 | if value { 0x1000 } else { 0 });
    }

    /// Set the VLAN identifier (the low 12 bits of `value`).
    #[inline]
    pub fn set_vid(&mut self, value: u16) {
        self.set_tci(self.tci() & 0xf000 | (value & 0x0fff));
    }

    /// Bytes after the tag, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), field::PAYLOAD.start)
    }
}

/// The tag control information of one VLAN tag; the EtherType after it belongs to the
/// enclosing [`crate::ethernet::Repr`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Priority code point (0..=7).
    pub pcp: u8,
    /// Drop eligible indicator.
    pub dei: bool,
    /// VLAN identifier (0..=4095).
    pub vid: u16,
}

impl Repr {
    /// An untagged-priority tag for `vid`.
    #[inline]
    pub const fn new(vid: u16) -> Repr {
        Repr {
            pcp: 0,
            dei: false,
            vid,
        }
    }

    /// Read the TCI of a checked view.
    #[inline]
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Repr {
        Repr {
            pcp: packet.pcp(),
            dei: packet.dei(),
            vid: packet.vid(),
        }
    }

    /// Write the TCI (PCP and VID masked to their widths); the EtherType is left alone.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_tci(0);
        packet.set_pcp(self.pcp);
        packet.set_dei(self.dei);
        packet.set_vid(self.vid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_fields() {
        let tag = [0xb0, 0x64, 0x08, 0x00, 0x45];
        let p = Packet::new_checked(&tag[..]).unwrap();
        assert_eq!(p.pcp(), 5);
        assert!(p.dei());
        assert_eq!(p.vid(), 100);
        assert_eq!(p.ethertype(), EtherType::Ipv4);
        assert_eq!(p.payload(), &[0x45]);
        assert_eq!(
            Packet::new_checked(&tag[..3]),
            Err(ParseError::VlanTruncated)
        );
        let mut buf = [0u8; 4];
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        let repr = Repr {
            pcp: 5,
            dei: true,
            vid: 100,
        };
        repr.emit(&mut p);
        p.set_ethertype(EtherType::Ipv4);
        assert_eq!(buf, tag[..4]);
        assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()), repr);
    }
}
