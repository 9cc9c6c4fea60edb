//! Flowbits (see [`rampart_signatures::engine`]): the bits each inspected flow carries
//! from one packet to the next, in one table per rule set shared by every worker (a
//! flow's two directions may arrive on two workers), sized at build and never grown.
//!
//! An entry is a key — the flow's id in the flow table ([`FlowHit::flow_id`]: slot and
//! generation, so a later flow in the same slot never sees an earlier one's bits) — and
//! the flow's [`FlowBits`]. A flow gets an entry the first time a match sets a bit; until
//! then it has no bits. Reads and bit updates are lock-free (an update is an atomic
//! `or`/`and` per word of what the packet changed, so the two directions' updates
//! compose); taking an entry locks its bucket of [`WAYS`] (once per flow), and takes a
//! free entry or one whose flow has left the flow table. When all are held by live
//! flows, the flow gets no entry: its bits stay unset (counted by the caller as
//! `flowbits_refused`).

use rampart_flow::{FlowHit, FlowTable};
use rampart_signatures::engine::{FlowBits, FlowBitsStore};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::{Acquire, Relaxed, Release}};

/// Entries of a bucket: where a flow's entry may be.
const WAYS: usize = 8;
const WORDS: usize = std::mem::size_of::<FlowBits>() / 8;

#[derive(Default)]
struct Entry {
    /// The flow id; 0: free.
    key: AtomicU64,
    bits: [AtomicU64; WORDS],
}

#[derive(Default)]
struct Bucket {
    /// Held while an entry of the bucket is taken.
    lock: AtomicU32,
    entries: [Entry; WAYS],
}

/// The flowbits of one rule set's flows.
pub struct FlowbitTable {
    /// A power of two of them.
    buckets: Box<[Bucket]>,
}

impl FlowbitTable {
    /// Room for about `flows` flows with bits (rounded up to whole buckets, a power of two
    /// of them): 40 bytes each.
    pub fn new(flows: usize) -> FlowbitTable {
        let n = flows.div_ceil(WAYS).max(1).next_power_of_two();
        FlowbitTable { buckets: (0..n).map(|_| Bucket::default()).collect() }
    }

    /// Flows with an entry (a scan of the table: for tests and tools).
    pub fn len(&self) -> usize {
        self.buckets.iter().flat_map(|b| &b.entries).filter(|e| e.key.load(Relaxed) != 0).count()
    }

    /// No flow has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bucket(&self, id: u64) -> &Bucket {
        // The slot's low bits spread flows well (a slot holds one live flow at a time).
        let h = (id as u32 as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
        &self.buckets[h as usize & (self.buckets.len() - 1)]
    }

    fn find(bucket: &Bucket, id: u64) -> Option<&Entry> {
        // Acquire: pairs with the Release that published the key after zeroing the bits.
        bucket.entries.iter().find(|e| e.key.load(Acquire) == id)
    }

    /// The bits of flow `id` (none without an entry).
    pub fn load(&self, id: u64) -> FlowBits {
        let mut bits = FlowBits::default();
        if let Some(e) = Self::find(self.bucket(id), id) {
            for (b, w) in bits.iter_mut().zip(&e.bits) {
                *b = w.load(Relaxed);
            }
        }
        bits
    }

    /// Applies what a packet of flow `id` changed (`before` → `after`); `flows` tells
    /// which entries' flows are gone. False: the flow found no entry (refused).
    pub fn update(&self, flows: &FlowTable, id: u64, before: &FlowBits, after: &FlowBits) -> bool {
        let bucket = self.bucket(id);
        let entry = match Self::find(bucket, id) {
            Some(e) => e,
            // Only clearing: a flow without an entry has nothing to clear.
            None if after.iter().zip(before).all(|(a, b)| a & !b == 0) => return true,
            None => match Self::claim(bucket, flows, id) {
                Some(e) => e,
                None => return false,
            },
        };
        for ((w, &a), &b) in entry.bits.iter().zip(after).zip(before) {
            if a & !b != 0 {
                w.fetch_or(a & !b, Relaxed);
            }
            if b & !a != 0 {
                w.fetch_and(!(b & !a), Relaxed);
            }
        }
        true
    }

    /// Takes an entry of `bucket` for flow `id` (or finds the one another worker took
    /// meanwhile).
    #[cold]
    fn claim<'a>(bucket: &'a Bucket, flows: &FlowTable, id: u64) -> Option<&'a Entry> {
        while bucket.lock.compare_exchange_weak(0, 1, Acquire, Relaxed).is_err() {
            std::hint::spin_loop();
        }
        let found = Self::find(bucket, id).or_else(|| {
            let e = bucket.entries.iter().find(|e| {
                let key = e.key.load(Relaxed);
                key == 0 || !flows.holds(key)
            })?;
            for w in &e.bits {
                w.store(0, Relaxed);
            }
            // Release: a reader that sees the key sees the cleared bits.
            e.key.store(id, Release);
            Some(e)
        });
        bucket.lock.store(0, Release);
        found
    }

    /// Forgets every flow's bits (a harness replaying independent inputs).
    pub fn clear(&self) {
        for e in self.buckets.iter().flat_map(|b| &b.entries) {
            e.key.store(0, Relaxed);
        }
    }
}

