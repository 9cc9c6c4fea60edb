//! The per-burst packet path: a burst of frames received on one port in, one
//! [`Action`] per frame out.
//!
//! Per burst: frames of several segments (a chained mbuf the dataplane could not
//! linearise) are dropped as `chained`, never passed on uninspected; then, under the
//! burst's [`Runtime`], either every frame gets the port's fixed route once it is checked
//! (`validate`: an unguarded wire pair without a firewall, a disabled port, a drop-all
//! policy), or each is parsed, checked by the port's guard ([`crate::guard`], if it has
//! one) and switched in its segment, or — under a stateful firewall — the whole burst is
//! parsed and its flow lookups pipelined ([`Burst`]), then each packet is decided: the
//! guard, switching, later fragments ([`Fragments`]), the firewall, reject answers
//! written in place ([`crate::reject`]).
//!
//! Drops are counted here (per port and reason, in this worker's counter block), so is
//! what the port received; events (malformed frames, new and ended flows) go to this
//! worker's event ring. The caller transmits and counts what it sends. Nothing here
//! allocates, locks or makes a system call.

use crate::anomaly;
use crate::event_limit::EventLimiter;
use crate::firewall::{Burst, Ended, EndedFlows, Firewall, FwVerdict, BURST};
use crate::fragments::{Datagram, Follow, Fragments};
use crate::inspect::{Inspected, Streams};
use crate::reject;
use crate::runtime::{Decision, Enforced, Route, RtPort, Runtime};
use rampart_flow::{FlowHit, FlowTable, Prepared};
use rampart_packet::{Meta, ParseError};
use rampart_shm::layout::EventRing;
use rampart_shm::ring::{EventKind, FlowEventData};
use rampart_shm::{Anomaly, ChecksumScope, DropReason, EventRecord, WorkerCounters};

/// How far ahead packet data is prefetched.
const PREFETCH: usize = 4;

/// What the received frame's checksums are, as its sender handed it over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Checksums {
    /// Every checksum in the frame is what the wire needs.
    #[default]
    Complete,
    /// The L4 checksum field holds only the pseudo-header sum: the guest left the rest to
    /// the device (virtio `NEEDS_CSUM`, which DPDK turns into TX checksum-offload flags
    /// that the transmitting port completes). A stage that rewrites such a frame must
    /// patch only the pseudo-header part of that field, never compute it whole.
    L4Partial,
}

/// One received frame: its bytes, followed by the buffer's unused room (where an answer
/// written in place may grow), and what the receiving port said about it.
pub struct Frame<'a> {
    buf: &'a mut [u8],
    len: usize,
    wire_len: u32,
    segments: u16,
    checksums: Checksums,
}

impl<'a> Frame<'a> {
    /// A frame whose first `len` bytes of `buf` are the packet (the rest is free room).
    /// `wire_len` is the whole packet's length (more than `len` only when it has several
    /// `segments`, of which `buf` holds the first).
    #[inline(always)]
    pub fn new(buf: &'a mut [u8], len: usize, wire_len: u32, segments: u16, checksums: Checksums) -> Frame<'a> {
        let len = len.min(buf.len());
        Frame { buf, len, wire_len, segments, checksums }
    }

    /// A single-segment frame with complete checksums that fills `buf`.
    pub fn whole(buf: &'a mut [u8]) -> Frame<'a> {
        let len = buf.len();
        Frame::new(buf, len, len as u32, 1, Checksums::Complete)
    }

    /// The packet's bytes (of its first segment).
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The packet's length now: changed when an answer was written in place.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the frame holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The checksum state the frame arrived with.
    pub fn checksums(&self) -> Checksums {
        self.checksums
    }
}

/// A set of local port indexes (a runtime's ports; at most 64).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSet(u64);

impl PortSet {
    /// The set of one port.
    #[inline(always)]
    pub fn one(port: u8) -> PortSet {
        PortSet(1u64.checked_shl(port as u32).unwrap_or(0))
    }

    /// Adds a port.
    pub fn insert(&mut self, port: u8) {
        self.0 |= PortSet::one(port).0;
    }

    /// The set without `port`.
    #[inline(always)]
    pub fn without(self, port: u8) -> PortSet {
        PortSet(self.0 & !PortSet::one(port).0)
    }

    /// How many ports.
    #[inline(always)]
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The ports, lowest first.
    #[inline(always)]
    pub fn iter(self) -> impl Iterator<Item = u8> {
        let mut bits = self.0;
        std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let port = bits.trailing_zeros() as u8;
                bits &= bits - 1;
                port
            })
        })
    }
}

/// What to do with one frame of a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send the frame as it is now to every port of the set (local indexes).
    Forward(PortSet),
    /// The frame was turned into an answer of `len` bytes in place (all its checksums
    /// complete): send it back out of the port it came in on.
    Reply { len: u16 },
    /// Drop it; it is counted already.
    Drop(DropReason),
}

/// What a worker's pipeline writes to and reads besides the runtime: shared with the
/// other workers (the flow table) or owned by this worker alone (its counter block and
/// event ring in shared memory).
pub struct Context<'a> {
    pub flows: &'a FlowTable,
    pub counters: &'a WorkerCounters,
    pub events: &'a EventRing,
    /// The flow table's clock: milliseconds since the dataplane started.
    pub now_ms: u64,
    /// The same clock in nanoseconds (the token buckets').
    pub now_ns: u64,
}

/// One worker's packet path: per-worker state (the fragments it passed, scratch space
/// for a burst) and the actions of the last burst.
pub struct Pipeline {
    fragments: Fragments,
    burst: Box<Burst>,
    actions: [Action; BURST],
    limiter: EventLimiter,
    streams: Streams,
}

impl Default for Pipeline {
    /// A pipeline with the smallest stream table (tests, fuzzing).
    fn default() -> Pipeline {
        Pipeline::new(0)
    }
}

impl Pipeline {
    /// A pipeline whose inspection keeps `streams` flow directions' matcher state.
    pub fn new(streams: usize) -> Pipeline {
        Pipeline {
            fragments: Fragments::default(),
            burst: Box::default(),
            actions: [Action::Drop(DropReason::NoPolicy); BURST],
            limiter: EventLimiter::default(),
            streams: Streams::new(streams),
        }
    }

    /// Decides a burst of at most [`BURST`] frames received on local port `ingress` of
    /// `rt`; returns one action per frame. Frames may be rewritten in place.
    #[inline(always)]
    pub fn process(&mut self, rt: &Runtime, cx: &Context, ingress: u8, frames: &mut [Frame]) -> &[Action] {
        let n = frames.len().min(BURST);
        let slot = rt.ports.get(ingress as usize).map_or(0, |p| p.slot as usize);
        // The port's packets/s and bytes/s limits admit a prefix of the burst, charged once.
        let admitted = match rt.limits(ingress).filter(|l| l.limits_traffic()) {
            Some(limits) => self.throttle(cx, limits, slot, &frames[..n], rt.monitors(ingress, Enforced::Throttle)),
            None => n,
        };
        let frames = &mut frames[..admitted];
        match &rt.firewall {
            Some(fw) => self.stateful(rt, fw, cx, ingress, frames),
            // Nothing to look up: each frame is decided as soon as it is checked.
            None => {
                let enforce = !rt.monitors(ingress, Enforced::Anomalies);
                match (rt.route(ingress), rt.guard(ingress)) {
                    // Only whether the frame is well formed matters.
                    (Route::Fixed(decision @ Decision::Drop(_)), _) => self.each_frame(rt, cx, ingress, frames, |frame, _| rampart_packet::validate(frame.data()).map(|()| decision)),
                    (Route::Fixed(decision), None) if !rt.checks_headers => {
                        self.each_frame(rt, cx, ingress, frames, |frame, _| rampart_packet::validate(frame.data()).map(|()| decision))
                    }
                    (route, None) => self.each_frame(rt, cx, ingress, frames, |frame, limiter| {
                        rampart_packet::parse(frame.data()).map(|meta| match check_headers(rt, cx, limiter, slot, enforce, &meta, frame) {
                            Ok(()) => {
                                rt.snoop(ingress, &meta, frame.data(), cx.now_ms);
                                route.decide(rt, ingress, &meta)
                            }
                            Err(reason) => Decision::Drop(reason),
                        })
                    }),
                    (route, Some(guard)) => self.each_frame(rt, cx, ingress, frames, |frame, limiter| {
                        let data = frame.data();
                        rampart_packet::parse(data).map(|meta| match guard.check(rt, ingress, &meta, data, cx.now_ms).and_then(|()| check_headers(rt, cx, limiter, slot, enforce, &meta, frame)) {
                            Ok(()) => {
                                rt.snoop(ingress, &meta, data, cx.now_ms);
                                route.decide(rt, ingress, &meta)
                            }
                            Err(reason) => Decision::Drop(reason),
                        })
                    }),
                }
            }
        }
        let c = &cx.counters.ports[slot];
        c.rx_packets.add(frames.len() as u64);
        c.rx_bytes.add(frames.iter().map(|f| f.wire_len as u64).sum());
        &self.actions[..n]
    }

