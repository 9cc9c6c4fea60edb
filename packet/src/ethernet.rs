//! Ethernet II frame header. VLAN tags are in [`crate::vlan`].

use crate::bytes::{array_at, be16_at, put_be16, setters, tail, tail_mut};
use crate::error::{check_room, ReprError};
use crate::{vlan, ParseError};

/// Byte ranges of the Ethernet II header.
pub mod field {
    use core::ops::{Range, RangeFrom};
    /// Destination MAC address.
    pub const DESTINATION: Range<usize> = 0..6;
    /// Source MAC address.
    pub const SOURCE: Range<usize> = 6..12;
    /// EtherType (or TPID of the first VLAN tag).
    pub const ETHERTYPE: Range<usize> = 12..14;
    /// Everything after the header.
    pub const PAYLOAD: RangeFrom<usize> = 14..;
}

/// Length of the Ethernet II header (no tags, no FCS).
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A MAC address.
pub type Address = [u8; 6];

/// Raw EtherType values used on the hot path.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: u16 = 0x8100;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1ad service VLAN tag (S-tag, QinQ outer tag).
    pub const QINQ: u16 = 0x88a8;
}

/// EtherType, keeping unknown values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// 0x0800
    Ipv4,
    /// 0x0806
    Arp,
    /// 0x8100 (802.1Q)
    Vlan,
    /// 0x86dd
    Ipv6,
    /// 0x88a8 (802.1ad)
    QinQ,
    /// Anything else.
    Unknown(u16),
}

impl From<u16> for EtherType {
    #[inline]
    fn from(value: u16) -> Self {
        match value {
            ethertype::IPV4 => Self::Ipv4,
            ethertype::ARP => Self::Arp,
            ethertype::VLAN => Self::Vlan,
            ethertype::IPV6 => Self::Ipv6,
            ethertype::QINQ => Self::QinQ,
            other => Self::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    #[inline]
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => ethertype::IPV4,
            EtherType::Arp => ethertype::ARP,
            EtherType::Vlan => ethertype::VLAN,
            EtherType::Ipv6 => ethertype::IPV6,
            EtherType::QinQ => ethertype::QINQ,
            EtherType::Unknown(other) => other,
        }
    }
}

/// Read-only view of an Ethernet II frame.
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

    /// Wrap after checking that the 14-byte header is present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(ParseError::EthernetTruncated);
        }
        Ok(Self { buffer })
    }

    /// The wrapped buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Destination MAC address.
    #[inline]
    pub fn dst_addr(&self) -> Address {
        array_at(self.buffer.as_ref(), field::DESTINATION.start)
    }

    /// Source MAC address.
    #[inline]
    pub fn src_addr(&self) -> Address {
        array_at(self.buffer.as_ref(), field::SOURCE.start)
    }

    /// Raw EtherType (or first tag's TPID).
    #[inline]
    pub fn ethertype_raw(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::ETHERTYPE.start)
    }

    /// EtherType (or first tag's TPID).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        self.ethertype_raw().into()
    }

    /// Bytes after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        tail(self.buffer.as_ref(), field::PAYLOAD.start)
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer (a write past the end of a shorter buffer is dropped).
impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    setters! {
        /// Set the destination MAC address.
        set_dst_addr(Address) at field::DESTINATION.start;
        /// Set the source MAC address.
        set_src_addr(Address) at field::SOURCE.start;
        /// Set the EtherType (or the first tag's TPID).
        set_ethertype(EtherType as u16) at field::ETHERTYPE.start;
    }

    /// Bytes after the header, writable.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        tail_mut(self.buffer.as_mut(), field::PAYLOAD.start)
    }
}

/// An Ethernet II header with up to two VLAN tags: an 802.1ad S-tag (TPID 0x88a8) and an
/// 802.1Q C-tag (TPID 0x8100), in that order, as [`crate::parse`] accepts them.
///
/// Tags in other arrangements (a C-tag inside a C-tag, an S-tag inside an S-tag) parse as
/// that inner TPID in [`Repr::ethertype`] with the rest in the payload, so [`Repr::emit`]
/// still gives back the same bytes. A `Repr` without tags whose `ethertype` is 0x8100 or
/// 0x88a8 emits a frame that parses back as tagged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Source MAC address.
    pub src_addr: Address,
    /// Destination MAC address.
    pub dst_addr: Address,
    /// The outer 802.1ad S-tag (QinQ), if any.
    pub outer_vlan: Option<vlan::Repr>,
    /// The 802.1Q C-tag (inside the S-tag, if both), if any.
    pub vlan: Option<vlan::Repr>,
    /// EtherType of the payload (after the tags).
    pub ethertype: EtherType,
}

impl Repr {
    /// The tags with their TPIDs, outermost first.
    fn tags(&self) -> [(EtherType, Option<vlan::Repr>); 2] {
        [
            (EtherType::QinQ, self.outer_vlan),
            (EtherType::Vlan, self.vlan),
        ]
    }

