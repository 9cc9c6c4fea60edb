//! One policy generation's forwarding state, built by the main lcore from a
//! validated [`PolicyImage`] and read by all workers until the next swap.
//!
//! Ports are addressed by a *local index* (their position in `ports`), so
//! the workers' per-destination transmit buffers are small arrays; counters
//! are addressed by the port's stable *slot*. The forwarding decision is a
//! pure function of the runtime and the parsed packet ([`Runtime::decide`]),
//! so it is unit-tested without DPDK.

use crate::firewall::{Defaults, Firewall, RuleHistory};
use crate::guard::{Owners, PortGuard};
use crate::mac_table::{is_unicast, MacTable};
use crate::throttle::{Bucket, Limit, PortLimits};
use arrayvec::ArrayVec;
use rampart_packet::Meta;
use rampart_shm::{AnomalyImage, Attach, DropReason, PolicyImage, Verdict, MAX_PORTS};
use std::sync::Arc;

use crate::{PortSet, MAX_PORT_IDS};

const NO_PORT: u8 = u8::MAX;
const MAC_TABLE_SLOTS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// Switch inside segment n.
    Segment(u16),
    /// Send everything to this local port.
    Wire(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtPort {
    pub port_id: u16,
    pub slot: u16,
    pub enabled: bool,
    /// Receive queues (one per worker that polls it).
    pub queues: u16,
    pub fwd: Fwd,
    /// Conntrack zone: flows of different segments / wire pairs never mix.
    pub zone: u16,
    /// No rules, and this port's default action drops: everything it receives is dropped.
    pub default_drop: bool,
    /// Cap on the MACs its segment learns behind it (0: none).
    pub max_macs: u32,
    /// Monitor mode, and what it still enforces (None: inline).
    pub monitor: Option<rampart_shm::MonitorImage>,
}

pub struct RtSegment {
    pub name: String,
    /// Local indexes of the segment's enabled ports (where it floods).
    pub member_set: PortSet,
    pub macs: MacTable,
}

/// A protection a port in monitor mode may keep enforcing (see [`Runtime::monitors`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforced {
    Guard,
    Throttle,
    Anomalies,
}

/// How a port's packets are decided: see [`Runtime::route`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Every packet of the port gets this decision.
    Fixed(Decision),
    /// Packets are switched by MAC address in this segment.
    Switch(u16),
}

impl Route {
    /// The decision for one packet of the port this route was found for.
    #[inline(always)]
    pub fn decide(self, rt: &Runtime, ingress: u8, meta: &Meta) -> Decision {
        match self {
            Route::Fixed(decision) => decision,
            Route::Switch(s) => rt.switch(s, ingress, meta),
        }
    }
}

/// Where a packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// To one local port.
    Port(u8),
    /// To every enabled member of the segment but the ingress port.
    Flood(u16),
    Drop(DropReason),
}

pub struct Runtime {
    /// The stateful firewall, if the policy has rules.
    pub firewall: Option<Firewall>,
    /// The signatures `inspect` rules run, built by the dataplane's manager (a generation
    /// whose signatures do not build is rejected), shared with the next generation while
    /// they stay the same.
    pub inspection: Option<Arc<crate::inspect::Inspection>>,
    /// Policy generation this runtime implements.
    pub gen: u64,
    /// Swap counter (set by the main lcore): workers report the epoch they run.
    pub epoch: u64,
    pub ports: ArrayVec<RtPort, MAX_PORTS>,
    pub segments: Vec<RtSegment>,
    /// Detailed drop records per second per port and reason (see [`crate::event_limit`]).
    pub drop_events_per_s: u32,
    /// What is done about each kind of protocol anomaly ([`crate::anomaly`]).
    pub anomalies: AnomalyImage,
    /// Whether [`crate::anomaly::headers`] checks anything under this policy.
    pub checks_headers: bool,
    /// Each port's guard (by local index), if it is guarded.
    guards: ArrayVec<Option<PortGuard>, MAX_PORTS>,
    /// Each port's token buckets (by local index); fresh (full) in each generation.
    limits: ArrayVec<PortLimits, MAX_PORTS>,
    local_by_port_id: [u8; MAX_PORT_IDS],
}

impl Runtime {
    /// Whether local port `ingress` is in monitor mode and only counts what `what` would
    /// drop (forwarding it).
    #[inline]
    pub fn monitors(&self, ingress: u8, what: Enforced) -> bool {
        self.ports.get(ingress as usize).and_then(|p| p.monitor).is_some_and(|m| match what {
            Enforced::Guard => !m.guard,
            Enforced::Throttle => !m.throttle,
            Enforced::Anomalies => !m.anomalies,
        })
    }