    /// How many frames of the burst the port's limits admit; the others get their drop
    /// (counted, received) as actions. Once per burst of a port that has limits. `monitor`:
    /// the port only monitors its limits, so all are admitted and the rest counted as
    /// would-be drops.
    fn throttle(&mut self, cx: &Context, limits: &crate::throttle::PortLimits, slot: usize, frames: &[Frame], monitor: bool) -> usize {
        let mut lens = [0u32; BURST];
        for (l, f) in lens.iter_mut().zip(frames) {
            *l = f.wire_len;
        }
        let k = limits.admit(cx.now_ns, &lens[..frames.len()]);
        if monitor {
            for _ in k..frames.len() {
                cx.counters.would_drop(slot, DropReason::Throttled);
            }
            return frames.len();
        }
        let c = &cx.counters.ports[slot];
        for (i, f) in frames.iter().enumerate().skip(k) {
            cx.counters.drop(slot, DropReason::Throttled, f.wire_len as u64);
            cx.counters.guard_drop(slot, DropReason::Throttled);
            c.rx_packets.add(1);
            c.rx_bytes.add(f.wire_len as u64);
            self.actions[i] = Action::Drop(DropReason::Throttled);
        }
        k
    }

    /// Writes the summaries of held-back drop records that are due ([`EventLimiter::flush`]);
    /// the worker calls it between bursts.
    #[inline]
    pub fn flush_events(&mut self, cx: &Context) {
        self.limiter.flush(cx.events, cx.counters, cx.now_ms);
    }

    /// A burst without a firewall: each frame is checked (malformed ones are dropped and
    /// counted) and decided by `decide` in one pass.
    #[inline(always)]
    fn each_frame(&mut self, rt: &Runtime, cx: &Context, ingress: u8, frames: &[Frame], decide: impl Fn(&Frame, &mut EventLimiter) -> Result<Decision, ParseError>) {
        let slot = rt.ports.get(ingress as usize).map_or(0, |p| p.slot as usize);
        let Pipeline { actions, limiter, .. } = self;
        for i in 0..frames.len() {
            prefetch_ahead(frames, i);
            let frame = &frames[i];
            let decision = match frame.segments {
                1 => decide(frame, limiter).unwrap_or_else(|e| malformed(cx, limiter, rt, slot, e, frame)),
                _ => Decision::Drop(DropReason::Chained),
            };
            actions[i] = action(rt, cx, ingress, slot, frame, decision);
        }
    }

    /// A burst under a stateful firewall: parse every frame and start its flow lookup
    /// ([`Burst`]), then decide each one.
    #[inline(always)]
    fn stateful(&mut self, rt: &Runtime, fw: &Firewall, cx: &Context, ingress: u8, frames: &mut [Frame]) {
        let Pipeline { fragments, burst, actions, limiter, streams } = self;
        let Some(port) = rt.ports.get(ingress as usize) else {
            for (i, frame) in frames.iter().enumerate() {
                actions[i] = action(rt, cx, ingress, 0, frame, Decision::Drop(DropReason::PortDetached));
            }
            return;
        };
        let (slot, zone) = (port.slot as usize, port.zone);
        let route = rt.route(ingress);
        let guard = rt.guard(ingress);
        let (monitor, monitor_guard) = (port.monitor.is_some(), rt.monitors(ingress, Enforced::Guard));
        let enforce = !rt.monitors(ingress, Enforced::Anomalies);
        burst.fill(cx.flows, zone, (0..frames.len()).map(|i| {
            prefetch_ahead(frames, i);
            // A chained frame is not parsed (its first segment is not the packet).
            if frames[i].segments == 1 {
                frames[i].data()
            } else {
                &[]
            }
        }));
        for (i, frame) in frames.iter_mut().enumerate() {
            let decision = match (frame.segments, burst.meta(i)) {
                (1, Ok(meta)) => match guard.map_or(Ok(()), |g| g.check(rt, ingress, meta, frame.data(), cx.now_ms)).or_else(|reason| match monitor_guard {
                    true => {
                        cx.counters.would_drop(slot, reason);
                        Ok(())
                    }
                    false => Err(reason),
                }).map(|()| {
                    rt.snoop(ingress, meta, frame.data(), cx.now_ms);
                    route.decide(rt, ingress, meta)
                }).unwrap_or_else(Decision::Drop) {
                    Decision::Drop(r) => Decision::Drop(r),
                    pass if meta.is_ip() => match check_headers(rt, cx, limiter, slot, enforce, meta, frame) {
                        Err(reason) => Decision::Drop(reason),
                        Ok(()) => {
                            let looked_up = burst.lookup(cx.flows, i);
                            let step = match firewall(fragments, fw, rt, cx, limiter, meta, frame, port, looked_up, enforce) {
                                Step::Inspect { created } => inspect(streams, rt, cx, limiter, meta, frame, slot, looked_up, created, monitor, enforce),
                                step => step,
                            };
                            match step {
                                Step::Pass | Step::Inspect { .. } => pass,
                                Step::Drop(reason) => Decision::Drop(reason),
                                Step::Reply(reason) => {
                                    cx.counters.drop(slot, reason, frame.wire_len as u64);
                                    actions[i] = Action::Reply { len: frame.len as u16 };
                                    continue;
                                }
                            }
                        }
                    },
                    pass => pass,
                },
                (1, Err(e)) => malformed(cx, limiter, rt, slot, *e, frame),
                _ => Decision::Drop(DropReason::Chained),
            };
            actions[i] = action(rt, cx, ingress, slot, frame, decision);
        }
    }
}

/// The stateful firewall step for one IP packet received on `port`. Later fragments
/// follow their datagram's first fragment (see [`crate::fragments`]); a rejected packet
/// becomes its answer in place. On a port in monitor mode, what the firewall would drop
/// passes, counted and logged (within the port's drop-record budget, `limiter`) as a
/// would-be drop; the new-flow limits still drop where the port enforces its limits, and
/// anomalies where it enforces them (`enforce`, see [`crate::anomaly::found`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn firewall(
    fragments: &mut Fragments,
    fw: &Firewall,
    rt: &Runtime,
    cx: &Context,
    limiter: &mut EventLimiter,
    meta: &Meta,
    frame: &mut Frame,
    port: &RtPort,
    looked_up: Option<(&Prepared, Option<FlowHit>)>,
    enforce: bool,
) -> Step {
    let (slot, zone) = (port.slot as usize, port.zone);
    let monitor = port.monitor.is_some();
    match decide(fragments, fw, rt, cx, limiter, meta, frame, slot, zone, looked_up, monitor, enforce) {
        Step::Drop(reason) if monitor && !is_anomaly(reason) && !(is_rate_limit(reason) && port.monitor.is_some_and(|m| m.throttle)) => {
            would_drop(cx, limiter, rt, slot, reason, meta, fw);
            Step::Pass
        }
        step => step,
    }
}

/// An anomaly's drop: [`crate::anomaly::found`] has judged it, monitor mode included.
fn is_anomaly(reason: DropReason) -> bool {
    Anomaly::ALL.iter().any(|a| a.reason() == reason)
}

/// The header checks ([`crate::anomaly::headers`]) of an IP packet: Err to drop it.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn check_headers(rt: &Runtime, cx: &Context, limiter: &mut EventLimiter, slot: usize, enforce: bool, meta: &Meta, frame: &Frame) -> Result<(), DropReason> {
    if !rt.checks_headers || !meta.is_ip() {
        return Ok(());
    }
    match anomaly::headers(&rt.anomalies, meta, frame.data(), frame.checksums) {
        None => Ok(()),
        Some(kind) => anomaly::found(cx, limiter, rt, slot, kind, meta, enforce).map_or(Ok(()), Err),
    }
}

/// The new-flow limits' drops (part of the port's limits, not of its policy).
fn is_rate_limit(reason: DropReason) -> bool {
    matches!(reason, DropReason::NewFlowRate | DropReason::SourceRate | DropReason::DestinationRate)
}

/// Monitor mode: counts a packet `reason` would have dropped, and logs it within the
/// port's budget of drop records (with the first rule that matches the packet).
#[cold]
#[allow(clippy::too_many_arguments)]
fn would_drop(cx: &Context, limiter: &mut EventLimiter, rt: &Runtime, slot: usize, reason: DropReason, meta: &Meta, fw: &Firewall) {
    cx.counters.would_drop(slot, reason);
    if !limiter.admit(slot, reason.index(), rt.drop_events_per_s, cx.now_ms) {
        return;
    }
    let rule = fw.classify_packet(meta, slot as u8);
    let (data, value) = FlowEventData::pack(&meta.src_addr, &meta.dst_addr, meta.src_port, meta.dst_port, meta.ip_proto, rule);
    let kind = EventKind::WouldDrop as u16;
    push_event(cx, EventRecord { tsc: crate::rdtsc(), kind, port: slot as u16, code: reason.index() as u16, value, len: 32, data, ..Default::default() });
}

