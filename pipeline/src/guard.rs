//! The guard (DESIGN.md §3 step 3): a guest port may send only from a MAC and an IP
//! address it owns, may not claim others' addresses in ARP or Neighbour Advertisements,
//! and may not act as a DHCP server or IPv6 router unless it is allowed to.
//!
//! A port owns its configured `macs` and `addresses` (prefixes: a router guest lists the
//! networks behind it). Where it has none of a kind and learns (`learn = "first"`), it
//! owns the first it uses — one MAC, one IPv4 address, one IPv6 link-local and one other
//! IPv6 address — unless another port owns it; a learned one it has not used for the
//! learn timeout is forgotten, so a guest can move to a new lease. The IPv6 link-local
//! address derived from its MAC (EUI-64) is always its own. DHCP discovery (from
//! 0.0.0.0) and IPv6 duplicate address detection and MLD (from ::) stay allowed.
//!
//! [`PortGuard::check`] runs on every packet of a guarded port, after parsing and before
//! switching (so a spoofed MAC is never learned). On what a guest normally sends it costs
//! a few compares: the source MAC against one or two, the source address against a
//! prefix or two. Learning is the rare path; its state ([`Learned`]) is shared by the
//! workers that poll the port (atomics, no lock) and carried into new policy generations.

use crate::mac_table::mac_u64;
use rampart_packet::{ethernet::ethertype, Meta, L3};
use rampart_shm::{DropReason, GuardImage};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::sync::Arc;

const UDP: u8 = 17;
const ICMPV6: u8 = 58;
/// ICMPv6 types the guard looks at.
const ROUTER_ADVERTISEMENT: u8 = 134;
const NEIGHBOR_SOLICITATION: u8 = 135;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const REDIRECT: u8 = 137;
/// MLD queries/reports (v1: 130-132, v2 report: 143), sent from :: before an address exists.
const MLD: [u8; 4] = [130, 131, 132, 143];
const DHCP_SERVER: u16 = 67;
const DHCP_CLIENT: u16 = 68;
const DHCPV6_SERVER: u16 = 547;
/// A learned entry's last use is refreshed at most this often (a store to a shared line).
const REFRESH_MS: u64 = 1000;

/// An IPv4 address as the 128-bit IPv4-mapped value the guard compares.
const MAPPED: u128 = 0xffff << 32;
const MAPPED_MASK: u128 = !0u128 << 32;

/// The guard of one port in one policy generation.
pub struct PortGuard {
    /// Configured MACs (as [`mac_u64`]); empty: the learned one.
    macs: Box<[u64]>,
    /// Configured prefixes as (network, mask), IPv4 mapped.
    prefixes: Box<[(u128, u128)]>,
    /// Whether any configured prefix is IPv4 / IPv6 (a family without any is learned).
    has_v4: bool,
    has_v6: bool,
    learn: bool,
    timeout_ms: u64,
    serves_dhcp: bool,
    serves_ra: bool,
    learned: Arc<Learned>,
}

/// What a port learned: shared by its workers and by the generations that keep it.
#[derive(Default)]
pub struct Learned {
    mac: Slot,
    v4: Slot,
    /// IPv6: [0] link-local (fe80::/10), [1] any other.
    v6: [Slot; 2],
}

impl Learned {
    /// Forgets everything (the guest went away): the next guest's first use is learned.
    pub fn forget(&self) {
        for slot in [&self.mac, &self.v4, &self.v6[0], &self.v6[1]] {
            slot.seen.store(0, Ordering::Relaxed);
        }
    }
}

/// One learned value (up to 128 bits) and when it was last used, as a sequence lock:
/// writers (first use, rare) make `seq` odd while they store; readers retry on a change.
#[derive(Default)]
struct Slot {
    seq: AtomicU64,
    hi: AtomicU64,
    lo: AtomicU64,
    /// Milliseconds of the flow clock + 1 at the last use; 0: empty.
    seen: AtomicU64,
}

