//! ARP (RFC 826). Any hardware/protocol pair is accepted; the Ethernet/IPv4 case has
//! fixed-size accessors.

use crate::bytes::{array_at, be16_at, setters, slice, slice_mut, u8_at};
use crate::error::{check_room, ReprError};
use crate::ethernet::{self, EtherType};
use crate::{ipv4, ParseError};

/// Byte ranges of the fixed part; the four addresses follow at offsets that depend on the
/// two length fields (see [`Packet::source_hardware_addr`] and friends).
pub mod field {
    use core::ops::Range;
    /// Hardware type (1 = Ethernet).
    pub const HTYPE: Range<usize> = 0..2;
    /// Protocol type (an EtherType; 0x0800 = IPv4).
    pub const PTYPE: Range<usize> = 2..4;
    /// Hardware address length.
    pub const HLEN: usize = 4;
    /// Protocol address length.
    pub const PLEN: usize = 5;
    /// Operation.
    pub const OPER: Range<usize> = 6..8;
    /// Start of the sender hardware address.
    pub const ADDRESSES: usize = 8;
}

/// Length of the fixed part.
pub const FIXED_LEN: usize = field::ADDRESSES;
/// Length of an Ethernet/IPv4 ARP packet.
pub const ETHERNET_IPV4_LEN: usize = FIXED_LEN + 2 * (6 + 4);

/// ARP operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// 1
    Request,
    /// 2
    Reply,
    /// Anything else.
    Unknown(u16),
}

impl From<u16> for Operation {
    #[inline]
    fn from(value: u16) -> Self {
        match value {
            1 => Self::Request,
            2 => Self::Reply,
            other => Self::Unknown(other),
        }
    }
}

impl From<Operation> for u16 {
    #[inline]
    fn from(value: Operation) -> Self {
        match value {
            Operation::Request => 1,
            Operation::Reply => 2,
            Operation::Unknown(other) => other,
        }
    }
}

