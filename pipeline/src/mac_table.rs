//! A segment's MAC table: lock-free, fixed-size, shared by all workers.
//!
//! Each slot is one `AtomicU64` packing the 48-bit MAC, the port's local index, when it
//! was last seen (a coarse stamp) and a "static" bit, so a lookup is a few relaxed loads
//! and learning is a single store or compare-exchange: no lock, no allocation, no torn
//! entry. Bounded linear probing; when a probe window is full, learning replaces the
//! first non-static entry (a switch forgets, it never fails).
//!
//! Each port may have a cap on the MACs learned behind it: a flood of random source MACs
//! stops there (the frames are dropped as `mac_limit`), instead of pushing everyone
//! else's entries out, after which their unicast would be flooded to every port (the
//! classic way to sniff a switch). Learned entries age: [`MacTable::tick`], called about
//! once a second by the main lcore, advances the stamp, removes entries unseen for
//! [`AGEING_S`] and recounts each port's entries.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

const MAC_BITS: u64 = (1 << 48) - 1;
/// Local port index + 1 (0: no port: an empty slot or a tombstone).
const PORT_SHIFT: u32 = 48;
const PORT_BITS: u64 = 0x7f << PORT_SHIFT;
/// The coarse time the entry was last seen (see [`STAMP_S`]).
const STAMP_SHIFT: u32 = 55;
const STATIC_BIT: u64 = 1 << 63;
/// A removed entry: lookups probe past it, learning reuses it.
const TOMBSTONE: u64 = 1 << 62; // no port bits: never a live entry, never empty
const PROBE: usize = 8;
/// Seconds per stamp unit.
const STAMP_S: u64 = 4;
/// A learned entry unseen this long is removed (Linux bridges' default `ageing_time`).
pub const AGEING_S: u64 = 300;
/// Local port indexes a table counts entries for (a runtime's ports).
const PORTS: usize = 64;

pub struct MacTable {
    slots: Box<[AtomicU64]>,
    mask: usize,
    /// The current stamp (seconds / [`STAMP_S`], wrapping), set by [`MacTable::tick`].
    stamp: AtomicU8,
    /// Learned entries per local port.
    learned: Box<[AtomicU32; PORTS]>,
}

