//! The stateful firewall step of the packet path (DESIGN.md §3 steps 5 and 7).
//!
//! Per IP packet: a flow-table hit is tracked (TCP state machine, windows)
//! and keeps its cached verdict — so replies pass by state even where the
//! rules deny that direction; a miss is classified (first match over the
//! compiled ACL) and, if allowed and stateful, inserted subject to the
//! guest's quota and the table-full policy. A flow decided under an older
//! policy generation is re-classified at its next packet: if the new policy
//! denies it, it is cut and logged. A fragmented datagram is decided on its
//! first fragment (the only one with ports); here a later fragment is
//! dropped, and the worker lets it follow a first fragment that passed
//! ([`crate::fragments`]). ICMP errors pass only when their quoted packet
//! belongs to a tracked flow.
//! DPDK-free: the worker passes bytes, the parsed [`Meta`] and the time.

use arrayvec::ArrayVec;
use rampart_acl::{Classifier, Key};
use rampart_flow::{FlowHit, FlowTable, InsertError, InvalidReason, NewFlow, Outcome, PacketInfo, Prepared, Stale};
use rampart_packet::{FlowKey, Meta, ParseError, L3};
use rampart_shm::{DropReason, FirewallImage, RuleAction, RuleImage, Verdict};

/// Flow verdicts store the deciding rule (+1; 0 = default action) in the low
/// 20 bits and the low 12 bits of the policy generation above them.
const RULE_BITS: u32 = 20;
const RULE_MASK: u32 = (1 << RULE_BITS) - 1;
/// Generations whose rule lists [`RuleHistory`] keeps.
const HISTORY: usize = 64;

/// The generation tag a flow's verdict word carries.
fn gen_tag(gen: u64) -> u32 {
    (gen as u32) & ((1 << (32 - RULE_BITS)) - 1)
}

/// The rule ids of recent policy generations, for the main lcore: a flow that saw no
/// packet since a reload still names its rule by its index in the generation that
/// decided it, and is reported (flow-end events, flow dumps) with that rule's index in
/// the current generation — the one the control process labels events with — or with
/// none if the rule is gone.
#[derive(Default)]
pub struct RuleHistory {
    gens: std::collections::VecDeque<(u32, Vec<String>)>,
    current: std::collections::HashMap<String, u32>,
}

impl RuleHistory {
    /// Records the rules of generation `gen`, which becomes the current one.
    pub fn record(&mut self, gen: u64, rules: &[RuleImage]) {
        let ids: Vec<String> = rules.iter().map(|r| r.id.clone()).collect();
        self.current = ids.iter().enumerate().map(|(i, id)| (id.clone(), i as u32)).collect();
        let tag = gen_tag(gen);
        self.gens.retain(|(t, _)| *t != tag);
        if self.gens.len() == HISTORY {
            self.gens.pop_front();
        }
        self.gens.push_back((tag, ids));
    }

    /// The current-generation index of the rule a flow's verdict word names.
    pub fn current_rule(&self, verdict: u32) -> Option<u32> {
        let index = Firewall::rule_of(verdict)? as usize;
        let tag = verdict >> RULE_BITS;
        let (_, ids) = self.gens.iter().rev().find(|(t, _)| *t == tag)?;
        self.current.get(ids.get(index)?).copied()
    }
}

/// Packets per burst: the worker's receive burst.
pub const BURST: usize = 32;

/// A burst's packets, parsed, with the flows of those that are looked up prepared and
/// their lookups pipelined (the stages of `FlowTable::lookup_bulk`): once every packet is
/// parsed, all their buckets are prefetched in one tight loop, then all their candidate
/// entries, and each lookup is done when its packet is decided ([`Self::lookup`]). With
/// the table far beyond the TLB's reach, each prefetch starts a page walk; issued back to
/// back the walks overlap, where interleaved with parsing each one held up the core on
/// its own.
pub struct Burst {
    metas: [Result<Meta, ParseError>; BURST],
    lookups: ArrayVec<Prepared, BURST>,
    /// Index in `lookups` of each packet's flow (`u8::MAX`: not looked up).
    lookup_of: [u8; BURST],
}

impl Default for Burst {
    fn default() -> Burst {
        Burst { metas: [Err(ParseError::EthernetTruncated); BURST], lookups: ArrayVec::new(), lookup_of: [u8::MAX; BURST] }
    }
}

