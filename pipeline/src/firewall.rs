//! The stateful firewall step of the packet path (DESIGN.md §3 steps 5 and 7).
//!
//! Per IP packet: a flow-table hit is tracked (TCP state machine, windows)
//! and keeps its cached verdict — so replies pass by state even where the
//! rules deny that direction; a miss is classified (first match over the
//! compiled ACL) and, if allowed and stateful, inserted subject to the
//! guest's quota and the table-full policy. A flow decided under an older
//! policy generation is re-classified, as its opener sent it, at its next packet
//! or by the main lcore's sweep after the reload ([`Firewall::revisit`]),
//! whichever comes first: if the new policy denies it, it is cut; if a stateless
//! rule now allows it, it is no longer tracked (its packets are judged one by one). Every flow that ends
//! while a packet is decided (cut, untracked, evicted to make room, reopened by a
//! SYN) is handed back to the worker ([`Ended`]) for its flow-end event. A fragmented datagram is decided on its
//! first fragment (the only one with ports); here a later fragment is
//! dropped, and the worker lets it follow a first fragment that passed
//! ([`crate::fragments`]). ICMP errors pass only when their quoted packet
//! belongs to a tracked flow.
//! DPDK-free: the worker passes bytes, the parsed [`Meta`] and the time.

use arrayvec::ArrayVec;
use rampart_acl::{Classifier, Key};
use rampart_flow::{EndReason, FlowEnd, FlowHit, FlowRecord, FlowTable, InsertError, InvalidReason, NewFlow, Outcome, PacketInfo, Prepared, Revisit, Stale};
use rampart_packet::{icmp, icmpv6, FlowKey, Meta, ParseError, L3};
use rampart_shm::ring::FlowEndCode;
use rampart_shm::{DropReason, FirewallImage, RuleAction, RuleImage};
use std::sync::Arc;

/// Flow verdicts store the deciding rule (+1; 0 = default action) in the low
/// 20 bits, the low 11 bits of the policy generation above them, and in the top bit
/// [`BLOCKED`].
const RULE_BITS: u32 = 20;
const RULE_MASK: u32 = (1 << RULE_BITS) - 1;
const TAG_MASK: u32 = (1 << 11) - 1;
/// A `drop`/`reject` signature matched a packet of the flow (inline inspection with
/// `drop_flow`): its later packets, both ways, are dropped as
/// [`DropReason::SignatureFlow`] at their table hit, before any other step. Reloads keep it;
/// the flow leaves the table only by its timeouts (which its packets keep refreshing).
const BLOCKED: u32 = 1 << 31;
/// Generations whose rule lists [`RuleHistory`] keeps.
const HISTORY: usize = 64;

/// The generation tag a flow's verdict word carries.
fn gen_tag(gen: u64) -> u32 {
    (gen as u32) & TAG_MASK
}

/// The generation tag in a flow's verdict word.
fn tag_of(verdict: u32) -> u32 {
    (verdict >> RULE_BITS) & TAG_MASK
}

/// The rule ids of recent policy generations: a flow that saw no packet since a reload
/// still names its rule by its index in the generation that decided it, and is reported
/// (flow-end events, flow dumps) with that rule's index in the current generation — the
/// one the control process labels events with — or with none if the rule is gone. The
/// main lcore keeps it; each generation's [`Firewall`] shares a snapshot.
#[derive(Default, Clone)]
pub struct RuleHistory {
    gens: std::collections::VecDeque<(u32, Arc<[String]>)>,
    current: std::collections::HashMap<String, u32>,
}

impl RuleHistory {
    /// Records the rules of generation `gen`, which becomes the current one.
    pub fn record(&mut self, gen: u64, rules: &[RuleImage]) {
        let ids: Arc<[String]> = rules.iter().map(|r| r.id.clone()).collect();
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
        let tag = tag_of(verdict);
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
                    // Started as soon as the key is known: the next packets' parsing
                    // overlaps the miss (issued all at once after the loop, 32 prefetches
                    // outrun the core's line fill buffers and the prefetch itself stalls).
                    flows.prefetch(l.hash);
                    self.lookups.push(l);
                    self.lookups.len() as u8 - 1
                }
                None => u8::MAX,
            };
            self.metas[i] = meta;
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
    defaults: Defaults,
    gen_tag: u32,
    /// Names the rules of flows decided by earlier generations when they end.
    history: Arc<RuleHistory>,
    /// New flows/s limits (per port, source, destination), consulted before an insert.
    pub new_flows: crate::throttle::NewFlowLimits,
}

/// The flow-end event code of each way a flow leaves the table.
pub fn end_code(reason: EndReason) -> FlowEndCode {
    match reason {
        EndReason::Expired => FlowEndCode::Timeout,
        EndReason::Evicted => FlowEndCode::Evicted,
        EndReason::Removed => FlowEndCode::Removed,
        EndReason::Reopened => FlowEndCode::Reopened,
    }
}

impl Ended {
    /// The flow-end event: the flow named as its opener sent it, from its owner's port.
    pub fn event(&self, tsc: u64) -> rampart_shm::EventRecord {
        let k = self.record.opener_key();
        let (data, value) = rampart_shm::ring::FlowEventData::pack(&k.src_addr, &k.dst_addr, k.src_port, k.dst_port, k.proto, self.rule);
        let kind = rampart_shm::ring::EventKind::FlowEnd as u16;
        rampart_shm::EventRecord { tsc, kind, port: self.record.owner as u16, code: self.code as u16, value, len: 32, data, ..Default::default() }
    }
}

/// The flows that ended while one packet was decided: at most a flow its SYN reopened
/// and one evicted to make room for the new one.
pub type EndedFlows = ArrayVec<Ended, 2>;

/// The default action of each port, for the IP traffic entering it that no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    /// Bit `slot`: the default forwards flows opened on that port.
    pub forward: u64,
    /// Track the flows a default forwards, so that their replies pass by state: on when
    /// some port's default drops (e.g. forward what guests send, drop what comes in on the
    /// uplinks, replies included unless tracked).
    pub track: bool,
}

impl Defaults {
    pub fn of(ports: &[rampart_shm::PortImage]) -> Defaults {
        let forward = ports.iter().filter(|p| p.default_action == rampart_shm::Verdict::Forward).fold(0u64, |m, p| m | 1u64.checked_shl(p.slot as u32).unwrap_or(0));
        let track = forward != 0 && ports.iter().any(|p| p.default_action == rampart_shm::Verdict::Drop);
        Defaults { forward, track }
    }
}