impl Slot {
    /// The value, if the slot holds one used within `timeout_ms` of `now`.
    #[inline]
    fn get(&self, now: u64, timeout_ms: u64) -> Option<u128> {
        for _ in 0..4 {
            let s1 = self.seq.load(Ordering::Acquire);
            let (hi, lo) = (self.hi.load(Ordering::Relaxed), self.lo.load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if s1 & 1 == 0 && self.seq.load(Ordering::Relaxed) == s1 {
                let seen = self.seen.load(Ordering::Relaxed);
                return (seen != 0 && now.saturating_sub(seen - 1) <= timeout_ms).then_some((hi as u128) << 64 | lo as u128);
            }
            std::hint::spin_loop();
        }
        None
    }

    /// Whether it holds `v` (live); refreshes its last use.
    #[inline(always)]
    fn holds(&self, v: u128, now: u64, timeout_ms: u64) -> bool {
        let held = self.get(now, timeout_ms) == Some(v);
        if held && now + 1 >= self.seen.load(Ordering::Relaxed) + REFRESH_MS {
            self.seen.store(now + 1, Ordering::Relaxed);
        }
        held
    }

    /// Stores `v` whatever the slot held (a lease the DHCP server granted); false (nothing
    /// stored) if another writer is at it.
    #[cold]
    fn set(&self, v: u128, now: u64) -> bool {
        let s = self.seq.load(Ordering::Relaxed);
        if s & 1 == 1 || self.seq.compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return false;
        }
        fence(Ordering::Release);
        self.hi.store((v >> 64) as u64, Ordering::Relaxed);
        self.lo.store(v as u64, Ordering::Relaxed);
        self.seen.store(now + 1, Ordering::Relaxed);
        self.seq.store(s + 2, Ordering::Release);
        true
    }

    /// Stores `v` if the slot is empty or expired (and no other writer is at it); true
    /// when the slot now holds `v`.
    #[cold]
    fn claim(&self, v: u128, now: u64, timeout_ms: u64) -> bool {
        match self.get(now, timeout_ms) {
            Some(held) => held == v,
            None => self.set(v, now),
        }
    }
}

/// Who else owns an address or MAC: the runtime answers for the other ports.
pub trait Owners {
    /// Whether a port other than `local` owns `addr` (configured or learned).
    fn address_taken(&self, local: u8, addr: u128, now: u64) -> bool;
    /// Whether a port other than `local` owns `mac` (bound or learned in its segment).
    fn mac_taken(&self, local: u8, mac: &[u8; 6]) -> bool;
}

impl PortGuard {
    /// The guard of a port from its image; `learned` is what the port learned under an
    /// earlier generation, if it keeps it.
    pub fn new(image: &GuardImage, macs: &[[u8; 6]], learned: Option<Arc<Learned>>) -> PortGuard {
        let prefixes: Box<[(u128, u128)]> = image
            .addresses
            .iter()
            .map(|&(addr, len)| {
                let mask = (!0u128).checked_shl(128 - len.min(128) as u32).unwrap_or(0);
                (u128::from_be_bytes(addr) & mask, mask)
            })
            .collect();
        PortGuard {
            macs: macs.iter().map(mac_u64).collect(),
            has_v4: prefixes.iter().any(|&(net, mask)| mask & MAPPED_MASK == MAPPED_MASK && net & MAPPED_MASK == MAPPED),
            has_v6: prefixes.iter().any(|&(net, mask)| !(mask & MAPPED_MASK == MAPPED_MASK && net & MAPPED_MASK == MAPPED)),
            prefixes,
            learn: image.learn,
            timeout_ms: image.learn_timeout_s as u64 * 1000,
            serves_dhcp: image.serves_dhcp,
            serves_ra: image.serves_ra,
            learned: learned.unwrap_or_default(),
        }
    }

    /// Whether the port may serve DHCP (its server messages are snooped for leases).
    pub fn serves_dhcp(&self) -> bool {
        self.serves_dhcp
    }

