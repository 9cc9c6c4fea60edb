//! The shared flow table: the [`FlowTable`] type, its construction, memory layout,
//! configuration and counters, and the validated (seqlock) read of a slot that every
//! reader uses. The rest is split by job: `lookup.rs` finds flows (key preparation,
//! prefetch stages, single and bulk lookups), `track.rs` updates a found flow per packet,
//! `insert.rs` creates flows (quotas, slot choice, the table-full policy and eviction),
//! and `ageing.rs` ends them (expiry, removal, revisits, listings).
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

mod ageing;
mod insert;
mod lookup;
mod track;

pub use ageing::{ExpireStep, Revisit};
pub use insert::{InsertError, Inserted, NewFlow};
pub use lookup::{FlowHit, Prepared, Related};
pub use track::{PacketInfo, Stale, Tracked};

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use rampart_packet::FlowKey;

use crate::entry::{seq, Bucket, FlowEntry, Group, PackedKey, V6Addrs, LANES};
use crate::{FlowState, FlowTableConfig, FullPolicy, Timeouts};

use Ordering::{Acquire, Relaxed};

/// Largest supported capacity (slot indices stay far from `u32::MAX`).
pub const MAX_CAPACITY: u32 = 1 << 28;
/// Rounds of "found an entry but it vanished before we could use it" before giving up.
const INSERT_ROUNDS: usize = 8;

/// Configuration errors.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `capacity` out of range.
    #[error("flow table capacity {0} is out of range: use 1 to {MAX_CAPACITY} flows")]
    Capacity(u32),
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
            // MADV_HUGEPAGE only changes how the kernel backs those pages, never their
            // contents or validity; an error (THP unavailable) is harmless and ignored.
            // SAFETY: [start, end) lies inside the `len` bytes of capacity that `ptr`
            // heads, owned by the caller's Vec and not yet initialised or shared.
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
    // SSE is in the x86-64 baseline target features. A prefetch never dereferences in
    // the language sense and cannot fault; the pointer comes from a live reference anyway.
    // SAFETY: `_mm_prefetch` needs only SSE (always present) and is a hint that cannot fault.
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

    /// The seqlock read of slot `slot`, shared by every reader that holds no lock (the
    /// hit path and the snapshots of ageing and listings): `read` runs between a load of
    /// the sequence word and its re-check, and gives what it read (`None` to give up, e.g.
    /// another key). Returns that and the generation it belongs to, or `None` if the slot
    /// is free, being claimed or freed, or changed generation meanwhile. An update under
    /// `WRITE` does not count: it never changes the key, and each field is one atomic, so
    /// `read` sees at worst some counters from before and some from after one packet.
    /// Wait-free. Always inlined: it is on the hit path, and `read` is inlined into it.
    #[inline(always)]
    fn read_validated<R>(
        &self,
        slot: usize,
        read: impl FnOnce(&FlowEntry) -> Option<R>,
    ) -> Option<(R, u32)> {
        let e = self.entry(slot);
        // Acquire: pairs with the Release store that published this generation, so the
        // fields `read` loads are at least as new as the claim that wrote them.
        let s1 = e.seq.load(Acquire);
        if s1 & (seq::OCCUPIED | seq::STRUCT) != seq::OCCUPIED {
            return None;
        }
        let value = read(e)?;
        // Acquire fence: if any load in `read` saw a write made after a claimer/freer took
        // STRUCT (they issue a Release fence after taking it), the re-load below sees
        // STRUCT or a later generation.
        fence(Acquire);
        let s2 = e.seq.load(Relaxed);
        if (s1 ^ s2) & !seq::WRITE != 0 {
            return None;
        }
        Some((value, s1 & !seq::WRITE))
    }

    /// Whether the flow [`FlowHit::flow_id`] names is still in the table (not freed,
    /// its slot not claimed by another flow since). One load; wait-free.
    pub fn holds(&self, flow_id: u64) -> bool {
        let slot = flow_id as u32 as usize;
        if slot >= self.slots() {
            return false;
        }
        // Acquire: a free or re-claim that published a new generation is seen with it.
        let s = self.entry(slot).seq.load(Acquire);
        s & !seq::WRITE == (flow_id >> 32) as u32 && s & (seq::OCCUPIED | seq::STRUCT) == seq::OCCUPIED
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