/// A flow that ended while a packet was decided, for the worker's flow-end event: the
/// flow as it left, why, and the rule to report (the one that cut or untracked it, else
/// the one that decided it, by its current-generation index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub record: FlowRecord,
    pub code: FlowEndCode,
    pub rule: Option<u32>,
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
}

impl Firewall {
    pub fn new(image: FirewallImage, defaults: Defaults, gen: u64, history: Arc<RuleHistory>) -> Firewall {
        Firewall {
            rules: image.rules,
            acl: image.acl,
            acl_rule: image.acl_rule,
            defaults,
            gen_tag: gen_tag(gen),
            history,
            new_flows: Default::default(),
        }
    }

    /// The current-generation index of the rule a flow's verdict word names.
    fn current_rule(&self, verdict: u32) -> Option<u32> {
        if tag_of(verdict) == self.gen_tag {
            Self::rule_of(verdict)
        } else {
            self.history.current_rule(verdict)
        }
    }

    /// A flow that left the table to make room for a packet's flow, or that its SYN
    /// reopened.
    #[cold]
    fn ended_by_insert(&self, end: FlowEnd) -> Ended {
        Ended { record: end.record, code: end_code(end.reason), rule: self.current_rule(end.record.verdict) }
    }

    /// Blocks the flow of `flow` (found as `hit`, or just created by this packet): see
    /// [`BLOCKED`]. A flow that already left the table (cut by another worker meanwhile)
    /// has nothing to block: only the packet at hand is dropped.
    #[cold]
    pub fn block(flows: &FlowTable, flow: &Prepared, hit: Option<FlowHit>) {
        if let Some(hit) = hit.or_else(|| flows.lookup_flow(flow)) {
            let _ = flows.set_verdict(&hit, hit.verdict | BLOCKED);
        }
    }

    fn verdict_word(&self, rule: Option<u32>) -> u32 {
        self.gen_tag << RULE_BITS | rule.map(|r| r + 1).unwrap_or(0)
    }

    fn rule_of(word: u32) -> Option<u32> {
        (word & RULE_MASK).checked_sub(1)
    }

    /// First matching policy rule for a flow opened on `ingress` with this key and, for
    /// ICMP, this (type, code).
    #[inline]
    fn classify(&self, key: &FlowKey, icmp: Option<(u8, u8)>, ingress: u8) -> Option<u32> {
        let (icmp_type, icmp_code) = icmp.unwrap_or((0, 0));
        let ports = if icmp.is_some() { (0, 0) } else { (key.src_port, key.dst_port) };
        let k = Key { src: key.src_addr, dst: key.dst_addr, proto: key.proto, src_port: ports.0, dst_port: ports.1, icmp_type, icmp_code, ingress };
        self.acl.lookup(&k).and_then(|i| self.acl_rule.get(i as usize).copied())
    }

