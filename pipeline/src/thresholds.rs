//! `threshold` and `detection_filter` counts (see [`rampart_signatures::Threshold`]): one
//! table shared by every worker, lock-free, sized at build and never grown.
//!
//! A slot is two atomics: the key (a hash of the signature and the tracked addresses,
//! never 0) and the window (its first second, 32 bits, and its match count, 32 bits).
//! A count is a CAS loop on the window word, so concurrent matches on two workers are each
//! counted once. A key finds its slot within [`PROBE`] slots of its hash; when all of them
//! hold other keys, the one whose window began longest ago is taken over (its count
//! restarts: counted in [`Thresholds::takeovers`]). Windows are fixed: a match `seconds` or
//! more after its window's first match starts a new window.

use rampart_signatures::{Threshold, ThresholdKind, Track};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Slots looked at for a key.
const PROBE: usize = 4;

struct Slot {
    key: AtomicU64,
    window: AtomicU64,
}

/// The counts of one rule set's thresholded signatures.
pub struct Thresholds {
    /// A power of two of them.
    slots: Box<[Slot]>,
    takeovers: AtomicU64,
}

/// What a signature's threshold and detection filter make of one of its matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The match counts: its action applies (false: held back by `detection_filter`).
    pub matched: bool,
    /// Its alert is logged (false: held back by `threshold` or `detection_filter`).
    pub alert: bool,
}

impl Thresholds {
    /// Room for about `capacity` tracked keys (rounded up to a power of two).
    pub fn new(capacity: usize) -> Thresholds {
        let n = capacity.max(PROBE).next_power_of_two();
        Thresholds { slots: (0..n).map(|_| Slot { key: AtomicU64::new(0), window: AtomicU64::new(0) }).collect(), takeovers: AtomicU64::new(0) }
    }

    /// Forgets every count (a harness that replays inputs against one rule set).
    pub fn clear(&self) {
        for s in self.slots.iter() {
            s.key.store(0, Relaxed);
            s.window.store(0, Relaxed);
        }
        self.takeovers.store(0, Relaxed);
    }

    /// Windows restarted because their slot was taken by another key.
    pub fn takeovers(&self) -> u64 {
        self.takeovers.load(Relaxed)
    }

    /// Counts a match of signature `sig` (its `threshold` and `detection_filter`) from
    /// `src` to `dst` at `now_ms`.
    pub fn count(&self, sig: u32, threshold: Option<&Threshold>, filter: Option<&Threshold>, src: IpAddr, dst: IpAddr, now_ms: u64) -> Verdict {
        let now_s = (now_ms / 1000) as u32;
        let matched = filter.is_none_or(|f| self.bump(sig, 1, f, src, dst, now_s) > f.count as u64);
        let alert = matched
            && threshold.is_none_or(|t| {
                let n = self.bump(sig, 0, t, src, dst, now_s);
                match t.kind.unwrap_or(ThresholdKind::Limit) {
                    ThresholdKind::Limit => n <= t.count as u64,
                    ThresholdKind::Threshold => n.is_multiple_of(t.count as u64),
                    ThresholdKind::Both => n == t.count as u64,
                }
            });
        Verdict { matched, alert }
    }

    /// The match count of the current window of (`sig`, `which`, the tracked addresses),
    /// this match included.
    fn bump(&self, sig: u32, which: u8, t: &Threshold, src: IpAddr, dst: IpAddr, now_s: u32) -> u64 {
        let key = key(sig, which, t.track, src, dst);
        let slot = self.slot(key, now_s);
        let mut old = slot.window.load(Relaxed);
        loop {
            let (start, n) = ((old >> 32) as u32, old as u32);
            let (start, n) = if n == 0 || now_s.wrapping_sub(start) >= t.seconds { (now_s, 1) } else { (start, n.saturating_add(1)) };
            let new = (start as u64) << 32 | n as u64;
            match slot.window.compare_exchange_weak(old, new, Relaxed, Relaxed) {
                Ok(_) => return n as u64,
                Err(now) => old = now,
            }
        }
    }

    /// The slot of `key`: its own, a free one (claimed), or the stalest (taken over).
    fn slot(&self, key: u64, now_s: u32) -> &Slot {
        let mask = self.slots.len() - 1;
        let start = key as usize & mask;
        let mut stalest = (start, 0u32);
        for i in 0..PROBE {
            let s = &self.slots[(start + i) & mask];
            let k = match s.key.load(Relaxed) {
                0 => s.key.compare_exchange(0, key, Relaxed, Relaxed).err().unwrap_or(key),
                k => k,
            };
            if k == key {
                return s;
            }
            let age = now_s.wrapping_sub((s.window.load(Relaxed) >> 32) as u32);
            if age >= stalest.1 {
                stalest = ((start + i) & mask, age);
            }
        }
        let s = &self.slots[stalest.0];
        self.takeovers.fetch_add(1, Relaxed);
        s.key.store(key, Relaxed);
        s.window.store(0, Relaxed);
        s
    }
}

