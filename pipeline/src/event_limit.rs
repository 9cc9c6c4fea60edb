//! Event volume is a bounded per-guest resource: per (port, drop reason) a worker writes at
//! most a configured number of detailed drop records a second into its event ring; what
//! it holds back is counted, and once a second ([`EventLimiter::flush`]) one summary record
//! per (port, reason) that held any back carries the cumulative count of held-back records
//! (so a summary lost to a full ring loses no count: the next one has it). A guest
//! replaying malformed frames at full speed thus costs the log `rate` records a second per
//! reason, not millions, and every drop stays accounted: detailed records plus the last
//! summary's total equal the drop counters.
//!
//! Token buckets in milli-tokens on the flow clock (ms); one per (port slot, reason index),
//! preallocated per worker; a bucket is touched only when a drop is logged (cold path).

use rampart_shm::layout::{EventRing, MAX_DROP_REASONS, MAX_PORTS};
use rampart_shm::ring::EventKind;
use rampart_shm::{EventRecord, WorkerCounters};

/// Default detailed drop records per second per port and reason.
pub const DEFAULT_RATE: u32 = 10;
/// How often summaries are written, ms.
pub const SUMMARY_MS: u64 = 1000;

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Milli-tokens (1000 = one record); `u64::MAX` = never used (full on first use).
    tokens: u64,
    last_ms: u64,
    /// Records held back since the dataplane started (cumulative).
    held: u64,
    dirty: bool,
}

/// One worker's drop-record limiter.
pub struct EventLimiter {
    buckets: Box<[Bucket]>,
    /// Buckets that held records back since their last summary.
    dirty: Vec<u16>,
    last_flush_ms: u64,
}

impl Default for EventLimiter {
    fn default() -> EventLimiter {
        let n = MAX_PORTS * MAX_DROP_REASONS;
        let fresh = Bucket { tokens: u64::MAX, ..Default::default() };
        EventLimiter { buckets: vec![fresh; n].into_boxed_slice(), dirty: Vec::with_capacity(n), last_flush_ms: 0 }
    }
}

impl EventLimiter {
    /// Whether a detailed record for (`slot`, `reason`) may be written now under `rate`
    /// records a second (0: none); if not, it is counted as held back.
    pub fn admit(&mut self, slot: usize, reason: usize, rate: u32, now_ms: u64) -> bool {
        let i = slot.min(MAX_PORTS - 1) * MAX_DROP_REASONS + reason.min(MAX_DROP_REASONS - 1);
        let b = &mut self.buckets[i];
        let full = rate as u64 * 1000;
        b.tokens = match b.tokens {
            u64::MAX => full,
            // A clock that steps back refills nothing.
            t => t.saturating_add(now_ms.saturating_sub(b.last_ms).saturating_mul(rate as u64)).min(full),
        };
        b.last_ms = now_ms;
        if b.tokens >= 1000 {
            b.tokens -= 1000;
            return true;
        }
        b.held += 1;
        if !b.dirty {
            b.dirty = true;
            self.dirty.push(i as u16);
        }
        false
    }

    /// Once [`SUMMARY_MS`] has passed since the last time: one summary record per (port,
    /// reason) that held records back, with the cumulative count. A summary that does not
    /// fit in the ring is counted as a lost event and tried again next time.
    #[inline]
    pub fn flush(&mut self, events: &EventRing, counters: &WorkerCounters, now_ms: u64) {
        if now_ms >= self.last_flush_ms + SUMMARY_MS && !self.dirty.is_empty() {
            self.write_summaries(events, counters, now_ms);
        }
    }

    #[cold]
    fn write_summaries(&mut self, events: &EventRing, counters: &WorkerCounters, now_ms: u64) {
        self.last_flush_ms = now_ms;
        let tsc = crate::rdtsc();
        let EventLimiter { buckets, dirty, .. } = self;
        dirty.retain(|&i| {
            let b = &mut buckets[i as usize];
            let rec = EventRecord {
                tsc,
                kind: EventKind::DropSummary as u16,
                port: (i as usize / MAX_DROP_REASONS) as u16,
                code: (i as usize % MAX_DROP_REASONS) as u16,
                value: b.held,
                ..Default::default()
            };
            if events.push(rec) {
                b.dirty = false;
                false
            } else {
                counters.totals.events_lost.add(1);
                true
            }
        });
    }

    /// Records held back for (`slot`, `reason`) since the start (for tests).
    pub fn held(&self, slot: usize, reason: usize) -> u64 {
        self.buckets[slot * MAX_DROP_REASONS + reason].held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_a_clock_that_jumps_or_steps_back() {
        let mut l = EventLimiter::default();
        // A full bucket: `rate` records at once, then one per 1000/rate ms.
        let admitted = (0..100).filter(|_| l.admit(3, 7, 10, 5_000)).count();
        assert_eq!(admitted, 10);
        assert_eq!(l.held(3, 7), 90);
        assert!(!l.admit(3, 7, 10, 5_050), "half a token");
        assert!(l.admit(3, 7, 10, 5_100), "100 ms: one token");
        assert!(!l.admit(3, 7, 10, 5_100));
        // Other (port, reason) pairs have their own bucket.
        assert!(l.admit(4, 7, 10, 5_100) && l.admit(3, 8, 10, 5_100));
        // Hours later: full again, never more than the burst.
        assert_eq!((0..100).filter(|_| l.admit(3, 7, 10, 5_100 + 7_200_000)).count(), 10);
        // The clock steps back: no refill, no panic.
        assert!(!l.admit(3, 7, 10, 1_000));
        assert!(!l.admit(3, 7, 10, 1_050));
        // Rate 0: nothing detailed, everything counted.
        assert!(!(0..5).any(|_| l.admit(9, 1, 0, 1)));
        assert_eq!(l.held(9, 1), 5);
    }

    #[test]
    fn summaries_carry_cumulative_counts_and_survive_a_full_ring() {
        let dir = std::env::temp_dir().join(format!("rampart-event-limit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let segment = rampart_shm::Segment::create(&dir.join("shm"), 0o600, 1, 1_000_000_000, 0).unwrap();
        let (ring, counters) = (&segment.events[0], &segment.workers[0]);
        let mut l = EventLimiter::default();
        for _ in 0..25 {
            l.admit(2, 5, 10, 1_000); // 10 detailed, 15 held back
        }
        // A full ring: the summary cannot be written and stays pending.
        while ring.push(EventRecord::default()) {}
        l.flush(ring, counters, 2_000);
        assert_eq!(counters.totals.events_lost.get(), 1);
        while ring.pop().is_some() {}
        for _ in 0..15 {
            l.admit(2, 5, 10, 2_000); // refilled: 10 detailed, 5 held back
        }
        l.flush(ring, counters, 2_500);
        assert!(ring.pop().is_none(), "at most one round of summaries a second");
        l.flush(ring, counters, 3_000);
        let (rec, _) = ring.pop().expect("the summary");
        assert_eq!((rec.kind, rec.port, rec.code, rec.value), (EventKind::DropSummary as u16, 2, 5, 20), "cumulative: the lost summary's 15, then 5 more");
        l.flush(ring, counters, 4_000);
        assert!(ring.pop().is_none(), "nothing new held back: no summary");
        drop(segment);
        let _ = std::fs::remove_dir_all(dir);
    }
}
