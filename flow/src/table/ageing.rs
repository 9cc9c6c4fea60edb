//! Ending flows: incremental expiry with per-state timeouts, removal on request, the
//! re-examination of live flows (e.g. after a policy swap), listings of every flow (whole,
//! or a page at a time from a cursor), and the freeing of a slot that all of them (and
//! eviction, and a reopening SYN) share.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use rampart_packet::{Direction, FlowKey};

use super::{age_ms, bump, Backoff, FlowHit, FlowTable, INSERT_ROUNDS};
use crate::entry::{flag, seq, Info, PackedKey, LANES};
use crate::{EndReason, FlowEnd, FlowRecord};

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

/// Result of one [`FlowTable::expire_step`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireStep {
    /// Slots looked at.
    pub scanned: usize,
    /// Flows expired (and reported).
    pub expired: usize,
}

impl FlowTable {
    // ---------------------------------------------------------------- removal

    /// Free `slot` if it still holds `generation`, waiting for an update in progress.
    /// `keep_live`: the caller takes over the flow's unit of capacity.
    pub(super) fn delete(
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

    /// A consistent copy of the flow in `slot` and its generation, read without a lock
    /// (`None` if the slot holds no flow or changed meanwhile).
    fn snapshot(&self, slot: usize, now_ms: u64) -> Option<(FlowRecord, u32)> {
        self.read_validated(slot, |_| Some(self.record(slot, now_ms)))
    }

    /// Read the flow in `slot`: held exclusively, or inside [`Self::read_validated`].
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
    pub(super) fn free_locked(
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
            let Some((record, generation)) = self.snapshot(s, now_ms) else {
                return;
            };
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

    /// A listing a page at a time (`rampartctl flows`): visits up to `max` slots from
    /// slot `cursor` on (towards the end, never wrapping round) and calls `f` with a
    /// consistent snapshot of each live flow there. Left out: free slots, slots being
    /// claimed or freed, and flows idle past their state's timeout (the next ageing pass
    /// ends them; Linux's conntrack listings skip them too). Returns the slot to continue
    /// from, or `None` once the walk has reached the end of the table (or `cursor` is past
    /// it). A slot holds at most one flow, so `f` runs at most `max` times; `max` 0
    /// visits nothing and returns `cursor`.
    ///
    /// Read-only and wait-free: it takes no lock and never stalls a worker. A walk from 0
    /// to `None` lists each flow that stays in the table meanwhile exactly once; flows that
    /// start or end during the walk may or may not be listed.
    pub fn for_each_flow_from(
        &self,
        cursor: usize,
        max: usize,
        now_ms: u64,
        mut f: impl FnMut(&FlowRecord),
    ) -> Option<usize> {
        let total = self.n_slots();
        let start = cursor.min(total);
        let end = start + max.min(total - start);
        let now32 = now_ms as u32;
        self.occupied_slots(start, end - start, |s| {
            let live = self.read_validated(s, |e| {
                let expired = self.expired(e.info.load(Relaxed), e.last_ms.load(Relaxed), now32);
                (!expired).then(|| self.record(s, now_ms))
            });
            if let Some((record, _)) = live {
                f(&record);
            }
        });
        (end < total).then_some(end)
    }

    /// Visit a consistent snapshot of every live flow (control-plane listings, tests).
    /// Not for the packet path: it reads the whole table.
    pub fn for_each_flow(&self, now_ms: u64, mut f: impl FnMut(&FlowRecord)) {
        for slot in 0..self.n_slots() {
            if let Some((record, _)) = self.snapshot(slot, now_ms) {
                f(&record);
            }
        }
    }
}