/// Read-only view of an ARP packet.
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

    /// Wrap after checking that the fixed part and all four addresses are present.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let packet = Self { buffer };
        if packet.buffer.as_ref().len() < FIXED_LEN
            || packet.buffer.as_ref().len() < packet.packet_len()
        {
            return Err(ParseError::ArpTruncated);
        }
        Ok(packet)
    }

    /// Hardware type.
    #[inline]
    pub fn hardware_type(&self) -> u16 {
        be16_at(self.buffer.as_ref(), field::HTYPE.start)
    }

    /// Protocol type.
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        be16_at(self.buffer.as_ref(), field::PTYPE.start).into()
    }

    /// Hardware address length in bytes.
    #[inline]
    pub fn hardware_len(&self) -> usize {
        u8_at(self.buffer.as_ref(), field::HLEN) as usize
    }

    /// Protocol address length in bytes.
    #[inline]
    pub fn protocol_len(&self) -> usize {
        u8_at(self.buffer.as_ref(), field::PLEN) as usize
    }

    /// Operation.
    #[inline]
    pub fn operation(&self) -> Operation {
        be16_at(self.buffer.as_ref(), field::OPER.start).into()
    }

    /// Length the header announces: fixed part plus two hardware and two protocol addresses.
    #[inline]
    pub fn packet_len(&self) -> usize {
        FIXED_LEN + 2 * (self.hardware_len() + self.protocol_len())
    }

    /// True for the common Ethernet (6-byte) / IPv4 (4-byte) form.
    #[inline]
    pub fn is_ethernet_ipv4(&self) -> bool {
        self.hardware_type() == 1
            && self.protocol_type() == EtherType::Ipv4
            && self.hardware_len() == 6
            && self.protocol_len() == 4
    }

    /// Byte range of address `index` (0 sender, 1 target), hardware or protocol.
    fn addr_range(&self, index: usize, hardware: bool) -> (usize, usize) {
        let (h, p) = (self.hardware_len(), self.protocol_len());
        let start = FIXED_LEN + index * (h + p) + if hardware { 0 } else { h };
        (start, start + if hardware { h } else { p })
    }

    fn addr(&self, index: usize, hardware: bool) -> &[u8] {
        let (start, end) = self.addr_range(index, hardware);
        slice(self.buffer.as_ref(), start, end)
    }

    /// Sender hardware address (empty if missing).
    pub fn source_hardware_addr(&self) -> &[u8] {
        self.addr(0, true)
    }
    /// Sender protocol address (empty if missing).
    pub fn source_protocol_addr(&self) -> &[u8] {
        self.addr(0, false)
    }
    /// Target hardware address (empty if missing).
    pub fn target_hardware_addr(&self) -> &[u8] {
        self.addr(1, true)
    }
    /// Target protocol address (empty if missing).
    pub fn target_protocol_addr(&self) -> &[u8] {
        self.addr(1, false)
    }

    /// Ethernet/IPv4 sender IP (meaningful only if [`Self::is_ethernet_ipv4`]).
    #[inline]
    pub fn ipv4_sender(&self) -> [u8; 4] {
        array_at(self.buffer.as_ref(), 14)
    }
    /// Ethernet/IPv4 target IP (meaningful only if [`Self::is_ethernet_ipv4`]).
    #[inline]
    pub fn ipv4_target(&self) -> [u8; 4] {
        array_at(self.buffer.as_ref(), 24)
    }
    /// Ethernet/IPv4 sender MAC (meaningful only if [`Self::is_ethernet_ipv4`]).
    #[inline]
    pub fn ethernet_sender(&self) -> [u8; 6] {
        array_at(self.buffer.as_ref(), 8)
    }
    /// Ethernet/IPv4 target MAC (meaningful only if [`Self::is_ethernet_ipv4`]).
    #[inline]
    pub fn ethernet_target(&self) -> [u8; 6] {
        array_at(self.buffer.as_ref(), 18)
    }
}

/// Setters. They never panic; on a view that passed `new_checked` every field they write
/// is inside the buffer. Set the two lengths before the addresses: they place them.
impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    setters! {
        /// Set the hardware type.
        set_hardware_type(u16) at field::HTYPE.start;
        /// Set the protocol type.
        set_protocol_type(EtherType as u16) at field::PTYPE.start;
        /// Set the hardware address length.
        set_hardware_len(u8) at field::HLEN;
        /// Set the protocol address length.
        set_protocol_len(u8) at field::PLEN;
        /// Set the operation.
        set_operation(Operation as u16) at field::OPER.start;
    }

    /// Write address `index` (0 sender, 1 target); `value` is cut to the announced length.
    fn set_addr(&mut self, index: usize, hardware: bool, value: &[u8]) {
        let (start, end) = self.addr_range(index, hardware);
        let dst = slice_mut(self.buffer.as_mut(), start, end);
        let n = dst.len().min(value.len());
        dst[..n].copy_from_slice(&value[..n]);
    }

    /// Set the sender hardware address (as many bytes as the hardware length says).
    pub fn set_source_hardware_addr(&mut self, value: &[u8]) {
        self.set_addr(0, true, value);
    }
    /// Set the sender protocol address (as many bytes as the protocol length says).
    pub fn set_source_protocol_addr(&mut self, value: &[u8]) {
        self.set_addr(0, false, value);
    }
    /// Set the target hardware address (as many bytes as the hardware length says).
    pub fn set_target_hardware_addr(&mut self, value: &[u8]) {
        self.set_addr(1, true, value);
    }
    /// Set the target protocol address (as many bytes as the protocol length says).
    pub fn set_target_protocol_addr(&mut self, value: &[u8]) {
        self.set_addr(1, false, value);
    }
}