/// The [`FlowBitsStore`] of one packet's flow: the flow is found in the flow table only
/// if the matcher asks for its bits.
pub struct FlowOf<'a> {
    pub table: &'a FlowbitTable,
    pub flows: &'a FlowTable,
    /// The flow's hit, or how to look it up (a packet that opened its flow).
    pub hit: Option<FlowHit>,
    pub lookup: &'a dyn Fn() -> Option<FlowHit>,
    /// Counts changes that found no entry.
    pub refused: &'a rampart_shm::Counter,
}

impl FlowOf<'_> {
    fn id(&mut self) -> Option<u64> {
        if self.hit.is_none() {
            self.hit = (self.lookup)();
        }
        self.hit.map(|h| h.flow_id())
    }
}

impl FlowBitsStore for FlowOf<'_> {
    fn load(&mut self) -> FlowBits {
        self.id().map_or_else(FlowBits::default, |id| self.table.load(id))
    }

    fn store(&mut self, before: &FlowBits, after: &FlowBits) {
        if let Some(id) = self.id() {
            if !self.table.update(self.flows, id, before, after) {
                self.refused.add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_flow::{FlowTableConfig, NewFlow, PacketInfo};
    use rampart_packet::{Direction, FlowKey};

    fn key(port: u16) -> FlowKey {
        FlowKey { src_addr: [1; 16], dst_addr: [2; 16], src_port: port, dst_port: 80, proto: 17, ..FlowKey::default() }
    }

    /// A flow table with `n` UDP flows in it, and their hits.
    fn flows(n: u16) -> (FlowTable, Vec<FlowHit>) {
        let table = FlowTable::new(&FlowTableConfig { capacity: 1024, ..FlowTableConfig::default() }).unwrap();
        let hits = (1..=n)
            .map(|p| {
                let k = key(p);
                let h = table.hash(&k);
                table.insert(&k, h, Direction::Forward, NewFlow::default(), &PacketInfo::default(), 0).unwrap().hit
            })
            .collect();
        (table, hits)
    }

    fn bits(set: &[usize]) -> FlowBits {
        let mut b = FlowBits::default();
        for &i in set {
            b[i / 64] |= 1 << (i % 64);
        }
        b
    }

    #[test]
    fn bits_are_kept_per_flow_and_composed() {
        let (table, hits) = flows(2);
        let fb = FlowbitTable::new(64);
        let (a, b) = (hits[0].flow_id(), hits[1].flow_id());
        assert_eq!(fb.load(a), bits(&[]));
        assert!(fb.update(&table, a, &bits(&[]), &bits(&[3, 200])));
        assert_eq!(fb.load(a), bits(&[3, 200]));
        assert_eq!(fb.load(b), bits(&[]), "another flow's bits are its own");
        // Two workers' updates from the same `before` compose: each applies its change.
        fb.update(&table, a, &bits(&[3, 200]), &bits(&[3, 200, 7]));
        fb.update(&table, a, &bits(&[3, 200]), &bits(&[200]));
        assert_eq!(fb.load(a), bits(&[7, 200]));
        // Clearing a flow that has no entry takes none.
        fb.update(&table, b, &bits(&[1]), &bits(&[]));
        assert_eq!(fb.len(), 1);
    }

    #[test]
    fn a_later_flow_in_the_slot_sees_none_of_the_bits_and_takes_the_entry() {
        let (table, hits) = flows(1);
        let fb = FlowbitTable::new(1);
        let old = hits[0];
        fb.update(&table, old.flow_id(), &bits(&[]), &bits(&[5]));
        table.remove_hit(&old, 1).unwrap();
        assert!(!table.holds(old.flow_id()));
        let k = key(1);
        let h = table.hash(&k);
        let new = table.insert(&k, h, Direction::Forward, NewFlow::default(), &PacketInfo::default(), 2).unwrap().hit;
        assert_ne!(new.flow_id(), old.flow_id());
        assert_eq!(fb.load(new.flow_id()), bits(&[]));
        // The table's only bucket: the gone flow's entries make room.
        assert!(fb.update(&table, new.flow_id(), &bits(&[]), &bits(&[9])));
        assert_eq!(fb.load(new.flow_id()), bits(&[9]));
        assert_eq!(fb.load(old.flow_id()), bits(&[]));
        assert_eq!(fb.len(), 1, "the gone flow's entry was taken over");
    }

    #[test]
    fn a_full_bucket_of_live_flows_refuses_and_counts() {
        let (table, hits) = flows(WAYS as u16 + 1);
        let fb = FlowbitTable::new(1);
        let kept: Vec<bool> = hits.iter().map(|h| fb.update(&table, h.flow_id(), &bits(&[]), &bits(&[1]))).collect();
        assert_eq!(kept.iter().filter(|&&k| !k).count(), 1, "{kept:?}");
        assert_eq!(fb.len(), WAYS);
        assert_eq!(fb.load(hits[WAYS].flow_id()), bits(&[]));
    }

    #[test]
    fn concurrent_claims_of_one_flow_share_one_entry() {
        let (table, hits) = flows(1);
        let fb = FlowbitTable::new(64);
        let id = hits[0].flow_id();
        std::thread::scope(|s| {
            for t in 0..4 {
                let (fb, table) = (&fb, &table);
                s.spawn(move || fb.update(table, id, &bits(&[]), &bits(&[t])));
            }
        });
        assert_eq!((fb.len(), fb.load(id)), (1, bits(&[0, 1, 2, 3])));
    }
}
