//! Creating flows: the miss path's insert under the key's two bucket locks (a clash with
//! a concurrent insert of the same key is tracked on the existing flow), per-guest quotas
//! and the global capacity, the choice of bucket and lane, publishing the new entry, and
//! the table-full policy with its choice of eviction victim.

use core::sync::atomic::{fence, Ordering::{Acquire, Relaxed, Release}};

use rampart_packet::{Direction, FlowKey};

use super::{age_ms, bump, Backoff, FlowHit, FlowTable, PacketInfo, Stale, Tracked, INSERT_ROUNDS};
use crate::entry::{flag, pack_maxwin, seq, Bucket, Info, PackedKey, LANES};
use crate::tcp::{TcpCtx, NO_SCALE};
use crate::{EndReason, FlowEnd, FlowState, FullPolicy, InvalidReason, Outcome};

/// Flows a primary bucket takes before new keys go to the less loaded of their two
/// buckets (see `FlowTable::placement`).
const SPILL_THRESHOLD: u32 = 12;

/// Why [`FlowTable::insert`] created no flow.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum InsertError {
    /// No room: the table holds `capacity` flows or the key's buckets are full, and the
    /// [`FullPolicy`] refused (or found nothing to evict).
    #[error("flow table full")]
    Full,
    /// The owner guest already holds its quota of flows.
    #[error("guest {0} is at its flow quota")]
    QuotaExceeded(u8),
    /// The packet cannot open a flow (e.g. a TCP segment that is not a SYN).
    #[error("packet cannot open a flow: {0:?}")]
    Invalid(InvalidReason),
    /// The key's entry kept disappearing under concurrent removal; try again later.
    #[error("flow entry contended, retry")]
    Contended,
}

/// What the caller decided for a new flow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NewFlow {
    /// Verdict / rule index from the classifier, returned on every hit.
    pub verdict: u32,
    /// Guest slot the flow is charged to.
    pub owner: u8,
}

/// Result of a successful [`FlowTable::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// The flow (new, or the one another worker created first).
    pub hit: FlowHit,
    /// The packet, tracked on that flow.
    pub tracked: Tracked,
    /// False if the key already existed (a clash: another worker inserted it first).
    pub created: bool,
    /// A flow that ended on the way: evicted to make room, or reopened by this SYN.
    pub ended: Option<FlowEnd>,
}

/// Holds the insert locks of one or two buckets; unlocks on drop.
struct BucketGuard<'a> {
    first: &'a Bucket,
    second: Option<&'a Bucket>,
}

impl Drop for BucketGuard<'_> {
    fn drop(&mut self) {
        // Release: the next insert into these buckets (its Acquire) sees our tags, claims
        // and spill counts.
        if let Some(second) = self.second {
            second.lock.store(0, Release);
        }
        self.first.lock.store(0, Release);
    }
}

fn lock_bucket(bucket: &Bucket) {
    let mut backoff = Backoff::new();
    // Acquire pairs with the Release in `BucketGuard::drop`.
    while bucket
        .lock
        .compare_exchange_weak(0, 1, Acquire, Relaxed)
        .is_err()
    {
        backoff.snooze();
    }
}

impl FlowTable {
    // ---------------------------------------------------------------- inserts

    /// Initial entry contents for a flow opened by `pkt` from `dir`.
    fn open_state(
        &self,
        proto: u8,
        dir: usize,
        pkt: &PacketInfo,
    ) -> Result<(Info, TcpCtx), InvalidReason> {
        let ctx = match proto {
            6 => TcpCtx::open(dir, &pkt.tcp, self.tcp_loose)?,
            _ => TcpCtx {
                state: match proto {
                    17 => FlowState::UdpUnreplied,
                    1 | 58 => FlowState::IcmpUnreplied,
                    _ => FlowState::GenericUnreplied,
                },
                flags: if dir == 1 { flag::INIT_REV } else { 0 },
                wscale: [NO_SCALE; 2],
                end: [0; 2],
                maxwin: [0; 2],
            },
        };
        let info = Info {
            state: ctx.state,
            flags: ctx.flags,
            owner: 0,
            wscale: ctx.wscale,
        };
        Ok((info, ctx))
    }

