//! A worker lcore: run-to-completion over its (port, queue) pairs.
//!
//! Per iteration: load the current [`Runtime`] (RCU: the main lcore frees an
//! old one only after every worker has reported a newer epoch), then for each
//! queue: `rx_burst` → parse → decide → buffer per destination → `tx_burst`.
//! A port whose packets all go the same way (a wire pair without a firewall) only
//! checks each packet (`validate`) before forwarding it.
//! Nothing here allocates, locks or makes a system call except the idle
//! sleep. Counters go to this worker's own block in shared memory.

use crate::dpdk::{self, MbufPtr};
use crate::firewall::{Burst, Ended, EndedFlows, Firewall, FwVerdict, BURST};
use crate::fragments::{Datagram, Fragments};
use rampart_flow::{FlowHit, Prepared};
use rampart_packet::ParseError;
use crate::reject;
use rampart_packet::Meta;
use rampart_shm::ring::FlowEventData;
use crate::runtime::{Decision, Route, Runtime};
use crate::Shared;
use rampart_shm::ring::EventKind;
use rampart_shm::{DropReason, EventRecord, WorkerCounters, MAX_PORTS};
use std::sync::atomic::Ordering;


/// How far ahead packet data is prefetched.
const PREFETCH: usize = 4;
/// How long a worker keeps spinning on empty polls before it starts sleeping between
/// polls: long enough that a short gap in traffic (a sender descheduled for a moment)
/// never puts a loaded worker to sleep while its rings fill, short enough that an idle
/// dataplane leaves its cores to others almost at once.
const IDLE_SPIN_MS: u64 = 2;

/// Packets waiting for one destination port.
struct TxQueue {
    pkts: [MbufPtr; BURST],
    len: usize,
    bytes: u64,
}

pub struct Worker {
    id: usize,
    shared: std::sync::Arc<Shared>,
    tx: Box<[TxQueue; MAX_PORTS]>,
    /// Destinations with packets waiting, in first-use order.
    dirty: arrayvec::ArrayVec<u8, MAX_PORTS>,
    drops: arrayvec::ArrayVec<MbufPtr, BURST>,
    /// Datagrams whose later fragments may follow their first.
    fragments: Fragments,
}

// SAFETY: a Worker is built on the main lcore with empty buffers and moved
// once to its own lcore; the mbuf pointers it holds never cross threads.
unsafe impl Send for Worker {}

impl Worker {
    pub fn new(id: usize, shared: std::sync::Arc<Shared>) -> Worker {
        let tx = Box::new(std::array::from_fn(|_| TxQueue { pkts: [std::ptr::null_mut(); BURST], len: 0, bytes: 0 }));
        Worker { id, shared, tx, dirty: arrayvec::ArrayVec::new(), drops: arrayvec::ArrayVec::new(), fragments: Fragments::default() }
    }

    fn counters(&self) -> &WorkerCounters {
        &self.shared.segment.workers[self.id]
    }

    pub fn run(mut self) {
        let shared = self.shared.clone();
        let nworkers = shared.workers as u16;
        let mut rx: [MbufPtr; BURST] = [std::ptr::null_mut(); BURST];
        let mut seen_epoch = 0;
        // TSC of the first empty poll since traffic was last seen.
        let mut idle_since: Option<u64> = None;
        while !shared.stop.load(Ordering::Relaxed) {
            // Acquire: pairs with the main lcore's Release store of a fully built runtime.
            let ptr = shared.runtime.load(Ordering::Acquire);
            if ptr.is_null() {
                std::thread::sleep(std::time::Duration::from_micros(100));
                continue;
            }
            // SAFETY: the main lcore keeps this runtime alive until our epoch
            // report (below, next iteration) shows we moved past it.
            let rt = unsafe { &*ptr };
            if rt.epoch != seen_epoch {
                seen_epoch = rt.epoch;
                // Release: we no longer hold references into older runtimes.
                shared.worker_epoch[self.id].store(seen_epoch, Ordering::Release);
                shared.segment.ack_policy(self.id, rt.gen);
            }
            let mut got = 0;
            for (local, port) in rt.ports.iter().enumerate() {
                let mut q = self.id as u16;
                while q < port.queues {
                    let t0 = dpdk::rdtsc();
                    let n = dpdk::rx_burst(port.port_id, q, &mut rx);
                    if n > 0 {
                        self.process(rt, local as u8, &rx[..n]);
                        self.flush(rt);
                        let c = &self.counters().totals;
                        c.busy_cycles.add(dpdk::rdtsc() - t0);
                        c.busy_packets.add(n as u64);
                        got += n;
                    }
                    q += nworkers;
                }
            }
            if got > 0 {
                idle_since = None;
            } else {
                self.counters().totals.idle_polls.add(1);
                let now = dpdk::rdtsc();
                if now.wrapping_sub(*idle_since.get_or_insert(now)) > IDLE_SPIN_MS * shared.tsc_per_ms {
                    self.counters().totals.sleeps.add(1);
                    std::thread::sleep(std::time::Duration::from_micros(shared.idle_sleep_us as u64));
                } else {
                    dpdk::pause();
                }
            }
        }
    }

