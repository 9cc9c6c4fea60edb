//! 802.1Q / 802.1ad VLAN tag. The view starts at the TCI, i.e. just after the TPID, which
//! the enclosing header (Ethernet or an outer tag) carries in its EtherType field.

use crate::bytes::{be16_at, tail};
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
    }
}