/// The firewall's decision for one IP packet (see [`firewall`]); `monitor`: a reject
/// writes no answer.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn decide(
    fragments: &mut Fragments,
    fw: &Firewall,
    rt: &Runtime,
    cx: &Context,
    limiter: &mut EventLimiter,
    meta: &Meta,
    frame: &mut Frame,
    slot: usize,
    zone: u16,
    looked_up: Option<(&Prepared, Option<FlowHit>)>,
    monitor: bool,
    enforce: bool,
) -> Step {
    let len = frame.wire_len as u64;
    if meta.is_later_fragment() {
        let datagram = match fragments.follow(meta, zone, cx.now_ms, rt.anomalies.checks(Anomaly::FragmentOverlap)) {
            Follow::Pass(datagram) => datagram,
            Follow::Unknown => return Step::Drop(DropReason::Fragment),
            Follow::Poisoned => return Step::Drop(DropReason::AnomalyFragmentOverlap),
            Follow::Overlap(datagram) => match anomaly::found(cx, limiter, rt, slot, Anomaly::FragmentOverlap, meta, enforce) {
                Some(reason) => {
                    fragments.poison(meta, zone);
                    return Step::Drop(reason);
                }
                None => datagram,
            },
        };
        if let Some(c) = datagram.counter.filter(|_| datagram.gen == rt.gen) {
            let rc = &cx.counters.rules[c];
            rc.packets.add(1);
            rc.bytes.add(len);
        }
        return Step::Pass;
    }
    let mut ended = EndedFlows::new();
    let verdict = fw.check_looked_up(cx.flows, meta, frame.data(), slot as u8, zone, cx.now_ms, looked_up, &mut ended);
    for e in &ended {
        flow_ended(cx, e);
    }
    let rule = match verdict {
        FwVerdict::Pass { rule, .. } | FwVerdict::Drop(_, rule) | FwVerdict::Reject(rule) => rule,
    };
    let counter = rule.and_then(|r| fw.counter_of(r));
    if let Some(c) = counter {
        let rc = &cx.counters.rules[c];
        rc.packets.add(1);
        rc.bytes.add(len);
        if matches!(verdict, FwVerdict::Pass { created: true, .. }) {
            rc.flows.add(1);
        }
    }
    match verdict {
        FwVerdict::Pass { log, created, rule } => {
            if meta.is_first_fragment() {
                let carried = crate::fragments::first_carried(meta, frame.data());
                fragments.passed(meta, zone, Datagram { counter, gen: rt.gen }, carried, cx.now_ms);
            }
            if log && created {
                flow_started(cx, slot, 0, meta, rule);
            }
            match fw.inspects(rule) {
                true => Step::Inspect { created },
                false => Step::Pass,
            }
        }
        FwVerdict::Drop(DropReason::SourceRate, _) => {
            if let Some(rate) = fw.new_flows.report_source(&meta.src_addr, zone, cx.now_ms) {
                source_over_limit(cx, slot, meta, rate);
            }
            Step::Drop(DropReason::SourceRate)
        }
        // Outside its connection's window: an anomaly, whose action the policy chooses.
        FwVerdict::Drop(DropReason::AnomalyTcpWindow, rule) => match anomaly::found(cx, limiter, rt, slot, Anomaly::TcpWindow, meta, enforce) {
            Some(reason) => Step::Drop(reason),
            None if fw.inspects(rule) => Step::Inspect { created: false },
            None => Step::Pass,
        },
        FwVerdict::Drop(reason, _) => Step::Drop(reason),
        FwVerdict::Reject(_) if monitor => Step::Drop(DropReason::RuleReject),
        FwVerdict::Reject(rule) => {
            flow_started(cx, slot, rampart_shm::ring::FLOW_START_REJECTED, meta, rule);
            match answer_in_place(frame, meta) {
                true => Step::Reply(DropReason::RuleReject),
                false => Step::Drop(DropReason::RuleReject),
            }
        }
    }
}

/// The inspection step for a packet of a flow an `inspect` rule allows (see
/// [`crate::inspect`]). Without signatures to run (none built for this generation), such
/// a flow is dropped: inspection is never bypassed. Checksums are verified first where
/// the policy says so (`bad_checksum` in [`ChecksumScope::Inspected`]): a segment its
/// receiver would discard must not mislead the signatures.
#[allow(clippy::too_many_arguments)]
#[inline]
fn inspect(
    streams: &mut Streams,
    rt: &Runtime,
    cx: &Context,
    limiter: &mut EventLimiter,
    meta: &Meta,
    frame: &mut Frame,
    slot: usize,
    looked_up: Option<(&Prepared, Option<FlowHit>)>,
    created: bool,
    monitor: bool,
    enforce: bool,
) -> Step {
    let Some(ins) = rt.inspection.as_deref() else {
        return Step::Drop(DropReason::Signature);
    };
    let a = &rt.anomalies;
    if a.checksums == ChecksumScope::Inspected && a.checks(Anomaly::BadChecksum) && !anomaly::checksums_ok(meta, frame.data(), frame.checksums) {
        if let Some(reason) = anomaly::found(cx, limiter, rt, slot, Anomaly::BadChecksum, meta, enforce) {
            return Step::Drop(reason);
        }
    }
    // An ICMP error the firewall related to the flow (it is not looked up itself): it quotes
    // the flow's headers, carries none of its payload, and passes as the flow's packets do
    // (path-MTU discovery keeps working for inspected flows).
    let Some(flow) = looked_up else {
        return Step::Pass;
    };
    match streams.inspect(ins, cx, meta, frame.data(), slot, flow, created, monitor) {
        Inspected::Forward => Step::Pass,
        // Monitor mode: the alerts say what would have happened.
        Inspected::Drop | Inspected::Reject if monitor => {
            cx.counters.would_drop(slot, DropReason::Signature);
            Step::Pass
        }
        verdict => {
            if ins.drop_flow {
                crate::firewall::Firewall::block(cx.flows, flow.0, flow.1);
            }
            match verdict {
                Inspected::Reject => reject_signature(frame, meta),
                _ => Step::Drop(DropReason::Signature),
            }
        }
    }
}

/// A `reject` signature's answer, in place of the packet.
fn reject_signature(frame: &mut Frame, meta: &Meta) -> Step {
    match answer_in_place(frame, meta) {
        true => Step::Reply(DropReason::Signature),
        false => Step::Drop(DropReason::Signature),
    }
}

/// What the firewall (and inspection) step made of a packet.
enum Step {
    Pass,
    /// Allowed by an `inspect` rule: the payload is inspected next.
    Inspect { created: bool },
    Drop(DropReason),
    /// Rejected (for this reason), and the frame now holds the answer.
    Reply(DropReason),
}

/// Turns a rejected frame into its answer (TCP RST or ICMP unreachable), in its own
/// buffer; false when it gets none (see [`reject::build`]) or the buffer has no room.
#[cold]
fn answer_in_place(frame: &mut Frame, meta: &Meta) -> bool {
    // The answer quotes the packet, so it is built from a copy.
    let mut original = [0u8; reject::MAX_REPLY];
    let n = frame.len.min(reject::MAX_REPLY);
    original[..n].copy_from_slice(&frame.buf[..n]);
    let mut out = [0u8; reject::MAX_REPLY];
    match reject::build(&original[..n], meta, &mut out) {
        Some(len) if len <= frame.buf.len() && len <= u16::MAX as usize => {
            frame.buf[..len].copy_from_slice(&out[..len]);
            frame.len = len;
            frame.checksums = Checksums::Complete;
            true
        }
        _ => false,
    }
}

/// The action of a forwarding decision; a drop is counted here.
#[inline(always)]
fn action(rt: &Runtime, cx: &Context, ingress: u8, slot: usize, frame: &Frame, decision: Decision) -> Action {
    match decision {
        Decision::Port(dst) => Action::Forward(PortSet::one(dst)),
        // Storm control: a port's floods are limited (one take per flooded frame: floods are rare).
        Decision::Flood(seg) if !rt.limits(ingress).is_none_or(|l| l.admit_flood(cx.now_ns)) => {
            if rt.monitors(ingress, Enforced::Throttle) {
                cx.counters.would_drop(slot, DropReason::Storm);
                return Action::Forward(rt.segments[seg as usize].member_set.without(ingress));
            }
            cx.counters.drop(slot, DropReason::Storm, frame.wire_len as u64);
            cx.counters.guard_drop(slot, DropReason::Storm);
            Action::Drop(DropReason::Storm)
        }
        Decision::Flood(seg) => Action::Forward(rt.segments[seg as usize].member_set.without(ingress)),
        Decision::Drop(reason) => {
            cx.counters.drop(slot, reason, frame.wire_len as u64);
            cx.counters.guard_drop(slot, reason);
            Action::Drop(reason)
        }
    }
}


/// Logs a malformed frame (within the port's budget of drop records); its decision is to
/// drop it.
#[cold]
fn malformed(cx: &Context, limiter: &mut EventLimiter, rt: &Runtime, slot: usize, e: ParseError, frame: &Frame) -> Decision {
    let reason = DropReason::Malformed(e);
    if matches!(e, ParseError::FragmentTooSmall | ParseError::FragmentBadOffset) {
        cx.counters.anomalies[Anomaly::TinyFragment.index()].add(1);
    }
    if !limiter.admit(slot, reason.index(), rt.drop_events_per_s, cx.now_ms) {
        return Decision::Drop(reason);
    }
    let rec = EventRecord { tsc: crate::rdtsc(), kind: EventKind::Malformed as u16, port: slot as u16, code: reason.index() as u16, value: frame.wire_len as u64, ..Default::default() };
    push_event(cx, rec.with_data(frame.data()));
    Decision::Drop(reason)
}