    /// One received burst: parse, decide and queue every packet, then count.
    #[inline(always)]
    fn process(&mut self, rt: &Runtime, ingress: u8, pkts: &[MbufPtr]) {
        let slot = rt.ports[ingress as usize].slot as usize;
        let rx_bytes = match &rt.firewall {
            Some(fw) => self.process_stateful(rt, fw, ingress, pkts),
            // Nothing to look up: each packet is decided as soon as it is checked.
            None => match rt.route(ingress) {
                // Only whether the packet is well formed matters.
                Route::Fixed(decision) => self.each_packet(rt, ingress, slot, pkts, |data| {
                    rampart_packet::validate(data).map(|()| decision)
                }),
                Route::Switch(seg) => self.each_packet(rt, ingress, slot, pkts, |data| {
                    rampart_packet::parse(data).map(|meta| rt.switch(seg, ingress, &meta))
                }),
            },
        };
        let c = &self.counters().ports[slot];
        c.rx_packets.add(pkts.len() as u64);
        c.rx_bytes.add(rx_bytes);
        dpdk::free_bulk(&mut self.drops);
        self.drops.clear();
    }

    /// A burst without a firewall: each packet is checked (malformed ones are dropped and
    /// counted) and decided by `decide` in one pass. Returns the bytes received.
    #[inline(always)]
    fn each_packet(
        &mut self,
        rt: &Runtime,
        ingress: u8,
        slot: usize,
        pkts: &[MbufPtr],
        decide: impl Fn(&[u8]) -> Result<Decision, ParseError>,
    ) -> u64 {
        let mut rx_bytes = 0;
        for (i, &m) in pkts.iter().enumerate() {
            prefetch_ahead(pkts, i);
            // SAFETY: m is a valid mbuf we own until it is sent or freed.
            let (data, len) = unsafe { (dpdk::mbuf_data(m), dpdk::mbuf_pkt_len(m) as u64) };
            rx_bytes += len;
            let decision = decide(data).unwrap_or_else(|e| self.malformed(slot, e, len, data));
            self.dispatch(rt, ingress, slot, m, len, decision);
        }
        rx_bytes
    }