    /// Whether `mac` is the port's (configured, or the one it learned).
    pub fn owns_mac(&self, mac: &[u8; 6], now: u64) -> bool {
        let m = mac_u64(mac);
        self.macs.contains(&m) || (self.macs.is_empty() && self.learned.mac.get(now, self.timeout_ms) == Some(m as u128))
    }

    /// A DHCP server leased IPv4 address `addr` to this port's guest: where the port learns
    /// its IPv4 address, that lease is it (replacing the one it had).
    pub fn lease(&self, addr: u32, now: u64) {
        if self.learn && !self.has_v4 {
            let _ = self.learned.v4.set(MAPPED | addr as u128, now);
        }
    }

    /// What this port learned (to carry into the next generation).
    pub fn learned(&self) -> &Arc<Learned> {
        &self.learned
    }

    /// Whether the port owns `addr` now (configured, learned, or its MAC's link-local).
    pub fn owns_address(&self, addr: u128, now: u64) -> bool {
        self.prefixes.iter().any(|&(net, mask)| addr & mask == net)
            || self.learned.v4.get(now, self.timeout_ms) == Some(addr)
            || self.learned.v6.iter().any(|s| s.get(now, self.timeout_ms) == Some(addr))
    }

    /// Checks one parsed packet received on port `local`: `Err` gives the drop reason.
    #[inline(always)]
    pub fn check(&self, owners: &impl Owners, local: u8, meta: &Meta, frame: &[u8], now: u64) -> Result<(), DropReason> {
        let mac = mac_u64(&meta.src_mac);
        if !self.macs.contains(&mac) && !self.learned_mac(owners, local, meta, now) {
            return Err(DropReason::SpoofMac);
        }
        match meta.l3() {
            L3::Ipv4 => self.check_v4(owners, local, meta, now),
            L3::Ipv6 => self.check_v6(owners, local, meta, frame, mac, now),
            L3::Arp => self.check_arp(owners, local, meta, frame, now),
            L3::Other => Ok(()),
        }
    }

    /// The port has no configured MACs: whether `meta`'s source is the one it learned.
    #[inline]
    fn learned_mac(&self, owners: &impl Owners, local: u8, meta: &Meta, now: u64) -> bool {
        let mac = mac_u64(&meta.src_mac) as u128;
        self.macs.is_empty()
            && self.learn
            && (self.learned.mac.holds(mac, now, self.timeout_ms)
                || (meta.src_mac[0] & 1 == 0 && meta.src_mac != [0; 6] && !owners.mac_taken(local, &meta.src_mac) && self.learned.mac.claim(mac, now, self.timeout_ms)))
    }

    #[inline(always)]
    fn check_v4(&self, owners: &impl Owners, local: u8, meta: &Meta, now: u64) -> Result<(), DropReason> {
        let src = u128::from_be_bytes(meta.src_addr);
        let udp_sport = (meta.ip_proto == UDP && meta.has_ports()).then_some(meta.src_port);
        if src == MAPPED {
            // 0.0.0.0: only a DHCP client that has no address yet.
            return match (udp_sport, meta.dst_port) {
                (Some(DHCP_CLIENT), DHCP_SERVER) => Ok(()),
                _ => Err(DropReason::SpoofIp),
            };
        }
        if !self.owns_v4(owners, local, src, now) {
            return Err(DropReason::SpoofIp);
        }
        match udp_sport {
            Some(DHCP_SERVER) if !self.serves_dhcp => Err(DropReason::RogueDhcp),
            _ => Ok(()),
        }
    }

    #[inline(always)]
    fn owns_v4(&self, owners: &impl Owners, local: u8, src: u128, now: u64) -> bool {
        self.prefixes.iter().any(|&(net, mask)| src & mask == net)
            || (self.learn && !self.has_v4 && (self.learned.v4.holds(src, now, self.timeout_ms) || self.learn_address(owners, local, &self.learned.v4, src, now)))
    }

