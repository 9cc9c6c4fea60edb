//! A segment's MAC table: lock-free, fixed-size, shared by all workers.
//!
//! Each slot is one `AtomicU64` packing the 48-bit MAC, the port's local
//! index and a "static" bit, so a lookup is a few relaxed loads and learning
//! is a single store or compare-exchange: no lock, no allocation, no torn
//! entry. Bounded linear probing; when a probe window is full, learning
//! replaces the first non-static entry (a switch forgets, it never fails).

use std::sync::atomic::{AtomicU64, Ordering};

const MAC_BITS: u64 = (1 << 48) - 1;
const STATIC_BIT: u64 = 1 << 63;
const PROBE: usize = 8;

pub struct MacTable {
    slots: Box<[AtomicU64]>,
    mask: usize,
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
fn pack(mac: u64, port: u8, is_static: bool) -> u64 {
    // port + 1 so that an all-zero slot is always "empty".
    mac | ((port as u64 + 1) << 48) | if is_static { STATIC_BIT } else { 0 }
}

#[inline(always)]
fn port_of(entry: u64) -> u8 {
    (((entry >> 48) & 0x7fff) - 1) as u8
}

impl MacTable {
    /// A table with `capacity` slots (rounded up to a power of two).
    pub fn new(capacity: usize) -> MacTable {
        let n = capacity.next_power_of_two().max(PROBE);
        MacTable { slots: (0..n).map(|_| AtomicU64::new(0)).collect(), mask: n - 1 }
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
            if e & MAC_BITS == key {
                return Some(port_of(e));
            }
        }
        None
    }

    /// Records that `mac` lives behind `port`. Static entries are never moved by learning.
    #[inline]
    pub fn learn(&self, mac: &[u8; 6], port: u8) {
        self.insert(mac_u64(mac), port, false);
    }

    /// Binds `mac` to `port` permanently (configuration).
    pub fn bind_static(&self, mac: &[u8; 6], port: u8) {
        self.insert(mac_u64(mac), port, true);
    }

    fn insert(&self, key: u64, port: u8, is_static: bool) {
        let new = pack(key, port, is_static);
        let h = self.home(key);
        let mut victim = None;
        for i in 0..PROBE {
            let slot = &self.slots[(h + i) & self.mask];
            let mut e = slot.load(Ordering::Relaxed);
            loop {
                if e == 0 {
                    match slot.compare_exchange(0, new, Ordering::Relaxed, Ordering::Relaxed) {
                        Ok(_) => return,
                        Err(now) => e = now, // another worker took it: re-examine
                    }
                    continue;
                }
                if e & MAC_BITS == key {
                    if e != new && (is_static || e & STATIC_BIT == 0) {
                        slot.store(new, Ordering::Relaxed);
                    }
                    return;
                }
                break;
            }
            if victim.is_none() && e & STATIC_BIT == 0 {
                victim = Some(slot);
            }
        }
        if let Some(slot) = victim {
            slot.store(new, Ordering::Relaxed);
        }
    }

    /// Learned (non-static) entries, for carrying them into a new policy generation.
    pub fn learned(&self) -> impl Iterator<Item = ([u8; 6], u8)> + '_ {
        self.slots.iter().filter_map(move |s| {
            let e = s.load(Ordering::Relaxed);
            (e != 0 && e & STATIC_BIT == 0).then(|| {
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
