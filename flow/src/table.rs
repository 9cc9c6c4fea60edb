//! The shared flow table: lookups, inserts, per-packet tracking, ageing.
//!
//! # Concurrency design
//!
//! One table is shared by every worker. Buckets of 16 slots; each key has a primary and a
//! secondary bucket (two-choice hashing, no cuckoo moves: an entry never moves once
//! placed, so a reader can never miss a flow because it was being relocated). A new flow
//! goes to its primary bucket, or its secondary if the primary is full. Each bucket's
//! header (tags, insert lock) and its 16 entries are laid out together ([`Group`]), so a
//! lookup's two cache misses fall in one page.
//!
//! | operation | synchronisation | waits for |
//! |---|---|---|
//! | lookup / `lookup_bulk` / `icmp_error_related` | none: reads tags, then the entry, then re-checks the entry's sequence word | nothing (wait-free; a slot that is being claimed or freed just does not match) |
//! | `track` (per-packet update of an existing flow) | entry `WRITE` bit taken with a CAS on the sequence word | another packet of the *same* flow being tracked on another worker (tens of ns) |
//! | `insert` | the insert locks of the key's two bucket headers, in index order | inserts into the same two buckets |
//! | ageing / eviction / `remove` | entry `STRUCT` bit taken with a CAS | ageing skips a busy entry; eviction waits for the one update in progress |
//!
//! Why it is safe:
//! - **No use after reuse.** A slot changes key only between a `STRUCT` lock and the
//!   release of the new generation. A reader loads the sequence word (`Acquire`), reads
//!   the key and fields (`Relaxed`), issues an `Acquire` fence and re-loads the word; the
//!   claimer issues a `Release` fence after taking `STRUCT` and before writing the key.
//!   If the reader saw any byte of a new key, the fences synchronise, so its second load
//!   sees `STRUCT` or a later generation and it discards what it read. A [`FlowHit`]
//!   carries the generation it was read at; `track` takes the write lock with a CAS that
//!   expects exactly that generation, so a hit on a freed or reused slot is refused
//!   ([`Stale::Gone`]) rather than updating another flow.
//! - **No lost update.** All writes to a flow's data happen under its `WRITE` bit
//!   (exclusive among writers); the CAS that takes it is `Acquire` and the store that
//!   drops it is `Release`, so each writer sees the previous writer's counters.
//! - **Exactly one entry per key (the clash case).** Every key can only live in its two
//!   buckets, and an insert holds both buckets' insert locks while it checks for the key
//!   and claims a slot, so two workers inserting the same key are serialised: the second
//!   finds the first's entry and tracks its packet there (counted as a `clash`).
//!   Deletions need no bucket lock: removing a flow cannot create a duplicate, and a freed
//!   slot is only reused by an insert holding the bucket lock.
//! - **No deadlock.** Bucket locks are taken in index order and never while holding an
//!   entry lock; entry locks are never nested except eviction (bucket locks, then one
//!   entry), which is the same order as everywhere else.
//! - **Bounded waits.** Every lock is held for a short, non-allocating, non-blocking
//!   critical section. On dedicated lcores holders are never preempted; where they can be
//!   (tests, oversubscribed hosts), waiters spin briefly then yield.
//!
//! Lookups are not linearisable against concurrent inserts (a flow inserted a few
//! nanoseconds ago may be missed); the miss path's insert resolves that as a clash.

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use rampart_packet::{Direction, FlowKey, Meta};

use crate::entry::{
    flag, pack_maxwin, seq, unpack_maxwin, Bucket, FlowEntry, Group, Info, PackedKey, V6Addrs, LANES,
};
use crate::tcp::{TcpCtx, TcpSegment, TcpStep, NO_SCALE};
use crate::{
    EndReason, FlowEnd, FlowRecord, FlowState, FlowTableConfig, FullPolicy, InvalidReason, Outcome,
    Timeouts,
};

use Ordering::{Acquire, Relaxed, Release};

/// Keys per prefetch round in [`FlowTable::lookup_bulk`].
const BULK: usize = 32;
/// Largest supported capacity (slot indices stay far from `u32::MAX`).
pub const MAX_CAPACITY: u32 = 1 << 28;
/// Flows a primary bucket takes before new keys go to the less loaded of their two
/// buckets (see `FlowTable::placement`).
const SPILL_THRESHOLD: u32 = 12;
/// Rounds of "found an entry but it vanished before we could use it" before giving up.
const INSERT_ROUNDS: usize = 8;

/// Configuration errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `capacity` out of range.
    #[error("flow table capacity {0} is out of range: use 1 to {MAX_CAPACITY} flows")]
    Capacity(u32),
}

/// Why [`FlowTable::insert`] created no flow.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// No room: the table holds `capacity` flows or the key's buckets are full, and the
    /// [`FullPolicy`] refused (or found nothing to evict).
    #[error("flow table full")]
    Full,
    /// The owner guest already holds its quota of flows.
    #[error("guest {0} is at its flow quota")]
    QuotaExceeded(u8),
    /// The packet cannot open a flow (e.g. a TCP segment that is not a SYN).
    #[error("packet cannot open a flow: {0:?}")]
    Invalid(InvalidReason),
    /// The key's entry kept disappearing under concurrent removal; try again later.
    #[error("flow entry contended, retry")]
    Contended,
}

/// Why [`FlowTable::track`] did not track: the hit no longer refers to a live flow.
/// Either way, look the key up again (and insert on a miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The flow was freed (expired, evicted, removed), possibly reused for another key.
    Gone,
    /// This packet (a SYN on a TIME_WAIT/CLOSE connection) ended the flow; a new one must
    /// be classified and inserted. The old flow's end is reported here.
    Reopened(FlowEnd),
}

/// What [`FlowTable::revisit_step`] does with one flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Revisit<T> {
    /// Leave it as it is.
    Keep,
    /// Store this verdict.
    Verdict(u32),
    /// Remove it; its end is reported with `T`.
    Remove(T),
}

/// A flow found by a lookup: a validated snapshot plus the handle for [`FlowTable::track`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowHit {
    slot: u32,
    generation: u32,
    /// The verdict / rule index stored at insert.
    pub verdict: u32,
    /// State when read (it may change under concurrent tracking).
    pub state: FlowState,
    /// Owner guest.
    pub owner: u8,
    /// Which canonical endpoint opened the flow.
    pub initiator: Direction,
}

impl FlowHit {
    /// The slot index (stable for the flow's lifetime; useful as a flow id together with
    /// the generation).
    pub fn slot(&self) -> u32 {
        self.slot
    }
    /// A flow id unique among live flows and unlikely to repeat soon: slot and generation.
    pub fn flow_id(&self) -> u64 {
        (self.generation as u64) << 32 | self.slot as u64
    }
}