/// The flow-start event of the flow `meta`'s packet opens.
#[cold]
fn flow_started(cx: &Context, slot: usize, code: u16, meta: &Meta, rule: Option<u32>) {
    let (data, value) = FlowEventData::pack(&meta.src_addr, &meta.dst_addr, meta.src_port, meta.dst_port, meta.ip_proto, rule);
    let kind = EventKind::FlowStart as u16;
    push_event(cx, EventRecord { tsc: crate::rdtsc(), kind, port: slot as u16, code, value, len: 32, data, ..Default::default() });
}

/// A source went over its new flows/s limit (reported at most once per 10 s per source):
/// the control process may block it (`throttle.block_for`).
#[cold]
fn source_over_limit(cx: &Context, slot: usize, meta: &Meta, rate: u64) {
    let mut data = [0u8; 32];
    data[..16].copy_from_slice(&meta.src_addr);
    let kind = EventKind::SourceOverLimit as u16;
    push_event(cx, EventRecord { tsc: crate::rdtsc(), kind, port: slot as u16, value: rate, len: 16, data, ..Default::default() });
}

/// The flow-end event of a flow that ended while a packet was decided.
#[cold]
fn flow_ended(cx: &Context, ended: &Ended) {
    push_event(cx, ended.event(crate::rdtsc()));
}

pub(crate) fn push_event(cx: &Context, rec: EventRecord) {
    if !cx.events.push(rec) {
        cx.counters.totals.events_lost.add(1);
    }
}

