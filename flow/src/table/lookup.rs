//! Finding flows, the hit path: a packet's key in the table's terms ([`Prepared`]), the
//! prefetch stages that hide a lookup's cache misses, single and bulk lookups, and the
//! relation of ICMP errors to the flows they quote. Everything here is wait-free.

use core::sync::atomic::Ordering::Relaxed;

use rampart_packet::{Direction, FlowKey};

use super::{prefetch, FlowTable};
use crate::entry::{flag, Info, PackedKey, LANES};
use crate::FlowState;

/// Keys per prefetch round in [`FlowTable::lookup_bulk`].
const BULK: usize = 32;

/// A flow found by a lookup: a validated snapshot plus the handle for [`FlowTable::track`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowHit {
    pub(super) slot: u32,
    pub(super) generation: u32,
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
    /// A flow id unique among live flows and unlikely to repeat soon: slot and generation
    /// (never 0: the generation has the occupied bit).
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

/// A flow's relation to an ICMP error ([`FlowTable::icmp_error_related`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Related {
    /// The flow the error refers to.
    pub hit: FlowHit,
    /// Direction of the embedded packet within the flow.
    pub inner_direction: Direction,
}

impl FlowTable {
    /// Canonical key, the packet's direction and the hash, from a packet-order key.
    #[inline]
    pub fn prepare(&self, packet_key: &FlowKey) -> (FlowKey, Direction, u64) {
        let flow = self.prepare_flow(packet_key);
        (flow.canonical(), flow.dir, flow.hash)
    }

    // ---------------------------------------------------------------- lookups

    /// Read slot `slot` if it holds `key`: wait-free, validated by the sequence word.
    #[inline(always)]
    fn read_if_key(&self, slot: usize, key: &PackedKey) -> Option<FlowHit> {
        let ((verdict, info), generation) = self.read_validated(slot, |e| {
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
            Some((e.verdict.load(Relaxed), Info::unpack(e.info.load(Relaxed))))
        })?;
        Some(FlowHit {
            slot: slot as u32,
            generation,
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
    pub(super) fn probe(&self, bucket: usize, tag: u16, key: &PackedKey) -> Option<FlowHit> {
        self.check_lanes(bucket, self.bucket(bucket).matching(tag), key)
    }

    #[inline(always)]
    pub(super) fn find(&self, key: &PackedKey, hash: u64) -> Option<FlowHit> {
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
}