/// A packet's flow in the table's own terms: the canonical key, packed as the entries
/// store it, the packet's direction and the key's hash. The packet path computes it once
/// per packet ([`FlowTable::prepare_flow`]) and hands it to the prefetches and the lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prepared {
    key: PackedKey,
    /// Lanes of the primary bucket whose tag matched when [`FlowTable::prefetch_flow`]
    /// read it: where the lookup looks first.
    lanes: u16,
    /// Which way the packet travels relative to the canonical key.
    pub dir: Direction,
    /// The canonical key's hash.
    pub hash: u64,
}

impl Prepared {
    /// The canonical key.
    pub fn canonical(&self) -> FlowKey {
        PackedKey::unpack(self.key.addrs, self.key.rest, self.key.is_v6().then_some(self.key.words))
    }
}

/// What the caller knows about one packet besides its key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// Bytes to count for this packet (the dataplane passes the IP length).
    pub bytes: u32,
    /// TCP fields; ignored for other protocols.
    pub tcp: TcpSegment,
}

impl PacketInfo {
    /// Packet info of a parsed frame: IP length and, for TCP, the segment fields.
    #[inline]
    pub fn from_frame(meta: &Meta, frame: &[u8]) -> PacketInfo {
        let ip_len =
            (meta.l4_offset as usize + meta.l4_header_len(frame) + meta.payload_len as usize)
                .saturating_sub(meta.l3_offset());
        PacketInfo {
            bytes: ip_len as u32,
            tcp: TcpSegment::from_frame(meta, frame).unwrap_or_default(),
        }
    }
}

/// What the caller decided for a new flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlow {
    /// Verdict / rule index from the classifier, returned on every hit.
    pub verdict: u32,
    /// Guest slot the flow is charged to.
    pub owner: u8,
}

/// Result of tracking one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// The flow's verdict.
    pub verdict: u32,
    /// State after this packet.
    pub state: FlowState,
    /// Owner guest.
    pub owner: u8,
    /// Valid, or why not.
    pub outcome: Outcome,
    /// The packet travels from the responder to the initiator.
    pub reply: bool,
}

/// Result of a successful [`FlowTable::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// The flow (new, or the one another worker created first).
    pub hit: FlowHit,
    /// The packet, tracked on that flow.
    pub tracked: Tracked,
    /// False if the key already existed (a clash: another worker inserted it first).
    pub created: bool,
    /// A flow that ended on the way: evicted to make room, or reopened by this SYN.
    pub ended: Option<FlowEnd>,
}

/// A flow's relation to an ICMP error ([`FlowTable::icmp_error_related`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Related {
    /// The flow the error refers to.
    pub hit: FlowHit,
    /// Direction of the embedded packet within the flow.
    pub inner_direction: Direction,
}

/// Result of one [`FlowTable::expire_step`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireStep {
    /// Slots looked at.
    pub scanned: usize,
    /// Flows expired (and reported).
    pub expired: usize,
}

/// Table-wide counters (monotonic except `live`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlowStats {
    /// Flows in the table now.
    pub live: u32,
    /// Flows created.
    pub creations: u64,
    /// Flows expired by ageing.
    pub expirations: u64,
    /// Flows evicted to make room.
    pub evictions: u64,
    /// Flows removed on request ([`FlowTable::remove`], [`FlowTable::revisit_step`]).
    pub removals: u64,
    /// TCP flows ended by a reopening SYN.
    pub reopened: u64,
    /// Invalid packets (tracked or first packets).
    pub invalid: u64,
    /// Inserts refused by a guest quota.
    pub quota_refusals: u64,
    /// Inserts refused because the table (or the key's buckets) was full.
    pub full_refusals: u64,
    /// Inserts that found the key already present (concurrent insert of one flow).
    pub clashes: u64,
}

/// One counter per cache line: workers bump them concurrently.
#[repr(align(64))]
#[derive(Default)]
struct Padded<T>(T);

#[derive(Default)]
struct Counters {
    creations: Padded<AtomicU64>,
    expirations: Padded<AtomicU64>,
    evictions: Padded<AtomicU64>,
    removals: Padded<AtomicU64>,
    reopened: Padded<AtomicU64>,
    invalid: Padded<AtomicU64>,
    quota_refusals: Padded<AtomicU64>,
    full_refusals: Padded<AtomicU64>,
    clashes: Padded<AtomicU64>,
}

#[inline]
fn bump(counter: &Padded<AtomicU64>) {
    // Relaxed: a statistic; nothing is published through it.
    counter.0.fetch_add(1, Relaxed);
}

/// Per-guest occupancy and quota, one cache line per guest so guests do not contend.
#[repr(align(64))]
#[derive(Default)]
struct Guest {
    live: AtomicU32,
    quota: AtomicU32,
}

/// Spin briefly, then yield: lock holders are short, but may be preempted in tests.
struct Backoff(u32);

impl Backoff {
    fn new() -> Self {
        Backoff(0)
    }
    fn snooze(&mut self) {
        if self.0 < 8 {
            for _ in 0..(1u32 << self.0) {
                core::hint::spin_loop();
            }
        } else {
            std::thread::yield_now();
        }
        self.0 += 1;
    }
}

/// `n` default values, written now so every page is touched at creation (no page faults
/// on the packet path later).
fn build<T: Default>(n: usize) -> Box<[T]> {
    let mut v = Vec::with_capacity(n);
    advise_huge_pages(v.as_mut_ptr() as *mut u8, n * core::mem::size_of::<T>());
    v.resize_with(n, T::default);
    v.into_boxed_slice()
}

/// Ask Linux to back the 2 MiB-aligned part of a fresh allocation with transparent huge
/// pages (when THP is in `madvise` mode, as on Debian): a random lookup then costs cache
/// misses but rarely a TLB miss. DPDK hugepage memory would do the same; this keeps the
/// crate DPDK-free. Best effort: without THP nothing changes.
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let start = (ptr as usize).next_multiple_of(HUGE_PAGE);
        let end = (ptr as usize).saturating_add(len) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: [start, end) lies inside the `len` bytes of capacity that `ptr`
            // heads, owned by the caller's Vec and not yet initialised or shared.
            // MADV_HUGEPAGE only changes how the kernel backs those pages, never their
            // contents or validity; an error (THP unavailable) is harmless and ignored.
            // SAFETY: the reasons are stated just above.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// Hint the CPU to pull `ptr`'s cache line into L1.
#[inline(always)]
fn prefetch<T>(ptr: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86-64 CPU has (it is in the
    // x86-64 baseline target features). A prefetch never dereferences in the
    // language sense and cannot fault; the pointer comes from a live reference anyway.
    // SAFETY: the reasons are stated just above.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
            ptr as *const T as *const i8,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Milliseconds from `then` to `now` on the 32-bit clock; a `then` slightly in the future
/// (another worker's clock ran ahead) counts as 0.
#[inline]
fn age_ms(now32: u32, then32: u32) -> u32 {
    (now32.wrapping_sub(then32) as i32).max(0) as u32
}

/// Holds the insert locks of one or two buckets; unlocks on drop.
struct BucketGuard<'a> {
    first: &'a Bucket,
    second: Option<&'a Bucket>,
}

impl Drop for BucketGuard<'_> {
    fn drop(&mut self) {
        // Release: the next insert into these buckets (its Acquire) sees our tags, claims
        // and spill counts.
        if let Some(second) = self.second {
            second.lock.store(0, Release);
        }
        self.first.lock.store(0, Release);
    }
}