/// Prefetches the data of the frame [`PREFETCH`] places after `i` in the burst.
#[inline(always)]
fn prefetch_ahead(frames: &[Frame], i: usize) {
    if let Some(ahead) = frames.get(i + PREFETCH) {
        crate::prefetch(ahead.buf.as_ptr());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_acl::{Classifier, Rule};
    use rampart_flow::FlowTableConfig;
    use rampart_packet::build;
    use rampart_shm::{Attach, ConntrackImage, FirewallImage, PolicyImage, PortImage, RuleAction, RuleImage, Segment};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [2, 0, 0, 0, 0, 0xc];

    /// A worker's surroundings: a real shared-memory segment (counters, event ring) and a
    /// flow table.
    struct Rig {
        segment: Segment,
        flows: FlowTable,
        _dir: TempDir,
    }

    /// A directory removed when dropped.
    struct TempDir(std::path::PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl Rig {
        fn new() -> Rig {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("rampart-path-{}-{n}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let segment = Segment::create(&dir.join("shm"), 0o600, 1, 1_000_000_000, 0).unwrap();
            let flows = FlowTable::new(&FlowTableConfig { capacity: 1024, ..Default::default() }).unwrap();
            Rig { segment, flows, _dir: TempDir(dir) }
        }

        fn cx(&self) -> Context<'_> {
            Context { flows: &self.flows, counters: &self.segment.workers[0], events: &self.segment.events[0], now_ms: 1, now_ns: 1_000_000 }
        }

        fn dropped(&self, reason: DropReason) -> u64 {
            self.segment.workers[0].drops[reason.index()].get()
        }
    }

    fn port(slot: u16, macs: Vec<[u8; 6]>) -> PortImage {
        crate::runtime::tests::port(slot, Attach::Segment(0), true, macs)
    }

    /// Three ports on one segment (A on 0, B on 1, C on 2), with `firewall` if given.
    fn runtime(firewall: Option<FirewallImage>) -> Runtime {
        runtime_gen(firewall, 1)
    }

    /// [`runtime`] as policy generation `gen`.
    fn runtime_gen(firewall: Option<FirewallImage>, gen: u64) -> Runtime {
        let image = PolicyImage::plain(vec![port(0, vec![A]), port(1, vec![B]), port(2, vec![C])], firewall);
        Runtime::build(gen, &image, Some, None, &Default::default())
    }

    /// Rules behind the default forward: `reject` TCP to port 23, `deny` UDP to port 9.
    fn rules() -> FirewallImage {
        let telnet = Rule { proto: Some(6), dst_ports: (23, 23), ..Default::default() };
        let discard = Rule { proto: Some(17), dst_ports: (9, 9), ..Default::default() };
        FirewallImage {
            rules: vec![
                RuleImage { id: "reject-telnet".into(), counter: 0, action: RuleAction::Reject, stateful: true, log: false },
                RuleImage { id: "deny-discard".into(), counter: 1, action: RuleAction::Deny, stateful: true, log: false },
            ],
            acl: Classifier::compile(&[telnet, discard]).unwrap(),
            acl_rule: vec![0, 1],
            conntrack: ConntrackImage { timeouts: Default::default() },
        }
    }

    fn udp(src: [u8; 6], dst: [u8; 6], dport: u16) -> Vec<u8> {
        build::udp_v4([10, 0, 0, 1], 4000, [10, 0, 0, 2], dport, b"hello").macs(src, dst).build().unwrap()
    }

    /// Runs one burst of `frames` received on local port `ingress`, each in a buffer with
    /// `room` bytes free after it; returns the actions and the frames as they are after.
    fn run(rig: &Rig, rt: &Runtime, ingress: u8, frames: &[Vec<u8>], room: usize) -> (Vec<Action>, Vec<Vec<u8>>) {
        let mut bufs: Vec<Vec<u8>> = frames.iter().map(|f| [f.clone(), vec![0; room]].concat()).collect();
        let mut burst: Vec<Frame> = bufs.iter_mut().zip(frames).map(|(b, f)| Frame::new(b, f.len(), f.len() as u32, 1, Checksums::Complete)).collect();
        let mut pipeline = Pipeline::default();
        let actions = pipeline.process(rt, &rig.cx(), ingress, &mut burst).to_vec();
        let lens: Vec<usize> = burst.iter().map(|f| f.len()).collect();
        drop(burst);
        (actions, bufs.into_iter().zip(lens).map(|(mut b, n)| { b.truncate(n); b }).collect())
    }

    #[test]
    fn a_switched_burst_forwards_to_owners_floods_the_unknown_and_counts_the_malformed() {
        let rig = Rig::new();
        let rt = runtime(None);
        let unknown = [2, 0, 0, 0, 0, 0xd];
        let frames = [udp(A, B, 53), udp(A, unknown, 53), udp(A, A, 53), udp(A, B, 53)[..20].to_vec()];
        let (actions, _) = run(&rig, &rt, 0, &frames, 0);
        let mut flood = PortSet::one(1);
        flood.insert(2);
        assert_eq!(
            actions,
            [
                Action::Forward(PortSet::one(1)),
                Action::Forward(flood),
                Action::Drop(DropReason::Hairpin),
                Action::Drop(DropReason::Malformed(ParseError::Ipv4Truncated)),
            ]
        );
        assert_eq!(rig.dropped(DropReason::Hairpin), 1);
        assert_eq!(rig.dropped(DropReason::Malformed(ParseError::Ipv4Truncated)), 1);
        let (rec, _) = rig.segment.events[0].pop().expect("the malformed frame is logged");
        assert_eq!(rec.kind, EventKind::Malformed as u16);
        let port = &rig.segment.workers[0].ports[0];
        assert_eq!(port.rx_packets.get(), 4);
        assert_eq!(port.rx_bytes.get(), frames.iter().map(|f| f.len() as u64).sum::<u64>());
    }

    #[test]
    fn a_dhcp_ack_from_a_server_port_gives_the_guest_its_lease_and_a_rogue_one_nothing() {
        let rig = Rig::new();
        let guard = rampart_shm::GuardImage { addresses: vec![], learn: true, learn_timeout_s: 300, serves_dhcp: false, serves_ra: false };
        // A (port 0) and C (port 2) are guarded guests that learn their address; B (port 1) is
        // the DHCP server's uplink (unguarded).
        let mut ports = vec![port(0, vec![A]), port(1, vec![B]), port(2, vec![C])];
        ports[0].guard = Some(guard.clone());
        ports[2].guard = Some(guard);
        let image = PolicyImage::plain(ports, None);
        let rt = Runtime::build(1, &image, Some, None, &Default::default());
        let from_a = |src: [u8; 4]| build::udp_v4(src, 68, [255, 255, 255, 255], 67, b"dhcp").macs(A, [0xff; 6]).build().unwrap();
        let mut flood = PortSet::one(1);
        flood.insert(2);
        assert_eq!(run(&rig, &rt, 0, &[from_a([0, 0, 0, 0])], 0).0[0], Action::Forward(flood), "discover from 0.0.0.0");
        // C, a guest that does not serve DHCP, hands A a lease: dropped, and no lease.
        let rogue = crate::guard::tests::dhcp_reply(C, A, [10, 0, 0, 66], 5);
        assert_eq!(run(&rig, &rt, 2, &[rogue], 0).0[0], Action::Drop(DropReason::RogueDhcp));
        // The server's ACK: 10.0.0.50 for A.
        let ack = crate::guard::tests::dhcp_reply(B, A, [10, 0, 0, 50], 5);
        assert!(matches!(run(&rig, &rt, 1, &[ack], 0).0[0], Action::Forward(_)));
        let (actions, _) = run(&rig, &rt, 0, &[udp_from(A, [10, 0, 0, 66]), udp_from(A, [10, 0, 0, 51]), udp_from(A, [10, 0, 0, 50])], 0);
        assert_eq!(actions[..2], [Action::Drop(DropReason::SpoofIp), Action::Drop(DropReason::SpoofIp)], "only the leased address is A's");
        assert_eq!(actions[2], Action::Forward(PortSet::one(1)));
    }

    fn udp_from(mac: [u8; 6], src: [u8; 4]) -> Vec<u8> {
        build::udp_v4(src, 4000, [10, 0, 0, 2], 53, b"hello").macs(mac, B).build().unwrap()
    }

    #[test]
    fn a_chained_frame_is_dropped_and_counted_never_inspected() {
        let rig = Rig::new();
        for rt in [runtime(None), runtime(Some(rules()))] {
            let mut frame = udp(A, B, 53);
            let len = frame.len();
            let mut burst = [Frame::new(&mut frame, len, 3000, 2, Checksums::Complete)];
            let actions = Pipeline::default().process(&rt, &rig.cx(), 0, &mut burst).to_vec();
            assert_eq!(actions, [Action::Drop(DropReason::Chained)]);
        }
        assert_eq!(rig.dropped(DropReason::Chained), 2);
        assert_eq!(rig.segment.workers[0].ports[0].drop_bytes.get(), 6000, "counted with the whole packet's length");
    }

    #[test]
    fn a_rejected_syn_becomes_its_rst_in_place_and_a_denied_datagram_is_dropped() {
        let rig = Rig::new();
        let rt = runtime(Some(rules()));
        let syn = build::tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 23, rampart_packet::TcpFlags::SYN, b"").macs(A, B).build().unwrap();
        let (actions, after) = run(&rig, &rt, 0, &[syn.clone(), udp(A, B, 9), udp(A, B, 53)], 0);
        let Action::Reply { len } = actions[0] else { panic!("{:?}", actions[0]) };
        assert_eq!(actions[1..], [Action::Drop(DropReason::RuleDeny), Action::Forward(PortSet::one(1))]);
        let rst = rampart_packet::parse(&after[0][..len as usize]).unwrap();
        assert_eq!((rst.src_mac, rst.dst_mac, rst.src_port, rst.dst_port), (B, A, 23, 40000));
        assert_eq!(rst.tcp_flags.0, rampart_packet::TcpFlags::RST | rampart_packet::TcpFlags::ACK);
        assert_eq!(rig.dropped(DropReason::RuleReject), 1, "the rejected packet counts as dropped");
        assert_eq!(rig.segment.workers[0].rules[0].packets.get(), 1);
    }

    #[test]
    fn an_answer_that_does_not_fit_the_buffer_is_a_drop() {
        let rig = Rig::new();
        // A UDP reject answer quotes the datagram: more than a bare 47-byte frame holds.
        let mut img = rules();
        img.rules[1].action = RuleAction::Reject;
        let rt_udp = runtime(Some(img));
        let (actions, _) = run(&rig, &rt_udp, 0, &[udp(A, B, 9)], 0);
        assert_eq!(actions, [Action::Drop(DropReason::RuleReject)]);
        let (actions, after) = run(&rig, &rt_udp, 0, &[udp(A, B, 9)], 128);
        let Action::Reply { len } = actions[0] else { panic!("{:?}", actions[0]) };
        let icmp = rampart_packet::parse(&after[0][..len as usize]).unwrap();
        assert_eq!((icmp.ip_proto, icmp.icmp_type(), icmp.icmp_code()), (1, Some(3), Some(3)));
    }

    #[test]
    fn a_policy_without_rules_routes_the_whole_burst_at_once() {
        let rig = Rig::new();
        let mut image = PolicyImage { segments: vec![], ..PolicyImage::plain(vec![port(0, vec![]), port(1, vec![])], None) };
        image.ports[0].attach = Attach::Wire(1);
        image.ports[1].attach = Attach::Wire(0);
        let rt = Runtime::build(1, &image, Some, None, &Default::default());
        let frames = [udp(A, B, 53), vec![0u8; 10]];
        let (actions, _) = run(&rig, &rt, 1, &frames, 0);
        assert_eq!(actions, [Action::Forward(PortSet::one(0)), Action::Drop(DropReason::Malformed(ParseError::EthernetTruncated))]);
    }

    #[test]
    fn port_sets_iterate_their_ports_in_order() {
        let mut set = PortSet::default();
        for p in [5, 0, 63, 7] {
            set.insert(p);
        }
        assert_eq!(set.iter().collect::<Vec<_>>(), [0, 5, 7, 63]);
        assert_eq!(set.without(5).len(), 3);
        assert!(PortSet::one(64).is_empty(), "beyond 64 ports: no bit, never a wrong one");
    }

    /// A signature with one content and defaults elsewhere (any addresses and ports).
    fn signature(action: rampart_signatures::SigAction, sid: u32, content: &[u8], nocase: bool) -> rampart_signatures::Signature {
        use rampart_signatures::*;
        let checks = vec![PayloadCheck::Content(Content { bytes: content.to_vec(), nocase, ..Default::default() })];
        Signature { msg: format!("test {sid}"), ..Signature::new(action, SigProto::Tcp, sid, checks) }
    }

    /// Inspects TCP to port 80 (`inspect`), allows TCP to port 22 (`allow`), with a `drop`
    /// signature for "evil-payload" and an `alert` one for "watchme" (nocase).
    fn inspecting_runtime() -> Runtime {
        inspecting_runtime_with(true, 1)
    }

    /// [`inspecting_runtime`], blocking the rest of a flow after a drop or not, as policy
    /// generation `gen`.
    fn inspecting_runtime_with(drop_flow: bool, gen: u64) -> Runtime {
        use rampart_signatures::SigAction;
        let web = Rule { proto: Some(6), dst_ports: (80, 80), ..Default::default() };
        let ssh = Rule { proto: Some(6), dst_ports: (22, 22), ..Default::default() };
        let fw = FirewallImage {
            rules: vec![
                RuleImage { id: "inspect-web".into(), counter: 0, action: RuleAction::Inspect, stateful: true, log: false },
                RuleImage { id: "ssh".into(), counter: 1, action: RuleAction::Allow, stateful: true, log: false },
            ],
            acl: Classifier::compile(&[web, ssh]).unwrap(),
            acl_rule: vec![0, 1],
            conntrack: ConntrackImage { timeouts: Default::default() },
        };
        let ins = rampart_shm::InspectionImage {
            signatures: vec![signature(SigAction::Drop, 1001, b"evil-payload", false), signature(SigAction::Alert, 1002, b"watchme", true)],
            counters: vec![0, 1],
            tail: 64,
            idle_timeout_ms: 60_000,
            drop_flow,
        };
        let mut rt = runtime_gen(Some(fw), gen);
        rt.inspection = Some(std::sync::Arc::new(crate::inspect::Inspection::build(&ins).unwrap()));
        rt
    }

    /// A TCP segment between A (10.0.0.1:40000) and B (10.0.0.2:`port`).
    fn segment(from_a: bool, port: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        client_segment(40000, from_a, port, flags, seq, ack, payload)
    }

    /// [`segment`] with another client port.
    fn client_segment(client: u16, from_a: bool, port: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let (src, dst, sport, dport, smac, dmac) = match from_a {
            true => ([10, 0, 0, 1], [10, 0, 0, 2], client, port, A, B),
            false => ([10, 0, 0, 2], [10, 0, 0, 1], port, client, B, A),
        };
        build::tcp_v4(src, sport, dst, dport, flags, payload).macs(smac, dmac).with_tcp(|t| (t.seq_number, t.ack_number) = (seq, ack)).build().unwrap()
    }

    /// One frame through a pipeline that lives across calls (its streams do).
    fn one(rig: &Rig, rt: &Runtime, pipeline: &mut Pipeline, ingress: u8, frame: Vec<u8>) -> Action {
        let mut buf = [frame.clone(), vec![0; 128]].concat();
        let mut burst = [Frame::new(&mut buf, frame.len(), frame.len() as u32, 1, Checksums::Complete)];
        pipeline.process(rt, &rig.cx(), ingress, &mut burst)[0]
    }

    /// A's handshake with B's port 80 from `client` (A on port 0, B on port 1), forwarded.
    fn handshake(rig: &Rig, rt: &Runtime, p: &mut Pipeline, client: u16) {
        use rampart_packet::TcpFlags;
        assert_eq!(one(rig, rt, p, 0, client_segment(client, true, 80, TcpFlags::SYN, 100, 0, b"")), Action::Forward(PortSet::one(1)));
        assert_eq!(one(rig, rt, p, 1, client_segment(client, false, 80, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b"")), Action::Forward(PortSet::one(0)));
        assert_eq!(one(rig, rt, p, 0, client_segment(client, true, 80, TcpFlags::ACK, 101, 501, b"")), Action::Forward(PortSet::one(1)));
    }

    fn alerts(rig: &Rig) -> Vec<(u32, u16)> {
        let mut out = Vec::new();
        while let Some((rec, _)) = rig.segment.events[0].pop() {
            if rec.kind == EventKind::Alert as u16 {
                out.push((FlowEventData::unpack(&rec).5.unwrap(), rec.code));
            }
        }
        out
    }

    #[test]
    fn inspection_drops_a_signature_split_across_tcp_segments_and_alerts() {
        use rampart_packet::TcpFlags;
        use rampart_shm::ring::AlertCode;
        // (Only the matching packets dropped: the flow goes on.)
        let (rig, rt) = (Rig::new(), inspecting_runtime_with(false, 1));
        let mut p = Pipeline::new(64);
        let to_b = Action::Forward(PortSet::one(1));
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::SYN, 100, 0, b"")), to_b);
        assert_eq!(one(&rig, &rt, &mut p, 1, segment(false, 80, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b"")), Action::Forward(PortSet::one(0)));
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK, 101, 501, b"")), to_b);
        // "evil-payload" split after "evil-pa": the first half passes, the second is dropped.
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK | TcpFlags::PSH, 101, 501, b"GET /evil-pa")), to_b);
        assert_eq!(alerts(&rig), []);
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK | TcpFlags::PSH, 113, 501, b"yload HTTP/1.1")), Action::Drop(DropReason::Signature));
        assert_eq!(alerts(&rig), [(0, AlertCode::Dropped as u16)], "one alert, naming signature 0 (sid 1001)");
        // An alert signature forwards (nocase), and its alert says so.
        assert_eq!(one(&rig, &rt, &mut p, 1, segment(false, 80, TcpFlags::ACK | TcpFlags::PSH, 501, 127, b"WatchMe")), Action::Forward(PortSet::one(0)));
        assert_eq!(alerts(&rig), [(1, AlertCode::Allowed as u16)]);
        // Out of sequence: inspected on its own (still dropped when whole), and counted.
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK | TcpFlags::PSH, 2000, 508, b"an evil-payload")), Action::Drop(DropReason::Signature));
        let c = rig.segment.workers[0].inspect.read();
        assert_eq!((c.packets, c.alerts, c.blocked, c.out_of_order, c.streams_refused), (7, 3, 2, 1, 0));
        assert_eq!(rig.segment.workers[0].signatures[0].get(), 2, "signature 0's counter slot");
        assert_eq!(rig.dropped(DropReason::Signature), 2);
    }

    /// With `drop_flow` (the default), a drop blocks the rest of the flow both ways, at its
    /// table hit, uninspected; other flows go on; a reload keeps the block.
    #[test]
    fn a_drop_blocks_the_rest_of_its_flow_both_ways() {
        use rampart_packet::TcpFlags;
        let (rig, rt) = (Rig::new(), inspecting_runtime());
        let mut p = Pipeline::new(64);
        let to_b = Action::Forward(PortSet::one(1));
        let data = TcpFlags::ACK | TcpFlags::PSH;
        for client in [40000, 40001] {
            handshake(&rig, &rt, &mut p, client);
        }
        assert_eq!(one(&rig, &rt, &mut p, 0, client_segment(40000, true, 80, data, 101, 501, b"an evil-payload")), Action::Drop(DropReason::Signature));
        let inspected = rig.segment.workers[0].inspect.read().packets;
        // Clean segments of the blocked flow, either way: dropped, not inspected.
        assert_eq!(one(&rig, &rt, &mut p, 0, client_segment(40000, true, 80, data, 116, 501, b"fine")), Action::Drop(DropReason::SignatureFlow));
        assert_eq!(one(&rig, &rt, &mut p, 1, client_segment(40000, false, 80, data, 501, 116, b"ok")), Action::Drop(DropReason::SignatureFlow));
        assert_eq!(rig.segment.workers[0].inspect.read().packets, inspected, "a blocked flow is not inspected");
        // Another flow between the same hosts goes on.
        assert_eq!(one(&rig, &rt, &mut p, 0, client_segment(40001, true, 80, data, 101, 501, b"fine")), to_b);
        // A reload (a new generation of the same policy) keeps the block.
        let reloaded = inspecting_runtime_with(true, 2);
        assert_eq!(one(&rig, &reloaded, &mut p, 0, client_segment(40000, true, 80, data, 120, 501, b"more")), Action::Drop(DropReason::SignatureFlow));
        assert_eq!(one(&rig, &reloaded, &mut p, 0, client_segment(40001, true, 80, data, 105, 501, b"fine")), to_b, "rechecked and kept");
        assert_eq!(rig.dropped(DropReason::SignatureFlow), 3);
        assert_eq!(rig.dropped(DropReason::Signature), 1);
    }

    /// `detection_filter` holds back a drop signature's first match (forwarded, not
    /// alerted), `threshold` limits an alert signature's alerts; both counted.
    #[test]
    fn thresholds_and_detection_filters_decide_which_matches_act_and_alert() {
        use rampart_packet::TcpFlags;
        use rampart_shm::ring::AlertCode;
        use rampart_signatures::{SigAction, Threshold, ThresholdKind, Track};
        let filter = Threshold { kind: None, track: Track::BySrc, count: 1, seconds: 60 };
        let limit = Threshold { kind: Some(ThresholdKind::Limit), track: Track::ByRule, count: 1, seconds: 60 };
        let sigs = vec![
            rampart_signatures::Signature { detection_filter: Some(filter), ..signature(SigAction::Drop, 1001, b"evil-payload", false) },
            rampart_signatures::Signature { threshold: Some(limit), ..signature(SigAction::Alert, 1002, b"watchme", true) },
        ];
        let mut rt = inspecting_runtime_with(false, 1);
        let ins = rampart_shm::InspectionImage { signatures: sigs, counters: vec![0, 1], tail: 64, idle_timeout_ms: 60_000, drop_flow: false };
        rt.inspection = Some(std::sync::Arc::new(crate::inspect::Inspection::build(&ins).unwrap()));
        let rig = Rig::new();
        let mut p = Pipeline::new(64);
        let to_b = Action::Forward(PortSet::one(1));
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::SYN, 100, 0, b"")), to_b);
        assert_eq!(one(&rig, &rt, &mut p, 1, segment(false, 80, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b"")), Action::Forward(PortSet::one(0)));
        let mut seq = 101;
        let mut send = |payload: &[u8]| {
            let a = one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK | TcpFlags::PSH, seq, 501, payload));
            seq += payload.len() as u32;
            a
        };
        assert_eq!(send(b"an evil-payload"), to_b, "the filter holds back the first match");
        assert_eq!(send(b"an evil-payload"), Action::Drop(DropReason::Signature));
        for _ in 0..3 {
            assert_eq!(send(b"watchme"), to_b);
        }
        assert_eq!(send(b"an evil-payload"), Action::Drop(DropReason::Signature));
        assert_eq!(alerts(&rig), [(0, AlertCode::Dropped as u16), (1, AlertCode::Allowed as u16), (0, AlertCode::Dropped as u16)], "one alert of the three watchme");
        let c = rig.segment.workers[0].inspect.read();
        assert_eq!((c.blocked, c.alerts, c.filtered, c.suppressed), (2, 3, 1, 2));
    }

    /// `flowbits`: a bit one packet sets (`noalert`: no alert) is seen by the flow's later
    /// packets both ways, not by another flow; a reload naming the same flowbits keeps the
    /// bits, one naming others starts them unset.
    #[test]
    fn flowbits_follow_a_flow_both_ways_and_across_a_reload() {
        use rampart_packet::TcpFlags;
        use rampart_shm::ring::AlertCode;
        use rampart_signatures::{Flowbit, FlowbitOp, SigAction, Signature};
        let bit = |op, name: &str| Flowbit { op, names: vec![name.to_string()] };
        let image = |name: &str| rampart_shm::InspectionImage {
            signatures: vec![
                Signature { flowbits: vec![bit(FlowbitOp::Set, name)], noalert: true, ..signature(SigAction::Alert, 1001, b"login", false) },
                Signature { flowbits: vec![bit(FlowbitOp::IsSet, name)], ..signature(SigAction::Drop, 1002, b"rm -rf", false) },
            ],
            counters: vec![0, 1],
            tail: 64,
            idle_timeout_ms: 60_000,
            drop_flow: false,
        };
        let runtime = |gen, running: Option<&crate::inspect::Inspection>, name| {
            let mut rt = inspecting_runtime_with(false, gen);
            rt.inspection = Some(std::sync::Arc::new(crate::inspect::Inspection::build_after(&image(name), running).unwrap()));
            rt
        };
        let rt = runtime(1, None, "auth");
        let rig = Rig::new();
        let mut p = Pipeline::new(64);
        let to_b = Action::Forward(PortSet::one(1));
        let data = TcpFlags::ACK | TcpFlags::PSH;
        for client in [40000, 40001] {
            handshake(&rig, &rt, &mut p, client);
        }
        assert_eq!(one(&rig, &rt, &mut p, 0, client_segment(40000, true, 80, data, 101, 501, b"rm -rf /")), to_b, "no bit yet");
        assert_eq!(one(&rig, &rt, &mut p, 0, client_segment(40000, true, 80, data, 109, 501, b"login admin")), to_b);
        assert_eq!(alerts(&rig), [], "noalert");
        assert_eq!(one(&rig, &rt, &mut p, 1, client_segment(40000, false, 80, data, 501, 120, b"rm -rf /")), Action::Drop(DropReason::Signature), "the other direction sees the bit");
        assert_eq!(alerts(&rig), [(1, AlertCode::Dropped as u16)]);
        assert_eq!(one(&rig, &rt, &mut p, 0, client_segment(40001, true, 80, data, 101, 501, b"rm -rf /")), to_b, "another flow has no bit");
        let ins = rt.inspection.as_deref().unwrap();
        assert_eq!(ins.flowbits().map(|t| t.len()), Some(1));
        // A reload with the same flowbit names keeps the table and the flow's bit.
        let same = runtime(2, Some(ins), "auth");
        assert!(std::ptr::eq(same.inspection.as_deref().unwrap().flowbits().unwrap(), ins.flowbits().unwrap()));
        assert_eq!(one(&rig, &same, &mut p, 0, client_segment(40000, true, 80, data, 120, 501, b"rm -rf /")), Action::Drop(DropReason::Signature));
        // Other names: a new table, every bit unset.
        let other = runtime(3, same.inspection.as_deref(), "session");
        assert_eq!(other.inspection.as_deref().unwrap().flowbits().map(|t| t.len()), Some(0));
        assert_eq!(one(&rig, &other, &mut p, 0, client_segment(40000, true, 80, data, 128, 501, b"rm -rf /")), to_b);
        assert_eq!(rig.segment.workers[0].inspect.read().flowbits_refused, 0);
    }

    #[test]
    fn only_flows_of_inspect_rules_are_inspected() {
        use rampart_packet::TcpFlags;
        let (rig, rt) = (Rig::new(), inspecting_runtime());
        let mut p = Pipeline::new(64);
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 22, TcpFlags::SYN, 100, 0, b"")), Action::Forward(PortSet::one(1)));
        assert_eq!(one(&rig, &rt, &mut p, 1, segment(false, 22, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b"")), Action::Forward(PortSet::one(0)));
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 22, TcpFlags::ACK, 101, 501, b"evil-payload")), Action::Forward(PortSet::one(1)));
        assert_eq!(rig.segment.workers[0].inspect.read().packets, 0);
        assert_eq!(alerts(&rig), []);
    }

    #[test]
    fn an_inspect_rule_without_signatures_drops_never_bypasses() {
        use rampart_packet::TcpFlags;
        let rig = Rig::new();
        let mut rt = inspecting_runtime();
        rt.inspection = None;
        let mut p = Pipeline::new(64);
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::SYN, 100, 0, b"")), Action::Drop(DropReason::Signature));
    }

    #[test]
    fn with_no_free_stream_a_packet_is_inspected_on_its_own_and_counted() {
        use rampart_packet::TcpFlags;
        let (rig, rt) = (Rig::new(), inspecting_runtime());
        // The smallest table (8 streams); 9 flows each send one data segment after their handshake.
        let mut p = Pipeline::new(0);
        for i in 0..9u16 {
            let seg = |from_a: bool, flags, seq, ack, payload: &[u8]| client_segment(40000 + i, from_a, 80, flags, seq, ack, payload);
            one(&rig, &rt, &mut p, 0, seg(true, TcpFlags::SYN, 100, 0, b""));
            one(&rig, &rt, &mut p, 1, seg(false, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b""));
            one(&rig, &rt, &mut p, 0, seg(true, TcpFlags::ACK, 101, 501, b""));
            assert_eq!(one(&rig, &rt, &mut p, 0, seg(true, TcpFlags::ACK, 101, 501, b"evil-payload")), Action::Drop(DropReason::Signature), "flow {i}");
        }
        let c = rig.segment.workers[0].inspect.read();
        assert!(c.streams_refused >= 1, "{c:?}");
        assert_eq!(c.blocked, 9, "whole signatures are found with or without a stream");
    }

    #[test]
    fn an_icmp_error_about_an_inspected_flow_passes_as_the_flow_does() {
        use rampart_packet::{icmp, TcpFlags};
        let (rig, rt) = (Rig::new(), inspecting_runtime());
        let mut p = Pipeline::new(64);
        one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::SYN, 100, 0, b""));
        one(&rig, &rt, &mut p, 1, segment(false, 80, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b""));
        one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK, 101, 501, b""));
        // B's side says A's segments are too big (path-MTU discovery), quoting one.
        let quoted = build::tcp_v4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80, TcpFlags::ACK, &[b'x'; 64])
            .with_tcp(|t| (t.seq_number, t.ack_number) = (101, 501))
            .ip_packet()
            .unwrap();
        let too_big = icmp::Repr::DstUnreachable { code: 4, next_hop_mtu: 1400 };
        let error = build::icmp_v4([10, 0, 0, 2], [10, 0, 0, 1], too_big, &quoted).macs(B, A).build().unwrap();
        assert_eq!(one(&rig, &rt, &mut p, 1, error), Action::Forward(PortSet::one(0)));
        assert_eq!(rig.dropped(DropReason::Signature), 0);
    }

    /// [`inspecting_runtime`] plus `deny` UDP to port 9 and `reject` TCP to port 23, with
    /// port 0 (A) in monitor mode enforcing `guard` and `throttle` as given.
    fn monitoring_runtime(enforce: rampart_shm::MonitorImage) -> Runtime {
        let mut rt = inspecting_runtime();
        let fw = rt.firewall.as_mut().unwrap();
        let web = Rule { proto: Some(6), dst_ports: (80, 80), ..Default::default() };
        let discard = Rule { proto: Some(17), dst_ports: (9, 9), ..Default::default() };
        let telnet = Rule { proto: Some(6), dst_ports: (23, 23), ..Default::default() };
        let image = FirewallImage {
            rules: vec![
                RuleImage { id: "inspect-web".into(), counter: 0, action: RuleAction::Inspect, stateful: true, log: false },
                RuleImage { id: "deny-discard".into(), counter: 1, action: RuleAction::Deny, stateful: true, log: false },
                RuleImage { id: "reject-telnet".into(), counter: 2, action: RuleAction::Reject, stateful: true, log: false },
            ],
            acl: Classifier::compile(&[web, discard, telnet]).unwrap(),
            acl_rule: vec![0, 1, 2],
            conntrack: ConntrackImage { timeouts: Default::default() },
        };
        *fw = Firewall::new(image, crate::firewall::Defaults { forward: u64::MAX, track: false }, 1, Default::default());
        rt.ports[0].monitor = Some(enforce);
        rt
    }

    fn events_of(rig: &Rig, kind: EventKind) -> Vec<EventRecord> {
        std::iter::from_fn(|| rig.segment.events[0].pop().map(|(r, _)| r)).filter(|r| r.kind == kind as u16).collect()
    }

    #[test]
    fn a_monitor_port_forwards_what_the_policy_would_drop_and_logs_it_as_such() {
        use rampart_packet::TcpFlags;
        use rampart_shm::ring::AlertCode;
        let rig = Rig::new();
        let rt = monitoring_runtime(rampart_shm::MonitorImage { guard: true, throttle: true, anomalies: false });
        let mut p = Pipeline::new(64);
        let to_b = Action::Forward(PortSet::one(1));
        // A deny rule and a reject rule: forwarded unchanged (no RST written), logged with the rule.
        assert_eq!(one(&rig, &rt, &mut p, 0, udp(A, B, 9)), to_b);
        let syn = segment(true, 23, TcpFlags::SYN, 100, 0, b"");
        let mut buf = [syn.clone(), vec![0; 128]].concat();
        let mut burst = [Frame::new(&mut buf, syn.len(), syn.len() as u32, 1, Checksums::Complete)];
        assert_eq!(p.process(&rt, &rig.cx(), 0, &mut burst)[0], to_b);
        assert_eq!(burst[0].data(), &syn[..], "the frame is not turned into an answer");
        let would: Vec<(u16, Option<u32>)> = events_of(&rig, EventKind::WouldDrop).iter().map(|r| (r.code, FlowEventData::unpack(r).5)).collect();
        assert_eq!(would, [(DropReason::RuleDeny.index() as u16, Some(1)), (DropReason::RuleReject.index() as u16, Some(2))]);
        // A drop signature: forwarded; its alert says it would have dropped.
        one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::SYN, 100, 0, b""));
        one(&rig, &rt, &mut p, 1, segment(false, 80, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b""));
        one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK, 101, 501, b""));
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK, 101, 501, b"evil-payload")), to_b);
        assert_eq!(alerts(&rig), [(0, AlertCode::WouldDrop as u16)]);
        let w = &rig.segment.workers[0];
        let would = |r: DropReason| w.would[r.index()].get();
        assert_eq!((would(DropReason::RuleDeny), would(DropReason::RuleReject), would(DropReason::Signature)), (1, 1, 1));
        assert_eq!((w.ports[0].would_drop.get(), w.ports[0].drop_packets.get(), w.inspect.read().blocked), (3, 0, 0), "nothing dropped");
        // Port B is inline: its packets to a denied port are dropped.
        assert_eq!(one(&rig, &rt, &mut p, 1, udp(B, A, 9)), Action::Drop(DropReason::RuleDeny));
    }

    #[test]
    fn a_monitor_port_not_enforcing_its_limits_counts_what_they_would_drop() {
        use rampart_shm::{LimitsImage, MonitorImage, RateImage};
        let rig = Rig::new();
        for throttle in [true, false] {
            let mut a = port(0, vec![A]);
            a.limits = LimitsImage { packets: Some(RateImage { rate: 1, burst: 1 }), ..Default::default() };
            let image = PolicyImage::plain(vec![a, port(1, vec![B])], None);
            let mut rt = Runtime::build(1, &image, Some, None, &Default::default());
            rt.ports[0].monitor = Some(MonitorImage { guard: true, throttle, anomalies: false });
            let (actions, _) = run(&rig, &rt, 0, &[udp(A, B, 53), udp(A, B, 53), udp(A, B, 53)], 0);
            let forwarded = actions.iter().filter(|a| **a == Action::Forward(PortSet::one(1))).count();
            assert_eq!(forwarded, if throttle { 1 } else { 3 }, "enforced: {throttle}");
        }
        let w = &rig.segment.workers[0];
        assert_eq!((w.drops[DropReason::Throttled.index()].get(), w.would[DropReason::Throttled.index()].get()), (2, 2));
    }

    /// The anomaly events logged so far: (kind, outcome).
    fn anomalies(rig: &Rig) -> Vec<(Anomaly, rampart_shm::AnomalyOutcome)> {
        events_of(rig, EventKind::Anomaly).iter().map(|r| rampart_shm::anomaly::parse_event_code(r.code)).map(|(k, o)| (k.unwrap(), o.unwrap())).collect()
    }

    fn detected(rig: &Rig, kind: Anomaly) -> u64 {
        rig.segment.workers[0].anomalies[kind.index()].get()
    }

    #[test]
    fn header_anomalies_are_dropped_alerted_or_ignored_as_the_policy_says() {
        use rampart_packet::TcpFlags;
        use rampart_shm::AnomalyOutcome::{Allowed, Dropped};
        let to_b = Action::Forward(PortSet::one(1));
        let syn_fin = segment(true, 80, TcpFlags::SYN | TcpFlags::FIN, 1, 0, b"");
        let land = build::udp_v4([10, 0, 0, 1], 7, [10, 0, 0, 1], 7, b"x").macs(A, B).build().unwrap();
        let ttl1 = build::udp_v4([10, 0, 0, 1], 7, [10, 0, 0, 2], 7, b"x").macs(A, B).ttl(1).build().unwrap();
        let frames = [syn_fin.clone(), land.clone(), ttl1.clone()];
        // Switched without a firewall, and under the stateful one.
        for rt in [runtime(None), runtime(Some(rules()))] {
            let rig = Rig::new();
            let (actions, _) = run(&rig, &rt, 0, &frames, 0);
            assert_eq!(actions, [Action::Drop(DropReason::AnomalyTcpFlags), Action::Drop(DropReason::AnomalyLand), to_b]);
            assert_eq!(anomalies(&rig), [(Anomaly::TcpFlags, Dropped), (Anomaly::Land, Dropped), (Anomaly::LowTtl, Allowed)]);
            assert_eq!((detected(&rig, Anomaly::TcpFlags), detected(&rig, Anomaly::LowTtl)), (1, 1));
            assert_eq!(rig.dropped(DropReason::AnomalyLand), 1);
        }
        // Ignored: not checked, not counted (without a firewall nothing else looks at them).
        let rig = Rig::new();
        let mut rt = runtime(None);
        rt.anomalies = rampart_shm::AnomalyImage::off();
        rt.checks_headers = crate::anomaly::checks_headers(&rt.anomalies);
        assert_eq!(run(&rig, &rt, 0, &frames, 0).0, [to_b; 3]);
        assert_eq!((anomalies(&rig), detected(&rig, Anomaly::TcpFlags)), (vec![], 0));
        // Alerted: counted and logged, forwarded.
        rt.anomalies.actions[Anomaly::Land.index()] = rampart_shm::AnomalyAction::Alert;
        rt.checks_headers = crate::anomaly::checks_headers(&rt.anomalies);
        assert_eq!(run(&rig, &rt, 0, &[land], 0).0, [to_b]);
        assert_eq!(anomalies(&rig), [(Anomaly::Land, Allowed)]);
    }

    #[test]
    fn a_monitor_port_forwards_anomalies_unless_it_enforces_them() {
        use rampart_shm::AnomalyOutcome::{Dropped, WouldDrop};
        let land = build::udp_v4([10, 0, 0, 1], 53, [10, 0, 0, 1], 53, b"x").macs(A, B).build().unwrap();
        for enforce in [false, true] {
            let rig = Rig::new();
            let rt = monitoring_runtime(rampart_shm::MonitorImage { guard: true, throttle: true, anomalies: enforce });
            let (actions, _) = run(&rig, &rt, 0, std::slice::from_ref(&land), 0);
            let w = &rig.segment.workers[0];
            if enforce {
                assert_eq!((actions[0], anomalies(&rig)), (Action::Drop(DropReason::AnomalyLand), vec![(Anomaly::Land, Dropped)]));
            } else {
                assert_eq!((actions[0], anomalies(&rig)), (Action::Forward(PortSet::one(1)), vec![(Anomaly::Land, WouldDrop)]));
                assert_eq!((w.would[DropReason::AnomalyLand.index()].get(), w.ports[0].drop_packets.get()), (1, 0));
            }
        }
    }

    #[test]
    fn an_overlapping_fragment_drops_the_rest_of_its_datagram_and_tiny_ones_are_counted() {
        let rig = Rig::new();
        let rt = runtime(Some(rules()));
        let pieces = build::udp_v4([10, 0, 0, 1], 4000, [10, 0, 0, 2], 53, &[7; 64]).macs(A, B).fragments(24).unwrap();
        assert_eq!(pieces.len(), 3);
        let to_b = Action::Forward(PortSet::one(1));
        let overlap = Action::Drop(DropReason::AnomalyFragmentOverlap);
        let (actions, _) = run(&rig, &rt, 0, &[pieces[0].clone(), pieces[1].clone(), pieces[1].clone(), pieces[2].clone()], 0);
        assert_eq!(actions, [to_b, to_b, overlap, overlap], "the copy overlaps; the last piece follows its poisoned datagram");
        assert_eq!((detected(&rig, Anomaly::FragmentOverlap), rig.dropped(DropReason::AnomalyFragmentOverlap)), (1, 2));
        // A first fragment holding 8 bytes of a TCP header: malformed, and counted as tiny.
        let tiny = build::tcp_v4([10, 0, 0, 1], 4000, [10, 0, 0, 2], 80, rampart_packet::TcpFlags::ACK, &[0; 32]).macs(A, B).fragments(8).unwrap();
        assert_eq!(run(&rig, &rt, 0, &tiny[..1], 0).0, [Action::Drop(DropReason::Malformed(ParseError::FragmentTooSmall))]);
        assert_eq!(detected(&rig, Anomaly::TinyFragment), 1);
    }

    #[test]
    fn a_segment_outside_its_window_is_the_tcp_window_anomaly() {
        use rampart_packet::TcpFlags;
        use rampart_shm::AnomalyOutcome::{Allowed, Dropped};
        for action in [rampart_shm::AnomalyAction::Drop, rampart_shm::AnomalyAction::Alert] {
            let rig = Rig::new();
            let mut rt = inspecting_runtime();
            rt.anomalies.actions[Anomaly::TcpWindow.index()] = action;
            let mut p = Pipeline::new(64);
            one(&rig, &rt, &mut p, 0, segment(true, 22, TcpFlags::SYN, 100, 0, b""));
            one(&rig, &rt, &mut p, 1, segment(false, 22, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b""));
            assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 22, TcpFlags::ACK, 101, 501, b"in")), Action::Forward(PortSet::one(1)));
            let far = one(&rig, &rt, &mut p, 0, segment(true, 22, TcpFlags::ACK, 101 + 0x4000_0000, 501, b"far"));
            let (expected, outcome) = match action {
                rampart_shm::AnomalyAction::Drop => (Action::Drop(DropReason::AnomalyTcpWindow), Dropped),
                _ => (Action::Forward(PortSet::one(1)), Allowed),
            };
            assert_eq!(far, expected);
            assert_eq!(anomalies(&rig), [(Anomaly::TcpWindow, outcome)]);
        }
    }

    #[test]
    fn a_bad_checksum_in_an_inspected_flow_is_dropped_before_its_payload_is_scanned() {
        use rampart_packet::TcpFlags;
        let (rig, rt) = (Rig::new(), inspecting_runtime());
        let mut p = Pipeline::new(64);
        one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::SYN, 100, 0, b""));
        one(&rig, &rt, &mut p, 1, segment(false, 80, TcpFlags::SYN | TcpFlags::ACK, 500, 101, b""));
        let mut bad = segment(true, 80, TcpFlags::ACK, 101, 501, b"hello");
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(one(&rig, &rt, &mut p, 0, bad), Action::Drop(DropReason::AnomalyBadChecksum));
        assert_eq!(one(&rig, &rt, &mut p, 0, segment(true, 80, TcpFlags::ACK, 101, 501, b"hello")), Action::Forward(PortSet::one(1)));
        // Not inspected: not verified (the default scope).
        let mut ssh = segment(true, 22, TcpFlags::SYN, 100, 0, b"");
        *ssh.last_mut().unwrap() ^= 1;
        assert_eq!(one(&rig, &rt, &mut p, 0, ssh), Action::Forward(PortSet::one(1)));
    }
}