impl Burst {
    /// Parses up to [`BURST`] frames received in `zone` and starts their flow lookups.
    /// (Filled in place: returned by value, the 4 KiB struct was copied once per burst.)
    #[inline(always)]
    pub fn fill<'a>(&mut self, flows: &FlowTable, zone: u16, frames: impl Iterator<Item = &'a [u8]>) {
        self.lookups.clear();
        for (i, frame) in frames.take(BURST).enumerate() {
            let meta = rampart_packet::parse(frame);
            self.lookup_of[i] = match meta.as_ref().ok().and_then(|meta| Firewall::lookup_key(flows, meta, zone)) {
                Some(l) => {
                    self.lookups.push(l);
                    self.lookups.len() as u8 - 1
                }
                None => u8::MAX,
            };
            self.metas[i] = meta;
        }
        for l in &self.lookups {
            flows.prefetch(l.hash);
        }
        for l in &mut self.lookups {
            flows.prefetch_flow(l);
        }
    }

    /// Packet `i` parsed, or why it is malformed.
    #[inline(always)]
    pub fn meta(&self, i: usize) -> &Result<Meta, ParseError> {
        &self.metas[i]
    }

    /// The flow of packet `i` and its lookup, for [`Firewall::check_looked_up`]; None for
    /// a packet whose flow is not looked up (not IP, a later fragment, an ICMP error).
    #[inline(always)]
    pub fn lookup(&self, flows: &FlowTable, i: usize) -> Option<(&Prepared, Option<FlowHit>)> {
        self.lookups.get(self.lookup_of[i] as usize).map(|l| (l, flows.lookup_flow(l)))
    }
}

/// One generation's rules.
pub struct Firewall {
    pub rules: Vec<RuleImage>,
    acl: Classifier,
    acl_rule: Vec<u32>,
    default_forward: bool,
    gen_tag: u32,
}

/// What the firewall decided for one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FwVerdict {
    /// Forward. `rule` decided the flow (for its counters); `created` if this packet
    /// opened a tracked flow; `log` if that rule logs new flows.
    Pass { rule: Option<u32>, created: bool, log: bool },
    Drop(DropReason, Option<u32>),
    /// Drop and answer the sender (TCP RST / ICMP unreachable).
    Reject(Option<u32>),
    /// An existing flow the new policy denies: drop, and the flow was removed. `reply`:
    /// this packet came from the flow's responder (the flow-end record names the opener
    /// as its source, so the worker swaps the packet's endpoints).
    Cut { rule: Option<u32>, reply: bool },
}

impl Firewall {
    pub fn new(image: FirewallImage, default_action: Verdict, gen: u64) -> Firewall {
        Firewall {
            rules: image.rules,
            acl: image.acl,
            acl_rule: image.acl_rule,
            default_forward: default_action == Verdict::Forward,
            gen_tag: gen_tag(gen),
        }
    }

    fn verdict_word(&self, rule: Option<u32>) -> u32 {
        self.gen_tag << RULE_BITS | rule.map(|r| r + 1).unwrap_or(0)
    }

    fn rule_of(word: u32) -> Option<u32> {
        (word & RULE_MASK).checked_sub(1)
    }

    /// First matching policy rule for a flow opened on `ingress` with this key.
    #[inline]
    fn classify(&self, key: &FlowKey, meta: &Meta, ingress: u8) -> Option<u32> {
        let icmp = meta.is_icmp();
        let k = Key {
            src: key.src_addr,
            dst: key.dst_addr,
            proto: key.proto,
            src_port: if icmp { 0 } else { key.src_port },
            dst_port: if icmp { 0 } else { key.dst_port },
            icmp_type: meta.icmp_type().unwrap_or(0),
            icmp_code: meta.icmp_code().unwrap_or(0),
            ingress,
        };
        self.acl.lookup(&k).and_then(|i| self.acl_rule.get(i as usize).copied())
    }

    fn action(&self, rule: Option<u32>) -> (bool, bool) {
        // (allowed, stateful)
        match rule.and_then(|r| self.rules.get(r as usize)) {
            Some(r) => (matches!(r.action, RuleAction::Allow | RuleAction::Log), r.stateful),
            None => (self.default_forward, false),
        }
    }