#[inline(always)]
pub fn mac_u64(mac: &[u8; 6]) -> u64 {
    u64::from_be_bytes([0, 0, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
}

/// Whether a MAC is a unicast address (group bit clear).
#[inline(always)]
pub fn is_unicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 == 0
}

#[inline(always)]
fn pack(mac: u64, port: u8, stamp: u8, is_static: bool) -> u64 {
    // port + 1 so that an all-zero slot is always "empty".
    mac | ((port as u64 + 1) << PORT_SHIFT) | ((stamp as u64 & 0x7f) << STAMP_SHIFT) | if is_static { STATIC_BIT } else { 0 }
}

#[inline(always)]
fn port_of(entry: u64) -> u8 {
    (((entry & PORT_BITS) >> PORT_SHIFT) - 1) as u8
}

#[inline(always)]
fn is_live(entry: u64) -> bool {
    entry & PORT_BITS != 0
}

/// The monotonic clock in seconds (the tables' clock).
fn now_s() -> u64 {
    rampart_shm::monotonic_ns() / 1_000_000_000
}

#[inline]
fn stamp_of(now_s: u64) -> u8 {
    ((now_s / STAMP_S) & 0x7f) as u8
}

/// Why learning a MAC was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtCap;

impl MacTable {
    /// A table with `capacity` slots (rounded up to a power of two), its clock at now.
    pub fn new(capacity: usize) -> MacTable {
        MacTable::new_at(capacity, now_s())
    }

    /// A table whose clock starts at `now_s` (see [`MacTable::tick_at`]).
    pub fn new_at(capacity: usize, now_s: u64) -> MacTable {
        let n = capacity.next_power_of_two().max(PROBE);
        MacTable {
            slots: (0..n).map(|_| AtomicU64::new(0)).collect(),
            mask: n - 1,
            stamp: AtomicU8::new(stamp_of(now_s)),
            learned: Box::new(std::array::from_fn(|_| AtomicU32::new(0))),
        }
    }

    #[inline(always)]
    fn home(&self, mac: u64) -> usize {
        (mac.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize & self.mask
    }

    /// The port (local index) a MAC was seen on, if known.
    #[inline]
    pub fn lookup(&self, mac: &[u8; 6]) -> Option<u8> {
        let key = mac_u64(mac);
        let h = self.home(key);
        for i in 0..PROBE {
            // Relaxed: entries are self-contained values; nothing else is published with them.
            let e = self.slots[(h + i) & self.mask].load(Ordering::Relaxed);
            if e == 0 {
                return None;
            }
            if e & MAC_BITS == key && is_live(e) {
                return Some(port_of(e));
            }
        }
        None
    }

    /// Records that `mac` lives behind `port`. Static entries are never moved by learning.
    #[inline]
    pub fn learn(&self, mac: &[u8; 6], port: u8) {
        let _ = self.learn_capped(mac, port, 0);
    }

    /// [`MacTable::learn`], refused when `mac` is new behind `port` and the port already
    /// has `cap` learned entries (0: no cap).
    #[inline]
    pub fn learn_capped(&self, mac: &[u8; 6], port: u8, cap: u32) -> Result<(), AtCap> {
        self.insert(mac_u64(mac), port, false, cap)
    }

    /// Binds `mac` to `port` permanently (configuration).
    pub fn bind_static(&self, mac: &[u8; 6], port: u8) {
        let _ = self.insert(mac_u64(mac), port, true, 0);
    }

    fn count(&self, port: u8, delta: i32) {
        if let Some(c) = self.learned.get(port as usize) {
            // Saturating: a concurrent recount may have already dropped the entry.
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_add_signed(delta)));
        }
    }

    fn at_cap(&self, port: u8, cap: u32) -> bool {
        cap != 0 && self.learned.get(port as usize).is_some_and(|c| c.load(Ordering::Relaxed) >= cap)
    }

    fn insert(&self, key: u64, port: u8, is_static: bool, cap: u32) -> Result<(), AtCap> {
        let new = pack(key, port, if is_static { 0 } else { self.stamp.load(Ordering::Relaxed) }, is_static);
        let h = self.home(key);
        // The key's slot, if it is in the window; else the first free slot and the first
        // non-static victim.
        let (mut free, mut victim) = (None, None);
        for i in 0..PROBE {
            let slot = &self.slots[(h + i) & self.mask];
            let e = slot.load(Ordering::Relaxed);
            if is_live(e) && e & MAC_BITS == key {
                if e == new || (!is_static && e & STATIC_BIT != 0) {
                    return Ok(()); // known here (or bound): nothing to do
                }
                let moved = port_of(e) != port;
                if moved && !is_static && self.at_cap(port, cap) {
                    return Err(AtCap);
                }
                if slot.compare_exchange(e, new, Ordering::Relaxed, Ordering::Relaxed).is_ok() && (moved || is_static) {
                    if e & STATIC_BIT == 0 {
                        self.count(port_of(e), -1);
                    }
                    if !is_static {
                        self.count(port, 1);
                    }
                }
                return Ok(());
            }
            if !is_live(e) {
                free.get_or_insert(slot);
                if e == 0 {
                    break; // the key cannot be further on
                }
            } else if victim.is_none() && e & STATIC_BIT == 0 {
                victim = Some(slot);
            }
        }
        if !is_static && self.at_cap(port, cap) {
            return Err(AtCap);
        }
        let Some(slot) = free.or(victim) else { return Ok(()) };
        let old = slot.swap(new, Ordering::Relaxed);
        if is_live(old) && old & STATIC_BIT == 0 {
            self.count(port_of(old), -1);
        }
        if !is_static {
            self.count(port, 1);
        }
        Ok(())
    }

    /// Learned entries behind local port `port`.
    pub fn learned_by(&self, port: u8) -> u32 {
        self.learned.get(port as usize).map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Advances the table's clock to now (the monotonic clock), removes learned entries
    /// unseen for [`AGEING_S`] and recounts each port's entries. The main lcore calls it
    /// about once a second; workers only read the stamp it sets.
    pub fn tick(&self) {
        self.tick_at(now_s());
    }

    /// [`MacTable::tick`] at `now_s`, seconds on the clock the table was made with.
    pub fn tick_at(&self, now_s: u64) {
        let stamp = stamp_of(now_s);
        self.stamp.store(stamp, Ordering::Relaxed);
        let max_age = (AGEING_S / STAMP_S) as u8;
        let mut counts = [0u32; PORTS];
        for slot in self.slots.iter() {
            let e = slot.load(Ordering::Relaxed);
            if !is_live(e) || e & STATIC_BIT != 0 {
                continue;
            }
            let age = stamp.wrapping_sub(((e >> STAMP_SHIFT) & 0x7f) as u8) & 0x7f;
            // Only if unchanged: a worker that refreshed it meanwhile keeps it.
            if age > max_age && slot.compare_exchange(e, TOMBSTONE, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                continue;
            }
            counts[port_of(e) as usize % PORTS] += 1;
        }
        for (c, n) in self.learned.iter().zip(counts) {
            c.store(n, Ordering::Relaxed);
        }
    }

    /// Learned (non-static) entries, for carrying them into a new policy generation.
    pub fn learned(&self) -> impl Iterator<Item = ([u8; 6], u8)> + '_ {
        self.slots.iter().filter_map(move |s| {
            let e = s.load(Ordering::Relaxed);
            (is_live(e) && e & STATIC_BIT == 0).then(|| {
                let b = (e & MAC_BITS).to_be_bytes();
                ([b[2], b[3], b[4], b[5], b[6], b[7]], port_of(e))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(i: u32) -> [u8; 6] {
        let b = i.to_be_bytes();
        [0x52, 0x54, b[0], b[1], b[2], b[3]]
    }

    #[test]
    fn learn_lookup_move() {
        let t = MacTable::new(64);
        assert_eq!(t.lookup(&mac(1)), None);
        t.learn(&mac(1), 3);
        assert_eq!(t.lookup(&mac(1)), Some(3));
        t.learn(&mac(1), 5);
        assert_eq!(t.lookup(&mac(1)), Some(5), "a MAC that moves is re-learned");
        t.learn(&mac(2), 0);
        assert_eq!(t.lookup(&mac(2)), Some(0), "port 0 is distinct from empty");
    }

    #[test]
    fn static_entries_survive_learning() {
        let t = MacTable::new(64);
        t.bind_static(&mac(7), 1);
        t.learn(&mac(7), 2);
        assert_eq!(t.lookup(&mac(7)), Some(1));
        assert_eq!(t.learned().count(), 0);
    }

    #[test]
    fn full_table_forgets_but_keeps_working() {
        let t = MacTable::new(8);
        for i in 0..100 {
            t.learn(&mac(i), (i % 7) as u8);
            assert_eq!(t.lookup(&mac(i)), Some((i % 7) as u8), "the newest entry is always found");
        }
    }

    #[test]
    fn a_port_at_its_cap_learns_no_more_and_others_keep_theirs() {
        let t = MacTable::new_at(4096, 0);
        for i in 0..10 {
            t.learn(&mac(1000 + i), 1);
        }
        for i in 0..16 {
            assert_eq!(t.learn_capped(&mac(i), 0, 16), Ok(()));
        }
        for i in 16..5000 {
            assert_eq!(t.learn_capped(&mac(i), 0, 16), Err(AtCap), "mac {i}");
        }
        assert_eq!((t.learned_by(0), t.learned_by(1)), (16, 10));
        assert_eq!(t.learn_capped(&mac(3), 0, 16), Ok(()), "a MAC it has is refreshed");
        assert_eq!(t.learn_capped(&mac(1000), 0, 16), Err(AtCap), "nor may it take one over at its cap");
        for i in 0..10 {
            assert_eq!(t.lookup(&mac(1000 + i)), Some(1), "the flood pushed out none of port 1's entries");
        }
        // Unseen for the ageing time: gone, and the port may learn again.
        t.tick_at(AGEING_S / 2);
        for i in 0..8 {
            t.learn(&mac(1000 + i), 1); // port 1 keeps using 8 of its MACs
        }
        t.tick_at(AGEING_S + 3 * STAMP_S);
        assert_eq!((t.learned_by(0), t.learned_by(1)), (0, 8));
        assert_eq!(t.lookup(&mac(3)), None);
        assert_eq!(t.lookup(&mac(1009)), None);
        assert_eq!(t.lookup(&mac(1007)), Some(1));
        assert_eq!(t.learn_capped(&mac(4999), 0, 16), Ok(()));
    }

    #[test]
    fn removed_entries_do_not_hide_those_probed_past_them() {
        // Eight slots, one probe window: every MAC shares it.
        let t = MacTable::new_at(8, 0);
        for i in 0..4 {
            t.learn(&mac(i), i as u8);
        }
        t.tick_at(0);
        // mac(0) and mac(1) are left to age, the others are seen again.
        t.tick_at(AGEING_S / 2);
        t.learn(&mac(2), 2);
        t.learn(&mac(3), 3);
        t.tick_at(AGEING_S + 3 * STAMP_S);
        assert_eq!((t.lookup(&mac(0)), t.lookup(&mac(1))), (None, None));
        assert_eq!((t.lookup(&mac(2)), t.lookup(&mac(3))), (Some(2), Some(3)));
        t.learn(&mac(3), 5);
        assert_eq!(t.lookup(&mac(3)), Some(5), "moved in place, not duplicated into a free slot");
        assert_eq!(t.learned().filter(|(m, _)| *m == mac(3)).count(), 1);
    }

    #[test]
    fn concurrent_learning_never_tears_entries() {
        let t = std::sync::Arc::new(MacTable::new(4096));
        let threads: Vec<_> = (0..4u8)
            .map(|w| {
                let t = t.clone();
                std::thread::spawn(move || {
                    for round in 0..2000u32 {
                        let m = mac(round % 500);
                        t.learn(&m, w);
                        if let Some(p) = t.lookup(&m) {
                            assert!(p < 4, "torn entry");
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|h| h.join().unwrap());
        for i in 0..500 {
            assert!(t.lookup(&mac(i)).is_some(), "mac {i} lost");
        }
    }
}