    /// Learns `addr` into `slot` if it may be the port's: a unicast address nobody else owns.
    #[cold]
    fn learn_address(&self, owners: &impl Owners, local: u8, slot: &Slot, addr: u128, now: u64) -> bool {
        let unicast = if addr & MAPPED_MASK == MAPPED {
            let v4 = addr as u32;
            v4 >> 28 != 0xe && v4 >> 28 != 0xf && v4 >> 24 != 0 && v4 >> 24 != 127
        } else {
            addr >> 120 != 0xff && addr > 1
        };
        unicast && !owners.address_taken(local, addr, now) && slot.claim(addr, now, self.timeout_ms)
    }

    fn check_v6(&self, owners: &impl Owners, local: u8, meta: &Meta, frame: &[u8], mac: u64, now: u64) -> Result<(), DropReason> {
        let src = u128::from_be_bytes(meta.src_addr);
        let icmp = (meta.ip_proto == ICMPV6).then(|| meta.icmp_type()).flatten();
        if src == 0 {
            // ::, before the guest has an address: duplicate address detection and MLD.
            return match icmp {
                Some(t) if t == NEIGHBOR_SOLICITATION || MLD.contains(&t) => Ok(()),
                _ => Err(DropReason::SpoofIp),
            };
        }
        if !self.owns_v6(owners, local, src, mac, now) {
            return Err(DropReason::SpoofIp);
        }
        match icmp {
            Some(ROUTER_ADVERTISEMENT | REDIRECT) if !self.serves_ra => return Err(DropReason::RogueRa),
            Some(NEIGHBOR_ADVERTISEMENT) => {
                // The target address (after type, code, checksum and flags) must be its own.
                let at = meta.l4_offset as usize + 8;
                let target = frame.get(at..at + 16).map(|b| u128::from_be_bytes(b.try_into().expect("16 bytes")));
                if !target.is_some_and(|t| self.owns_v6(owners, local, t, mac, now)) {
                    return Err(DropReason::NdSpoof);
                }
            }
            _ => {}
        }
        match meta.has_ports().then_some(meta.src_port) {
            Some(DHCPV6_SERVER) if meta.ip_proto == UDP && !self.serves_dhcp => Err(DropReason::RogueDhcp),
            _ => Ok(()),
        }
    }

    fn owns_v6(&self, owners: &impl Owners, local: u8, addr: u128, mac: u64, now: u64) -> bool {
        if addr == link_local(mac) || self.prefixes.iter().any(|&(net, mask)| addr & mask == net) {
            return true;
        }
        let slot = &self.learned.v6[(addr >> 118 != 0x3fa) as usize];
        self.learn && !self.has_v6 && (slot.holds(addr, now, self.timeout_ms) || self.learn_address(owners, local, slot, addr, now))
    }

    fn check_arp(&self, owners: &impl Owners, local: u8, meta: &Meta, frame: &[u8], now: u64) -> Result<(), DropReason> {
        // Ethernet/IPv4 ARP only: hardware type 1, protocol IPv4, lengths 6 and 4.
        let arp = meta.l3_offset();
        let fixed = frame.get(arp..arp + 14);
        let ok = fixed.is_some_and(|a| a[..6] == [0, 1, (ethertype::IPV4 >> 8) as u8, ethertype::IPV4 as u8, 6, 4] && a[8..14] == meta.src_mac);
        let sender = u128::from_be_bytes(meta.src_addr);
        // A probe (sender 0.0.0.0) claims nothing.
        if ok && (sender == MAPPED || self.owns_v4(owners, local, sender, now)) {
            Ok(())
        } else {
            Err(DropReason::ArpSpoof)
        }
    }
}

/// Whether a parsed packet is a DHCP server's message to a client (UDP 67 → 68): the cheap
/// test before [`dhcp_ack`].
#[inline(always)]
pub fn from_dhcp_server(meta: &Meta) -> bool {
    meta.src_port == DHCP_SERVER && meta.dst_port == DHCP_CLIENT && meta.ip_proto == UDP && meta.l3() == L3::Ipv4 && meta.has_ports()
}