    /// (allowed, stateful) for a flow opened on port slot `ingress` that `rule` decided.
    fn action(&self, rule: Option<u32>, ingress: u8) -> (bool, bool) {
        match rule.and_then(|r| self.rules.get(r as usize)) {
            Some(r) => (matches!(r.action, RuleAction::Allow | RuleAction::Log | RuleAction::Inspect), r.stateful),
            None => {
                let forward = self.defaults.forward.checked_shr(ingress as u32).unwrap_or(0) & 1 == 1;
                (forward, forward && self.defaults.track)
            }
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
    /// Flows that ended on the way are put in `ended`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn check(&self, flows: &FlowTable, meta: &Meta, frame: &[u8], ingress: u8, zone: u16, now_ms: u64, ended: &mut EndedFlows) -> FwVerdict {
        self.check_looked_up(flows, meta, frame, ingress, zone, now_ms, None, ended)
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
        ended: &mut EndedFlows,
    ) -> FwVerdict {
        if meta.is_later_fragment() {
            return FwVerdict::Drop(DropReason::Fragment, None);
        }
        if meta.l3() == L3::Ipv6 && (is_v4_mapped(&meta.src_addr) || is_v4_mapped(&meta.dst_addr)) {
            return FwVerdict::Drop(DropReason::Ipv6MappedAddress, None);
        }
        let pkt = PacketInfo::from_frame(meta, frame);
        if let Some((flow, Some(hit))) = looked_up {
            if let Some(verdict) = self.established(flows, &hit, meta, zone, &pkt, flow, now_ms, ended) {
                return verdict;
            }
        }
        let Some(key) = Self::packet_key(meta, zone) else {
            return FwVerdict::Pass { rule: None, created: false, log: false };
        };
        if let Some(inner) = meta.icmp_inner_offset() {
            let quoted = inner_key(frame, inner, zone);
            return match quoted.and_then(|k| flows.icmp_error_related(&meta.dst_addr, &k)) {
                Some(rel) => FwVerdict::Pass { rule: Self::rule_of(rel.hit.verdict), created: false, log: false },
                None => self.unrelated_error(flows, quoted, &key, meta, ingress),
            };
        }
        let flow = match looked_up {
            Some((flow, _)) => *flow,
            None => {
                let flow = flows.prepare_flow(&key);
                if let Some(hit) = flows.lookup_flow(&flow) {
                    if let Some(verdict) = self.established(flows, &hit, meta, zone, &pkt, &flow, now_ms, ended) {
                        return verdict;
                    }
                }
                flow
            }
        };
        let rule = self.classify(&key, meta.icmp_type().zip(meta.icmp_code()), ingress);
        let (allowed, stateful) = self.action(rule, ingress);
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
        if let Err(reason) = self.new_flows.admit(ingress as usize, &meta.src_addr, &meta.dst_addr, zone, now_ms) {
            return FwVerdict::Drop(reason, rule);
        }
        let new = NewFlow { verdict: self.verdict_word(rule), owner: ingress };
        match flows.insert(&flow.canonical(), flow.hash, flow.dir, new, &pkt, now_ms) {
            Ok(ins) => {
                if let Some(end) = ins.ended {
                    let _ = ended.try_push(self.ended_by_insert(end));
                }
                match ins.tracked.outcome.is_valid() {
                    true => FwVerdict::Pass { rule, created: ins.created, log },
                    false => FwVerdict::Drop(DropReason::ConntrackInvalid, rule),
                }
            }
            Err(InsertError::Full) => FwVerdict::Drop(DropReason::FlowTableFull, rule),
            Err(InsertError::QuotaExceeded(_)) => FwVerdict::Drop(DropReason::FlowQuota, rule),
            Err(InsertError::Invalid(InvalidReason::TcpNotSyn)) => FwVerdict::Drop(DropReason::ConntrackNotSyn, rule),
            Err(InsertError::Invalid(_)) | Err(InsertError::Contended) => FwVerdict::Drop(DropReason::ConntrackInvalid, rule),
        }
    }

    /// An ICMP error that no tracked flow accounts for. Dropped as `icmp_unrelated` (forged
    /// or stale: Linux's INVALID), unless the flow it quotes was never tracked and the
    /// policy forwards the error itself without state:
    /// - a stateless rule that matches the error allows it (as it allows its flow's packets);
    /// - where the port's default forwards without tracking (no port's default drops), the
    ///   flows that default forwards are untracked: the error is judged by the first rule
    ///   that matches it (a `reject` drops it: an error is never answered), else forwarded
    ///   by the default, so path-MTU discovery keeps working for them.
    ///
    /// Only the errors of a path (unreachable, time exceeded, parameter problem; ICMPv6
    /// packet too big as well) qualify: never a redirect or a source quench, and never an
    /// error quoting a tracked flow that came from the wrong side (a guest forging errors
    /// into another guest's flow).
    #[cold]
    fn unrelated_error(&self, flows: &FlowTable, quoted: Option<FlowKey>, key: &FlowKey, meta: &Meta, ingress: u8) -> FwVerdict {
        let unrelated = FwVerdict::Drop(DropReason::IcmpUnrelated, None);
        let path_error = match (meta.l3(), meta.icmp_type()) {
            (L3::Ipv4, Some(t)) => matches!(t, 3 | 11 | 12),
            (L3::Ipv6, Some(t)) => matches!(t, 1..=4),
            _ => false,
        };
        let Some(quoted) = quoted.filter(|_| path_error) else { return unrelated };
        let (canonical, _, hash) = flows.prepare(&quoted);
        if flows.lookup(&canonical, hash).is_some() {
            return unrelated;
        }
        let untracked_default = self.action(None, ingress) == (true, false);
        let rule = self.classify(key, meta.icmp_type().zip(meta.icmp_code()), ingress);
        match (rule, self.action(rule, ingress)) {
            (Some(_), (true, false)) => FwVerdict::Pass { rule, created: false, log: false },
            (Some(_), (true, true)) if untracked_default => FwVerdict::Pass { rule, created: false, log: false },
            (Some(_), (false, _)) if untracked_default => FwVerdict::Drop(DropReason::RuleDeny, rule),
            (None, _) if untracked_default => FwVerdict::Pass { rule: None, created: false, log: false },
            _ => unrelated,
        }
    }

    /// A packet of a tracked flow. None when the flow is gone (expired, reopened, no
    /// longer tracked, or cut by another packet of the same burst): the packet is then
    /// judged as a new flow.
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
        ended: &mut EndedFlows,
    ) -> Option<FwVerdict> {
        let mut rule = Self::rule_of(hit.verdict);
        let blocked = hit.verdict & BLOCKED != 0;
        if blocked {
            rule = self.current_rule(hit.verdict);
        } else if tag_of(hit.verdict) != self.gen_tag {
            match self.recheck(flows, hit, meta, zone, flow, now_ms, ended) {
                Ok(now_rule) => rule = now_rule,
                Err(cut) => return cut,
            }
        }
        match flows.track(hit, flow.dir, pkt, now_ms) {
            Ok(t) => Some(match t.outcome {
                _ if blocked => FwVerdict::Drop(DropReason::SignatureFlow, rule),
                Outcome::Valid => FwVerdict::Pass { rule, created: false, log: false },
                // The `tcp_window` anomaly: the path applies its action.
                Outcome::Invalid(InvalidReason::TcpOutOfWindow | InvalidReason::TcpRstOutOfWindow) => FwVerdict::Drop(DropReason::AnomalyTcpWindow, rule),
                Outcome::Invalid(_) => FwVerdict::Drop(DropReason::ConntrackInvalid, rule),
            }),
            Err(Stale::Gone) => None,
            Err(Stale::Reopened(end)) => {
                let _ = ended.try_push(self.ended_by_insert(end));
                None
            }
        }
    }

    /// A flow decided under another policy generation: asks the current one, with the
    /// flow as its opener sent it (a reply is judged as its request). Ok: the rule that
    /// now allows it, statefully. Err: the flow left the table — `Some` verdict for a
    /// flow the new policy denies (a cut), `None` for one it passes by a stateless rule
    /// (or that another packet removed first), whose packet is judged on its own.
    #[cold]
    #[allow(clippy::too_many_arguments)]
    fn recheck(
        &self,
        flows: &FlowTable,
        hit: &FlowHit,
        meta: &Meta,
        zone: u16,
        flow: &Prepared,
        now_ms: u64,
        ended: &mut EndedFlows,
    ) -> Result<Option<u32>, Option<FwVerdict>> {
        let key = Self::packet_key(meta, zone).ok_or(None)?;
        let reply = hit.initiator != flow.dir;
        let opener = if reply { key.reversed() } else { key };
        let icmp = meta.icmp_type().zip(meta.icmp_code()).map(|(t, c)| match (reply, meta.l3()) {
            (false, _) => (t, c),
            (true, L3::Ipv4) => (icmp::request_type(t), c),
            (true, _) => (icmpv6::request_type(t), c),
        });
        match self.judge_again(&opener, icmp, hit.owner) {
            Ok(now_rule) => {
                let _ = flows.set_verdict(hit, self.verdict_word(now_rule));
                Ok(now_rule)
            }
            Err((code, now_rule)) => {
                // Only the packet that removes the flow reports its end.
                let Some(end) = flows.remove_hit(hit, now_ms) else { return Err(None) };
                let _ = ended.try_push(Ended { record: end.record, code, rule: now_rule });
                Err((code == FlowEndCode::Policy).then_some(FwVerdict::Drop(DropReason::PolicyCut, now_rule)))
            }
        }
    }