fn lock_bucket(bucket: &Bucket) {
    let mut backoff = Backoff::new();
    // Acquire pairs with the Release in `BucketGuard::drop`.
    while bucket
        .lock
        .compare_exchange_weak(0, 1, Acquire, Relaxed)
        .is_err()
    {
        backoff.snooze();
    }
}

/// The lock-free, symmetric connection-tracking table shared by all workers.
pub struct FlowTable {
    /// Each bucket with the entries of its lanes (see [`Group`]).
    groups: Box<[Group]>,
    v6: Box<[V6Addrs]>,
    n_buckets: u64,
    hasher: ahash::RandomState,
    capacity: u32,
    full_policy: FullPolicy,
    tcp_loose: bool,
    timeouts_ms: [AtomicU32; crate::state::STATE_COUNT],
    live: Padded<AtomicU32>,
    guests: Box<[Guest]>,
    cursor: Padded<AtomicU64>,
    counters: Counters,
}

impl FlowTable {
    /// Allocate (and touch) all memory for `config.capacity` flows.
    pub fn new(config: &FlowTableConfig) -> Result<FlowTable, ConfigError> {
        if config.capacity == 0 || config.capacity > MAX_CAPACITY {
            return Err(ConfigError::Capacity(config.capacity));
        }
        // 25 % slack: with two choices of 16-slot buckets, an 80 % full table almost never
        // has both candidate buckets full.
        let slots = (config.capacity as u64 * 5).div_ceil(4);
        let n_buckets = slots.div_ceil(LANES as u64).max(1);
        let n_slots = (n_buckets as usize) * LANES;
        let hasher = match config.hash_seed {
            Some(seed) => ahash::RandomState::with_seeds(
                seed,
                seed ^ 0x243f_6a88_85a3_08d3,
                seed.rotate_left(17) ^ 0x1319_8a2e_0370_7344,
                seed.rotate_left(41) ^ 0xa409_3822_299f_31d0,
            ),
            None => ahash::RandomState::new(),
        };
        let table = FlowTable {
            groups: build(n_buckets as usize),
            v6: build(n_slots),
            n_buckets,
            hasher,
            capacity: config.capacity,
            full_policy: config.full_policy,
            tcp_loose: config.tcp_loose,
            timeouts_ms: Default::default(),
            live: Padded::default(),
            guests: build(256),
            cursor: Padded::default(),
            counters: Counters::default(),
        };
        table.set_timeouts(&config.timeouts);
        for guest in table.guests.iter() {
            guest.quota.store(config.guest_quota, Relaxed);
        }
        Ok(table)
    }

    /// The shortest per-state timeout, ms: ageing that sweeps the whole table a few
    /// times within it ends every flow close to its timeout.
    pub fn shortest_timeout_ms(&self) -> u32 {
        // Relaxed: independent values, as in `set_timeouts`.
        self.timeouts_ms.iter().map(|t| t.load(Relaxed)).min().unwrap_or(0)
    }

    /// Replace the per-state timeouts (e.g. on a policy reload). Applies to every flow's
    /// next expiry check.
    pub fn set_timeouts(&self, timeouts: &Timeouts) {
        for state in FlowState::ALL {
            // Relaxed: each timeout is an independent value; a worker seeing the old one
            // for a moment is harmless.
            self.timeouts_ms[state as usize].store(timeouts.ms(state), Relaxed);
        }
    }

    /// Set one guest's quota of live flows. Flows above a lowered quota stay until they
    /// end; only new inserts are refused.
    pub fn set_guest_quota(&self, guest: u8, limit: u32) {
        self.guests[guest as usize].quota.store(limit, Relaxed);
    }

    /// Live flows owned by `guest`.
    pub fn guest_occupancy(&self, guest: u8) -> u32 {
        self.guests[guest as usize].live.load(Relaxed)
    }

    /// Maximum number of live flows.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Number of slots (capacity plus slack, rounded to whole buckets).
    pub fn slots(&self) -> usize {
        self.n_slots()
    }

    #[inline(always)]
    fn n_slots(&self) -> usize {
        self.groups.len() * LANES
    }

    #[inline(always)]
    fn bucket(&self, bucket: usize) -> &Bucket {
        &self.groups[bucket].bucket
    }

    /// The entry of slot `slot` (bucket `slot / LANES`, lane `slot % LANES`).
    #[inline(always)]
    fn entry(&self, slot: usize) -> &FlowEntry {
        &self.groups[slot / LANES].entries[slot % LANES]
    }

    /// Live flows.
    pub fn len(&self) -> u32 {
        self.live.0.load(Relaxed)
    }

    /// True if no flow is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters.
    pub fn stats(&self) -> FlowStats {
        let c = &self.counters;
        let get = |p: &Padded<AtomicU64>| p.0.load(Relaxed);
        FlowStats {
            live: self.len(),
            creations: get(&c.creations),
            expirations: get(&c.expirations),
            evictions: get(&c.evictions),
            removals: get(&c.removals),
            reopened: get(&c.reopened),
            invalid: get(&c.invalid),
            quota_refusals: get(&c.quota_refusals),
            full_refusals: get(&c.full_refusals),
            clashes: get(&c.clashes),
        }
    }