    /// The prepared flow of a packet whose flow is looked up (IP, not a later fragment,
    /// not an ICMP error), so a burst's lookups can be pipelined.
    #[inline(always)]
    pub fn lookup_key(flows: &FlowTable, meta: &Meta, zone: u16) -> Option<Prepared> {
        if meta.is_later_fragment() || meta.icmp_inner_offset().is_some() {
            return None;
        }
        Some(flows.prepare_flow(&Self::packet_key(meta, zone)?))
    }

    /// The packet-order flow key of an IP packet in `zone`.
    #[inline(always)]
    fn packet_key(meta: &Meta, zone: u16) -> Option<FlowKey> {
        let mut key = FlowKey::from_meta(meta)?;
        key.zone = zone;
        Some(key)
    }

    /// Decides one IP packet received on port slot `ingress` in segment/wire `zone`.
    #[inline]
    pub fn check(&self, flows: &FlowTable, meta: &Meta, frame: &[u8], ingress: u8, zone: u16, now_ms: u64) -> FwVerdict {
        self.check_looked_up(flows, meta, frame, ingress, zone, now_ms, None)
    }

    /// [`Self::check`] with the flow prepared and looked up already (pipelined over the
    /// burst). A hit under the current policy is decided from the flow alone; everything
    /// else builds the packet's key.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn check_looked_up(
        &self,
        flows: &FlowTable,
        meta: &Meta,
        frame: &[u8],
        ingress: u8,
        zone: u16,
        now_ms: u64,
        looked_up: Option<(&Prepared, Option<FlowHit>)>,
    ) -> FwVerdict {
        if meta.is_later_fragment() {
            return FwVerdict::Drop(DropReason::Fragment, None);
        }
        if meta.l3() == L3::Ipv6 && (is_v4_mapped(&meta.src_addr) || is_v4_mapped(&meta.dst_addr)) {
            return FwVerdict::Drop(DropReason::Ipv6MappedAddress, None);
        }
        let pkt = PacketInfo::from_frame(meta, frame);
        if let Some((flow, Some(hit))) = looked_up {
            if let Some(verdict) = self.established(flows, &hit, meta, zone, &pkt, flow, now_ms) {
                return verdict;
            }
        }
        let Some(key) = Self::packet_key(meta, zone) else {
            return FwVerdict::Pass { rule: None, created: false, log: false };
        };
        if let Some(inner) = meta.icmp_inner_offset() {
            return match inner_key(frame, inner, zone).and_then(|k| flows.icmp_error_related(&meta.dst_addr, &k)) {
                Some(rel) => FwVerdict::Pass { rule: Self::rule_of(rel.hit.verdict), created: false, log: false },
                None => FwVerdict::Drop(DropReason::IcmpUnrelated, None),
            };
        }
        let flow = match looked_up {
            Some((flow, _)) => *flow,
            None => {
                let flow = flows.prepare_flow(&key);
                if let Some(hit) = flows.lookup_flow(&flow) {
                    if let Some(verdict) = self.established(flows, &hit, meta, zone, &pkt, &flow, now_ms) {
                        return verdict;
                    }
                }
                flow
            }
        };
        let rule = self.classify(&key, meta, ingress);
        let (allowed, stateful) = self.action(rule);
        if !allowed {
            let reject = rule.and_then(|r| self.rules.get(r as usize)).is_some_and(|r| r.action == RuleAction::Reject);
            return match (reject, rule) {
                (true, _) => FwVerdict::Reject(rule),
                (false, Some(_)) => FwVerdict::Drop(DropReason::RuleDeny, rule),
                (false, None) => FwVerdict::Drop(DropReason::PolicyDrop, None),
            };
        }
        let log = rule.and_then(|r| self.rules.get(r as usize)).is_some_and(|r| r.log);
        if !stateful {
            return FwVerdict::Pass { rule, created: false, log };
        }
        let new = NewFlow { verdict: self.verdict_word(rule), owner: ingress };
        match flows.insert(&flow.canonical(), flow.hash, flow.dir, new, &pkt, now_ms) {
            Ok(ins) if ins.tracked.outcome.is_valid() => FwVerdict::Pass { rule, created: ins.created, log },
            Ok(_) => FwVerdict::Drop(DropReason::ConntrackInvalid, rule),
            Err(InsertError::Full) => FwVerdict::Drop(DropReason::FlowTableFull, rule),
            Err(InsertError::QuotaExceeded(_)) => FwVerdict::Drop(DropReason::FlowQuota, rule),
            Err(InsertError::Invalid(InvalidReason::TcpNotSyn)) => FwVerdict::Drop(DropReason::ConntrackNotSyn, rule),
            Err(InsertError::Invalid(_)) | Err(InsertError::Contended) => FwVerdict::Drop(DropReason::ConntrackInvalid, rule),
        }
    }

    /// A packet of a tracked flow. None when the flow is gone (expired, reopened, or cut
    /// by another packet of the same burst): the packet is then judged as a new flow.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn established(
        &self,
        flows: &FlowTable,
        hit: &FlowHit,
        meta: &Meta,
        zone: u16,
        pkt: &PacketInfo,
        flow: &Prepared,
        now_ms: u64,
    ) -> Option<FwVerdict> {
        let mut rule = Self::rule_of(hit.verdict);
        if hit.verdict >> RULE_BITS != self.gen_tag {
            match self.recheck(flows, hit, meta, zone, flow, now_ms) {
                Ok(now_rule) => rule = now_rule,
                Err(cut) => return cut,
            }
        }
        match flows.track(hit, flow.dir, pkt, now_ms) {
            Ok(t) => Some(match t.outcome {
                Outcome::Valid => FwVerdict::Pass { rule, created: false, log: false },
                Outcome::Invalid(_) => FwVerdict::Drop(DropReason::ConntrackInvalid, rule),
            }),
            Err(Stale::Gone) | Err(Stale::Reopened(_)) => None,
        }
    }

    /// A flow decided under another policy generation: asks the current one. Err carries
    /// the verdict for a flow the new policy cuts (None if another packet cut it first);
    /// Ok the rule that now allows it.
    #[cold]
    fn recheck(&self, flows: &FlowTable, hit: &FlowHit, meta: &Meta, zone: u16, flow: &Prepared, now_ms: u64) -> Result<Option<u32>, Option<FwVerdict>> {
        let key = Self::packet_key(meta, zone).ok_or(None)?;
        let opener = if hit.initiator == flow.dir { key } else { key.reversed() };
        let now_rule = self.classify(&opener, meta, hit.owner);
        let (allowed, stateful) = self.action(now_rule);
        if !allowed || !stateful {
            // Only the packet that removes the flow reports the cut.
            let reply = hit.initiator != flow.dir;
            return Err(flows.remove(&flow.canonical(), flow.hash, now_ms).map(|_| FwVerdict::Cut { rule: now_rule, reply }));
        }
        let _ = flows.set_verdict(hit, self.verdict_word(now_rule));
        Ok(now_rule)
    }

    /// Counter slot of a policy rule.
    #[inline]
    pub fn counter_of(&self, rule: u32) -> Option<usize> {
        self.rules.get(rule as usize).map(|r| r.counter as usize).filter(|&c| c < rampart_shm::MAX_RULE_COUNTERS)
    }
}

