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

use rampart_shm::DropReason;
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
        take(&self.tat, self.limit, now, units)
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

/// GCRA: takes `units` from the bucket whose theoretical arrival time is `tat`.
#[inline]
fn take(tat_cell: &AtomicU64, limit: Limit, now: u64, units: u64) -> bool {
    let tolerance = limit.ns(limit.burst);
    let cost = limit.ns(units);
    let mut tat = tat_cell.load(Ordering::Relaxed);
    loop {
        // Further ahead than any take leaves it: the clock stepped back.
        let base = if tat > now.saturating_add(tolerance) { now } else { tat.max(now) };
        let next = base.saturating_add(cost);
        if next > now.saturating_add(tolerance) && units > 0 {
            return false;
        }
        match tat_cell.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return true,
            Err(seen) => tat = seen,
        }
    }
}

/// Buckets for many keys (source or destination addresses) in a fixed table: a key's
/// bucket is the slot its hash picks; a key that finds another in its slot takes the slot
/// over with a full bucket (so a flood of distinct keys is bounded by the port's own
/// limits, not by this table).
pub struct RateTable {
    slots: Box<[RateSlot]>,
    limit: Limit,
}

#[derive(Default)]
struct RateSlot {
    /// The key's hash | 1 (0: empty).
    key: AtomicU64,
    tat: AtomicU64,
    /// When the key last went over its limit and was reported, ns + 1 (0: never).
    reported: AtomicU64,
}

/// How often one key going over its limit is reported (each report may block it).
const REPORT_EVERY_NS: u64 = 10_000_000_000;

impl RateTable {
    pub fn new(limit: Limit, slots: usize) -> RateTable {
        RateTable { slots: (0..slots.next_power_of_two()).map(|_| RateSlot::default()).collect(), limit }
    }

    fn slot(&self, key: u64) -> &RateSlot {
        let slot = &self.slots[(key >> 1) as usize & (self.slots.len() - 1)];
        if slot.key.load(Ordering::Relaxed) != key {
            slot.key.store(key, Ordering::Relaxed);
            slot.tat.store(0, Ordering::Relaxed);
            slot.reported.store(0, Ordering::Relaxed);
        }
        slot
    }

    /// Takes one from `key`'s bucket at `now` (ns).
    pub fn take(&self, key: u64, now: u64) -> bool {
        take(&self.slot(key).tat, self.limit, now, 1)
    }

    /// Whether `key`'s going over its limit at `now` should be reported: once per
    /// [`REPORT_EVERY_NS`] per key.
    pub fn report(&self, key: u64, now: u64) -> bool {
        let r = &self.slot(key).reported;
        let last = r.load(Ordering::Relaxed);
        (last == 0 || now + 1 >= last + REPORT_EVERY_NS) && r.compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }

    /// The limit's rate (reported with an over-limit source).
    pub fn rate(&self) -> u64 {
        self.limit.rate
    }
}

/// The key of an address in a zone for a [`RateTable`].
#[inline]
pub fn address_key(addr: &[u8; 16], zone: u16) -> u64 {
    let (hi, lo) = (u64::from_le_bytes(addr[..8].try_into().expect("8")), u64::from_le_bytes(addr[8..].try_into().expect("8")));
    let h = (hi ^ lo.rotate_left(29) ^ zone as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h ^ h >> 31) | 1
}

/// New flows/s limits, consulted only when a packet would create a flow (a flow-table
/// miss the policy allows): per port (by slot), per source and per destination address.
#[derive(Default)]
pub struct NewFlowLimits {
    pub ports: Vec<Option<Bucket>>,
    pub sources: Option<RateTable>,
    pub destinations: Option<RateTable>,
}

impl NewFlowLimits {
    /// Whether a new flow from `src` to `dst` (in `zone`) opened on port `slot` fits at
    /// `now_ms`; else the reason to drop its packet.
    #[inline]
    pub fn admit(&self, slot: usize, src: &[u8; 16], dst: &[u8; 16], zone: u16, now_ms: u64) -> Result<(), DropReason> {
        let now = now_ms.saturating_mul(1_000_000);
        if self.sources.as_ref().is_some_and(|t| !t.take(address_key(src, zone), now)) {
            return Err(DropReason::SourceRate);
        }
        if self.destinations.as_ref().is_some_and(|t| !t.take(address_key(dst, zone), now)) {
            return Err(DropReason::DestinationRate);
        }
        match self.ports.get(slot).and_then(Option::as_ref) {
            Some(b) if !b.take(now, 1) => Err(DropReason::NewFlowRate),
            _ => Ok(()),
        }
    }

    /// Whether a source that went over its new-flow limit should be reported now (see
    /// [`RateTable::report`]); with the limit's rate.
    pub fn report_source(&self, src: &[u8; 16], zone: u16, now_ms: u64) -> Option<u64> {
        let t = self.sources.as_ref()?;
        t.report(address_key(src, zone), now_ms.saturating_mul(1_000_000)).then(|| t.rate())
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
    fn new_flows_are_limited_per_source_destination_and_port() {
        let limit = Limit { rate: 10, burst: 5 };
        let limits = NewFlowLimits {
            ports: vec![None, Some(Bucket::new(Limit { rate: 100, burst: 8 }))],
            sources: Some(RateTable::new(limit, 1024)),
            destinations: Some(RateTable::new(Limit { rate: 10, burst: 6 }, 1024)),
        };
        let a = |i: u8| [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, i];
        // One source: its burst of 5, then refused; other sources are not.
        let from_one: Vec<_> = (0..8).map(|i| limits.admit(0, &a(1), &a(100 + i), 0, 1000)).collect();
        assert_eq!(from_one.iter().filter(|r| r.is_ok()).count(), 5);
        assert_eq!(from_one[7], Err(DropReason::SourceRate));
        assert_eq!(limits.admit(0, &a(2), &a(100), 0, 1000), Ok(()));
        // Many sources at one destination: its burst of 6.
        let to_one: Vec<_> = (10..20).map(|i| limits.admit(0, &a(i), &a(200), 0, 1000)).collect();
        assert_eq!(to_one.iter().filter(|r| r.is_ok()).count(), 6);
        assert_eq!(to_one[9], Err(DropReason::DestinationRate));
        // The port's own bucket (8) for new flows from many sources to many destinations.
        let port: Vec<_> = (30..50).map(|i| limits.admit(1, &a(i), &a(i + 100), 0, 1000)).collect();
        assert_eq!(port.iter().filter(|r| r.is_ok()).count(), 8);
        assert_eq!(port[19], Err(DropReason::NewFlowRate));
        // A second later the source may open new flows again; reports are rate-limited.
        assert_eq!(limits.admit(0, &a(1), &a(150), 0, 2000), Ok(()));
        assert_eq!(limits.report_source(&a(1), 0, 2000), Some(10));
        assert_eq!(limits.report_source(&a(1), 0, 3000), None, "once per 10 s");
        assert_eq!(limits.report_source(&a(1), 0, 12_001), Some(10));
        assert_eq!(limits.report_source(&a(1), 1, 3000), Some(10), "another zone: another source");
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