    /// Keyed hash of a canonical key (see [`Self::prepare`]).
    #[inline]
    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hash_packed(&PackedKey::new(key))
    }

    #[inline]
    fn hash_packed(&self, key: &PackedKey) -> u64 {
        let w = key.words;
        self.hasher.hash_one([w[0], w[1], w[2], w[3], key.rest])
    }

    /// Canonical key, the packet's direction and the hash, from a packet-order key.
    #[inline]
    pub fn prepare(&self, packet_key: &FlowKey) -> (FlowKey, Direction, u64) {
        let flow = self.prepare_flow(packet_key);
        (flow.canonical(), flow.dir, flow.hash)
    }

    #[inline]
    fn primary(&self, hash: u64) -> usize {
        (((hash as u32 as u64) * self.n_buckets) >> 32) as usize
    }

    #[inline]
    fn secondary(&self, hash: u64, primary: usize) -> usize {
        let b = (((hash >> 32) * self.n_buckets) >> 32) as usize;
        if b == primary {
            (primary + 1) % self.n_buckets as usize
        } else {
            b
        }
    }

    #[inline]
    fn tag(hash: u64) -> u16 {
        // Mixed again so the tag does not repeat the bits that chose the buckets.
        match (hash.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48) as u16 {
            0 => 1,
            t => t,
        }
    }

    // ---------------------------------------------------------------- lookups

    /// Read slot `slot` if it holds `key`: wait-free, validated by the sequence word.
    #[inline(always)]
    fn read_if_key(&self, slot: usize, key: &PackedKey) -> Option<FlowHit> {
        let e = self.entry(slot);
        // Acquire: pairs with the Release store that published this generation, so the
        // fields below are at least as new as the claim that wrote them.
        let s1 = e.seq.load(Acquire);
        if s1 & (seq::OCCUPIED | seq::STRUCT) != seq::OCCUPIED {
            return None;
        }
        if e.key_addrs.load(Relaxed) != key.addrs || e.key_rest.load(Relaxed) != key.rest {
            return None;
        }
        if key.is_v6() {
            let ext = &self.v6[slot].words;
            for (stored, wanted) in ext.iter().zip(key.words) {
                if stored.load(Relaxed) != wanted {
                    return None;
                }
            }
        }
        let verdict = e.verdict.load(Relaxed);
        let info = Info::unpack(e.info.load(Relaxed));
        // Acquire fence: if any load above saw a write made after a claimer/freer took
        // STRUCT (they issue a Release fence after taking it), the re-load below sees
        // STRUCT or a later generation.
        fence(Acquire);
        let s2 = e.seq.load(Relaxed);
        if (s1 ^ s2) & !seq::WRITE != 0 {
            return None;
        }
        Some(FlowHit {
            slot: slot as u32,
            generation: s1 & !seq::WRITE,
            verdict,
            state: info.state,
            owner: info.owner,
            initiator: if info.flags & flag::INIT_REV != 0 {
                Direction::Reverse
            } else {
                Direction::Forward
            },
        })
    }

    #[inline(always)]
    fn check_lanes(&self, bucket: usize, mut lanes: u16, key: &PackedKey) -> Option<FlowHit> {
        while lanes != 0 {
            let lane = lanes.trailing_zeros() as usize;
            lanes &= lanes - 1;
            if let Some(hit) = self.read_if_key(bucket * LANES + lane, key) {
                return Some(hit);
            }
        }
        None
    }

    #[inline(always)]
    fn probe(&self, bucket: usize, tag: u16, key: &PackedKey) -> Option<FlowHit> {
        self.check_lanes(bucket, self.bucket(bucket).matching(tag), key)
    }

    #[inline(always)]
    fn find(&self, key: &PackedKey, hash: u64) -> Option<FlowHit> {
        let tag = Self::tag(hash);
        let b1 = self.primary(hash);
        let hit = self.probe(b1, tag, key);
        // Relaxed: a hint; a stale zero can only cause a miss of a flow inserted
        // concurrently, which the insert path resolves as a clash. (Plain branches, not
        // `or_else`: the closure was outlined and returned its hit through the stack.)
        if hit.is_some() || self.bucket(b1).spilled.load(Relaxed) == 0 {
            return hit;
        }
        self.probe(self.secondary(hash, b1), tag, key)
    }

    /// Find the flow of a canonical key. Wait-free.
    #[inline]
    pub fn lookup(&self, key: &FlowKey, hash: u64) -> Option<FlowHit> {
        self.find(&PackedKey::new(key), hash)
    }

    /// Start pulling the primary bucket of `hash` into the cache: a caller that knows a
    /// key early (while parsing the rest of a burst) hides most of the lookup's first miss.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        prefetch(self.bucket(self.primary(hash)));
    }

    /// Stage 2 of a pipelined lookup (stage 1 is [`Self::prefetch`], stage 3 is
    /// [`Self::lookup`]): read the primary bucket's tags and start pulling the candidate
    /// entry (or the secondary bucket) into the cache, so that the lookup, done once
    /// other work has given the lines time to arrive, finds them there. A hint: the
    /// lookup reads the tags again, so flows inserted or removed meanwhile are seen.
    #[inline]
    pub fn prefetch_candidates(&self, key: &FlowKey, hash: u64) {
        self.prefetch_packed(&PackedKey::new(key), hash);
    }

    /// Stage 2 on a packed key; returns the primary bucket's matching lanes.
    #[inline(always)]
    fn prefetch_packed(&self, key: &PackedKey, hash: u64) -> u16 {
        let primary = self.primary(hash);
        let bucket = self.bucket(primary);
        let lanes = bucket.matching(Self::tag(hash));
        if lanes != 0 {
            let slot = primary * LANES + lanes.trailing_zeros() as usize;
            prefetch(self.entry(slot));
            if key.is_v6() {
                prefetch(&self.v6[slot]);
            }
        } else if bucket.spilled.load(Relaxed) != 0 {
            prefetch(self.bucket(self.secondary(hash, primary)));
        }
        lanes
    }

    /// [`Self::prepare`] in the form the packet path keeps: canonical key packed once, its
    /// direction and hash, for [`Self::prefetch`], [`Self::prefetch_flow`] and
    /// [`Self::lookup_flow`] (the same pipeline as [`Self::lookup_bulk`], packet by packet).
    #[inline(always)]
    pub fn prepare_flow(&self, packet_key: &FlowKey) -> Prepared {
        let (key, dir) = PackedKey::canonical(packet_key);
        Prepared { hash: self.hash_packed(&key), key, dir, lanes: 0 }
    }

    /// [`Self::prefetch_candidates`] of a prepared flow; remembers the lanes whose tag
    /// matched, where [`Self::lookup_flow`] then looks first.
    #[inline(always)]
    pub fn prefetch_flow(&self, flow: &mut Prepared) {
        flow.lanes = self.prefetch_packed(&flow.key, flow.hash);
    }

    /// [`Self::lookup`] of a prepared flow. Wait-free. The lanes remembered by
    /// [`Self::prefetch_flow`] are only where it looks first: the entry's key and sequence
    /// word decide a hit, and anything not found there is looked up in full.
    #[inline(always)]
    pub fn lookup_flow(&self, flow: &Prepared) -> Option<FlowHit> {
        if flow.lanes != 0 {
            let hit = self.check_lanes(self.primary(flow.hash), flow.lanes, &flow.key);
            if hit.is_some() {
                return hit;
            }
        }
        self.find(&flow.key, flow.hash)
    }

    /// Look up a burst of canonical keys with their hashes, writing one result per key.
    /// Processes up to 32 keys per round in the three stages of a pipelined lookup
    /// (prefetch bucket headers; match tags and prefetch candidate entries; look up),
    /// each over the whole round, so the cache misses of a round overlap. Handles
    /// `min(keys, hashes, out)` keys; returns the number of hits.
    pub fn lookup_bulk(
        &self,
        keys: &[FlowKey],
        hashes: &[u64],
        out: &mut [Option<FlowHit>],
    ) -> usize {
        let n = keys.len().min(hashes.len()).min(out.len());
        let mut hits = 0;
        for round in (0..n).step_by(BULK) {
            let r = round..(round + BULK).min(n);
            for &hash in &hashes[r.clone()] {
                self.prefetch(hash);
            }
            for i in r.clone() {
                self.prefetch_candidates(&keys[i], hashes[i]);
            }
            for i in r {
                out[i] = self.lookup(&keys[i], hashes[i]);
                hits += out[i].is_some() as usize;
            }
        }
        hits
    }

    /// Is an ICMP/ICMPv6 error related to a tracked flow? `inner` is the key of the
    /// packet embedded in the error, in its own packet order (built like any packet key,
    /// with the same zone); `outer_dst` is the error's destination address. Related only
    /// if the inner tuple is a tracked flow and the error goes back to the inner packet's
    /// sender (as Linux checks), so a guest cannot forge errors into other flows.
    pub fn icmp_error_related(&self, outer_dst: &[u8; 16], inner: &FlowKey) -> Option<Related> {
        if inner.src_addr != *outer_dst {
            return None;
        }
        let (key, inner_direction) = inner.canonical();
        let hit = self.lookup(&key, self.hash(&key))?;
        Some(Related {
            hit,
            inner_direction,
        })
    }

    // ---------------------------------------------------------------- tracking

    /// Take the entry's WRITE bit if it still holds generation `generation`.
    #[inline]
    fn lock_write(&self, e: &FlowEntry, generation: u32) -> bool {
        let mut backoff = Backoff::new();
        loop {
            // Acquire: see the previous writer's data (it released with Release).
            match e
                .seq
                .compare_exchange_weak(generation, generation | seq::WRITE, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(current) if current & !seq::LOCKS != generation => return false,
                Err(_) => backoff.snooze(),
            }
        }
    }

    /// Track one packet of an existing flow: TCP state machine and window checks, UDP /
    /// ICMP / generic pseudo-state, counters and timer (valid packets only).
    #[inline(always)]
    pub fn track(
        &self,
        hit: &FlowHit,
        dir: Direction,
        pkt: &PacketInfo,
        now_ms: u64,
    ) -> Result<Tracked, Stale> {
        let slot = hit.slot as usize;
        let e = self.entry(slot);
        if !self.lock_write(e, hit.generation) {
            return Err(Stale::Gone);
        }
        // Exclusive from here to the Release store at the end: Relaxed data accesses.
        let d = dir as usize;
        let mut info = Info::unpack(e.info.load(Relaxed));
        let initiator = (info.flags & flag::INIT_REV != 0) as usize;
        let outcome = if info.state.is_tcp() {
            let mut ctx = TcpCtx {
                state: info.state,
                flags: info.flags,
                wscale: info.wscale,
                end: [e.td_end[0].load(Relaxed), e.td_end[1].load(Relaxed)],
                maxwin: unpack_maxwin(e.maxwin.load(Relaxed)),
            };
            match ctx.step(d, &pkt.tcp) {
                TcpStep::Accept => {
                    info.state = ctx.state;
                    info.flags = ctx.flags;
                    info.wscale = ctx.wscale;
                    e.td_end[0].store(ctx.end[0], Relaxed);
                    e.td_end[1].store(ctx.end[1], Relaxed);
                    e.maxwin.store(pack_maxwin(ctx.maxwin), Relaxed);
                    Outcome::Valid
                }
                TcpStep::Invalid(reason) => Outcome::Invalid(reason),
                TcpStep::Reopen => {
                    // We hold the flow exclusively; turn the write lock into a free.
                    e.seq.store(hit.generation | seq::STRUCT, Relaxed);
                    let end =
                        self.free_locked(slot, hit.generation, EndReason::Reopened, false, now_ms);
                    bump(&self.counters.reopened);
                    return Err(Stale::Reopened(end));
                }
            }
        } else {
            if d != initiator && info.flags & flag::REPLIED == 0 {
                info.flags |= flag::REPLIED;
                info.state = match info.state {
                    FlowState::UdpUnreplied => FlowState::UdpReplied,
                    FlowState::IcmpUnreplied => FlowState::IcmpReplied,
                    FlowState::GenericUnreplied => FlowState::GenericReplied,
                    other => other,
                };
            }
            Outcome::Valid
        };
        if outcome.is_valid() {
            e.info.store(info.pack(), Relaxed);
            let p = &e.packets[d];
            p.store(p.load(Relaxed).wrapping_add(1), Relaxed);
            let b = &e.bytes[d];
            b.store(b.load(Relaxed).wrapping_add(pkt.bytes), Relaxed);
            let now32 = now_ms as u32;
            if (now32.wrapping_sub(e.last_ms.load(Relaxed)) as i32) > 0 {
                e.last_ms.store(now32, Relaxed);
            }
        } else {
            bump(&self.counters.invalid);
        }
        let verdict = e.verdict.load(Relaxed);
        // Release: the next writer / deleter (Acquire CAS) sees everything above.
        e.seq.store(hit.generation, Release);
        Ok(Tracked {
            verdict,
            state: info.state,
            owner: info.owner,
            outcome,
            reply: d != initiator,
        })
    }

    /// Change a live flow's verdict (e.g. re-classified after a policy swap).
    pub fn set_verdict(&self, hit: &FlowHit, verdict: u32) -> Result<(), Stale> {
        self.store_verdict(hit.slot as usize, hit.generation, verdict).then_some(()).ok_or(Stale::Gone)
    }

    /// Store the verdict of the flow in `slot` if it still holds `generation`.
    fn store_verdict(&self, slot: usize, generation: u32, verdict: u32) -> bool {
        let e = self.entry(slot);
        if !self.lock_write(e, generation) {
            return false;
        }
        e.verdict.store(verdict, Relaxed);
        // Release: publishes the verdict to the next writer.
        e.seq.store(generation, Release);
        true
    }

    // ---------------------------------------------------------------- inserts

    /// Initial entry contents for a flow opened by `pkt` from `dir`.
    fn open_state(
        &self,
        proto: u8,
        dir: usize,
        pkt: &PacketInfo,
    ) -> Result<(Info, TcpCtx), InvalidReason> {
        let ctx = match proto {
            6 => TcpCtx::open(dir, &pkt.tcp, self.tcp_loose)?,
            _ => TcpCtx {
                state: match proto {
                    17 => FlowState::UdpUnreplied,
                    1 | 58 => FlowState::IcmpUnreplied,
                    _ => FlowState::GenericUnreplied,
                },
                flags: if dir == 1 { flag::INIT_REV } else { 0 },
                wscale: [NO_SCALE; 2],
                end: [0; 2],
                maxwin: [0; 2],
            },
        };
        let info = Info {
            state: ctx.state,
            flags: ctx.flags,
            owner: 0,
            wscale: ctx.wscale,
        };
        Ok((info, ctx))
    }

    /// Insert the flow of canonical `key` (hash from [`Self::hash`]) opened by `pkt`
    /// travelling in `dir`, after a lookup missed and the classifier decided `new`.
    ///
    /// If another worker inserted the key meanwhile (clash), no second entry is made:
    /// the packet is tracked on the existing flow and `created` is false. The first
    /// packet of a TCP flow must be a SYN (unless `tcp_loose`).
    pub fn insert(
        &self,
        key: &FlowKey,
        hash: u64,
        dir: Direction,
        new: NewFlow,
        pkt: &PacketInfo,
        now_ms: u64,
    ) -> Result<Inserted, InsertError> {
        let packed = PackedKey::new(key);
        let b1 = self.primary(hash);
        let b2 = self.secondary(hash, b1);
        let tag = Self::tag(hash);
        let d = dir as usize;
        let opened = self.open_state(key.proto, d, pkt);
        let mut ended = None;
        for _ in 0..INSERT_ROUNDS {
            let guard = self.lock_pair(b1, b2);
            if let Some(hit) = self.probe(b1, tag, &packed).or_else(|| {
                if b2 != b1 {
                    self.probe(b2, tag, &packed)
                } else {
                    None
                }
            }) {
                drop(guard);
                bump(&self.counters.clashes);
                match self.track(&hit, dir, pkt, now_ms) {
                    Ok(tracked) => {
                        return Ok(Inserted {
                            hit,
                            tracked,
                            created: false,
                            ended,
                        })
                    }
                    Err(Stale::Gone) => continue,
                    Err(Stale::Reopened(end)) => {
                        ended = Some(end);
                        continue;
                    }
                }
            }
            let (mut info, ctx) = match opened {
                Ok(v) => v,
                Err(reason) => {
                    bump(&self.counters.invalid);
                    return Err(InsertError::Invalid(reason));
                }
            };
            info.owner = new.owner;
            self.reserve_guest(new.owner)?;
            let slot = match self.claim_slot(b1, b2, now_ms, &mut ended) {
                Ok(slot) => slot,
                Err(err) => {
                    self.release_guest(new.owner);
                    return Err(err);
                }
            };
            let generation = self.publish(slot, &packed, new.verdict, info, &ctx, pkt, d, now_ms);
            let (bucket, lane) = (slot / LANES, slot % LANES);
            self.bucket(bucket).tags[lane / 4].fetch_or((tag as u64) << (16 * (lane % 4)), Release);
            if bucket != b1 {
                // Relaxed: a hint read by lookups (see `find`).
                self.bucket(b1).spilled.fetch_add(1, Relaxed);
            }
            drop(guard);
            bump(&self.counters.creations);
            let hit = FlowHit {
                slot: slot as u32,
                generation,
                verdict: new.verdict,
                state: info.state,
                owner: info.owner,
                initiator: if d == 1 {
                    Direction::Reverse
                } else {
                    Direction::Forward
                },
            };
            let tracked = Tracked {
                verdict: new.verdict,
                state: info.state,
                owner: info.owner,
                outcome: Outcome::Valid,
                reply: false,
            };
            return Ok(Inserted {
                hit,
                tracked,
                created: true,
                ended,
            });
        }
        Err(InsertError::Contended)
    }

    fn lock_pair(&self, b1: usize, b2: usize) -> BucketGuard<'_> {
        let (lo, hi) = (b1.min(b2), b1.max(b2));
        lock_bucket(self.bucket(lo));
        if hi != lo {
            lock_bucket(self.bucket(hi));
        }
        BucketGuard {
            first: self.bucket(lo),
            second: (hi != lo).then(|| self.bucket(hi)),
        }
    }

    fn reserve_guest(&self, owner: u8) -> Result<(), InsertError> {
        let guest = &self.guests[owner as usize];
        let quota = guest.quota.load(Relaxed);
        // Relaxed RMW: the counter's own modification order makes the check-and-increment
        // exact; no other memory is published through it.
        match guest
            .live
            .fetch_update(Relaxed, Relaxed, |n| (n < quota).then_some(n + 1))
        {
            Ok(_) => Ok(()),
            Err(_) => {
                bump(&self.counters.quota_refusals);
                Err(InsertError::QuotaExceeded(owner))
            }
        }
    }

    fn release_guest(&self, owner: u8) {
        self.guests[owner as usize].live.fetch_sub(1, Relaxed);
    }

    /// Find a slot for a new flow in `b1`/`b2` (both insert-locked by us), taking one unit
    /// of the global capacity, evicting if the policy allows. Returns the slot with its
    /// STRUCT bit held.
    fn claim_slot(
        &self,
        b1: usize,
        b2: usize,
        now_ms: u64,
        ended: &mut Option<FlowEnd>,
    ) -> Result<usize, InsertError> {
        // Relaxed RMW, as for guest quotas.
        let mut have_live = self
            .live
            .0
            .fetch_update(Relaxed, Relaxed, |n| (n < self.capacity).then_some(n + 1))
            .is_ok();
        for _ in 0..4 {
            if have_live {
                let (first, second) = self.placement(b1, b2);
                if let Some(slot) = self.claim_free_lane(first).or_else(|| {
                    if second != first {
                        self.claim_free_lane(second)
                    } else {
                        None
                    }
                }) {
                    return Ok(slot);
                }
            }
            if self.full_policy == FullPolicy::Refuse || ended.is_some() {
                break;
            }
            let Some((victim, generation)) = self.pick_victim(b1, b2, now_ms) else {
                break;
            };
            // Without a capacity unit of our own, take over the victim's.
            if let Some(end) =
                self.delete(victim, generation, EndReason::Evicted, !have_live, now_ms)
            {
                bump(&self.counters.evictions);
                *ended = Some(end);
                have_live = true;
            }
        }
        if have_live {
            self.live.0.fetch_sub(1, Relaxed);
        }
        bump(&self.counters.full_refusals);
        Err(InsertError::Full)
    }

    /// Which of the key's buckets to try first. The primary, while it holds fewer than
    /// [`SPILL_THRESHOLD`] flows (so most hits cost one bucket line and one entry line);
    /// past that, the less loaded of the two. Pure "primary until full" lets both of a
    /// key's buckets fill up early: simulated at 1M flows with 25 % slack, the first
    /// spurious `Full` came at 55 % of capacity (5,000 by 100 %), versus none with this
    /// rule, which spills ~11 % of flows to their secondary bucket.
    #[inline]
    fn placement(&self, b1: usize, b2: usize) -> (usize, usize) {
        let fill = |b: usize| LANES as u32 - self.bucket(b).free().count_ones();
        if b2 == b1 || fill(b1) < SPILL_THRESHOLD || fill(b1) <= fill(b2) {
            (b1, b2)
        } else {
            (b2, b1)
        }
    }

    /// Claim a free lane of `bucket` (insert-locked by us): CAS its entry from free to
    /// STRUCT. A lane whose tag is 0 but whose entry is still STRUCT-locked is being
    /// freed by ageing; we wait the few instructions it takes.
    fn claim_free_lane(&self, bucket: usize) -> Option<usize> {
        let mut backoff = Backoff::new();
        loop {
            let mut free = self.bucket(bucket).free();
            if free == 0 {
                return None;
            }
            while free != 0 {
                let slot = bucket * LANES + free.trailing_zeros() as usize;
                free &= free - 1;
                let e = self.entry(slot);
                let current = e.seq.load(Relaxed);
                if current & (seq::OCCUPIED | seq::LOCKS) == 0
                    // Acquire: see the freer's writes before we overwrite the slot.
                    && e.seq
                        .compare_exchange(current, current | seq::STRUCT, Acquire, Relaxed)
                        .is_ok()
                {
                    return Some(slot);
                }
            }
            backoff.snooze();
        }
    }

    /// Write a new flow into `slot` (STRUCT held) and publish it. Returns its generation.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        slot: usize,
        key: &PackedKey,
        verdict: u32,
        info: Info,
        ctx: &TcpCtx,
        pkt: &PacketInfo,
        d: usize,
        now_ms: u64,
    ) -> u32 {
        let e = self.entry(slot);
        let locked = e.seq.load(Relaxed);
        // Release fence between taking STRUCT and writing the new key: a reader that
        // sees any new byte also sees STRUCT (or later) on its re-check.
        fence(Release);
        e.key_addrs.store(key.addrs, Relaxed);
        e.key_rest.store(key.rest, Relaxed);
        if key.is_v6() {
            for (stored, w) in self.v6[slot].words.iter().zip(key.words) {
                stored.store(w, Relaxed);
            }
        }
        e.verdict.store(verdict, Relaxed);
        e.info.store(info.pack(), Relaxed);
        e.last_ms.store(now_ms as u32, Relaxed);
        e.start_s.store((now_ms / 1000) as u32, Relaxed);
        e.maxwin.store(pack_maxwin(ctx.maxwin), Relaxed);
        for i in 0..2 {
            e.td_end[i].store(ctx.end[i], Relaxed);
            e.packets[i].store((i == d) as u32, Relaxed);
            e.bytes[i].store(if i == d { pkt.bytes } else { 0 }, Relaxed);
        }
        let generation = seq::next_gen(locked) | seq::OCCUPIED;
        // Release: readers that Acquire this generation see the fields above.
        e.seq.store(generation, Release);
        generation
    }

    // ---------------------------------------------------------------- removal

    /// Pick an eviction victim among the occupied slots of `b1`/`b2`: expired first, then
    /// the oldest never-assured flow, then the oldest.
    fn pick_victim(&self, b1: usize, b2: usize, now_ms: u64) -> Option<(usize, u32)> {
        let now32 = now_ms as u32;
        let mut best: Option<((u8, u32), usize, u32)> = None;
        for bucket in [b1, b2] {
            let mut occupied = !self.bucket(bucket).free();
            while occupied != 0 {
                let slot = bucket * LANES + occupied.trailing_zeros() as usize;
                occupied &= occupied - 1;
                let e = self.entry(slot);
                let s = e.seq.load(Acquire);
                if s & (seq::OCCUPIED | seq::STRUCT) != seq::OCCUPIED {
                    continue;
                }
                let state = Info::unpack(e.info.load(Relaxed)).state;
                let age = age_ms(now32, e.last_ms.load(Relaxed));
                let class = if age >= self.timeouts_ms[state as usize].load(Relaxed) {
                    0
                } else if !state.is_assured() {
                    1
                } else {
                    2
                };
                // Lower class wins, then greater age.
                let score = (class, u32::MAX - age);
                if best.is_none_or(|(b, _, _)| score < b) {
                    best = Some((score, slot, s & !seq::WRITE));
                }
            }
            if b2 == b1 {
                break;
            }
        }
        best.map(|(_, slot, generation)| (slot, generation))
    }

    /// Free `slot` if it still holds `generation`, waiting for an update in progress.
    /// `keep_live`: the caller takes over the flow's unit of capacity.
    fn delete(
        &self,
        slot: usize,
        generation: u32,
        reason: EndReason,
        keep_live: bool,
        now_ms: u64,
    ) -> Option<FlowEnd> {
        let e = self.entry(slot);
        let mut backoff = Backoff::new();
        loop {
            // Acquire: see the last writer's data before reporting it.
            match e.seq.compare_exchange_weak(
                generation,
                generation | seq::STRUCT,
                Acquire,
                Relaxed,
            ) {
                Ok(_) => break,
                Err(current) if current & !seq::LOCKS != generation => return None,
                Err(_) => backoff.snooze(),
            }
        }
        Some(self.free_locked(slot, generation, reason, keep_live, now_ms))
    }

    /// Read the flow in `slot` (which we hold exclusively).
    fn record(&self, slot: usize, now_ms: u64) -> FlowRecord {
        let e = self.entry(slot);
        let rest = e.key_rest.load(Relaxed);
        let v6 = (rest >> 56 != 0).then(|| {
            let w = &self.v6[slot].words;
            [
                w[0].load(Relaxed),
                w[1].load(Relaxed),
                w[2].load(Relaxed),
                w[3].load(Relaxed),
            ]
        });
        let info = Info::unpack(e.info.load(Relaxed));
        let age = age_ms(now_ms as u32, e.last_ms.load(Relaxed)) as u64;
        FlowRecord {
            key: PackedKey::unpack(e.key_addrs.load(Relaxed), rest, v6),
            initiator: if info.flags & flag::INIT_REV != 0 {
                Direction::Reverse
            } else {
                Direction::Forward
            },
            state: info.state,
            owner: info.owner,
            verdict: e.verdict.load(Relaxed),
            packets: [e.packets[0].load(Relaxed), e.packets[1].load(Relaxed)],
            bytes: [e.bytes[0].load(Relaxed), e.bytes[1].load(Relaxed)],
            start_ms: e.start_s.load(Relaxed) as u64 * 1000,
            last_ms: now_ms.saturating_sub(age),
        }
    }

    /// Free `slot`, whose STRUCT bit we hold (taken from `generation`).
    fn free_locked(
        &self,
        slot: usize,
        generation: u32,
        reason: EndReason,
        keep_live: bool,
        now_ms: u64,
    ) -> FlowEnd {
        let record = self.record(slot, now_ms);
        let bucket = slot / LANES;
        let lane = slot % LANES;
        // Clear the tag while still holding STRUCT, so no insert can claim the slot and
        // set its own tag before we clear ours.
        self.bucket(bucket).tags[lane / 4].fetch_and(!(0xffffu64 << (16 * (lane % 4))), Release);
        let hash = self.hash(&record.key);
        let primary = self.primary(hash);
        if primary != bucket {
            self.bucket(primary).spilled.fetch_sub(1, Relaxed);
        }
        self.release_guest(record.owner);
        if !keep_live {
            self.live.0.fetch_sub(1, Relaxed);
        }
        // Release: the next claimer (Acquire CAS) sees the tag cleared and our reads done.
        self.entry(slot)
            .seq
            .store(seq::next_gen(generation), Release);
        FlowEnd { record, reason }
    }

    /// Remove the flow of a canonical key (e.g. a "kill flows" command).
    pub fn remove(&self, key: &FlowKey, hash: u64, now_ms: u64) -> Option<FlowEnd> {
        let packed = PackedKey::new(key);
        for _ in 0..INSERT_ROUNDS {
            let hit = self.find(&packed, hash)?;
            if let Some(end) = self.delete(
                hit.slot as usize,
                hit.generation,
                EndReason::Removed,
                false,
                now_ms,
            ) {
                bump(&self.counters.removals);
                return Some(end);
            }
        }
        None
    }

    /// Remove the flow a lookup found, if it is still that flow (not freed, not reused).
    pub fn remove_hit(&self, hit: &FlowHit, now_ms: u64) -> Option<FlowEnd> {
        let end = self.delete(hit.slot as usize, hit.generation, EndReason::Removed, false, now_ms)?;
        bump(&self.counters.removals);
        Some(end)
    }

    // ---------------------------------------------------------------- ageing

    #[inline]
    fn expired(&self, info_word: u32, last_ms: u32, now32: u32) -> bool {
        let state = Info::unpack(info_word).state;
        age_ms(now32, last_ms) >= self.timeouts_ms[state as usize].load(Relaxed)
    }

    /// Incremental ageing: look at the next `budget` slots (a cursor shared by all
    /// callers, so several workers split the sweep), free the flows idle longer than
    /// their state's timeout and report each to `on_end` (after it is freed, with no lock
    /// held). Entries being updated right now are skipped until the next sweep: ageing
    /// never waits. Call it often enough that a sweep of the whole table takes well
    /// under 24 days (timestamps are 32-bit milliseconds).
    pub fn expire_step(
        &self,
        now_ms: u64,
        budget: usize,
        mut on_end: impl FnMut(&FlowEnd),
    ) -> ExpireStep {
        let total = self.n_slots();
        let budget = budget.min(total);
        // Relaxed: only partitions the sweep between callers.
        let start = (self.cursor.0.fetch_add(budget as u64, Relaxed) % total as u64) as usize;
        let now32 = now_ms as u32;
        let mut step = ExpireStep { scanned: budget, expired: 0 };
        self.occupied_slots(start, budget, |s| {
            let e = self.entry(s);
            let word = e.seq.load(Acquire);
            if word & (seq::OCCUPIED | seq::LOCKS) != seq::OCCUPIED
                || !self.expired(e.info.load(Relaxed), e.last_ms.load(Relaxed), now32)
            {
                return;
            }
            // Try once: a flow being updated is alive; skip it.
            if e.seq
                .compare_exchange(word, word | seq::STRUCT, Acquire, Relaxed)
                .is_err()
            {
                return;
            }
            if !self.expired(e.info.load(Relaxed), e.last_ms.load(Relaxed), now32) {
                // Refreshed between our check and the lock. Release: nothing changed,
                // but keep the pairing uniform.
                e.seq.store(word, Release);
                return;
            }
            let end = self.free_locked(s, word, EndReason::Expired, false, now_ms);
            bump(&self.counters.expirations);
            step.expired += 1;
            on_end(&end);
        });
        step
    }

    /// Incremental re-examination of live flows, e.g. against a new policy: visits the
    /// next `budget` slots from `*cursor` (advanced, wrapping round), asks `decide` about
    /// each flow from a consistent snapshot, and carries out its answer: a new verdict,
    /// or removal (reported to `on_end` after the flow is freed, with what `decide`
    /// attached). A flow that left or was reused meanwhile is left alone; setting a
    /// verdict waits for an update in progress (tens of ns), as removal does.
    pub fn revisit_step<T>(
        &self,
        cursor: &mut usize,
        budget: usize,
        now_ms: u64,
        mut decide: impl FnMut(&FlowRecord) -> Revisit<T>,
        mut on_end: impl FnMut(FlowEnd, T),
    ) {
        let total = self.n_slots();
        let budget = budget.min(total);
        let start = *cursor % total;
        *cursor = (start + budget) % total;
        self.occupied_slots(start, budget, |s| {
            let e = self.entry(s);
            let word = e.seq.load(Acquire);
            if word & (seq::OCCUPIED | seq::STRUCT) != seq::OCCUPIED {
                return;
            }
            let record = self.record(s, now_ms);
            fence(Acquire);
            let generation = word & !seq::WRITE;
            if e.seq.load(Relaxed) & !seq::WRITE != generation {
                return;
            }
            match decide(&record) {
                Revisit::Keep => {}
                Revisit::Verdict(verdict) => {
                    self.store_verdict(s, generation, verdict);
                }
                Revisit::Remove(with) => {
                    if let Some(end) = self.delete(s, generation, EndReason::Removed, false, now_ms) {
                        bump(&self.counters.removals);
                        on_end(end, with);
                    }
                }
            }
        });
    }

    /// Calls `f` with each slot in the `budget` slots from `start` (wrapping round) whose
    /// bucket marks it taken: the sweeps read one bucket header per 16 slots, and entries
    /// only where there are flows.
    fn occupied_slots(&self, start: usize, budget: usize, mut f: impl FnMut(usize)) {
        let total = self.n_slots();
        let (mut slot, mut scanned) = (start, 0);
        while scanned < budget {
            let (bucket, first) = (slot / LANES, slot % LANES);
            let count = (LANES - first).min(budget - scanned);
            let window = (((1u32 << count) - 1) << first) as u16;
            let mut occupied = !self.bucket(bucket).free() & window;
            while occupied != 0 {
                f(bucket * LANES + occupied.trailing_zeros() as usize);
                occupied &= occupied - 1;
            }
            scanned += count;
            slot = (slot + count) % total;
        }
    }

    /// Visit a consistent snapshot of every live flow (control-plane listings, tests).
    /// Not for the packet path: it reads the whole table.
    pub fn for_each_flow(&self, now_ms: u64, mut f: impl FnMut(&FlowRecord)) {
        for slot in 0..self.n_slots() {
            let e = self.entry(slot);
            let s1 = e.seq.load(Acquire);
            if s1 & (seq::OCCUPIED | seq::STRUCT) != seq::OCCUPIED {
                continue;
            }
            let record = self.record(slot, now_ms);
            fence(Acquire);
            if (e.seq.load(Relaxed) ^ s1) & !seq::WRITE == 0 {
                f(&record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_fits_cache_lines() {
        assert_eq!(core::mem::size_of::<FlowEntry>(), 64);
        assert_eq!(core::mem::align_of::<FlowEntry>(), 64);
        assert_eq!(core::mem::size_of::<Bucket>(), 64);
        assert_eq!(core::mem::size_of::<Group>(), 64 * 17, "a bucket and its entries, whole cache lines");
    }

    #[test]
    fn bucket_choice_stays_in_range() {
        let table = FlowTable::new(&FlowTableConfig {
            capacity: 1000,
            hash_seed: Some(1),
            ..Default::default()
        })
        .unwrap();
        for h in [0u64, u64::MAX, 0x1234_5678_9abc_def0, 1 << 32] {
            let b1 = table.primary(h);
            let b2 = table.secondary(h, b1);
            assert!(b1 < table.groups.len() && b2 < table.groups.len() && b1 != b2);
        }
        assert_eq!(
            FlowTable::new(&FlowTableConfig {
                capacity: 0,
                ..Default::default()
            })
            .err(),
            Some(ConfigError::Capacity(0))
        );
    }
}
