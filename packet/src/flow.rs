//! Flow identity for the stateful flow table: a 5-tuple plus a zone, with a symmetric
//! canonical form so both directions of a connection find one entry.

use crate::{icmp, icmpv6, Meta, L3};

/// Which way a packet travels relative to its flow's canonical key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// The packet's source is the canonical key's `src` endpoint.
    Forward = 0,
    /// The packet's source is the canonical key's `dst` endpoint.
    Reverse = 1,
}

/// A 5-tuple plus zone. As built by [`FlowKey::from_meta`] it is in packet order; use
/// [`FlowKey::canonical`] for the direction-independent form.
///
/// ICMP/ICMPv6 query messages that carry an identifier (echo and friends) use the
/// identifier as both ports, so a request and its reply share a key; other ICMP messages use
/// `type << 8 | code` and 0 (errors belong to the flow of their embedded packet, which the
/// dataplane looks up from [`Meta::icmp_inner_offset`]). Non-first fragments have ports 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address (IPv4-mapped for IPv4).
    pub src_addr: [u8; 16],
    /// Destination address (IPv4-mapped for IPv4).
    pub dst_addr: [u8; 16],
    /// Source port (see the type docs for ICMP).
    pub src_port: u16,
    /// Destination port (see the type docs for ICMP).
    pub dst_port: u16,
    /// Upper-layer protocol.
    pub proto: u8,
    /// Separates overlapping address spaces: the outer VLAN ID as [`Self::from_meta`] sets
    /// it (0 if untagged); the dataplane may put a segment id here instead.
    pub zone: u16,
}

impl FlowKey {
    /// Key of an IP packet in packet order; `None` for non-IP frames.
    #[inline]
    pub fn from_meta(meta: &Meta) -> Option<FlowKey> {
        if !meta.is_ip() {
            return None;
        }
        let (mut src_port, mut dst_port) = (meta.src_port, meta.dst_port);
        if let Some(msg_type) = meta.icmp_type() {
            let has_ident = match meta.l3() {
                L3::Ipv4 => icmp::has_ident(msg_type),
                _ => icmpv6::has_ident(msg_type),
            };
            if has_ident {
                src_port = meta.dst_port;
            } else {
                dst_port = 0;
            }
        }
        Some(FlowKey {
            src_addr: meta.src_addr,
            dst_addr: meta.dst_addr,
            src_port,
            dst_port,
            proto: meta.ip_proto,
            zone: meta.vlan().unwrap_or(0),
        })
    }

    /// The same flow seen from the other end.
    #[inline]
    pub fn reversed(&self) -> FlowKey {
        FlowKey {
            src_addr: self.dst_addr,
            dst_addr: self.src_addr,
            src_port: self.dst_port,
            dst_port: self.src_port,
            ..*self
        }
    }

    /// The direction-independent form: the endpoint `(addr, port)` that sorts lower becomes
    /// `src`. Both directions of a flow give the same key; the [`Direction`] says whether
    /// this packet went lower → higher ([`Direction::Forward`]) or the other way.
    #[inline]
    pub fn canonical(&self) -> (FlowKey, Direction) {
        if (self.src_addr, self.src_port) <= (self.dst_addr, self.dst_port) {
            (*self, Direction::Forward)
        } else {
            (self.reversed(), Direction::Reverse)
        }
    }
}