    /// Builds generation `gen` from `image`. `port_id_of(slot)` gives the DPDK
    /// port of each attached slot (ports that failed to attach are left out).
    /// Learned MACs of `previous` carry over for ports that stay in the same segment.
    /// `history` names the rules of flows earlier generations decided.
    pub fn build(
        gen: u64,
        image: &PolicyImage,
        port_id_of: impl Fn(u16) -> Option<u16>,
        previous: Option<&Runtime>,
        history: &Arc<RuleHistory>,
    ) -> Runtime {
        let mut rt = Runtime {
            // With rules, the firewall applies each port's default action to IP traffic
            // no rule matches (ARP and other non-IP frames are switched); without, it
            // applies to all (`RtPort::default_drop`).
            firewall: image.firewall.clone().map(|fw| {
                let mut fw = Firewall::new(fw, Defaults::of(&image.ports), gen, history.clone());
                fw.new_flows = new_flow_limits(image);
                fw
            }),
            inspection: None,
            gen,
            epoch: 0,
            ports: ArrayVec::new(),
            segments: image
                .segments
                .iter()
                .map(|s| RtSegment { name: s.name.clone(), member_set: PortSet::default(), macs: MacTable::new(MAC_TABLE_SLOTS) })
                .collect(),
            drop_events_per_s: image.drop_events_per_s,
            anomalies: image.anomalies,
            checks_headers: crate::anomaly::checks_headers(&image.anomalies),
            guards: ArrayVec::new(),
            limits: ArrayVec::new(),
            local_by_port_id: [NO_PORT; MAX_PORT_IDS],
        };
        let attached: Vec<_> = image.ports.iter().filter_map(|p| port_id_of(p.slot).map(|id| (p, id))).collect();
        for (p, id) in &attached {
            let local = rt.ports.len() as u8;
            if let Some(entry) = rt.local_by_port_id.get_mut(*id as usize) {
                *entry = local;
            }
            rt.ports.push(RtPort {
                port_id: *id,
                slot: p.slot,
                enabled: p.enabled,
                queues: p.queues,
                fwd: Fwd::Segment(0), // set below, once every port has its local index
                zone: match p.attach {
                    Attach::Segment(s) => s + 1,
                    Attach::Wire(peer) => 0x8000 | p.slot.min(peer),
                },
                default_drop: p.default_action == Verdict::Drop && image.firewall.is_none(),
                max_macs: p.max_macs,
                monitor: p.monitor,
            });
            // What the port learned stays while it stays guarded (by slot: its name).
            let learned = previous.and_then(|prev| prev.ports.iter().position(|q| q.slot == p.slot).and_then(|l| prev.guards[l].as_ref())).map(|g| g.learned().clone());
            rt.guards.push(p.guard.as_ref().map(|g| PortGuard::new(g, &p.macs, learned)));
            let bucket = |r: Option<rampart_shm::RateImage>| r.map(|r| Bucket::new(limit(r)));
            rt.limits.push(PortLimits { packets: bucket(p.limits.packets), bytes: bucket(p.limits.bytes), floods: bucket(p.limits.floods) });
        }
        for (local, (p, _)) in attached.iter().enumerate() {
            rt.ports[local].fwd = match p.attach {
                Attach::Segment(s) => {
                    let seg = &mut rt.segments[s as usize];
                    if p.enabled {
                        seg.member_set.insert(local as u8);
                    }
                    for mac in &p.macs {
                        seg.macs.bind_static(mac, local as u8);
                    }
                    Fwd::Segment(s)
                }
                Attach::Wire(peer_slot) => match rt.ports.iter().position(|q| q.slot == peer_slot) {
                    Some(peer) => Fwd::Wire(peer as u8),
                    None => Fwd::Wire(NO_PORT),
                },
            };
        }
        if let Some(prev) = previous {
            for (seg_idx, seg) in rt.segments.iter().enumerate() {
                let Some(old) = prev.segments.iter().find(|s| s.name == seg.name) else { continue };
                for (mac, old_local) in old.macs.learned() {
                    let Some(old_port) = prev.ports.get(old_local as usize) else { continue };
                    if let Some(new_local) = rt.ports.iter().position(|p| p.slot == old_port.slot) {
                        if rt.ports[new_local].fwd == Fwd::Segment(seg_idx as u16) {
                            seg.macs.learn(&mac, new_local as u8);
                        }
                    }
                }
            }
        }
        rt
    }