    /// Insert the flow of canonical `key` (hash from [`Self::hash`]) opened by `pkt`
    /// travelling in `dir`, after a lookup missed and the classifier decided `new`.
    ///
    /// If another worker inserted the key meanwhile (clash), no second entry is made:
    /// the packet is tracked on the existing flow and `created` is false. The first
    /// packet of a TCP flow must be a SYN (unless `tcp_loose`).
    pub fn insert(
        &self,
        key: &FlowKey,
        hash: u64,
        dir: Direction,
        new: NewFlow,
        pkt: &PacketInfo,
        now_ms: u64,
    ) -> Result<Inserted, InsertError> {
        let packed = PackedKey::new(key);
        let b1 = self.primary(hash);
        let b2 = self.secondary(hash, b1);
        let tag = Self::tag(hash);
        let d = dir as usize;
        let opened = self.open_state(key.proto, d, pkt);
        let mut ended = None;
        for _ in 0..INSERT_ROUNDS {
            let guard = self.lock_pair(b1, b2);
            if let Some(hit) = self.probe(b1, tag, &packed).or_else(|| {
                if b2 != b1 {
                    self.probe(b2, tag, &packed)
                } else {
                    None
                }
            }) {
                drop(guard);
                bump(&self.counters.clashes);
                match self.track(&hit, dir, pkt, now_ms) {
                    Ok(tracked) => {
                        return Ok(Inserted {
                            hit,
                            tracked,
                            created: false,
                            ended,
                        })
                    }
                    Err(Stale::Gone) => continue,
                    Err(Stale::Reopened(end)) => {
                        ended = Some(end);
                        continue;
                    }
                }
            }
            let (mut info, ctx) = match opened {
                Ok(v) => v,
                Err(reason) => {
                    bump(&self.counters.invalid);
                    return Err(InsertError::Invalid(reason));
                }
            };
            info.owner = new.owner;
            self.reserve_guest(new.owner)?;
            let slot = match self.claim_slot(b1, b2, now_ms, &mut ended) {
                Ok(slot) => slot,
                Err(err) => {
                    self.release_guest(new.owner);
                    return Err(err);
                }
            };
            let generation = self.publish(slot, &packed, new.verdict, info, &ctx, pkt, d, now_ms);
            let (bucket, lane) = (slot / LANES, slot % LANES);
            self.bucket(bucket).tags[lane / 4].fetch_or((tag as u64) << (16 * (lane % 4)), Release);
            if bucket != b1 {
                // Relaxed: a hint read by lookups (see `find`).
                self.bucket(b1).spilled.fetch_add(1, Relaxed);
            }
            drop(guard);
            bump(&self.counters.creations);
            let hit = FlowHit {
                slot: slot as u32,
                generation,
                verdict: new.verdict,
                state: info.state,
                owner: info.owner,
                initiator: if d == 1 {
                    Direction::Reverse
                } else {
                    Direction::Forward
                },
            };
            let tracked = Tracked {
                verdict: new.verdict,
                state: info.state,
                owner: info.owner,
                outcome: Outcome::Valid,
                reply: false,
            };
            return Ok(Inserted {
                hit,
                tracked,
                created: true,
                ended,
            });
        }
        Err(InsertError::Contended)
    }

