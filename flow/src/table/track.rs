//! Tracking one packet of a flow a lookup found: the TCP state machine and window
//! checks, the UDP/ICMP/generic pseudo-states, counters and the idle timer, all under the
//! entry's `WRITE` bit; and changing a live flow's verdict.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use rampart_packet::{Direction, Meta};

use super::{bump, Backoff, FlowHit, FlowTable};
use crate::entry::{flag, pack_maxwin, seq, unpack_maxwin, FlowEntry, Info};
use crate::tcp::{TcpCtx, TcpSegment, TcpStep};
use crate::{EndReason, FlowEnd, FlowState, Outcome};

/// Why [`FlowTable::track`] did not track: the hit no longer refers to a live flow.
/// Either way, look the key up again (and insert on a miss).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stale {
    /// The flow was freed (expired, evicted, removed), possibly reused for another key.
    Gone,
    /// This packet (a SYN on a TIME_WAIT/CLOSE connection) ended the flow; a new one must
    /// be classified and inserted. The old flow's end is reported here.
    Reopened(FlowEnd),
}

/// What the caller knows about one packet besides its key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// Bytes to count for this packet (the dataplane passes the IP length).
    pub bytes: u32,
    /// TCP fields; ignored for other protocols.
    pub tcp: TcpSegment,
}

impl PacketInfo {
    /// Packet info of a parsed frame: IP length and, for TCP, the segment fields.
    #[inline]
    pub fn from_frame(meta: &Meta, frame: &[u8]) -> PacketInfo {
        let ip_len =
            (meta.l4_offset as usize + meta.l4_header_len(frame) + meta.payload_len as usize)
                .saturating_sub(meta.l3_offset());
        PacketInfo {
            bytes: ip_len as u32,
            tcp: TcpSegment::from_frame(meta, frame).unwrap_or_default(),
        }
    }
}

/// Result of tracking one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tracked {
    /// The flow's verdict.
    pub verdict: u32,
    /// State after this packet.
    pub state: FlowState,
    /// Owner guest.
    pub owner: u8,
    /// Valid, or why not.
    pub outcome: Outcome,
    /// The packet travels from the responder to the initiator.
    pub reply: bool,
}

impl FlowTable {
    // ---------------------------------------------------------------- tracking

    /// Take the entry's WRITE bit if it still holds generation `generation`.
    #[inline]
    fn lock_write(&self, e: &FlowEntry, generation: u32) -> bool {
        let mut backoff = Backoff::new();
        loop {
            // Acquire: see the previous writer's data (it released with Release).
            match e
                .seq
                .compare_exchange_weak(generation, generation | seq::WRITE, Acquire, Relaxed)
            {
                Ok(_) => return true,
                Err(current) if current & !seq::LOCKS != generation => return false,
                Err(_) => backoff.snooze(),
            }
        }
    }

    /// Track one packet of an existing flow: TCP state machine and window checks, UDP /
    /// ICMP / generic pseudo-state, counters and timer (valid packets only).
    #[inline(always)]
    pub fn track(
        &self,
        hit: &FlowHit,
        dir: Direction,
        pkt: &PacketInfo,
        now_ms: u64,
    ) -> Result<Tracked, Stale> {
        let slot = hit.slot as usize;
        let e = self.entry(slot);
        if !self.lock_write(e, hit.generation) {
            return Err(Stale::Gone);
        }
        // Exclusive from here to the Release store at the end: Relaxed data accesses.
        let d = dir as usize;
        let mut info = Info::unpack(e.info.load(Relaxed));
        let initiator = (info.flags & flag::INIT_REV != 0) as usize;
        let outcome = if info.state.is_tcp() {
            let mut ctx = TcpCtx {
                state: info.state,
                flags: info.flags,
                wscale: info.wscale,
                end: [e.td_end[0].load(Relaxed), e.td_end[1].load(Relaxed)],
                maxwin: unpack_maxwin(e.maxwin.load(Relaxed)),
            };
            match ctx.step(d, &pkt.tcp) {
                TcpStep::Accept => {
                    info.state = ctx.state;
                    info.flags = ctx.flags;
                    info.wscale = ctx.wscale;
                    e.td_end[0].store(ctx.end[0], Relaxed);
                    e.td_end[1].store(ctx.end[1], Relaxed);
                    e.maxwin.store(pack_maxwin(ctx.maxwin), Relaxed);
                    Outcome::Valid
                }
                TcpStep::Invalid(reason) => Outcome::Invalid(reason),
                TcpStep::Reopen => {
                    // We hold the flow exclusively; turn the write lock into a free.
                    e.seq.store(hit.generation | seq::STRUCT, Relaxed);
                    let end =
                        self.free_locked(slot, hit.generation, EndReason::Reopened, false, now_ms);
                    bump(&self.counters.reopened);
                    return Err(Stale::Reopened(end));
                }
            }
        } else {
            if d != initiator && info.flags & flag::REPLIED == 0 {
                info.flags |= flag::REPLIED;
                info.state = match info.state {
                    FlowState::UdpUnreplied => FlowState::UdpReplied,
                    FlowState::IcmpUnreplied => FlowState::IcmpReplied,
                    FlowState::GenericUnreplied => FlowState::GenericReplied,
                    other => other,
                };
            }
            Outcome::Valid
        };
        if outcome.is_valid() {
            e.info.store(info.pack(), Relaxed);
            let p = &e.packets[d];
            p.store(p.load(Relaxed).wrapping_add(1), Relaxed);
            let b = &e.bytes[d];
            b.store(b.load(Relaxed).wrapping_add(pkt.bytes), Relaxed);
            let now32 = now_ms as u32;
            if (now32.wrapping_sub(e.last_ms.load(Relaxed)) as i32) > 0 {
                e.last_ms.store(now32, Relaxed);
            }
        } else {
            bump(&self.counters.invalid);
        }
        let verdict = e.verdict.load(Relaxed);
        // Release: the next writer / deleter (Acquire CAS) sees everything above.
        e.seq.store(hit.generation, Release);
        Ok(Tracked {
            verdict,
            state: info.state,
            owner: info.owner,
            outcome,
            reply: d != initiator,
        })
    }

    /// Change a live flow's verdict (e.g. re-classified after a policy swap).
    pub fn set_verdict(&self, hit: &FlowHit, verdict: u32) -> Result<(), Stale> {
        self.store_verdict(hit.slot as usize, hit.generation, verdict).then_some(()).ok_or(Stale::Gone)
    }

    /// Store the verdict of the flow in `slot` if it still holds `generation`.
    pub(super) fn store_verdict(&self, slot: usize, generation: u32, verdict: u32) -> bool {
        let e = self.entry(slot);
        if !self.lock_write(e, generation) {
            return false;
        }
        e.verdict.store(verdict, Relaxed);
        // Release: publishes the verdict to the next writer.
        e.seq.store(generation, Release);
        true
    }
}