    /// Local index of a DPDK port, if it is part of this generation.
    #[inline(always)]
    pub fn local_of(&self, port_id: u16) -> Option<u8> {
        self.local_by_port_id.get(port_id as usize).copied().filter(|&l| l != NO_PORT)
    }

    /// The token buckets of local port `ingress`.
    #[inline(always)]
    pub fn limits(&self, ingress: u8) -> Option<&PortLimits> {
        self.limits.get(ingress as usize)
    }

    /// The guard of local port `ingress`, if it is guarded.
    #[inline(always)]
    pub fn guard(&self, ingress: u8) -> Option<&PortGuard> {
        self.guards.get(ingress as usize).and_then(Option::as_ref)
    }

    /// Ages the segments' MAC tables (see [`MacTable::tick`]); about once a second.
    pub fn tick(&self) {
        for seg in &self.segments {
            seg.macs.tick();
        }
    }

    /// DHCP snooping: a DHCP ACK from a port that may serve DHCP (an unguarded port, or
    /// one that `serves` it) gives its lease to the guarded port whose guest it is for.
    /// A compare or two per packet; the rest only for DHCP server messages.
    #[inline(always)]
    pub fn snoop(&self, ingress: u8, meta: &Meta, frame: &[u8], now_ms: u64) {
        if crate::guard::from_dhcp_server(meta) {
            self.snoop_dhcp(ingress, meta, frame, now_ms);
        }
    }

    #[cold]
    fn snoop_dhcp(&self, ingress: u8, meta: &Meta, frame: &[u8], now_ms: u64) {
        if !self.guard(ingress).is_none_or(|g| g.serves_dhcp()) {
            return; // a rogue server: its packet is dropped as rogue_dhcp
        }
        let Some((client, addr)) = crate::guard::dhcp_ack(meta, frame) else { return };
        let mapped = 0xffff_u128 << 32 | addr as u128;
        for (local, g) in self.guards.iter().enumerate() {
            if let Some(g) = g.as_ref().filter(|g| g.owns_mac(&client, now_ms)) {
                if !self.address_taken(local as u8, mapped, now_ms) {
                    g.lease(addr, now_ms);
                }
                return;
            }
        }
    }

    /// Forgets what the guard learned for the port in `slot` (its guest went away).
    pub fn forget_learned(&self, slot: u16) {
        if let Some(g) = self.ports.iter().position(|p| p.slot == slot).and_then(|l| self.guards[l].as_ref()) {
            g.learned().forget();
        }
    }

    /// Decides where a packet received on local port `ingress` goes; learns its source MAC.
    #[inline(always)]
    pub fn decide(&self, ingress: u8, meta: &Meta) -> Decision {
        self.route(ingress).decide(self, ingress, meta)
    }

    /// How the packets of one port are decided: the same way for a whole burst when
    /// nothing in the packet matters (a wire pair, a disabled port, a drop-all policy),
    /// else by switching in the port's segment.
    #[inline(always)]
    pub fn route(&self, ingress: u8) -> Route {
        let Some(port) = self.ports.get(ingress as usize) else {
            return Route::Fixed(Decision::Drop(DropReason::PortDetached));
        };
        if !port.enabled {
            return Route::Fixed(Decision::Drop(DropReason::PortDisabled));
        }
        if port.default_drop {
            return Route::Fixed(Decision::Drop(DropReason::PolicyDrop));
        }
        match port.fwd {
            Fwd::Wire(peer) => Route::Fixed(match self.ports.get(peer as usize) {
                Some(p) if p.enabled => Decision::Port(peer),
                Some(_) => Decision::Drop(DropReason::PortDisabled),
                None => Decision::Drop(DropReason::NoDestination),
            }),
            Fwd::Segment(s) => Route::Switch(s),
        }
    }

