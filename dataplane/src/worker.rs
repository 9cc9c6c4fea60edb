//! A worker lcore: run-to-completion over its (port, queue) pairs.
//!
//! Per iteration: read the current [`Runtime`] ([`crate::rcu`]), then for each queue:
//! `rx_burst` → the burst's frames to this worker's [`Pipeline`] → carry out the action
//! it decided for each mbuf (queue it for its destination ports, send the answer written
//! over it back, or free it) → `tx_burst` per destination. Nothing here allocates,
//! locks or makes a system call except the idle sleep. Counters go to this worker's own
//! block in shared memory; drops and received packets are counted by the pipeline,
//! transmitted ones here.

use crate::dpdk::{self, Mbuf, MbufBurst};
use crate::Shared;
use arrayvec::ArrayVec;
use rampart_pipeline::firewall::BURST;
use rampart_pipeline::runtime::Runtime;
use rampart_pipeline::{Action, Checksums, Context, Frame, Pipeline};
use rampart_shm::{DropReason, WorkerCounters, MAX_PORTS};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// How long a worker keeps spinning on empty polls before it starts sleeping between
/// polls: long enough that a short gap in traffic (a sender descheduled for a moment)
/// never puts a loaded worker to sleep while its rings fill, short enough that an idle
/// dataplane leaves its cores to others almost at once.
const IDLE_SPIN_MS: u64 = 2;

/// How long an idle worker waits for a kick before it looks again (for new ports and
/// policies it is woken at once by the runtime's doorbell; this bounds anything else).
const IDLE_WAIT_MS: i32 = 100;

/// The idle back-off (`[dataplane] idle_interrupts`, `idle_sleep_us`, `idle_sleep_max_us`).
/// After [`IDLE_SPIN_MS`] of empty polls a worker gives its core back until traffic comes:
/// - with interrupts, when every one of its queues has them (vhost-user ports: the
///   guest's kick), it arms them, polls once more, and waits for a kick, a new runtime
///   or [`IDLE_WAIT_MS`]: an idle worker wakes ten times a second, and the first packet
///   after a silence waits for one wake-up;
/// - otherwise it sleeps `first_us`, then twice as long after each empty wake-up, up to
///   `max_us`, as OVS-DPDK's `pmd-maxsleep` does: it then costs one wake-up per `max_us`
///   and the first packet after a silence waits at most about `max_us`.
///
/// The first packet puts it back to polling. `first_us` 0: never sleep.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub interrupts: bool,
    pub first_us: u32,
    pub max_us: u32,
}

/// Where a worker is in its back-off.
struct Idle {
    /// TSC of the first empty poll since traffic was last seen.
    since: Option<u64>,
    /// The next timed sleep, µs (0 until the spin period is over).
    next_us: u32,
    /// The interrupts of this worker's queues, for the current runtime.
    waiter: Option<dpdk::RxWaiter>,
    /// Interrupts are armed: the last poll was the one after arming.
    armed: bool,
}

impl Idle {
    /// After a new runtime: the interrupts of this worker's queues in it.
    fn follow(&mut self, queues: impl IntoIterator<Item = (dpdk::PortId, u16)>, b: Backoff, doorbell: &dpdk::Doorbell) {
        self.disarm();
        self.waiter = if b.interrupts {
            dpdk::RxWaiter::new(queues, doorbell).ok().filter(|w| w.complete())
        } else {
            None
        };
    }

    fn disarm(&mut self) {
        if std::mem::take(&mut self.armed) {
            if let Some(w) = &self.waiter {
                w.disarm();
            }
        }
    }

    /// After a poll that found `got` packets: spin, wait or sleep (counted in `sleeps`).
    #[inline(always)]
    fn after_poll(&mut self, got: usize, b: Backoff, tsc_per_ms: u64, totals: &rampart_shm::counters::WorkerTotals) {
        if got > 0 {
            (self.since, self.next_us) = (None, 0);
            self.disarm();
            return;
        }
        totals.idle_polls.add(1);
        if self.next_us == 0 {
            let now = dpdk::rdtsc();
            if b.first_us == 0 || now.wrapping_sub(*self.since.get_or_insert(now)) <= IDLE_SPIN_MS * tsc_per_ms {
                dpdk::pause();
                return;
            }
            self.next_us = b.first_us;
        }
        if let Some(w) = &self.waiter {
            if !self.armed {
                w.arm();
                self.armed = true; // one more poll: what came before arming did not kick
                return;
            }
            totals.sleeps.add(1);
            w.wait(IDLE_WAIT_MS);
            self.disarm();
            return;
        }
        totals.sleeps.add(1);
        std::thread::sleep(std::time::Duration::from_micros(self.next_us as u64));
        self.next_us = self.next_us.saturating_mul(2).min(b.max_us.max(b.first_us));
    }
}

/// Packets waiting for one destination port.
#[derive(Default)]
struct TxQueue {
    pkts: MbufBurst<BURST>,
    bytes: u64,
}

pub struct Worker {
    id: usize,
    shared: Arc<Shared>,
    pipeline: Pipeline,
    tx: Box<[TxQueue; MAX_PORTS]>,
    /// Destinations with packets waiting, in first-use order.
    dirty: ArrayVec<u8, MAX_PORTS>,
    drops: MbufBurst<BURST>,
}

impl Worker {
    pub fn new(id: usize, shared: Arc<Shared>) -> Worker {
        let tx = Box::new(std::array::from_fn(|_| TxQueue::default()));
        Worker { id, pipeline: Pipeline::new(shared.inspect_streams), shared, tx, dirty: ArrayVec::new(), drops: ArrayVec::new() }
    }

