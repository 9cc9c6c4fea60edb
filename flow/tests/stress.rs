//! Concurrency stress: several threads insert, look up, track, remove and expire the
//! same small set of keys while the table reuses slots under them.
//!
//! Asserted:
//! - no lost update: at every quiescent point, for every key and direction, the packets
//!   the threads had accepted equal the packets reported by ended flows plus those of
//!   the live flow;
//! - no duplicate entry for a key (checked at every quiescent point);
//! - no use after reuse: every hit, tracked packet and flow record carries the verdict
//!   and owner that were stored with *its* key (verdict = key id);
//! - bounded, deterministic amount of work (fixed operation counts), a few seconds.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{
    AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed, Release},
};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use rampart_flow::{
    FlowEnd, FlowStats, FlowTable, FlowTableConfig, FullPolicy, InsertError, NewFlow, Stale,
    Timeouts,
};
use rampart_packet::{Direction, FlowKey};

const THREADS: usize = 4;
const PHASES: usize = 16;
const OPS_PER_PHASE: usize = 30_000;
const HOT_WINDOW: usize = 16;
const FLAKY: usize = 16;
const KEYS: usize = FLAKY + HOT_WINDOW + PHASES * 8;
const MS_PER_OP: u64 = 5;

/// Key `id`: A:id → B:53 (A < B, so the canonical key keeps A as source).
fn key(id: usize) -> FlowKey {
    key4([10, 0, 0, 1], id as u16, [10, 0, 0, 2], 53, UDP)
}

fn new_flow(id: usize) -> NewFlow {
    NewFlow {
        verdict: id as u32,
        owner: (id % 4) as u8,
    }
}

/// A barrier that gives up when a thread has panicked (a plain `Barrier` would hang the
/// test instead of failing it).
#[derive(Default)]
struct Rendezvous {
    arrived: AtomicUsize,
    round: AtomicUsize,
    failed: AtomicBool,
}

impl Rendezvous {
    fn wait(&self) {
        let round = self.round.load(Acquire);
        if self.arrived.fetch_add(1, AcqRel) + 1 == THREADS {
            self.arrived.store(0, Relaxed);
            self.round.fetch_add(1, Release);
            return;
        }
        while self.round.load(Acquire) == round {
            assert!(!self.failed.load(Relaxed), "another thread failed");
            std::thread::yield_now();
        }
    }
}

/// Marks the rendezvous failed if its thread unwinds.
struct FailOnPanic<'a>(&'a Rendezvous);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Relaxed);
        }
    }
}

struct Shared {
    table: FlowTable,
    clock: AtomicU64,
    /// Packets accepted by the table, per key and canonical direction.
    accepted: Vec<[AtomicU64; 2]>,
    /// Packets reported by ended flows, per key and direction.
    ended: Vec<[AtomicU64; 2]>,
    inserts_created: AtomicU64,
}

impl Shared {
    fn account_end(&self, end: &FlowEnd) {
        let id = end.record.key.src_port as usize;
        assert_eq!(end.record.key, key(id).canonical().0);
        assert_eq!(end.record.verdict, id as u32, "flow record of another key");
        assert_eq!(end.record.owner, (id % 4) as u8);
        for d in 0..2 {
            self.ended[id][d].fetch_add(end.record.packets[d] as u64, Relaxed);
        }
    }

    fn accept(&self, id: usize, dir: Direction, verdict: u32) {
        assert_eq!(verdict, id as u32, "tracked on another key's entry");
        self.accepted[id][dir as usize].fetch_add(1, Relaxed);
    }