/// An Ethernet/IPv4 ARP packet (28 bytes), the only form Rampart answers or builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Operation.
    pub operation: Operation,
    /// Sender MAC address.
    pub source_hardware_addr: ethernet::Address,
    /// Sender IPv4 address.
    pub source_protocol_addr: ipv4::Address,
    /// Target MAC address (zero in a request).
    pub target_hardware_addr: ethernet::Address,
    /// Target IPv4 address.
    pub target_protocol_addr: ipv4::Address,
}

impl Repr {
    /// Read a checked view; [`ReprError::ArpNotEthernetIpv4`] for other address kinds.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ReprError> {
        if !packet.is_ethernet_ipv4() {
            return Err(ReprError::ArpNotEthernetIpv4);
        }
        Ok(Repr {
            operation: packet.operation(),
            source_hardware_addr: packet.ethernet_sender(),
            source_protocol_addr: packet.ipv4_sender(),
            target_hardware_addr: packet.ethernet_target(),
            target_protocol_addr: packet.ipv4_target(),
        })
    }

    /// Bytes [`Self::emit`] writes: 28.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        ETHERNET_IPV4_LEN
    }

    /// Write the packet at the start of `buf`; returns [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, ReprError> {
        check_room(buf, ETHERNET_IPV4_LEN)?;
        let mut packet = Packet::new_unchecked(&mut *buf);
        packet.set_hardware_type(1);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_hardware_addr);
        packet.set_source_protocol_addr(&self.source_protocol_addr);
        packet.set_target_hardware_addr(&self.target_hardware_addr);
        packet.set_target_protocol_addr(&self.target_protocol_addr);
        Ok(ETHERNET_IPV4_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_ipv4_request() {
        let p = [
            0, 1, 8, 0, 6, 4, 0, 1, // htype, ptype, hlen, plen, op
            2, 0, 0, 0, 0, 1, 10, 0, 0, 1, // sender
            0, 0, 0, 0, 0, 0, 10, 0, 0, 2, // target
        ];
        let arp = Packet::new_checked(&p[..]).unwrap();
        assert!(arp.is_ethernet_ipv4());
        assert_eq!(arp.operation(), Operation::Request);
        assert_eq!(arp.ipv4_sender(), [10, 0, 0, 1]);
        assert_eq!(arp.ipv4_target(), [10, 0, 0, 2]);
        assert_eq!(arp.ethernet_sender(), [2, 0, 0, 0, 0, 1]);
        assert_eq!(arp.source_protocol_addr(), &[10, 0, 0, 1]);
        assert_eq!(arp.target_hardware_addr(), &[0; 6]);
        assert_eq!(Packet::new_checked(&p[..27]), Err(ParseError::ArpTruncated));
        assert_eq!(Packet::new_checked(&p[..7]), Err(ParseError::ArpTruncated));
        let repr = Repr::parse(&arp).unwrap();
        let mut out = [0xee; 30];
        assert_eq!(repr.emit(&mut out), Ok(28));
        assert_eq!(out[..28], p);
        assert!(repr.emit(&mut out[..27]).is_err());
        assert_eq!(u16::from(Operation::from(9)), 9);
    }

    #[test]
    fn other_address_sizes() {
        // hlen 0, plen 0: just the fixed part.
        let p = [0, 6, 8, 0, 0, 0, 0, 2];
        let arp = Packet::new_checked(&p[..]).unwrap();
        assert!(!arp.is_ethernet_ipv4());
        assert_eq!(arp.packet_len(), 8);
        assert!(arp.source_hardware_addr().is_empty());
        assert_eq!(Repr::parse(&arp), Err(ReprError::ArpNotEthernetIpv4));
        let mut q = p;
        let mut view = Packet::new_checked(&mut q[..]).unwrap();
        view.set_source_hardware_addr(&[1, 2, 3]); // no room announced: nothing written
        view.set_operation(Operation::Request);
        assert_eq!(q, [0, 6, 8, 0, 0, 0, 0, 1]);
    }
}