    pub fn run(mut self) {
        let shared = self.shared.clone();
        let counters = &shared.segment.workers[self.id];
        let nworkers = shared.workers as u16;
        let mut reader = shared.runtime.reader(self.id);
        let mut rx = MbufBurst::<BURST>::new();
        let mut idle = Idle { since: None, next_us: 0, waiter: None, armed: false };
        while !shared.stop.load(Ordering::Relaxed) {
            let Some((rt, fresh)) = reader.enter() else {
                // No policy yet: nothing to poll, so back off as an idle worker does.
                idle.after_poll(0, shared.idle, shared.tsc_per_ms, &counters.totals);
                continue;
            };
            if fresh {
                shared.segment.ack_policy(self.id, rt.gen);
                let queues = rt.ports.iter().flat_map(|p| (self.id as u16..p.queues).step_by(shared.workers).map(|q| (p.port_id, q)));
                idle.follow(queues, shared.idle, &shared.runtime.doorbell);
            }
            let mut got = 0;
            for (local, port) in rt.ports.iter().enumerate() {
                let mut q = self.id as u16;
                while q < port.queues {
                    let t0 = dpdk::rdtsc();
                    let n = dpdk::rx_burst(port.port_id, q, &mut rx);
                    if n > 0 {
                        self.process(rt, counters, local as u8, &mut rx);
                        self.flush(rt, counters);
                        counters.totals.busy_cycles.add(dpdk::rdtsc() - t0);
                        counters.totals.busy_packets.add(n as u64);
                        got += n;
                    }
                    q += nworkers;
                }
            }
            // Once a poll round: the summaries of held-back drop records, when due (a
            // time compare when not).
            let (now_ms, now_ns) = shared.now();
            let cx = Context { flows: &shared.flows, counters, events: &shared.segment.events[self.id], now_ms, now_ns };
            self.pipeline.flush_events(&cx);
            idle.after_poll(got, shared.idle, shared.tsc_per_ms, &counters.totals);
        }
    }

    /// One received burst: the pipeline decides every packet, then each action is carried
    /// out; `rx` is empty again afterwards.
    #[inline(always)]
    fn process(&mut self, rt: &Runtime, counters: &WorkerCounters, ingress: u8, rx: &mut MbufBurst<BURST>) {
        let (now_ms, now_ns) = self.shared.now();
        let cx = Context { flows: &self.shared.flows, counters, events: &self.shared.segment.events[self.id], now_ms, now_ns };
        let mut frames = ArrayVec::<Frame, BURST>::new();
        for m in rx.iter_mut() {
            if m.segments() > 1 {
                m.linearize();
            }
            let (wire_len, segments) = (m.pkt_len(), m.segments());
            let checksums = if m.l4_checksum_partial() { Checksums::L4Partial } else { Checksums::Complete };
            frames.push(match m.room_mut() {
                Some((buf, len)) => Frame::new(buf, len, wire_len, segments, checksums),
                // A buffer that is not ours alone (never seen on receive) is not rewritten:
                // dropped as a chained frame.
                None => Frame::new(&mut [], 0, wire_len, segments.max(2), checksums),
            });
        }
        let Worker { pipeline, tx, dirty, drops, .. } = self;
        let actions = pipeline.process(rt, &cx, ingress, &mut frames);
        drop(frames);
        for (m, action) in rx.drain(..).zip(actions) {
            match *action {
                Action::Forward(ports) if !ports.is_empty() => {
                    let mut dsts = ports.iter();
                    m.share(ports.len(), |copy| enqueue(tx, dirty, dsts.next().unwrap_or(ingress), copy));
                }
                Action::Reply { len } => {
                    let mut m = m;
                    m.set_answer(len);
                    enqueue(tx, dirty, ingress, m);
                }
                Action::Forward(_) | Action::Drop(_) => drops.push(m),
            }
        }
        dpdk::free_bulk(drops);
    }

    #[inline(always)]
    fn flush(&mut self, rt: &Runtime, counters: &WorkerCounters) {
        for &dst in &self.dirty {
            let q = &mut self.tx[dst as usize];
            let port = &rt.ports[dst as usize];
            let queued = q.pkts.len();
            let sent = dpdk::tx_burst(port.port_id, self.id as u16, &mut q.pkts);
            let pc = &counters.ports[port.slot as usize];
            if sent < queued {
                let unsent = (queued - sent) as u64;
                pc.tx_full.add(unsent);
                counters.drops[DropReason::TxFull.index()].add(unsent);
                q.bytes -= q.pkts.iter().map(|m| m.pkt_len() as u64).sum::<u64>();
                dpdk::free_bulk(&mut q.pkts);
            }
            pc.tx_packets.add(sent as u64);
            pc.tx_bytes.add(q.bytes);
            q.bytes = 0;
        }
        self.dirty.clear();
    }
}

/// Queues a packet for local port `dst`. A burst puts at most one copy of each packet in
/// each queue, and queues are flushed after every burst, so there is always room.
#[inline(always)]
fn enqueue(tx: &mut [TxQueue; MAX_PORTS], dirty: &mut ArrayVec<u8, MAX_PORTS>, dst: u8, m: Mbuf) {
    let q = &mut tx[dst as usize];
    if q.pkts.is_empty() {
        dirty.push(dst);
    }
    q.bytes += m.pkt_len() as u64;
    if let Err(full) = q.pkts.try_push(m) {
        q.bytes -= full.element().pkt_len() as u64;
    }
}
