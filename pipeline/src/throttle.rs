//! Token buckets (DESIGN.md §3 step 4): a guest port's packets/s and bytes/s, and its
//! floods (broadcast, multicast, unknown unicast: storm control), each limited by a
//! [`Bucket`] shared by the workers that poll the port.
//!
//! A bucket is the generic cell rate algorithm on one atomic: `tat`, the time (ns on the
//! flow clock) at which the bucket would be full again. Taking `n` units at `now` is
//! allowed while `tat` stays within `burst` units' worth of time ahead of `now`; a take
//! is one compare-exchange, so per-port limits are charged once per burst. A clock that
//! jumps forward refills at most to the burst; one that steps back (a `tat` further ahead
//! than any take can leave it) restarts the bucket at `now` instead of blocking for as
//! long as the step.

use std::sync::atomic::{AtomicU64, Ordering};

const NS: u128 = 1_000_000_000;

/// A rate (units per second) with a burst (units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub rate: u64,
    pub burst: u64,
}

impl Limit {
    /// The time `units` take at this rate, ns.
    #[inline]
    fn ns(self, units: u64) -> u64 {
        (units as u128 * NS / self.rate.max(1) as u128).min(u64::MAX as u128) as u64
    }

    /// The units that `ns` of time buy at this rate.
    #[inline]
    fn units(self, ns: u64) -> u64 {
        (ns as u128 * self.rate as u128 / NS).min(u64::MAX as u128) as u64
    }
}

/// One token bucket (see the module docs).
pub struct Bucket {
    limit: Limit,
    tat: AtomicU64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(limit: Limit) -> Bucket {
        Bucket { limit, tat: AtomicU64::new(0) }
    }

    /// How many units are available at `now` (ns).
    #[inline]
    pub fn available(&self, now: u64) -> u64 {
        let tolerance = self.limit.ns(self.limit.burst);
        let tat = self.tat.load(Ordering::Relaxed);
        let base = if tat > now.saturating_add(tolerance) { now } else { tat.max(now) };
        self.limit.units(now.saturating_add(tolerance).saturating_sub(base))
    }

    /// Takes `units` if they are available at `now` (ns); false (nothing taken) if not.
    #[inline]
    pub fn take(&self, now: u64, units: u64) -> bool {
        let tolerance = self.limit.ns(self.limit.burst);
        let cost = self.limit.ns(units);
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            // Further ahead than any take leaves it: the clock stepped back.
            let base = if tat > now.saturating_add(tolerance) { now } else { tat.max(now) };
            let next = base.saturating_add(cost);
            if next > now.saturating_add(tolerance) && units > 0 {
                return false;
            }
            match self.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => tat = seen,
            }
        }
    }

    /// Takes as many of `want` as are available at `now` (at most `want`); returns them.
    #[inline]
    pub fn take_up_to(&self, now: u64, want: u64) -> u64 {
        loop {
            let n = self.available(now).min(want);
            if n == 0 || self.take(now, n) {
                return n;
            }
        }
    }

    /// Gives back `units` taken by [`Bucket::take`] (a take that turned out not to be used).
    #[inline]
    pub fn give_back(&self, units: u64) {
        let cost = self.limit.ns(units);
        let _ = self.tat.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(t.saturating_sub(cost)));
    }
}

/// A port's limits: packets/s and bytes/s of all it sends, packets/s of its floods.
#[derive(Default)]
pub struct PortLimits {
    pub packets: Option<Bucket>,
    pub bytes: Option<Bucket>,
    pub floods: Option<Bucket>,
}

impl PortLimits {
    /// Whether the port has a packet or byte limit.
    #[inline(always)]
    pub fn limits_traffic(&self) -> bool {
        self.packets.is_some() || self.bytes.is_some()
    }

    /// How many of a burst's frames (`lens`, in order) the packet and byte buckets admit
    /// at `now` (ns): the longest prefix both have room for, charged at once. Frames are
    /// admitted whole or not at all.
    pub fn admit(&self, now: u64, lens: &[u32]) -> usize {
        loop {
            let mut k = lens.len();
            if let Some(b) = &self.bytes {
                let room = b.available(now);
                let mut sum = 0u64;
                k = lens.iter().take_while(|&&l| {
                    sum += l as u64;
                    sum <= room
                }).count();
            }
            if let Some(p) = &self.packets {
                k = k.min(p.available(now) as usize);
            }
            if k == 0 {
                return 0;
            }
            let bytes: u64 = lens[..k].iter().map(|&l| l as u64).sum();
            // Another worker of the same port may have taken the room meanwhile: retry.
            if !self.packets.as_ref().is_none_or(|p| p.take(now, k as u64)) {
                continue;
            }
            match &self.bytes {
                Some(b) if !b.take(now, bytes) => {
                    if let Some(p) = &self.packets {
                        p.give_back(k as u64);
                    }
                }
                _ => return k,
            }
        }
    }