/// The client MAC and the leased address of a DHCP ACK (a BOOTP reply with message type 5),
/// if `meta`'s packet is one.
pub fn dhcp_ack(meta: &Meta, frame: &[u8]) -> Option<([u8; 6], u32)> {
    let b = meta.payload(frame);
    // op 2 (reply), hardware type 1 (Ethernet), address length 6; the magic cookie.
    if b.len() < 240 || b[..3] != [2, 1, 6] || b[236..240] != [99, 130, 83, 99] {
        return None;
    }
    let yiaddr = u32::from_be_bytes(b[16..20].try_into().ok()?);
    let chaddr: [u8; 6] = b[28..34].try_into().ok()?;
    let mut opts = &b[240..];
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            0 => opts = rest,
            255 => break,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let value = rest.get(..len as usize)?;
                if code == 53 {
                    return (value == [5] && yiaddr != 0).then_some((chaddr, yiaddr));
                }
                opts = &rest[len as usize..];
            }
        }
    }
    None
}

/// The IPv6 link-local address of a MAC (modified EUI-64, RFC 4291 appendix A).
fn link_local(mac: u64) -> u128 {
    let m = mac.to_be_bytes(); // [0, 0, m0..m5]
    let iid = u64::from_be_bytes([m[2] ^ 2, m[3], m[4], 0xff, 0xfe, m[5], m[6], m[7]]);
    0xfe80u128 << 112 | iid as u128
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rampart_packet::build;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
    const OTHER: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0b];
    const BCAST: [u8; 6] = [0xff; 6];
    const OTHER_GUEST: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0d];

    /// Another port owns 10.0.0.11 and MAC OTHER.
    struct Neighbour;
    impl Owners for Neighbour {
        fn address_taken(&self, _: u8, addr: u128, _: u64) -> bool {
            addr == MAPPED | 0x0a00_000b
        }
        fn mac_taken(&self, _: u8, mac: &[u8; 6]) -> bool {
            *mac == OTHER
        }
    }

    fn image(addresses: &[&str], learn: bool) -> GuardImage {
        let addresses = addresses
            .iter()
            .map(|a| {
                let (a, len) = a.split_once('/').map_or((*a, None), |(a, l)| (a, Some(l.parse::<u8>().unwrap())));
                match a.parse::<std::net::IpAddr>().unwrap() {
                    std::net::IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), 96 + len.unwrap_or(32)),
                    std::net::IpAddr::V6(v6) => (v6.octets(), len.unwrap_or(128)),
                }
            })
            .collect();
        GuardImage { addresses, learn, learn_timeout_s: 300, serves_dhcp: false, serves_ra: false }
    }

    fn check(g: &PortGuard, frame: &[u8], now: u64) -> Result<(), DropReason> {
        let meta = rampart_packet::parse(frame).unwrap();
        g.check(&Neighbour, 0, &meta, frame, now)
    }

    fn udp(src_mac: [u8; 6], src: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        build::udp_v4(src, sport, [10, 0, 0, 11], dport, b"x").macs(src_mac, OTHER).pad(60).build().unwrap()
    }

    fn icmpv6(src: &str, dst: &str, ty: u8, body: &[u8]) -> Vec<u8> {
        let (s, d): (std::net::Ipv6Addr, std::net::Ipv6Addr) = (src.parse().unwrap(), dst.parse().unwrap());
        let header_data = body[..4].try_into().unwrap();
        build::icmpv6(s.octets(), d.octets(), rampart_packet::icmpv6::Repr::Unknown { msg_type: ty, code: 0, header_data }, &body[4..]).macs(MAC, BCAST).build().unwrap()
    }

    #[test]
    fn configured_bindings_pass_and_everything_else_is_spoofed() {
        let g = PortGuard::new(&image(&["10.0.0.10", "192.168.7.0/24"], true), &[MAC], None);
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 10], 1000, 53), 0), Ok(()));
        assert_eq!(check(&g, &udp(MAC, [192, 168, 7, 99], 1000, 53), 0), Ok(()), "a prefix behind the guest");
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 77], 1000, 53), 0), Err(DropReason::SpoofIp), "configured addresses are not learned past");
        assert_eq!(check(&g, &udp(OTHER, [10, 0, 0, 10], 1000, 53), 0), Err(DropReason::SpoofMac));
        assert_eq!(check(&g, &udp([0x52, 0x54, 0, 0, 0, 0x0c], [10, 0, 0, 10], 1000, 53), 0), Err(DropReason::SpoofMac), "configured MACs are not learned past");
    }

    #[test]
    fn learns_the_first_mac_and_address_and_nothing_after() {
        let g = PortGuard::new(&image(&[], true), &[], None);
        assert_eq!(check(&g, &udp(OTHER, [10, 0, 0, 10], 1000, 53), 0), Err(DropReason::SpoofMac), "another port's MAC is never learned");
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 11], 1000, 53), 0), Err(DropReason::SpoofIp), "another port's address is never learned");
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 10], 1000, 53), 0), Ok(()));
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 10], 1000, 53), 1), Ok(()));
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 77], 1000, 53), 2), Err(DropReason::SpoofIp));
        assert_eq!(check(&g, &udp([0x52, 0x54, 0, 0, 0, 0x0c], [10, 0, 0, 10], 1000, 53), 3), Err(DropReason::SpoofMac));
        assert_eq!(check(&g, &udp(BCAST, [10, 0, 0, 10], 1000, 53), 3), Err(DropReason::SpoofMac), "a group MAC is nobody's");
        // Kept by a new generation of the port.
        let next = PortGuard::new(&image(&[], true), &[], Some(g.learned().clone()));
        assert_eq!(check(&next, &udp(MAC, [10, 0, 0, 77], 1000, 53), 4), Err(DropReason::SpoofIp));
        assert_eq!(check(&next, &udp(MAC, [10, 0, 0, 10], 1000, 53), 4), Ok(()));
        // Its guest went away: the next one's first MAC and address are learned.
        next.learned().forget();
        assert_eq!(check(&next, &udp(OTHER_GUEST, [10, 0, 0, 77], 1000, 53), 5), Ok(()));
        assert_eq!(check(&next, &udp(MAC, [10, 0, 0, 77], 1000, 53), 6), Err(DropReason::SpoofMac));
    }

    #[test]
    fn learned_bindings_are_forgotten_after_the_timeout_of_disuse() {
        let g = PortGuard::new(&image(&[], true), &[], None);
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 10], 1000, 53), 0), Ok(()));
        // Used every second for a while: kept.
        for s in 1..=400 {
            assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 10], 1000, 53), s * 1000), Ok(()));
        }
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 20], 1000, 53), 400_500), Err(DropReason::SpoofIp));
        // Unused for longer than 300 s: a new lease is learned.
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 20], 1000, 53), 701_001), Ok(()));
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 10], 1000, 53), 701_002), Err(DropReason::SpoofIp));
    }

    #[test]
    fn dhcp_clients_may_send_from_nowhere_and_servers_need_leave() {
        let g = PortGuard::new(&image(&["10.0.0.10"], true), &[MAC], None);
        assert_eq!(check(&g, &udp(MAC, [0, 0, 0, 0], 68, 67), 0), Ok(()), "DHCP discover from 0.0.0.0");
        assert_eq!(check(&g, &udp(MAC, [0, 0, 0, 0], 1000, 53), 0), Err(DropReason::SpoofIp));
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 10], 67, 68), 0), Err(DropReason::RogueDhcp), "a DHCP offer from a guest");
        let server = PortGuard::new(&GuardImage { serves_dhcp: true, ..image(&["10.0.0.10"], true) }, &[MAC], None);
        assert_eq!(check(&server, &udp(MAC, [10, 0, 0, 10], 67, 68), 0), Ok(()));
    }

    /// A BOOTP reply from 10.0.0.1:67 to the client `chaddr`, leasing `yiaddr`, with DHCP
    /// message type `kind` (5 = ACK).
    pub(crate) fn dhcp_reply(server_mac: [u8; 6], chaddr: [u8; 6], yiaddr: [u8; 4], kind: u8) -> Vec<u8> {
        let mut b = vec![0u8; 240];
        b[..4].copy_from_slice(&[2, 1, 6, 0]);
        b[16..20].copy_from_slice(&yiaddr);
        b[28..34].copy_from_slice(&chaddr);
        b[236..240].copy_from_slice(&[99, 130, 83, 99]);
        b.extend_from_slice(&[0, 53, 1, kind, 51, 4, 0, 0, 0x0e, 0x10, 255]);
        build::udp_v4([10, 0, 0, 1], 67, [255, 255, 255, 255], 68, &b).macs(server_mac, BCAST).build().unwrap()
    }

    #[test]
    fn a_dhcp_ack_gives_the_lease_and_nothing_else_does() {
        let ack = dhcp_reply(OTHER, MAC, [10, 0, 0, 50], 5);
        let meta = rampart_packet::parse(&ack).unwrap();
        assert!(from_dhcp_server(&meta));
        assert_eq!(dhcp_ack(&meta, &ack), Some((MAC, 0x0a00_0032)));
        let offer = dhcp_reply(OTHER, MAC, [10, 0, 0, 50], 2);
        assert_eq!(dhcp_ack(&rampart_packet::parse(&offer).unwrap(), &offer), None, "an offer leases nothing");
        let short = udp(OTHER, [10, 0, 0, 1], 67, 68);
        assert_eq!(dhcp_ack(&rampart_packet::parse(&short).unwrap(), &short), None);
        // The lease is the guest's address from then on, whatever it sends first.
        let g = PortGuard::new(&image(&[], true), &[MAC], None);
        g.lease(0x0a00_0032, 0);
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 51], 1000, 53), 1), Err(DropReason::SpoofIp));
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 50], 1000, 53), 1), Ok(()));
        // A new lease replaces it.
        g.lease(0x0a00_0033, 2);
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 50], 1000, 53), 3), Err(DropReason::SpoofIp));
        assert_eq!(check(&g, &udp(MAC, [10, 0, 0, 51], 1000, 53), 3), Ok(()));
        // A port with configured IPv4 addresses is not moved by leases.
        let fixed = PortGuard::new(&image(&["10.0.0.10"], true), &[MAC], None);
        fixed.lease(0x0a00_0032, 0);
        assert_eq!(check(&fixed, &udp(MAC, [10, 0, 0, 50], 1000, 53), 1), Err(DropReason::SpoofIp));
    }

    #[test]
    fn arp_must_claim_only_the_guests_own_address_and_mac() {
        let g = PortGuard::new(&image(&["10.0.0.10"], true), &[MAC], None);
        let arp = |sender_mac: [u8; 6], sender: [u8; 4], target: [u8; 4]| {
            let mut f = build::arp_request(sender_mac, sender, target).pad(60).build().unwrap();
            f[6..12].copy_from_slice(&MAC); // the Ethernet source stays the guest's own
            f
        };
        assert_eq!(check(&g, &arp(MAC, [10, 0, 0, 10], [10, 0, 0, 11]), 0), Ok(()));
        assert_eq!(check(&g, &arp(MAC, [0, 0, 0, 0], [10, 0, 0, 10]), 0), Ok(()), "an address probe");
        assert_eq!(check(&g, &arp(MAC, [10, 0, 0, 11], [10, 0, 0, 11]), 0), Err(DropReason::ArpSpoof), "gratuitous ARP for a neighbour's address");
        assert_eq!(check(&g, &arp(OTHER, [10, 0, 0, 10], [10, 0, 0, 11]), 0), Err(DropReason::ArpSpoof), "sender MAC not the frame's");
    }

    #[test]
    fn ipv6_link_local_nd_and_router_advertisements() {
        let g = PortGuard::new(&image(&["10.0.0.10", "fd00::10"], true), &[MAC], None);
        let ll = "fe80::5054:ff:fe00:a";
        assert_eq!(link_local(mac_u64(&MAC)), u128::from_be_bytes(ll.parse::<std::net::Ipv6Addr>().unwrap().octets()));
        let na = |target: &str| {
            let mut body = vec![0x60, 0, 0, 0];
            body.extend_from_slice(&target.parse::<std::net::Ipv6Addr>().unwrap().octets());
            body
        };
        assert_eq!(check(&g, &icmpv6(ll, "ff02::1", NEIGHBOR_ADVERTISEMENT, &na(ll)), 0), Ok(()));
        assert_eq!(check(&g, &icmpv6("fd00::10", "ff02::1", NEIGHBOR_ADVERTISEMENT, &na("fd00::10")), 0), Ok(()));
        assert_eq!(check(&g, &icmpv6(ll, "ff02::1", NEIGHBOR_ADVERTISEMENT, &na("fd00::11")), 0), Err(DropReason::NdSpoof));
        assert_eq!(check(&g, &icmpv6("::", "ff02::1:ff00:10", NEIGHBOR_SOLICITATION, &na("fd00::10")), 0), Ok(()), "duplicate address detection");
        assert_eq!(check(&g, &icmpv6("::", "ff02::1", 128, &[0; 4]), 0), Err(DropReason::SpoofIp));
        assert_eq!(check(&g, &icmpv6("fd00::99", "ff02::1", 128, &[0; 4]), 0), Err(DropReason::SpoofIp));
        assert_eq!(check(&g, &icmpv6(ll, "ff02::1", ROUTER_ADVERTISEMENT, &[0; 12]), 0), Err(DropReason::RogueRa));
        assert_eq!(check(&g, &icmpv6(ll, "fd00::11", REDIRECT, &[0; 36]), 0), Err(DropReason::RogueRa));
        let router = PortGuard::new(&GuardImage { serves_ra: true, ..image(&["fd00::10"], true) }, &[MAC], None);
        assert_eq!(check(&router, &icmpv6(ll, "ff02::1", ROUTER_ADVERTISEMENT, &[0; 12]), 0), Ok(()));
    }

    #[test]
    fn ipv6_addresses_are_learned_one_link_local_and_one_other() {
        // IPv4 configured, IPv6 learned (a family without addresses is learned).
        let g = PortGuard::new(&image(&["10.0.0.10"], true), &[MAC], None);
        assert_eq!(check(&g, &icmpv6("fe80::1234", "ff02::1", 128, &[0; 4]), 0), Ok(()), "a stable-privacy link-local");
        assert_eq!(check(&g, &icmpv6("2001:db8::7", "ff02::1", 128, &[0; 4]), 0), Ok(()));
        assert_eq!(check(&g, &icmpv6("fe80::99", "ff02::1", 128, &[0; 4]), 0), Err(DropReason::SpoofIp));
        assert_eq!(check(&g, &icmpv6("2001:db8::8", "ff02::1", 128, &[0; 4]), 0), Err(DropReason::SpoofIp));
        assert_eq!(check(&g, &icmpv6("ff02::5", "ff02::1", 128, &[0; 4]), 0), Err(DropReason::SpoofIp), "multicast sources are nobody's");
        let off = PortGuard::new(&image(&["10.0.0.10"], false), &[MAC], None);
        assert_eq!(check(&off, &icmpv6("2001:db8::7", "ff02::1", 128, &[0; 4]), 0), Err(DropReason::SpoofIp), "learn = off");
        assert_eq!(check(&off, &icmpv6("fe80::5054:ff:fe00:a", "ff02::1", 128, &[0; 4]), 0), Ok(()), "its EUI-64 link-local");
    }

    #[test]
    fn concurrent_learning_settles_on_one_value() {
        let learned = Arc::new(Learned::default());
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let l = learned.clone();
                std::thread::spawn(move || {
                    let won = l.v4.claim(MAPPED | (0x0a00_0000 + t as u128), 0, 1000);
                    (t, won)
                })
            })
            .collect();
        let won: Vec<_> = threads.into_iter().map(|h| h.join().unwrap()).filter(|(_, w)| *w).collect();
        assert_eq!(won.len(), 1, "{won:?}");
        assert_eq!(learned.v4.get(0, 1000), Some(MAPPED | (0x0a00_0000 + won[0].0 as u128)));
    }
}