    fn lock_pair(&self, b1: usize, b2: usize) -> BucketGuard<'_> {
        let (lo, hi) = (b1.min(b2), b1.max(b2));
        lock_bucket(self.bucket(lo));
        if hi != lo {
            lock_bucket(self.bucket(hi));
        }
        BucketGuard {
            first: self.bucket(lo),
            second: (hi != lo).then(|| self.bucket(hi)),
        }
    }

    fn reserve_guest(&self, owner: u8) -> Result<(), InsertError> {
        let guest = &self.guests[owner as usize];
        let quota = guest.quota.load(Relaxed);
        // Relaxed RMW: the counter's own modification order makes the check-and-increment
        // exact; no other memory is published through it.
        match guest
            .live
            .fetch_update(Relaxed, Relaxed, |n| (n < quota).then_some(n + 1))
        {
            Ok(_) => Ok(()),
            Err(_) => {
                bump(&self.counters.quota_refusals);
                Err(InsertError::QuotaExceeded(owner))
            }
        }
    }

    pub(super) fn release_guest(&self, owner: u8) {
        self.guests[owner as usize].live.fetch_sub(1, Relaxed);
    }

    /// Find a slot for a new flow in `b1`/`b2` (both insert-locked by us), taking one unit
    /// of the global capacity, evicting if the policy allows. Returns the slot with its
    /// STRUCT bit held.
    fn claim_slot(
        &self,
        b1: usize,
        b2: usize,
        now_ms: u64,
        ended: &mut Option<FlowEnd>,
    ) -> Result<usize, InsertError> {
        // Relaxed RMW, as for guest quotas.
        let mut have_live = self
            .live
            .0
            .fetch_update(Relaxed, Relaxed, |n| (n < self.capacity).then_some(n + 1))
            .is_ok();
        for _ in 0..4 {
            if have_live {
                let (first, second) = self.placement(b1, b2);
                if let Some(slot) = self.claim_free_lane(first).or_else(|| {
                    if second != first {
                        self.claim_free_lane(second)
                    } else {
                        None
                    }
                }) {
                    return Ok(slot);
                }
            }
            if self.full_policy == FullPolicy::Refuse || ended.is_some() {
                break;
            }
            let Some((victim, generation)) = self.pick_victim(b1, b2, now_ms) else {
                break;
            };
            // Without a capacity unit of our own, take over the victim's.
            if let Some(end) =
                self.delete(victim, generation, EndReason::Evicted, !have_live, now_ms)
            {
                bump(&self.counters.evictions);
                *ended = Some(end);
                have_live = true;
            }
        }
        if have_live {
            self.live.0.fetch_sub(1, Relaxed);
        }
        bump(&self.counters.full_refusals);
        Err(InsertError::Full)
    }

    /// Which of the key's buckets to try first. The primary, while it holds fewer than
    /// [`SPILL_THRESHOLD`] flows (so most hits cost one bucket line and one entry line);
    /// past that, the less loaded of the two. Pure "primary until full" lets both of a
    /// key's buckets fill up early: simulated at 1M flows with 25 % slack, the first
    /// spurious `Full` came at 55 % of capacity (5,000 by 100 %), versus none with this
    /// rule, which spills ~11 % of flows to their secondary bucket.
    #[inline]
    fn placement(&self, b1: usize, b2: usize) -> (usize, usize) {
        let fill = |b: usize| LANES as u32 - self.bucket(b).free().count_ones();
        if b2 == b1 || fill(b1) < SPILL_THRESHOLD || fill(b1) <= fill(b2) {
            (b1, b2)
        } else {
            (b2, b1)
        }
    }

    /// Claim a free lane of `bucket` (insert-locked by us): CAS its entry from free to
    /// STRUCT. A lane whose tag is 0 but whose entry is still STRUCT-locked is being
    /// freed by ageing; we wait the few instructions it takes.
    fn claim_free_lane(&self, bucket: usize) -> Option<usize> {
        let mut backoff = Backoff::new();
        loop {
            let mut free = self.bucket(bucket).free();
            if free == 0 {
                return None;
            }
            while free != 0 {
                let slot = bucket * LANES + free.trailing_zeros() as usize;
                free &= free - 1;
                let e = self.entry(slot);
                let current = e.seq.load(Relaxed);
                if current & (seq::OCCUPIED | seq::LOCKS) == 0
                    // Acquire: see the freer's writes before we overwrite the slot.
                    && e.seq
                        .compare_exchange(current, current | seq::STRUCT, Acquire, Relaxed)
                        .is_ok()
                {
                    return Some(slot);
                }
            }
            backoff.snooze();
        }
    }

    /// Write a new flow into `slot` (STRUCT held) and publish it. Returns its generation.
    #[allow(clippy::too_many_arguments)]
    fn publish(
        &self,
        slot: usize,
        key: &PackedKey,
        verdict: u32,
        info: Info,
        ctx: &TcpCtx,
        pkt: &PacketInfo,
        d: usize,
        now_ms: u64,
    ) -> u32 {
        let e = self.entry(slot);
        let locked = e.seq.load(Relaxed);
        // Release fence between taking STRUCT and writing the new key: a reader that
        // sees any new byte also sees STRUCT (or later) on its re-check.
        fence(Release);
        e.key_addrs.store(key.addrs, Relaxed);
        e.key_rest.store(key.rest, Relaxed);
        if key.is_v6() {
            for (stored, w) in self.v6[slot].words.iter().zip(key.words) {
                stored.store(w, Relaxed);
            }
        }
        e.verdict.store(verdict, Relaxed);
        e.info.store(info.pack(), Relaxed);
        e.last_ms.store(now_ms as u32, Relaxed);
        e.start_s.store((now_ms / 1000) as u32, Relaxed);
        e.maxwin.store(pack_maxwin(ctx.maxwin), Relaxed);
        for i in 0..2 {
            e.td_end[i].store(ctx.end[i], Relaxed);
            e.packets[i].store((i == d) as u32, Relaxed);
            e.bytes[i].store(if i == d { pkt.bytes } else { 0 }, Relaxed);
        }
        let generation = seq::next_gen(locked) | seq::OCCUPIED;
        // Release: readers that Acquire this generation see the fields above.
        e.seq.store(generation, Release);
        generation
    }

    // ---------------------------------------------------------------- eviction

    /// Pick an eviction victim among the occupied slots of `b1`/`b2`: expired first, then
    /// the oldest never-assured flow, then the oldest.
    fn pick_victim(&self, b1: usize, b2: usize, now_ms: u64) -> Option<(usize, u32)> {
        let now32 = now_ms as u32;
        let mut best: Option<((u8, u32), usize, u32)> = None;
        for bucket in [b1, b2] {
            let mut occupied = !self.bucket(bucket).free();
            while occupied != 0 {
                let slot = bucket * LANES + occupied.trailing_zeros() as usize;
                occupied &= occupied - 1;
                let e = self.entry(slot);
                let s = e.seq.load(Acquire);
                if s & (seq::OCCUPIED | seq::STRUCT) != seq::OCCUPIED {
                    continue;
                }
                let state = Info::unpack(e.info.load(Relaxed)).state;
                let age = age_ms(now32, e.last_ms.load(Relaxed));
                let class = if age >= self.timeouts_ms[state as usize].load(Relaxed) {
                    0
                } else if !state.is_assured() {
                    1
                } else {
                    2
                };
                // Lower class wins, then greater age.
                let score = (class, u32::MAX - age);
                if best.is_none_or(|(b, _, _)| score < b) {
                    best = Some((score, slot, s & !seq::WRITE));
                }
            }
            if b2 == b1 {
                break;
            }
        }
        best.map(|(_, slot, generation)| (slot, generation))
    }
}