    /// One packet of key `id` in direction `reverse`, the dataplane way.
    fn packet(&self, id: usize, reverse: bool, stale_delay: bool) {
        let k = if reverse { key(id).reversed() } else { key(id) };
        let (ckey, dir, hash) = self.table.prepare(&k);
        let pkt = datagram(1);
        loop {
            let now = self.clock.fetch_add(MS_PER_OP, Relaxed);
            if let Some(hit) = self.table.lookup(&ckey, hash) {
                assert_eq!(
                    hit.verdict, id as u32,
                    "lookup returned another key's entry"
                );
                if stale_delay {
                    // Hold the hit a while: the slot may be expired and reused meanwhile.
                    std::thread::yield_now();
                }
                match self.table.track(&hit, dir, &pkt, now) {
                    Ok(t) => return self.accept(id, dir, t.verdict),
                    Err(Stale::Gone) => {}
                    Err(Stale::Reopened(_)) => unreachable!("UDP never reopens"),
                }
            }
            match self.table.insert(&ckey, hash, dir, new_flow(id), &pkt, now) {
                Ok(ins) => {
                    assert_eq!(ins.hit.verdict, id as u32);
                    if ins.created {
                        self.inserts_created.fetch_add(1, Relaxed);
                    }
                    if let Some(end) = ins.ended {
                        self.account_end(&end);
                    }
                    return self.accept(id, dir, ins.tracked.verdict);
                }
                Err(InsertError::Contended) => continue,
                Err(e) => panic!("insert refused: {e}"),
            }
        }
    }

    /// At a quiescent point: one entry per key, and every accepted packet accounted for.
    fn check_quiescent(&self) {
        let now = self.clock.load(Relaxed);
        let mut seen = HashSet::new();
        let mut live = vec![[0u64; 2]; KEYS];
        self.table.for_each_flow(now, |r| {
            let id = r.key.src_port as usize;
            assert!(seen.insert(r.key), "duplicate entry for key {id}");
            assert_eq!(r.verdict, id as u32);
            live[id] = [r.packets[0] as u64, r.packets[1] as u64];
        });
        assert_eq!(
            seen.len() as u32,
            self.table.len(),
            "live count matches entries"
        );
        for (id, live) in live.iter().enumerate() {
            for (d, live) in live.iter().enumerate() {
                let accepted = self.accepted[id][d].load(Relaxed);
                let accounted = self.ended[id][d].load(Relaxed) + live;
                assert_eq!(
                    accepted, accounted,
                    "lost or phantom update on key {id} dir {d}"
                );
            }
        }
    }
}

#[test]
fn concurrent_insert_lookup_expire_same_keys() {
    let stats = run(FlowTableConfig {
        capacity: 4096,
        hash_seed: Some(7),
        timeouts: Timeouts {
            udp_unreplied: 1,
            udp_replied: 1,
            ..Timeouts::default()
        },
        ..Default::default()
    });
    assert!(
        stats.expirations > 1000,
        "flows expired during the run: {stats:?}"
    );
    assert!(
        stats.clashes > 10,
        "concurrent inserts of one key happened: {stats:?}"
    );
}

/// The same with a table far smaller than the key set: inserts keep evicting flows that
/// other threads are tracking.
#[test]
fn concurrent_eviction_under_pressure() {
    let stats = run(FlowTableConfig {
        capacity: 24,
        full_policy: FullPolicy::EvictOldest,
        hash_seed: Some(9),
        timeouts: Timeouts {
            udp_unreplied: 1,
            udp_replied: 1,
            ..Timeouts::default()
        },
        ..Default::default()
    });
    assert!(stats.evictions > 1000, "evictions happened: {stats:?}");
}