    /// Whether one more flooded frame fits the port's flood limit at `now` (ns).
    #[inline]
    pub fn admit_flood(&self, now: u64) -> bool {
        self.floods.as_ref().is_none_or(|f| f.take(now, 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const HOUR: u64 = 3_600_000 * MS;

    #[test]
    fn a_full_bucket_gives_its_burst_then_the_rate() {
        let b = Bucket::new(Limit { rate: 1000, burst: 50 });
        let t0 = 10 * MS;
        assert_eq!(b.take_up_to(t0, 200), 50, "the burst at once");
        assert_eq!(b.take_up_to(t0, 200), 0);
        assert_eq!(b.take_up_to(t0 + 10 * MS, 200), 10, "1000/s: 10 in 10 ms");
        assert!(!b.take(t0 + 10 * MS, 1));
        assert!(b.take(t0 + 11 * MS, 1));
        // A second later: full again, never more than the burst.
        assert_eq!(b.available(t0 + 1011 * MS), 50);
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        let b = Bucket::new(Limit { rate: 250_000, burst: 32 });
        // Bursts of 32 every 10 µs (3.2 M/s offered) for one second.
        let taken: u64 = (0..100_000u64).map(|i| b.take_up_to(i * 10_000, 32)).sum();
        assert!((250_000..=250_000 + 32).contains(&taken), "{taken}");
    }

    #[test]
    fn a_clock_that_jumps_forward_by_hours_or_steps_back() {
        let b = Bucket::new(Limit { rate: 100, burst: 10 });
        assert_eq!(b.take_up_to(HOUR, 1000), 10);
        // Hours later: the burst, not hours' worth of tokens.
        assert_eq!(b.take_up_to(5 * HOUR, 1000), 10);
        // The clock steps back by hours: the bucket restarts instead of blocking for hours.
        assert_eq!(b.take_up_to(HOUR, 1000), 10);
        assert_eq!(b.take_up_to(HOUR + 100 * MS, 1000), 10);
    }

    #[test]
    fn a_burst_is_admitted_as_a_prefix_that_fits_both_limits() {
        let limits = PortLimits {
            packets: Some(Bucket::new(Limit { rate: 1000, burst: 5 })),
            bytes: Some(Bucket::new(Limit { rate: 100_000, burst: 3000 })),
            floods: None,
        };
        assert!(limits.limits_traffic());
        // 1500-byte frames: the byte bucket's 3000 admit two (of the packet bucket's 5).
        assert_eq!(limits.admit(MS, &[1500; 8]), 2);
        assert_eq!(limits.admit(MS, &[60; 8]), 0, "no bytes left");
        // 10 ms later: 1000 bytes' worth, and the packet bucket full again (5) decides.
        assert_eq!(limits.admit(11 * MS, &[60; 32]), 5);
        assert_eq!(limits.admit(11 * MS, &[60; 8]), 0, "no packets left");
        assert_eq!(limits.bytes.as_ref().unwrap().available(11 * MS), 700, "bytes charged only for admitted frames");
        let none = PortLimits::default();
        assert_eq!(none.admit(0, &[1500; 32]), 32);
        assert!(none.admit_flood(0));
    }

    #[test]
    fn floods_have_their_own_bucket() {
        let limits = PortLimits { floods: Some(Bucket::new(Limit { rate: 10, burst: 3 })), ..Default::default() };
        assert!(!limits.limits_traffic());
        assert_eq!((0..10).filter(|_| limits.admit_flood(MS)).count(), 3);
        assert!(limits.admit_flood(MS + 100 * MS));
    }

    #[test]
    fn concurrent_takes_never_exceed_the_bucket() {
        let b = std::sync::Arc::new(Bucket::new(Limit { rate: 1, burst: 1000 }));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || (0..1000).map(|_| b.take_up_to(MS, 3)).sum::<u64>())
            })
            .collect();
        let total: u64 = threads.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 1000);
    }
}