    /// L2 switching of a packet from `ingress` inside segment `s`: learn its source
    /// MAC, then send it to the port that owns its destination MAC, or flood it.
    #[inline(always)]
    pub fn switch(&self, s: u16, ingress: u8, meta: &Meta) -> Decision {
        let seg = &self.segments[s as usize];
        if is_unicast(&meta.src_mac) {
            let cap = self.ports.get(ingress as usize).map_or(0, |p| p.max_macs);
            if seg.macs.learn_capped(&meta.src_mac, ingress, cap).is_err() {
                return Decision::Drop(DropReason::MacLimit);
            }
        }
        if !is_unicast(&meta.dst_mac) {
            return self.flood_or_drop(s, seg);
        }
        match seg.macs.lookup(&meta.dst_mac) {
            Some(dst) if dst == ingress => Decision::Drop(DropReason::Hairpin),
            Some(dst) => match self.ports.get(dst as usize) {
                Some(p) if p.enabled => Decision::Port(dst),
                _ => Decision::Drop(DropReason::PortDisabled),
            },
            None => self.flood_or_drop(s, seg),
        }
    }

    #[inline]
    fn flood_or_drop(&self, s: u16, seg: &RtSegment) -> Decision {
        if seg.member_set.len() > 1 {
            Decision::Flood(s)
        } else {
            Decision::Drop(DropReason::NoDestination)
        }
    }
}

/// Slots of the tables of per-source and per-destination new-flow buckets.
const RATE_TABLE_SLOTS: usize = 65_536;

fn limit(r: rampart_shm::RateImage) -> Limit {
    Limit { rate: r.rate, burst: r.burst }
}

/// The new-flow limits of a policy image (per port slot, per source, per destination).
fn new_flow_limits(image: &PolicyImage) -> crate::throttle::NewFlowLimits {
    let mut ports: Vec<Option<Bucket>> = (0..MAX_PORTS).map(|_| None).collect();
    for p in &image.ports {
        if let Some(slot) = ports.get_mut(p.slot as usize) {
            *slot = p.limits.new_flows.map(|r| Bucket::new(limit(r)));
        }
    }
    let table = |r: Option<rampart_shm::RateImage>| r.map(|r| crate::throttle::RateTable::new(limit(r), RATE_TABLE_SLOTS));
    crate::throttle::NewFlowLimits { ports, sources: table(image.new_flows_per_source), destinations: table(image.new_flows_per_destination) }
}

impl Owners for Runtime {
    fn address_taken(&self, local: u8, addr: u128, now: u64) -> bool {
        self.guards.iter().enumerate().any(|(l, g)| l != local as usize && g.as_ref().is_some_and(|g| g.owns_address(addr, now)))
    }