fn run(config: FlowTableConfig) -> FlowStats {
    let shared = Shared {
        table: FlowTable::new(&config).unwrap(),
        clock: AtomicU64::new(0),
        accepted: (0..KEYS).map(|_| Default::default()).collect(),
        ended: (0..KEYS).map(|_| Default::default()).collect(),
        inserts_created: AtomicU64::new(0),
    };
    let barrier = Rendezvous::default();
    let removed = Mutex::new(0u64);
    let started = Instant::now();
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let (shared, barrier, removed) = (&shared, &barrier, &removed);
            s.spawn(move || {
                let _guard = FailOnPanic(barrier);
                let mut rng =
                    0x9e37_79b9_7f4a_7c15u64 ^ ((thread as u64 + 1) * 0x1234_5678_9abc_def1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                for phase in 0..PHASES {
                    for op in 0..OPS_PER_PHASE {
                        let r = next();
                        // 1/8 of packets go to rarely used keys that keep expiring just
                        // as they are touched; the rest to a hot window that moves each
                        // phase, leaving cold flows behind to expire.
                        let id = if r % 8 == 0 {
                            (r >> 8) as usize % FLAKY
                        } else if r % 8 < 3 {
                            // Every thread hammers the same two counters of one flow.
                            FLAKY + phase * 8
                        } else {
                            FLAKY + phase * 8 + (r >> 8) as usize % HOT_WINDOW
                        };
                        shared.packet(id, r % 8 != 1 && r & (1 << 40) != 0, r % 61 == 0);
                        if r % 509 == 0 {
                            let (ckey, _, hash) = shared.table.prepare(&key(id));
                            let now = shared.clock.load(Relaxed);
                            if let Some(end) = shared.table.remove(&ckey, hash, now) {
                                shared.account_end(&end);
                                *removed.lock().unwrap() += 1;
                            }
                        }
                        if op % 8 == thread % 8 {
                            let now = shared.clock.load(Relaxed);
                            shared
                                .table
                                .expire_step(now, 48, |end| shared.account_end(end));
                        }
                    }
                    barrier.wait();
                    if thread == 0 {
                        shared.check_quiescent();
                    }
                    barrier.wait();
                }
            });
        }
    });
    let elapsed = started.elapsed();

    // Everything still live ends in a final sweep far in the future.
    let t = &shared.table;
    shared.check_quiescent();
    t.expire_step(shared.clock.load(Relaxed) + 3_600_000, t.slots(), |end| {
        shared.account_end(end)
    });
    assert!(t.is_empty());
    shared.check_quiescent();
    for guest in 0..4 {
        assert_eq!(t.guest_occupancy(guest), 0);
    }
    let stats = t.stats();
    let removed = *removed.lock().unwrap();
    assert_eq!(stats.creations, shared.inserts_created.load(Relaxed));
    assert_eq!(
        stats.creations,
        stats.expirations + stats.removals + stats.evictions
    );
    assert_eq!(stats.removals, removed);
    let total: u64 = shared
        .accepted
        .iter()
        .flatten()
        .map(|a| a.load(Relaxed))
        .sum();
    assert_eq!(total, (THREADS * PHASES * OPS_PER_PHASE) as u64);
    // The run exercised what it claims to.
    assert!(stats.creations > 1000, "slots were reused: {stats:?}");
    eprintln!("stress: {elapsed:?}, {stats:?}");
    assert!(
        elapsed < Duration::from_secs(60),
        "bounded run time, took {elapsed:?}"
    );
    stats
}

/// Threads doing nothing but tracking packets of one flow, both directions: the
/// per-flow write lock must make every counter update count.
#[test]
fn concurrent_tracking_of_one_flow_loses_nothing() {
    const PER_THREAD: u64 = 2_000_000;
    let table = FlowTable::new(&FlowTableConfig {
        capacity: 64,
        hash_seed: Some(3),
        ..Default::default()
    })
    .unwrap();
    let k = key(1);
    let (ckey, dir, hash) = table.prepare(&k);
    table
        .insert(&ckey, hash, dir, new_flow(1), &datagram(1), 0)
        .unwrap();
    let started = Instant::now();
    let ready = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for thread in 0..THREADS {
            let (table, ready) = (&table, &ready);
            s.spawn(move || {
                // Start together, so the threads really overlap.
                ready.fetch_add(1, AcqRel);
                while ready.load(Acquire) < THREADS {
                    std::hint::spin_loop();
                }
                let packet = if thread % 2 == 0 { k } else { k.reversed() };
                let (ckey, dir, hash) = table.prepare(&packet);
                let hit = table.lookup(&ckey, hash).unwrap();
                for i in 0..PER_THREAD {
                    let t = table.track(&hit, dir, &datagram(thread as u32), i).unwrap();
                    assert_eq!(t.verdict, 1);
                }
            });
        }
    });
    let r = record(&table, &k, 0).unwrap();
    let per_dir = PER_THREAD * (THREADS as u64 / 2);
    assert_eq!(r.packets[0] as u64, per_dir + 1, "lost updates (forward)");
    assert_eq!(r.packets[1] as u64, per_dir, "lost updates (reverse)");
    // Forward threads are 0 and 2, reverse 1 and 3; thread n's datagrams are 28 + n bytes.
    assert_eq!(
        r.bytes[0] as u64,
        29 + PER_THREAD * (28 + 30),
        "lost updates (forward bytes)"
    );
    assert_eq!(
        r.bytes[1] as u64,
        PER_THREAD * (29 + 31),
        "lost updates (reverse bytes)"
    );
    assert_eq!(r.state, rampart_flow::FlowState::UdpReplied);
    assert!(started.elapsed() < Duration::from_secs(60));
}