/// `::ffff:a.b.c.d`: how IPv4 addresses live in the unified 128-bit space.
fn is_v4_mapped(a: &[u8; 16]) -> bool {
    a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff
}

/// The key of the packet quoted in an ICMP error (in its own packet order).
fn inner_key(frame: &[u8], off: usize, zone: u16) -> Option<FlowKey> {
    let ip = frame.get(off..)?;
    let (src, dst, proto, l4) = match ip.first()? >> 4 {
        4 => {
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s[10] = 0xff;
            s[11] = 0xff;
            d[10] = 0xff;
            d[11] = 0xff;
            s[12..].copy_from_slice(ip.get(12..16)?);
            d[12..].copy_from_slice(ip.get(16..20)?);
            (s, d, *ip.get(9)?, ip.get(ihl..)?)
        }
        6 => {
            let s: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            (s, d, *ip.get(6)?, ip.get(40..)?)
        }
        _ => return None,
    };
    let (sport, dport) = match proto {
        6 | 17 | 132 => (u16::from_be_bytes([*l4.first()?, *l4.get(1)?]), u16::from_be_bytes([*l4.get(2)?, *l4.get(3)?])),
        1 | 58 => {
            // An echo request quoted in an error: the identifier is both "ports".
            let id = u16::from_be_bytes([*l4.get(4)?, *l4.get(5)?]);
            (id, id)
        }
        _ => (0, 0),
    };
    Some(FlowKey { src_addr: src, dst_addr: dst, src_port: sport, dst_port: dport, proto, zone })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_flow::FlowTableConfig;
    use rampart_shm::ConntrackImage;

    /// A 60-byte Ethernet/IPv4/UDP frame.
    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 60];
        f[..12].copy_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f[14] = 0x45;
        f[16..18].copy_from_slice(&46u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&src);
        f[30..34].copy_from_slice(&dst);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f[38..40].copy_from_slice(&26u16.to_be_bytes());
        f
    }

    /// One stateful rule allowing protocol `proto`, behind the default drop.
    fn allowing(proto: u8, gen: u64) -> Firewall {
        let acl = Classifier::compile(&[rampart_acl::Rule { proto: Some(proto), ..Default::default() }]).unwrap();
        let rules = vec![RuleImage { id: format!("allow-{proto}"), counter: 0, action: RuleAction::Allow, stateful: true, log: false }];
        let conntrack = ConntrackImage { max_flows_per_guest: u32::MAX, timeouts: Default::default() };
        Firewall::new(FirewallImage { rules, acl, acl_rule: vec![0], conntrack }, Verdict::Drop, gen)
    }

    #[test]
    fn a_cut_says_whether_the_packet_came_from_the_flows_responder() {
        let flows = FlowTable::new(&FlowTableConfig { capacity: 64, ..Default::default() }).unwrap();
        let check = |fw: &Firewall, frame: &[u8]| fw.check(&flows, &rampart_packet::parse(frame).unwrap(), frame, 1, 0, 10);
        let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]);
        // Opened by the endpoint that sorts last (stored reversed) and by the first.
        let opened = [udp(b, 40000, a, 8080), udp(a, 40001, c, 8080), udp(c, 40002, a, 8080)];
        let udp_allowed = allowing(17, 1);
        for frame in &opened {
            assert!(matches!(check(&udp_allowed, frame), FwVerdict::Pass { created: true, .. }));
        }
        // The next policy allows only TCP: each flow is cut by its next packet.
        let tcp_only = allowing(6, 2);
        assert_eq!(check(&tcp_only, &udp(a, 8080, b, 40000)), FwVerdict::Cut { rule: None, reply: true });
        assert_eq!(check(&tcp_only, &udp(c, 8080, a, 40001)), FwVerdict::Cut { rule: None, reply: true });
        assert_eq!(check(&tcp_only, &opened[2]), FwVerdict::Cut { rule: None, reply: false });
        assert_eq!(flows.len(), 0);
    }

    fn rules(ids: &[&str]) -> Vec<RuleImage> {
        ids.iter().map(|id| RuleImage { id: id.to_string(), counter: 0, action: RuleAction::Allow, stateful: true, log: false }).collect()
    }

    fn word(gen: u64, rule: u32) -> u32 {
        gen_tag(gen) << RULE_BITS | (rule + 1)
    }

    #[test]
    fn flows_of_older_generations_are_reported_with_current_rule_indexes() {
        let mut h = RuleHistory::default();
        h.record(1, &rules(&["a", "b", "c"]));
        assert_eq!(h.current_rule(word(1, 1)), Some(1));
        h.record(2, &rules(&["new", "c", "b"]));
        assert_eq!(h.current_rule(word(1, 1)), Some(2), "b moved from index 1 to 2");
        assert_eq!(h.current_rule(word(1, 2)), Some(1), "c moved from index 2 to 1");
        assert_eq!(h.current_rule(word(1, 0)), None, "a is gone");
        assert_eq!(h.current_rule(word(2, 0)), Some(0));
        assert_eq!(h.current_rule(gen_tag(2) << RULE_BITS), None, "default action: no rule");
        assert_eq!(h.current_rule(word(7, 0)), None, "unknown generation");
        assert_eq!(h.current_rule(word(2, 9)), None, "index out of range");
    }

    #[test]
    fn history_is_bounded() {
        let mut h = RuleHistory::default();
        for gen in 1..=(HISTORY as u64 + 10) {
            h.record(gen, &rules(&["a"]));
        }
        assert_eq!(h.gens.len(), HISTORY);
        assert_eq!(h.current_rule(word(1, 0)), None, "generation 1 fell out of the history");
        assert_eq!(h.current_rule(word(HISTORY as u64 + 10, 0)), Some(0));
    }
}