    fn mac_taken(&self, local: u8, mac: &[u8; 6]) -> bool {
        match self.ports.get(local as usize).map(|p| p.fwd) {
            Some(Fwd::Segment(s)) => self.segments[s as usize].macs.lookup(mac).is_some_and(|owner| owner != local),
            _ => false,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rampart_shm::PortImage;

    /// A null-PMD port image (also the per-burst path's tests' ports).
    pub(crate) fn port(slot: u16, attach: Attach, enabled: bool, macs: Vec<[u8; 6]>) -> PortImage {
        PortImage { enabled, ..PortImage::plain(slot, attach, macs) }
    }

    fn image() -> PolicyImage {
        PolicyImage::plain(
            vec![
                port(0, Attach::Segment(0), true, vec![[2, 0, 0, 0, 0, 0xa]]),
                port(1, Attach::Segment(0), true, vec![]),
                port(2, Attach::Segment(0), false, vec![[2, 0, 0, 0, 0, 0xc]]),
                port(5, Attach::Wire(6), true, vec![]),
                port(6, Attach::Wire(5), true, vec![]),
            ],
            None,
        )
    }

    fn meta(src: [u8; 6], dst: [u8; 6]) -> Meta {
        let mut m = Meta::default();
        m.src_mac = src;
        m.dst_mac = dst;
        m
    }

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];
    const BCAST: [u8; 6] = [0xff; 6];

    fn rt() -> Runtime {
        Runtime::build(1, &image(), |slot| Some(10 + slot), None, &Default::default())
    }

    #[test]
    fn segment_switching_learns_and_floods() {
        let rt = rt();
        assert_eq!(rt.local_of(11), Some(1));
        assert_eq!(rt.local_of(3), None);
        // Unknown B: flood from A; B's reply to A goes straight to A (static binding).
        assert_eq!(rt.decide(0, &meta(A, B)), Decision::Flood(0));
        assert_eq!(rt.decide(1, &meta(B, A)), Decision::Port(0));
        // Now B is learned.
        assert_eq!(rt.decide(0, &meta(A, B)), Decision::Port(1));
        assert_eq!(rt.decide(0, &meta(A, BCAST)), Decision::Flood(0));
        assert_eq!(rt.segments[0].member_set.iter().collect::<Vec<_>>(), [0, 1], "disabled port is no flood member");
    }

    #[test]
    fn disabled_ports_neither_send_nor_receive() {
        let rt = rt();
        assert_eq!(rt.decide(2, &meta(C, A)), Decision::Drop(DropReason::PortDisabled));
        assert_eq!(rt.decide(0, &meta(A, C)), Decision::Drop(DropReason::PortDisabled));
    }

    #[test]
    fn hairpin_and_wire_pairs() {
        let rt = rt();
        assert_eq!(rt.decide(0, &meta(B, A)), Decision::Drop(DropReason::Hairpin));
        assert_eq!(rt.decide(3, &meta(A, B)), Decision::Port(4));
        assert_eq!(rt.decide(4, &meta(B, A)), Decision::Port(3));
    }

    #[test]
    fn only_segment_ports_are_decided_per_packet() {
        let rt = rt();
        assert_eq!(rt.route(0), Route::Switch(0));
        assert_eq!(rt.route(2), Route::Fixed(Decision::Drop(DropReason::PortDisabled)));
        assert_eq!(rt.route(3), Route::Fixed(Decision::Port(4)));
        assert_eq!(rt.route(9), Route::Fixed(Decision::Drop(DropReason::PortDetached)));
        let mut img = image();
        img.ports[4].enabled = false;
        let rt = Runtime::build(2, &img, Some, None, &Default::default());
        assert_eq!(rt.route(3), Route::Fixed(Decision::Drop(DropReason::PortDisabled)), "peer disabled");
        img.ports[0].default_action = Verdict::Drop;
        let rt = Runtime::build(3, &img, Some, None, &Default::default());
        assert_eq!(rt.route(0), Route::Fixed(Decision::Drop(DropReason::PolicyDrop)));
        assert_eq!(rt.route(1), Route::Switch(0), "the default is per port (direction)");
    }

    #[test]
    fn default_drop_and_missing_ports() {
        let mut img = image();
        img.ports.iter_mut().for_each(|p| p.default_action = Verdict::Drop);
        let rt = Runtime::build(2, &img, Some, None, &Default::default());
        assert_eq!(rt.decide(0, &meta(A, B)), Decision::Drop(DropReason::PolicyDrop));
        // Port 6 failed to attach: its wire peer has nowhere to send.
        let rt = Runtime::build(3, &image(), |slot| (slot != 6).then_some(slot), None, &Default::default());
        assert_eq!(rt.decide(3, &meta(A, B)), Decision::Drop(DropReason::NoDestination));
        assert_eq!(rt.decide(9, &meta(A, B)), Decision::Drop(DropReason::PortDetached));
    }

    #[test]
    fn a_random_mac_flood_stops_at_the_cap_and_unicast_to_others_is_not_flooded() {
        let mut img = image();
        img.ports[1].max_macs = 32;
        let rt = Runtime::build(1, &img, Some, None, &Default::default());
        rt.decide(0, &meta(A, B)); // port 0 (static A) and B behind port 1 learned
        assert_eq!(rt.decide(1, &meta(B, A)), Decision::Port(0));
        let flood = |i: u32| [0x02, 0x66, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1];
        let dropped = (0..100_000).filter(|&i| rt.decide(1, &meta(flood(i), BCAST)) == Decision::Drop(DropReason::MacLimit)).count();
        assert_eq!(dropped, 100_000 - 31, "B and 31 more: the cap");
        assert_eq!(rt.segments[0].macs.learned_by(1), 32);
        assert_eq!(rt.decide(0, &meta(A, B)), Decision::Port(1), "B is still known: A's unicast to it is not flooded");
        assert_eq!(rt.decide(1, &meta(B, A)), Decision::Port(0));
    }

    #[test]
    fn learned_macs_survive_a_new_generation_and_flush() {
        let old = rt();
        old.decide(1, &meta(B, A));
        let new = Runtime::build(2, &image(), |slot| Some(20 + slot), Some(&old), &Default::default());
        assert_eq!(new.decide(0, &meta(A, B)), Decision::Port(1));
        // FlushMacs rebuilds without carrying learned entries over.
        let flushed = Runtime::build(2, &image(), |slot| Some(20 + slot), None, &Default::default());
        assert_eq!(flushed.decide(0, &meta(A, B)), Decision::Flood(0));
        assert_eq!(flushed.decide(1, &meta(B, A)), Decision::Port(0), "static bindings stay");
    }
}