    /// A burst under a stateful firewall: parse every packet and start its flow lookup
    /// ([`Burst`]), then decide each one. Returns the bytes received.
    #[inline(always)]
    fn process_stateful(&mut self, rt: &Runtime, fw: &Firewall, ingress: u8, pkts: &[MbufPtr]) -> u64 {
        let port = &rt.ports[ingress as usize];
        let (slot, zone) = (port.slot as usize, port.zone);
        let now_ms = self.shared.now_ms();
        let route = rt.route(ingress);
        let flows = &self.shared.flows;
        let mut burst = Burst::default();
        burst.fill(flows, zone, pkts.iter().enumerate().map(|(i, &m)| {
            prefetch_ahead(pkts, i);
            // SAFETY: m is a valid mbuf we own until it is sent or freed.
            unsafe { dpdk::mbuf_data(m) }
        }));
        let mut rx_bytes = 0u64;
        for (i, &m) in pkts.iter().enumerate() {
            // SAFETY: as above.
            let (data, len) = unsafe { (dpdk::mbuf_data(m), dpdk::mbuf_pkt_len(m) as u64) };
            rx_bytes += len;
            let decision = match burst.meta(i) {
                Ok(meta) => match route.decide(rt, ingress, meta) {
                    Decision::Drop(r) => Decision::Drop(r),
                    pass if meta.is_ip() => {
                        let looked_up = burst.lookup(&self.shared.flows, i);
                        match self.firewall(fw, rt.gen, meta, data, (ingress, slot), zone, len, now_ms, looked_up) {
                            Some(reason) => Decision::Drop(reason),
                            None => pass,
                        }
                    }
                    pass => pass,
                },
                Err(e) => self.malformed(slot, *e, len, data),
            };
            self.dispatch(rt, ingress, slot, m, len, decision);
        }
        rx_bytes
    }

    /// Logs a malformed packet; its decision is to drop it.
    #[cold]
    fn malformed(&self, slot: usize, e: ParseError, len: u64, data: &[u8]) -> Decision {
        self.event(EventKind::Malformed, slot, DropReason::Malformed(e).index() as u16, len, data);
        Decision::Drop(DropReason::Malformed(e))
    }

    /// Carries out a decision: queue the packet for its destination(s), or count and drop it.
    #[inline(always)]
    fn dispatch(&mut self, rt: &Runtime, ingress: u8, slot: usize, m: MbufPtr, len: u64, decision: Decision) {
        match decision {
            Decision::Port(dst) => self.enqueue(dst, m, len),
            Decision::Flood(seg) => {
                let members = &rt.segments[seg as usize].members;
                let copies = members.iter().filter(|&&p| p != ingress).count();
                if copies > 1 {
                    // SAFETY: m is a valid mbuf we own; each queued copy drops one reference when sent or freed.
                    unsafe { dpdk::add_refs(m, copies as u16 - 1) };
                }
                for &dst in members.iter().filter(|&&p| p != ingress) {
                    self.enqueue(dst, m, len);
                }
            }
            Decision::Drop(reason) => {
                self.counters().drop(slot, reason, len);
                self.drops.push(m);
            }
        }
    }