    /// Read the header (and its tags) of a checked view.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ReprError> {
        let mut repr = Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            outer_vlan: None,
            vlan: None,
            ethertype: packet.ethertype(),
        };
        let mut rest = packet.payload();
        for (tpid, slot) in [
            (EtherType::QinQ, &mut repr.outer_vlan),
            (EtherType::Vlan, &mut repr.vlan),
        ] {
            if repr.ethertype == tpid {
                let tag = vlan::Packet::new_checked(rest)?;
                *slot = Some(vlan::Repr::parse(&tag));
                repr.ethertype = tag.ethertype();
                rest = tail(rest, vlan::HEADER_LEN);
            }
        }
        Ok(repr)
    }

    /// Bytes [`Self::emit`] writes: 14, plus 4 a tag.
    #[inline]
    pub fn header_len(&self) -> usize {
        let tags = self.tags().iter().filter(|(_, tag)| tag.is_some()).count();
        HEADER_LEN + tags * vlan::HEADER_LEN
    }

    /// Write the header (and tags) at the start of `buf`; returns [`Self::header_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ReprError> {
        check_room(buf, self.header_len())?;
        let mut packet = Packet::new_unchecked(&mut *buf);
        packet.set_dst_addr(self.dst_addr);
        packet.set_src_addr(self.src_addr);
        let mut at = field::ETHERTYPE.start;
        for (tpid, tag) in self.tags() {
            if let Some(tag) = tag {
                put_be16(buf, at, tpid.into());
                tag.emit(&mut vlan::Packet::new_unchecked(tail_mut(buf, at + 2)));
                at += vlan::HEADER_LEN;
            }
        }
        put_be16(buf, at, self.ethertype.into());
        Ok(self.header_len())
    }
}

/// True for the multicast/broadcast bit of a MAC address.
#[inline]
pub const fn is_multicast(addr: &Address) -> bool {
    addr[0] & 1 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields() {
        let mut f = [0u8; 20];
        f[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        f[6..12].copy_from_slice(&[0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        f[12..14].copy_from_slice(&[0x86, 0xdd]);
        let p = Packet::new_checked(&f[..]).unwrap();
        assert_eq!(p.dst_addr(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(p.src_addr(), [0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        assert_eq!(p.ethertype(), EtherType::Ipv6);
        assert_eq!(p.payload().len(), 6);
        assert!(is_multicast(&[0xff; 6]));
        assert_eq!(
            Packet::new_checked(&f[..13]),
            Err(ParseError::EthernetTruncated)
        );
        assert_eq!(Packet::new_unchecked(&f[..3]).ethertype_raw(), 0);
    }

    #[test]
    fn setters_and_repr() {
        let mut f = [0u8; 22];
        let repr = Repr {
            src_addr: [2, 0, 0, 0, 0, 1],
            dst_addr: [0xff; 6],
            outer_vlan: None,
            vlan: Some(vlan::Repr {
                pcp: 5,
                dei: false,
                vid: 42,
            }),
            ethertype: EtherType::Arp,
        };
        assert_eq!(repr.emit(&mut f), Ok(18));
        assert_eq!(&f[12..18], &[0x81, 0x00, 0xa0, 0x2a, 0x08, 0x06]);
        let view = Packet::new_checked(&f[..]).unwrap();
        assert_eq!(Repr::parse(&view), Ok(repr));
        assert_eq!(
            repr.emit(&mut f[..17]),
            Err(ReprError::BufferTooSmall {
                needed: 18,
                available: 17
            })
        );
        let qinq = Repr {
            outer_vlan: Some(vlan::Repr::new(10)),
            ..repr
        };
        let mut g = [0u8; 26];
        assert_eq!(qinq.emit(&mut g), Ok(22));
        assert_eq!(
            &g[12..22],
            &[0x88, 0xa8, 0, 10, 0x81, 0x00, 0xa0, 0x2a, 8, 6]
        );
        assert_eq!(Repr::parse(&Packet::new_checked(&g[..]).unwrap()), Ok(qinq));
        let mut p = Packet::new_checked(&mut f[..]).unwrap();
        p.set_ethertype(EtherType::Unknown(0x88cc));
        p.payload_mut()[0] = 7;
        assert_eq!(p.ethertype_raw(), 0x88cc);
        assert_eq!(p.payload()[0], 7);
        // A view over a too-short buffer drops the writes instead of panicking.
        Packet::new_unchecked(&mut f[..3]).set_src_addr([9; 6]);
    }

    #[test]
    fn ethertype_round_trips() {
        for v in [0x0800u16, 0x0806, 0x8100, 0x86dd, 0x88a8, 0x88cc, 0] {
            assert_eq!(u16::from(EtherType::from(v)), v);
        }
        assert_eq!(EtherType::from(0x88cc), EtherType::Unknown(0x88cc));
    }
}