    /// What this generation makes of a flow opened on `owner` as `opener` (with `icmp`
    /// type and code) that an earlier one decided: Ok, the rule that keeps it (a stateful
    /// allow); Err, how it ends — cut (denied) or untracked (a stateless allow) — and by
    /// which rule.
    fn judge_again(&self, opener: &FlowKey, icmp: Option<(u8, u8)>, owner: u8) -> Result<Option<u32>, (FlowEndCode, Option<u32>)> {
        let rule = self.classify(opener, icmp, owner);
        match self.action(rule, owner) {
            (true, true) => Ok(rule),
            (true, false) => Err((FlowEndCode::Untracked, rule)),
            (false, _) => Err((FlowEndCode::Policy, rule)),
        }
    }

    /// The main lcore's sweep after a reload ([`FlowTable::revisit_step`]): what this
    /// generation makes of a flow, so one it denies is cut even if it never sends again —
    /// the packet path does the same at a flow's next packet, whichever comes first. ICMP
    /// query flows (30 s) are left to their next packet: the record lacks their type.
    pub fn revisit(&self, r: &FlowRecord) -> Revisit<(FlowEndCode, Option<u32>)> {
        if tag_of(r.verdict) == self.gen_tag || r.verdict & BLOCKED != 0 || matches!(r.key.proto, 1 | 58) {
            return Revisit::Keep;
        }
        match self.judge_again(&r.opener_key(), None, r.owner) {
            Ok(rule) => Revisit::Verdict(self.verdict_word(rule)),
            Err(end) => Revisit::Remove(end),
        }
    }

    /// The first policy rule that matches a packet received on port slot `ingress`, as if
    /// it opened a flow (monitor mode's would-be drop records name it).
    pub fn classify_packet(&self, meta: &Meta, ingress: u8) -> Option<u32> {
        let key = FlowKey::from_meta(meta)?;
        self.classify(&key, meta.icmp_type().zip(meta.icmp_code()), ingress)
    }

    /// Whether the flows `rule` allows are inspected.
    #[inline(always)]
    pub fn inspects(&self, rule: Option<u32>) -> bool {
        rule.and_then(|r| self.rules.get(r as usize)).is_some_and(|r| r.action == RuleAction::Inspect)
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
            // Past any extension headers the quote holds (as far as it goes).
            let chain = rampart_packet::ipv6::walk_ext_headers(*ip.get(6)?, ip.get(40..)?).ok()?;
            if chain.fragment.is_some_and(|f| f.offset != 0) {
                return None; // a later fragment: no ports to name a flow by
            }
            (s, d, chain.upper_layer, ip.get(40 + chain.upper_offset..)?)
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
    use rampart_packet::build::{self, Frame};
    use rampart_packet::{icmp, icmpv6, IpProtocol};
    use rampart_shm::ConntrackImage;

    /// A 60-byte Ethernet/IPv4/UDP frame (18 bytes of zero data).
    fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        bytes(build::udp_v4(src, sport, dst, dport, &[0; 18]))
    }

    fn bytes(frame: Frame) -> Vec<u8> {
        frame.build().unwrap()
    }

    /// One stateful rule allowing protocol `proto`, behind the default drop.
    fn allowing(proto: u8, gen: u64) -> Firewall {
        let acl = Classifier::compile(&[rampart_acl::Rule { proto: Some(proto), ..Default::default() }]).unwrap();
        let rules = vec![RuleImage { id: format!("allow-{proto}"), counter: 0, action: RuleAction::Allow, stateful: true, log: false }];
        let conntrack = ConntrackImage { timeouts: Default::default() };
        Firewall::new(FirewallImage { rules, acl, acl_rule: vec![0], conntrack }, Defaults::default(), gen, Default::default())
    }

    /// A 60-byte Ethernet/IPv4/ICMP echo frame (`ty` 8 = request, 0 = reply; sequence 0).
    fn echo(src: [u8; 4], dst: [u8; 4], ty: u8, ident: u16) -> Vec<u8> {
        let repr = match ty {
            8 => icmp::Repr::EchoRequest { ident, seq_no: 0 },
            0 => icmp::Repr::EchoReply { ident, seq_no: 0 },
            _ => panic!("not an echo type: {ty}"),
        };
        bytes(build::icmp_v4(src, dst, repr, &[0; 18]))
    }

    /// fd00::`x`.
    fn v6(x: u8) -> [u8; 16] {
        let mut a = [0; 16];
        (a[0], a[15]) = (0xfd, x);
        a
    }

    /// Ethernet/IPv6/UDP from fd00::`src` to fd00::`dst` (4 bytes of zero data).
    fn udp6_frame(src: u8, sport: u16, dst: u8, dport: u16) -> Frame {
        build::udp_v6(v6(src), sport, v6(dst), dport, &[0; 4])
    }

    fn udp6(src: u8, sport: u16, dst: u8, dport: u16) -> Vec<u8> {
        bytes(udp6_frame(src, sport, dst, dport))
    }

    /// An ICMPv6 port unreachable from fd00::`from` to fd00::`to` quoting `about`.
    fn unreachable6(from: u8, to: u8, about: &Frame) -> Vec<u8> {
        bytes(build::icmpv6(v6(from), v6(to), icmpv6::Repr::DstUnreachable { code: 4 }, &about.ip_packet().unwrap()))
    }

    /// A firewall of `rules` (ACL rule, action, stateful) behind the default drop.
    fn policy(gen: u64, rules: &[(rampart_acl::Rule, RuleAction, bool)]) -> Firewall {
        policy_with(gen, rules, Defaults::default())
    }

    /// A firewall of `rules` behind `defaults`.
    fn policy_with(gen: u64, rules: &[(rampart_acl::Rule, RuleAction, bool)], defaults: Defaults) -> Firewall {
        let acl = Classifier::compile(&rules.iter().map(|r| r.0.clone()).collect::<Vec<_>>()).unwrap();
        let images = rules
            .iter()
            .enumerate()
            .map(|(i, r)| RuleImage { id: format!("r{i}"), counter: i as _, action: r.1, stateful: r.2, log: false })
            .collect();
        let conntrack = ConntrackImage { timeouts: Default::default() };
        let acl_rule = (0..rules.len() as u32).collect();
        Firewall::new(FirewallImage { rules: images, acl, acl_rule, conntrack }, defaults, gen, Default::default())
    }

    fn to_port(proto: u8, port: u16) -> rampart_acl::Rule {
        rampart_acl::Rule { proto: Some(proto), dst_ports: (port, port), ..Default::default() }
    }