    /// The stateful firewall step; returns why to drop, or None to forward. Later
    /// fragments follow their datagram's first fragment (see [`crate::fragments`]).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn firewall(
        &mut self,
        fw: &Firewall,
        gen: u64,
        meta: &Meta,
        data: &[u8],
        (ingress, slot): (u8, usize),
        zone: u16,
        len: u64,
        now_ms: u64,
        looked_up: Option<(&Prepared, Option<FlowHit>)>,
    ) -> Option<DropReason> {
        if meta.is_later_fragment() {
            let Some(datagram) = self.fragments.follow(meta, zone, now_ms) else {
                return Some(DropReason::Fragment);
            };
            if let Some(c) = datagram.counter.filter(|_| datagram.gen == gen) {
                let rc = &self.counters().rules[c];
                rc.packets.add(1);
                rc.bytes.add(len);
            }
            return None;
        }
        let mut ended = EndedFlows::new();
        let verdict = fw.check_looked_up(&self.shared.flows, meta, data, slot as u8, zone, now_ms, looked_up, &mut ended);
        for e in &ended {
            self.flow_ended(e);
        }
        let rule = match verdict {
            FwVerdict::Pass { rule, .. } | FwVerdict::Drop(_, rule) | FwVerdict::Reject(rule) => rule,
        };
        let counter = rule.and_then(|r| fw.counter_of(r));
        if let Some(c) = counter {
            let rc = &self.counters().rules[c];
            rc.packets.add(1);
            rc.bytes.add(len);
            if matches!(verdict, FwVerdict::Pass { created: true, .. }) {
                rc.flows.add(1);
            }
        }
        match verdict {
            FwVerdict::Pass { log, created, rule } => {
                if meta.is_first_fragment() {
                    self.fragments.passed(meta, zone, Datagram { counter, gen }, now_ms);
                }
                if log && created {
                    self.flow_started(slot, 0, meta, rule);
                }
                None
            }
            FwVerdict::Drop(reason, _) => Some(reason),
            FwVerdict::Reject(rule) => {
                self.reject(meta, data, ingress);
                self.flow_started(slot, rampart_shm::ring::FLOW_START_REJECTED, meta, rule);
                Some(DropReason::RuleReject)
            }
        }
    }

    /// Sends the reject answer back out of the port the packet came in on.
    fn reject(&mut self, meta: &Meta, data: &[u8], ingress: u8) {
        let mut out = [0u8; reject::MAX_REPLY];
        let Some(n) = reject::build(data, meta, &mut out) else { return };
        if let Some(m) = self.shared.pool.packet(&out[..n]) {
            self.enqueue(ingress, m, n as u64);
        }
    }

    /// The flow-start event of the flow `meta`'s packet opens.
    #[cold]
    fn flow_started(&self, slot: usize, code: u16, meta: &Meta, rule: Option<u32>) {
        let (data, value) = FlowEventData::pack(&meta.src_addr, &meta.dst_addr, meta.src_port, meta.dst_port, meta.ip_proto, rule);
        let kind = EventKind::FlowStart as u16;
        self.push_event(EventRecord { tsc: dpdk::rdtsc(), kind, port: slot as u16, code, value, len: 32, data, ..Default::default() });
    }

    /// The flow-end event of a flow that ended while a packet was decided.
    #[cold]
    fn flow_ended(&self, ended: &Ended) {
        self.push_event(ended.event(dpdk::rdtsc()));
    }

    fn push_event(&self, rec: EventRecord) {
        if !self.shared.segment.events[self.id].push(rec) {
            self.counters().totals.events_lost.add(1);
        }
    }

    #[inline(always)]
    fn enqueue(&mut self, dst: u8, m: MbufPtr, len: u64) {
        let q = &mut self.tx[dst as usize];
        if q.len == 0 {
            self.dirty.push(dst);
        }
        // A burst puts at most one copy of each packet in each queue, and
        // queues are flushed after every burst, so len < BURST here.
        q.pkts[q.len] = m;
        q.len += 1;
        q.bytes += len;
    }

    #[inline(always)]
    fn flush(&mut self, rt: &Runtime) {
        for &dst in &self.dirty {
            let q = &mut self.tx[dst as usize];
            let port = &rt.ports[dst as usize];
            let sent = dpdk::tx_burst(port.port_id, self.id as u16, &mut q.pkts[..q.len]);
            let c = &self.shared.segment.workers[self.id];
            let pc = &c.ports[port.slot as usize];
            if sent < q.len {
                let unsent = (q.len - sent) as u64;
                pc.tx_full.add(unsent);
                c.drops[DropReason::TxFull.index()].add(unsent);
                for &m in &q.pkts[sent..q.len] {
                    // SAFETY: unsent mbufs are still ours.
                    q.bytes -= unsafe { dpdk::mbuf_pkt_len(m) } as u64;
                }
                dpdk::free_bulk(&mut q.pkts[sent..q.len]);
            }
            pc.tx_packets.add(sent as u64);
            pc.tx_bytes.add(q.bytes);
            q.len = 0;
            q.bytes = 0;
        }
        self.dirty.clear();
    }

    fn event(&self, kind: EventKind, slot: usize, code: u16, value: u64, data: &[u8]) {
        self.push_event(EventRecord { tsc: dpdk::rdtsc(), kind: kind as u16, port: slot as u16, code, value, ..Default::default() }.with_data(data));
    }
}

/// Prefetches the data of the packet [`PREFETCH`] places after `i` in the burst.
#[inline(always)]
fn prefetch_ahead(pkts: &[MbufPtr], i: usize) {
    if let Some(&ahead) = pkts.get(i + PREFETCH) {
        // SAFETY: `ahead` is a valid mbuf of the burst being processed.
        unsafe { dpdk::prefetch_data(ahead) };
    }
}