/// The key of a count: the signature, which of its two counts, what it tracks. Never 0.
fn key(sig: u32, which: u8, track: Track, src: IpAddr, dst: IpAddr) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (sig, which).hash(&mut h);
    match track {
        Track::BySrc => src.hash(&mut h),
        Track::ByDst => dst.hash(&mut h),
        Track::ByBoth => (src, dst).hash(&mut h),
        Track::ByRule => {}
    }
    h.finish() | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(kind: Option<ThresholdKind>, track: Track, count: u32, seconds: u32) -> Threshold {
        Threshold { kind, track, count, seconds }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    /// Alerts of `n` matches of signature 0 from A to B, one every `step_ms` from 0.
    fn alerts(th: &Thresholds, thr: Option<Threshold>, filter: Option<Threshold>, n: u64, step_ms: u64) -> Vec<(bool, bool)> {
        (0..n).map(|i| th.count(0, thr.as_ref(), filter.as_ref(), A, B, i * step_ms)).map(|v| (v.matched, v.alert)).collect()
    }

    #[test]
    fn limit_threshold_both_and_the_window() {
        let th = Thresholds::new(64);
        let got: Vec<bool> = alerts(&th, Some(t(Some(ThresholdKind::Limit), Track::BySrc, 2, 10)), None, 12, 1000).iter().map(|v| v.1).collect();
        // Two alerts per 10 s window: at 0 and 1 s, then at 10 and 11 s.
        assert_eq!(got, [true, true, false, false, false, false, false, false, false, false, true, true]);
        let th = Thresholds::new(64);
        let got: Vec<bool> = alerts(&th, Some(t(Some(ThresholdKind::Threshold), Track::ByRule, 3, 60)), None, 7, 10).iter().map(|v| v.1).collect();
        assert_eq!(got, [false, false, true, false, false, true, false], "every third match");
        let th = Thresholds::new(64);
        let got: Vec<bool> = alerts(&th, Some(t(Some(ThresholdKind::Both), Track::ByDst, 2, 60)), None, 5, 10).iter().map(|v| v.1).collect();
        assert_eq!(got, [false, true, false, false, false], "once, at the second match of the window");
        // Every match counts for the action under a threshold.
        assert!(alerts(&th, Some(t(Some(ThresholdKind::Both), Track::ByDst, 2, 60)), None, 5, 10).iter().all(|v| v.0));
    }

    #[test]
    fn detection_filter_holds_back_the_first_matches() {
        let th = Thresholds::new(64);
        let got = alerts(&th, None, Some(t(None, Track::BySrc, 2, 60)), 4, 10);
        assert_eq!(got, [(false, false), (false, false), (true, true), (true, true)]);
        // With a threshold as well: it counts only the matches the filter let through.
        let th = Thresholds::new(64);
        let got = alerts(&th, Some(t(Some(ThresholdKind::Limit), Track::BySrc, 1, 60)), Some(t(None, Track::BySrc, 1, 60)), 3, 10);
        assert_eq!(got, [(false, false), (true, true), (true, false)]);
    }

    #[test]
    fn tracks_keep_separate_counts() {
        let th = Thresholds::new(64);
        let limit = t(Some(ThresholdKind::Limit), Track::BySrc, 1, 60);
        assert!(th.count(0, Some(&limit), None, A, B, 0).alert);
        assert!(!th.count(0, Some(&limit), None, A, B, 1).alert);
        assert!(th.count(0, Some(&limit), None, B, A, 2).alert, "another source");
        assert!(th.count(1, Some(&limit), None, A, B, 3).alert, "another signature");
        let by_both = t(Some(ThresholdKind::Limit), Track::ByBoth, 1, 60);
        assert!(th.count(2, Some(&by_both), None, A, B, 0).alert);
        assert!(th.count(2, Some(&by_both), None, A, A, 0).alert, "another pair");
        assert!(!th.count(2, Some(&by_both), None, A, B, 0).alert);
    }

    #[test]
    fn a_full_probe_window_is_taken_over_never_overflows() {
        let th = Thresholds::new(4);
        let limit = t(Some(ThresholdKind::Limit), Track::ByRule, 1, 60);
        for sig in 0..100 {
            assert!(th.count(sig, Some(&limit), None, A, B, 0).alert, "a fresh key alerts");
        }
        assert!(th.takeovers() >= 96);
    }

    #[test]
    fn concurrent_matches_are_each_counted_once() {
        let th = std::sync::Arc::new(Thresholds::new(64));
        let limit = t(Some(ThresholdKind::Limit), Track::ByRule, 1000, 3600);
        let alerted: u64 = (0..4)
            .map(|_| {
                let th = th.clone();
                std::thread::spawn(move || (0..1000).filter(|_| th.count(7, Some(&limit), None, A, B, 5).alert).count() as u64)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .sum();
        assert_eq!(alerted, 1000, "4,000 matches, a limit of 1,000 per window");
    }
}