    fn table(capacity: u32, full_policy: rampart_flow::FullPolicy) -> FlowTable {
        FlowTable::new(&FlowTableConfig { capacity, full_policy, ..Default::default() }).unwrap()
    }

    /// Decides `frame` received on port slot `slot`, at time 10.
    fn decide_on(fw: &Firewall, flows: &FlowTable, frame: &[u8], slot: u8) -> FwVerdict {
        fw.check(flows, &rampart_packet::parse(frame).unwrap(), frame, slot, 0, 10, &mut EndedFlows::new())
    }

    /// Decides `frame` (received on port slot 1 at `now`): the verdict and the flow that ended.
    fn decide(fw: &Firewall, flows: &FlowTable, frame: &[u8], now: u64) -> (FwVerdict, Option<Ended>) {
        let mut ended = EndedFlows::new();
        let verdict = fw.check(flows, &rampart_packet::parse(frame).unwrap(), frame, 1, 0, now, &mut ended);
        assert!(ended.len() <= 1, "{ended:?}");
        (verdict, ended.pop())
    }

    #[test]
    fn a_cut_ends_the_flow_named_as_its_opener_sent_it() {
        let flows = table(64, Default::default());
        let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]);
        // Opened by the endpoint that sorts last (stored reversed) and by the first.
        let opened = [udp(b, 40000, a, 8080), udp(a, 40001, c, 8080), udp(c, 40002, a, 8080)];
        let udp_allowed = allowing(17, 1);
        for frame in &opened {
            assert!(matches!(decide(&udp_allowed, &flows, frame, 10).0, FwVerdict::Pass { created: true, .. }));
        }
        // The next policy allows only TCP: each flow is cut by its next packet, replies included.
        let tcp_only = allowing(6, 2);
        for (frame, opener) in [(udp(a, 8080, b, 40000), &opened[0]), (udp(c, 8080, a, 40001), &opened[1]), (opened[2].clone(), &opened[2])] {
            let (verdict, ended) = decide(&tcp_only, &flows, &frame, 20);
            assert_eq!(verdict, FwVerdict::Drop(DropReason::PolicyCut, None));
            let ended = ended.expect("a cut ends the flow");
            assert_eq!(ended.code, FlowEndCode::Policy);
            let want = FlowKey::from_meta(&rampart_packet::parse(opener).unwrap()).unwrap();
            assert_eq!(ended.record.opener_key(), want, "named as its opener sent it");
        }
        assert_eq!(flows.len(), 0);
    }

    #[test]
    fn a_reload_cuts_exactly_the_flows_the_new_policy_denies() {
        let flows = table(64, Default::default());
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let both = policy(1, &[(to_port(17, 8080), RuleAction::Allow, true), (to_port(17, 9090), RuleAction::Allow, true)]);
        let (web, dns) = (udp(a, 40000, b, 8080), udp(a, 40001, b, 9090));
        for frame in [&web, &dns] {
            assert!(matches!(decide(&both, &flows, frame, 10).0, FwVerdict::Pass { created: true, .. }));
        }
        // Generation 2 keeps 9090 (now the first rule) and denies 8080.
        let only_dns = policy(2, &[(to_port(17, 9090), RuleAction::Allow, true), (to_port(17, 8080), RuleAction::Deny, true)]);
        assert_eq!(decide(&only_dns, &flows, &udp(b, 9090, a, 40001), 20), (FwVerdict::Pass { rule: Some(0), created: false, log: false }, None), "the reply of the kept flow passes by state");
        let (verdict, ended) = decide(&only_dns, &flows, &udp(b, 8080, a, 40000), 20);
        assert_eq!(verdict, FwVerdict::Drop(DropReason::PolicyCut, Some(1)));
        assert_eq!(ended.map(|e| (e.code, e.rule, e.record.opener_key().dst_port)), Some((FlowEndCode::Policy, Some(1), 8080)));
        assert_eq!(flows.len(), 1, "only the denied flow left");
        assert_eq!(decide(&only_dns, &flows, &dns, 30).0, FwVerdict::Pass { rule: Some(0), created: false, log: false });
        assert_eq!(decide(&only_dns, &flows, &web, 30).0, FwVerdict::Drop(DropReason::RuleDeny, Some(1)), "and stays denied");
    }

    #[test]
    fn the_default_action_is_that_of_the_port_the_flow_came_in_on() {
        let acl = Classifier::compile(&[to_port(6, 22)]).unwrap();
        let rules = vec![RuleImage { id: "ssh".into(), counter: 0, action: RuleAction::Deny, stateful: true, log: false }];
        let image = FirewallImage { rules, acl, acl_rule: vec![0], conntrack: ConntrackImage { timeouts: Default::default() } };
        let port = |slot, default_action| rampart_shm::PortImage {
            slot,
            name: format!("p{slot}"),
            device: String::new(),
            socket: String::new(),
            client: false,
            queues: 1,
            attach: rampart_shm::Attach::Segment(0),
            enabled: true,
            macs: vec![],
            max_flows: None,
            default_action,
            guard: None,
            max_macs: 0,
            limits: Default::default(),
            monitor: None,
        };
        use rampart_shm::Verdict;
        // Slot 1 (a guest) forwards by default, slot 2 (an uplink) drops.
        let defaults = Defaults::of(&[port(1, Verdict::Forward), port(2, Verdict::Drop)]);
        assert_eq!(defaults, Defaults { forward: 1 << 1, track: true });
        let fw = Firewall::new(image.clone(), defaults, 1, Default::default());
        let flows = table(64, Default::default());
        let (guest, outside) = ([10, 0, 0, 1], [192, 0, 2, 7]);
        let out = udp(guest, 40000, outside, 53);
        assert_eq!(decide_on(&fw, &flows, &out, 1), FwVerdict::Pass { rule: None, created: true, log: false }, "tracked, as a port drops by default");
        assert_eq!(decide_on(&fw, &flows, &udp(outside, 53, guest, 40000), 2), FwVerdict::Pass { rule: None, created: false, log: false }, "so its reply passes the uplink by state");
        assert_eq!(decide_on(&fw, &flows, &udp(outside, 53, guest, 40001), 2), FwVerdict::Drop(DropReason::PolicyDrop, None), "what else comes in is dropped");
        assert_eq!(decide_on(&fw, &flows, &udp(guest, 40002, outside, 53), 63), FwVerdict::Drop(DropReason::PolicyDrop, None), "a port the image does not have");
        // Where every default forwards, nothing needs tracking.
        let all = Defaults::of(&[port(1, Verdict::Forward), port(2, Verdict::Forward)]);
        assert_eq!(all, Defaults { forward: 0b110, track: false });
        let flows = table(64, Default::default());
        assert_eq!(decide_on(&Firewall::new(image, all, 1, Default::default()), &flows, &out, 2), FwVerdict::Pass { rule: None, created: false, log: false });
        assert_eq!(flows.len(), 0);
    }

    #[test]
    fn ipv6_flows_are_tracked_by_state() {
        let flows = table(64, Default::default());
        let fw = policy(1, &[(to_port(17, 53), RuleAction::Allow, true)]);
        let (verdict, _) = decide(&fw, &flows, &udp6(1, 40000, 2, 53), 10);
        assert!(matches!(verdict, FwVerdict::Pass { rule: Some(0), created: true, .. }));
        assert_eq!(decide(&fw, &flows, &udp6(2, 53, 1, 40000), 20).0, FwVerdict::Pass { rule: Some(0), created: false, log: false }, "the reply, by state");
        assert_eq!(decide(&fw, &flows, &udp6(2, 53, 1, 40001), 20).0, FwVerdict::Drop(DropReason::PolicyDrop, None), "another flow is not");
        assert_eq!(flows.len(), 1);
    }

    #[test]
    fn a_stateless_rule_passes_packets_without_tracking_them() {
        let flows = table(64, Default::default());
        let fw = policy(1, &[(to_port(17, 53), RuleAction::Allow, false)]);
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        for now in [10, 20] {
            assert_eq!(decide(&fw, &flows, &udp(a, 40000, b, 53), now), (FwVerdict::Pass { rule: Some(0), created: false, log: false }, None));
        }
        assert_eq!(flows.len(), 0, "nothing tracked");
        assert_eq!(decide(&fw, &flows, &udp(b, 53, a, 40000), 30).0, FwVerdict::Drop(DropReason::PolicyDrop, None), "so no reply passes by state");
    }

    /// An ICMP port unreachable from `from` to `to`, quoting `quoted` (an IPv4 packet's start).
    fn unreachable(from: [u8; 4], to: [u8; 4], quoted: &[u8]) -> Vec<u8> {
        bytes(build::icmp_v4(from, to, icmp::Repr::DstUnreachable { code: 3, next_hop_mtu: 0 }, quoted))
    }

    #[test]
    fn an_icmp_error_passes_only_for_a_tracked_flow() {
        let flows = table(64, Default::default());
        let fw = policy(1, &[(to_port(17, 53), RuleAction::Allow, true)]);
        let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]);
        let query = udp(a, 40000, b, 53);
        assert!(matches!(decide(&fw, &flows, &query, 10).0, FwVerdict::Pass { created: true, .. }));
        assert_eq!(decide(&fw, &flows, &unreachable(b, a, &query[14..42]), 20).0, FwVerdict::Pass { rule: Some(0), created: false, log: false }, "about a tracked flow, counted to its rule");
        let untracked = udp(a, 40001, b, 53);
        assert_eq!(decide(&fw, &flows, &unreachable(b, a, &untracked[14..42]), 20).0, FwVerdict::Drop(DropReason::IcmpUnrelated, None), "forged: no such flow");
        assert_eq!(decide(&fw, &flows, &unreachable(c, b, &query[14..42]), 20).0, FwVerdict::Drop(DropReason::IcmpUnrelated, None), "sent to the wrong end");
        assert_eq!(decide(&fw, &flows, &unreachable(b, a, &query[14..36]), 20).0, FwVerdict::Drop(DropReason::IcmpUnrelated, None), "quoting too little to name a flow");
    }

    #[test]
    fn an_icmp_error_about_an_untracked_flow_follows_an_untracked_default_forward() {
        let flows = table(64, Default::default());
        let (a, b, c) = ([10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]);
        let from_c = rampart_acl::Rule { src: vec![rampart_acl::Prefix::v4(c, 32)], proto: Some(1), icmp_type: Some(3), ..Default::default() };
        let rules = [(to_port(17, 53), RuleAction::Allow, true), (from_c, RuleAction::Reject, true)];
        // Nothing matches a→b:8080, so the default forwarded it without tracking it.
        let untracked = udp(a, 40001, b, 8080);
        let all_forward = policy_with(1, &rules, Defaults { forward: !0, track: false });
        assert_eq!(decide(&all_forward, &flows, &untracked, 10).0, FwVerdict::Pass { rule: None, created: false, log: false });
        assert_eq!(
            decide(&all_forward, &flows, &unreachable(b, a, &untracked[14..42]), 20).0,
            FwVerdict::Pass { rule: None, created: false, log: false },
            "forwarded like the flow it is about (fragmentation needed, port unreachable...)"
        );
        assert_eq!(flows.len(), 0, "and nothing is tracked for it");
        assert_eq!(
            decide(&all_forward, &flows, &unreachable(c, a, &untracked[14..42]), 20).0,
            FwVerdict::Drop(DropReason::RuleDeny, Some(1)),
            "a rule that matches the error decides it, and an error is never answered"
        );
        // Never a redirect, nor an error from the wrong side of a tracked flow.
        let to_c = icmp::Repr::Unknown { msg_type: 5, code: 1, header_data: c };
        let redirect = bytes(build::icmp_v4(b, a, to_c, &untracked[14..42]));
        assert_eq!(decide(&all_forward, &flows, &redirect, 20).0, FwVerdict::Drop(DropReason::IcmpUnrelated, None), "a redirect");
        let query = udp(a, 40000, b, 53);
        assert!(matches!(decide(&all_forward, &flows, &query, 30).0, FwVerdict::Pass { created: true, .. }));
        assert_eq!(decide(&all_forward, &flows, &unreachable(c, b, &query[14..42]), 30).0, FwVerdict::Drop(DropReason::IcmpUnrelated, None), "c forging an error to b about b's flow");
        assert_eq!(decide(&all_forward, &flows, &unreachable(b, a, &query[14..42]), 30).0, FwVerdict::Pass { rule: Some(0), created: false, log: false }, "the real one");
        // Where some port's default drops, default-forwarded flows are tracked: an error
        // about no tracked flow is forged or stale.
        let tracked_defaults = policy_with(1, &rules, Defaults { forward: 1 << 1, track: true });
        assert_eq!(decide(&tracked_defaults, &flows, &unreachable(b, a, &untracked[14..42]), 20).0, FwVerdict::Drop(DropReason::IcmpUnrelated, None));
        let default_drop = policy_with(1, &rules, Defaults::default());
        assert_eq!(decide(&default_drop, &flows, &unreachable(b, a, &untracked[14..42]), 20).0, FwVerdict::Drop(DropReason::IcmpUnrelated, None));
        // There, a stateless rule that allows the error lets it through (its flow's packets
        // pass the same way, untracked).
        let unreachables = rampart_acl::Rule { proto: Some(1), icmp_type: Some(3), ..Default::default() };
        let stateless = policy_with(1, &[(unreachables, RuleAction::Allow, false)], Defaults::default());
        assert_eq!(decide(&stateless, &flows, &unreachable(b, a, &untracked[14..42]), 20).0, FwVerdict::Pass { rule: Some(0), created: false, log: false });
    }

    #[test]
    fn an_icmpv6_error_quoting_extension_headers_finds_its_flow() {
        let flows = table(64, Default::default());
        let fw = policy(1, &[(to_port(17, 53), RuleAction::Allow, true)]);
        // The query carries a Destination Options header (8 bytes: a PadN option) before UDP.
        let with_options = |sport| udp6_frame(1, sport, 2, 53).ext_header(IpProtocol::Ipv6Opts, &[1, 4, 0, 0, 0, 0]);
        let query = with_options(40000);
        assert!(matches!(decide(&fw, &flows, &bytes(query.clone()), 10).0, FwVerdict::Pass { created: true, .. }));
        // Port unreachable (type 1 code 4) from fd00::2 back to fd00::1, quoting the query.
        assert_eq!(decide(&fw, &flows, &unreachable6(2, 1, &query), 20).0, FwVerdict::Pass { rule: Some(0), created: false, log: false });
        let forged = unreachable6(2, 1, &with_options(40001)); // another source port
        assert_eq!(decide(&fw, &flows, &forged, 20).0, FwVerdict::Drop(DropReason::IcmpUnrelated, None));
    }

    #[test]
    fn the_sweep_after_a_reload_keeps_retags_untracks_and_cuts() {
        let flows = table(64, Default::default());
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let old = policy(1, &[(to_port(17, 0), RuleAction::Allow, true), (rampart_acl::Rule { proto: Some(17), ..Default::default() }, RuleAction::Allow, true), (rampart_acl::Rule { proto: Some(1), ..Default::default() }, RuleAction::Allow, true)]);
        for frame in [udp(a, 1, b, 53), udp(a, 2, b, 80), udp(a, 3, b, 9), echo(a, b, 8, 7)] {
            assert!(matches!(decide(&old, &flows, &frame, 10).0, FwVerdict::Pass { created: true, .. }));
        }
        // Generation 2: 53 stays (stateful), 80 becomes stateless, the rest is denied.
        let new = policy(2, &[(to_port(17, 53), RuleAction::Allow, true), (to_port(17, 80), RuleAction::Allow, false)]);
        let mut ends = Vec::new();
        let mut cursor = 0;
        flows.revisit_step(&mut cursor, flows.slots(), 20, |r| new.revisit(r), |end, (code, rule)| ends.push((end.record.opener_key().dst_port, code, rule)));
        ends.sort_by_key(|e| e.0);
        assert_eq!(ends, [(9, FlowEndCode::Policy, None), (80, FlowEndCode::Untracked, Some(1))]);
        let mut left: Vec<(u8, u16, u32)> = Vec::new();
        flows.for_each_flow(20, |r| left.push((r.key.proto, r.opener_key().dst_port, r.verdict)));
        left.sort();
        assert_eq!(left, [(1, 7, old.verdict_word(Some(2))), (17, 53, new.verdict_word(Some(0)))], "the echo flow waits for its next packet; 53 carries the new generation");
        // Swept already: its next packet is not re-checked again.
        assert_eq!(decide(&new, &flows, &udp(b, 53, a, 1), 30), (FwVerdict::Pass { rule: Some(0), created: false, log: false }, None));
    }

    /// A flow inspection blocked stays blocked, both ways, through a reload whose sweep
    /// would otherwise cut or re-decide it, until it times out.
    #[test]
    fn a_blocked_flow_stays_blocked_through_a_reload_and_its_sweep() {
        let flows = table(64, Default::default());
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let old = policy(1, &[(to_port(17, 53), RuleAction::Allow, true)]);
        let request = udp(a, 1, b, 53);
        assert!(matches!(decide(&old, &flows, &request, 10).0, FwVerdict::Pass { created: true, .. }));
        let meta = rampart_packet::parse(&request).unwrap();
        let flow = flows.prepare_flow(&Firewall::packet_key(&meta, 0).unwrap());
        Firewall::block(&flows, &flow, None);
        assert_eq!(decide(&old, &flows, &udp(b, 53, a, 1), 11).0, FwVerdict::Drop(DropReason::SignatureFlow, Some(0)));
        // The new generation allows nothing: its sweep would cut the flow, but keeps it.
        let new = policy(2, &[]);
        let mut cursor = 0;
        let mut ends = 0;
        flows.revisit_step(&mut cursor, flows.slots(), 20, |r| new.revisit(r), |_, _| ends += 1);
        assert_eq!((ends, flows.len()), (0, 1));
        assert!(matches!(decide(&new, &flows, &request, 21).0, FwVerdict::Drop(DropReason::SignatureFlow, _)));
        // Its timeout still ends it (the main lcore's ageing sweep); a new flow then starts afresh.
        let later = 21 + 600_000;
        flows.expire_step(later, flows.slots(), |_| {});
        assert_eq!(flows.len(), 0);
        let late = decide(&old, &flows, &request, later);
        assert!(matches!(late.0, FwVerdict::Pass { created: true, .. }), "{late:?}");
    }

    #[test]
    fn an_echo_reply_is_rechecked_as_its_request() {
        let flows = table(64, Default::default());
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let ping = |gen| policy(gen, &[(rampart_acl::Rule { proto: Some(1), icmp_type: Some(8), ..Default::default() }, RuleAction::Allow, true)]);
        assert!(matches!(decide(&ping(1), &flows, &echo(a, b, 8, 7), 10).0, FwVerdict::Pass { created: true, .. }));
        // After a reload that keeps the rule, the next packet is the reply (type 0).
        assert_eq!(decide(&ping(2), &flows, &echo(b, a, 0, 7), 20), (FwVerdict::Pass { rule: Some(0), created: false, log: false }, None));
        assert_eq!(flows.len(), 1);
    }

    #[test]
    fn a_flow_a_stateless_rule_now_allows_is_untracked_not_cut() {
        let flows = table(64, Default::default());
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let web = udp(a, 40000, b, 8080);
        let stateful = policy(1, &[(to_port(17, 8080), RuleAction::Allow, true)]);
        assert!(matches!(decide(&stateful, &flows, &web, 10).0, FwVerdict::Pass { created: true, .. }));
        let stateless = policy(2, &[(to_port(17, 8080), RuleAction::Allow, false)]);
        let (verdict, ended) = decide(&stateless, &flows, &web, 20);
        assert_eq!(verdict, FwVerdict::Pass { rule: Some(0), created: false, log: false }, "the packet passes by the stateless rule");
        assert_eq!(ended.map(|e| (e.code, e.rule)), Some((FlowEndCode::Untracked, Some(0))));
        assert_eq!(flows.len(), 0, "no longer tracked");
        // Without state, a reply needs a rule of its own.
        assert_eq!(decide(&stateless, &flows, &udp(b, 8080, a, 40000), 30), (FwVerdict::Drop(DropReason::PolicyDrop, None), None));
    }

    #[test]
    fn a_flow_evicted_to_make_room_is_handed_back_with_its_rule() {
        // Four flows fill a 4-flow table; a fifth evicts the oldest (none has replied).
        let flows = table(4, rampart_flow::FullPolicy::EvictOldest);
        let old = policy(1, &[(to_port(17, 1), RuleAction::Allow, true), (to_port(17, 53), RuleAction::Allow, true)]);
        let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        for (i, now) in (0..4).zip([10, 20, 30, 40]) {
            let (verdict, ended) = decide(&old, &flows, &udp(a, 40000 + i, b, 53), now);
            assert!(matches!(verdict, FwVerdict::Pass { created: true, .. }) && ended.is_none());
        }
        // In generation 2 the rule that decided them (id "r1") moved to index 0.
        let mut new = policy(2, &[(to_port(17, 53), RuleAction::Allow, true)]);
        new.rules[0].id = "r1".into();
        let mut history = RuleHistory::default();
        history.record(1, &old.rules);
        history.record(2, &new.rules);
        let new = Firewall { history: Arc::new(history), ..new };
        let (verdict, ended) = decide(&new, &flows, &udp(a, 50000, b, 53), 50);
        assert!(matches!(verdict, FwVerdict::Pass { created: true, .. }));
        let ended = ended.expect("the victim is handed back for its flow-end event");
        assert_eq!((ended.code, ended.rule), (FlowEndCode::Evicted, Some(0)));
        assert_eq!(ended.record.opener_key().src_port, 40000, "the oldest flow");
        let event = ended.event(7);
        assert_eq!((event.kind, event.code, event.port), (rampart_shm::ring::EventKind::FlowEnd as u16, FlowEndCode::Evicted as u16, 1));
        assert_eq!(rampart_shm::ring::FlowEventData::unpack(&event).3, 53);
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

    /// Frames a guest could send, mutated at random: whatever the bytes, the firewall's
    /// packet path (burst parse and lookups, decisions, re-checks after a reload, ICMP
    /// quotes) and the sweep decide without a panic or a read out of bounds, and never
    /// track a flow it did not pass.
    mod mutated {
        use super::*;
        use proptest::prelude::*;

        fn templates() -> Vec<Vec<u8>> {
            let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
            let query = udp(a, 40000, b, 53);
            let solicit = icmpv6::Repr::NeighborSolicit { target: v6(2) };
            vec![
                query.clone(),
                udp(b, 53, a, 40000),
                echo(a, b, 8, 7),
                unreachable(b, a, &query[14..42]),
                udp6(1, 40000, 2, 53),
                unreachable6(2, 1, &udp6_frame(1, 40000, 2, 53)),
                bytes(build::icmpv6(v6(1), v6(2), solicit, &[]).ttl(255)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

            #[test]
            fn any_frame_is_decided_safely(
                picks in prop::collection::vec((0usize..7, prop::collection::vec((0usize..128, any::<u8>()), 0..6), 0usize..128), 1..BURST),
            ) {
                let flows = table(256, rampart_flow::FullPolicy::EvictOldest);
                let gen1 = policy(1, &[(to_port(17, 53), RuleAction::Allow, true), (rampart_acl::Rule { proto: Some(1), ..Default::default() }, RuleAction::Allow, true)]);
                let gen2 = policy(2, &[(to_port(17, 53), RuleAction::Allow, false)]);
                let t = templates();
                let frames: Vec<Vec<u8>> = picks
                    .iter()
                    .map(|(which, flips, cut)| {
                        let mut f = t[*which].clone();
                        for &(at, byte) in flips {
                            if let Some(x) = f.get_mut(at) {
                                *x = byte;
                            }
                        }
                        f.truncate((*cut).max(14));
                        f
                    })
                    .collect();
                for (now, fw) in [(10, &gen1), (20, &gen1), (30, &gen2)] {
                    let mut burst = Burst::default();
                    burst.fill(&flows, 0, frames.iter().map(Vec::as_slice));
                    for (i, frame) in frames.iter().enumerate() {
                        let Ok(meta) = burst.meta(i) else { continue };
                        let mut ended = EndedFlows::new();
                        let before = flows.len();
                        let verdict = fw.check_looked_up(&flows, meta, frame, 1, 0, now, burst.lookup(&flows, i), &mut ended);
                        let created = matches!(verdict, FwVerdict::Pass { created: true, .. });
                        prop_assert!(flows.len() <= before + created as u32, "only a passed first packet adds a flow: {verdict:?}");
                    }
                }
                // Generation 2 tracks nothing: its sweep leaves only ICMP queries (left to
                // their next packet) and reports every flow it removes.
                let (mut cursor, mut removed) = (0, 0);
                let live = flows.len();
                flows.revisit_step(&mut cursor, flows.slots(), 40, |r| gen2.revisit(r), |_, _| removed += 1);
                flows.for_each_flow(40, |r| assert!(matches!(r.key.proto, 1 | 58), "{r:?}"));
                prop_assert_eq!(flows.len() + removed, live);
            }
        }
    }
}
