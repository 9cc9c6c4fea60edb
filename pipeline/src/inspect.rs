//! Inline inspection (DESIGN.md §3 step 6): the payload of every packet of a flow that an
//! `inspect` rule allows is scanned by the policy's signatures, and a match is logged as
//! an alert and acted on inline (`drop`, `reject`; `pass` silences the others).
//!
//! A signature split across TCP segments (or UDP datagrams) is still found without
//! reassembling the stream: each flow direction has a [`Stream`] (the matcher's resumable
//! prefilter state plus a bounded tail of the previous segment, see
//! [`rampart_signatures::engine`]) in this worker's [`Streams`] table. Each direction of a
//! flow arrives on one port queue, so its stream has one writer: the table is per worker,
//! preallocated at start and never locked.
//!
//! Explicit policies, each counted in [`rampart_shm::InspectCounters`]:
//! - **No free stream** (the table's probe window holds only streams used within the idle
//!   timeout): the packet is inspected on its own (`streams_refused`).
//! - **TCP segments out of sequence** (a gap, a retransmission, an overlap): the segment is
//!   inspected on its own and the stream restarts after it (`out_of_order`); nothing is
//!   buffered or reordered.
//! - **A changed rule set** (a reload): a stream resumes by rescanning its kept tail with
//!   the new matcher (`resynced`); a kept stream is reused only while its flow lives (a new
//!   flow with the same addresses and ports starts afresh).

use rampart_flow::{FlowHit, FlowState, Prepared};
use rampart_packet::{Direction, FlowKey, Meta};
use rampart_shm::ring::{AlertCode, EventKind, FlowEventData};
use rampart_shm::{EventRecord, InspectionImage};
use crate::flowbits::{FlowOf, FlowbitTable};
use crate::path::{push_event, Context};
use rampart_signatures::engine::{Database, FlowBitsStore, Matches, NoFlow, Packet, Stream};
use rampart_signatures::engine::MAX_MATCHES;
use rampart_signatures::SigAction;
use crate::thresholds::Thresholds;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// Streams looked at for a flow direction's own or a free one.
const PROBE: usize = 8;

/// One policy generation's signatures, built off the worker cores.
pub struct Inspection {
    pub db: Database,
    /// Each signature's alert counter slot (`u16::MAX`: none).
    counters: Vec<u16>,
    tail: u16,
    idle_timeout_ms: u64,
    /// A drop or reject blocks the rest of the flow (see [`crate::firewall`]).
    pub drop_flow: bool,
    /// The counts of signatures with `threshold` or `detection_filter`, shared by the
    /// workers (None when no signature has either).
    thresholds: Option<Thresholds>,
    /// The flows' flowbits, shared by the workers (None when no signature uses them).
    flowbits: Option<Arc<FlowbitTable>>,
}

/// Keys of `threshold`/`detection_filter` counts a rule set keeps (about 2 MiB).
const THRESHOLD_KEYS: usize = 1 << 17;
/// Flows whose flowbits a rule set keeps at once (40 bytes each: 2.5 MiB).
pub const FLOWBIT_FLOWS: usize = 1 << 16;

impl Inspection {
    /// Builds the matcher of an image's signatures (the control process built it once
    /// already, so this fails only on an image from another version).
    pub fn build(image: &InspectionImage) -> Result<Inspection, String> {
        Inspection::build_after(image, None)
    }

    /// [`Inspection::build`] in place of `running`: the flows' flowbits are kept when
    /// both rule sets name the same flowbits in the same order (bit for bit the same
    /// meaning), else they start unset.
    pub fn build_after(image: &InspectionImage, running: Option<&Inspection>) -> Result<Inspection, String> {
        let db = Database::build(image.signatures.clone(), image.tail as usize).map_err(|e| format!("inspection: {e}"))?;
        let thresholded = image.signatures.iter().any(|s| s.threshold.is_some() || s.detection_filter.is_some());
        let flowbits = match running {
            _ if db.flowbit_names().is_empty() => None,
            Some(r) if r.db.flowbit_names() == db.flowbit_names() => r.flowbits.clone(),
            _ => Some(Arc::new(FlowbitTable::new(FLOWBIT_FLOWS))),
        };
        Ok(Inspection {
            db,
            counters: image.counters.clone(),
            tail: image.tail,
            idle_timeout_ms: image.idle_timeout_ms,
            drop_flow: image.drop_flow,
            thresholds: thresholded.then(|| Thresholds::new(THRESHOLD_KEYS)),
            flowbits,
        })
    }

    /// Forgets the `threshold`/`detection_filter` counts and the flowbits (a harness
    /// replaying independent inputs; the dataplane never does: a kept rule set keeps them).
    pub fn clear_counts(&self) {
        if let Some(th) = &self.thresholds {
            th.clear();
        }
        if let Some(fb) = &self.flowbits {
            fb.clear();
        }
    }

    /// The flows' flowbits (None: no signature uses them).
    pub fn flowbits(&self) -> Option<&FlowbitTable> {
        self.flowbits.as_deref()
    }

    /// Whether this was built from (a copy of) `image`: a reload that keeps the rule set
    /// keeps the matcher, and with it every flow's stream.
    pub fn is_built_from(&self, image: &InspectionImage) -> bool {
        self.db.signatures() == &image.signatures[..]
            && self.counters == image.counters
            && self.tail == image.tail
            && self.idle_timeout_ms == image.idle_timeout_ms
            && self.drop_flow == image.drop_flow
    }
}

/// What inspection made of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inspected {
    Forward,
    Drop,
    /// Drop and answer the sender.
    Reject,
}

#[derive(Clone, Default)]
struct Entry {
    key: FlowKey,
    /// The direction it holds (0 forward, 1 reverse), when `live`.
    dir: u8,
    live: bool,
    used_ms: u64,
    /// TCP: the sequence number the next in-order segment starts at.
    next_seq: Option<u32>,
    stream: Stream,
}

/// One worker's streams (see the module docs), and the scratch list of a packet's matches.
pub struct Streams {
    /// A power of two of them.
    entries: Box<[Entry]>,
    matches: Matches,
    /// Scratch results of rescans whose matches are not wanted.
    discard: Matches,
}

impl Streams {
    /// Room for `capacity` flow directions (rounded up to a power of two, at least the
    /// probe window).
    pub fn new(capacity: usize) -> Streams {
        let n = capacity.max(PROBE).next_power_of_two();
        Streams { entries: vec![Entry::default(); n].into_boxed_slice(), matches: Matches::default(), discard: Matches::default() }
    }

    /// Inspects one packet of a flow an `inspect` rule allows. `flow`: the packet's flow
    /// as the table knows it (its hit, if it was found before this packet); `created`: this
    /// packet opened it; `monitor`: the port is in monitor mode (alerts say what would have
    /// been done; the caller forwards). Alerts go to the worker's event ring.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn inspect(
        &mut self,
        ins: &Inspection,
        cx: &Context,
        meta: &Meta,
        frame: &[u8],
        slot: usize,
        flow: (&Prepared, Option<FlowHit>),
        created: bool,
        monitor: bool,
    ) -> Inspected {
        let (prepared, hit) = flow;
        let (counters, now_ms) = (&cx.counters.inspect, cx.now_ms);
        let payload = meta.payload(frame);
        counters.packets.add(1);
        counters.bytes.add(payload.len() as u64);
        let to_server = created || hit.is_none_or(|h| h.initiator == prepared.dir);
        let established = hit.is_some_and(|h| established(h.state) || (!h.state.is_tcp() && h.initiator != prepared.dir));
        let pkt = Packet {
            proto: meta.ip_proto,
            src: ip(&meta.src_addr),
            dst: ip(&meta.dst_addr),
            src_port: if meta.has_ports() { meta.src_port } else { 0 },
            dst_port: if meta.has_ports() { meta.dst_port } else { 0 },
            to_server,
            established,
            payload,
        };
        let dir = (prepared.dir == Direction::Reverse) as u8;
        let seq = (meta.ip_proto == 6).then(|| tcp_seq(frame, meta)).flatten();
        let Streams { entries, matches, discard } = self;
        let lookup = || cx.flows.lookup_flow(prepared);
        let (mut no_flow, mut of_flow);
        let bits: &mut dyn FlowBitsStore = match ins.flowbits.as_deref() {
            Some(table) => {
                of_flow = FlowOf { table, flows: cx.flows, hit, lookup: &lookup, refused: &counters.flowbits_refused };
                &mut of_flow
            }
            None => {
                no_flow = NoFlow;
                &mut no_flow
            }
        };
        // Empty segments (handshakes, pure ACKs) carry nothing to scan, and must not move a stream.
        if !payload.is_empty() {
            let key = prepared.canonical();
            match stream(entries, &key, prepared.hash, dir, now_ms, ins.idle_timeout_ms, created) {
                Some(e) => {
                    let in_order = match (seq, e.next_seq) {
                        (Some(seq), Some(next)) => seq == next,
                        _ => true,
                    };
                    if let Some(seq) = seq {
                        e.next_seq = Some(seq.wrapping_add(payload.len() as u32));
                    }
                    if in_order {
                        ins.db.scan_flow(&pkt, Some(&mut e.stream), bits, matches);
                    } else {
                        counters.out_of_order.add(1);
                        e.stream.reset();
                        ins.db.scan_flow(&pkt, None, bits, matches);
                        restart_after(&ins.db, &pkt, &mut e.stream, discard);
                    }
                }
                None => {
                    counters.streams_refused.add(1);
                    ins.db.scan_flow(&pkt, None, bits, matches);
                }
            }
        } else {
            ins.db.scan_flow(&pkt, None, bits, matches);
        }
        if matches.resynced() {
            counters.resynced.add(1);
        }
        // The listed matches that act and those that are logged: all of them, unless the rule
        // set has thresholds (their counts are kept only for listed matches; unlisted ones act
        // as the matcher found them).
        let mut alerted: [u32; MAX_MATCHES] = [0; MAX_MATCHES];
        let mut n_alerted = 0;
        let mut action = matches.action();
        match &ins.thresholds {
            None => {
                for sig in matches.iter() {
                    alerted[n_alerted] = sig;
                    n_alerted += 1;
                }
            }
            Some(th) => {
                action = if matches.more() > 0 { matches.action() } else { matches.silent_action() };
                for sig in matches.iter() {
                    let Some(s) = ins.db.signatures().get(sig as usize) else { continue };
                    let v = match (&s.threshold, &s.detection_filter) {
                        (None, None) => crate::thresholds::Verdict { matched: true, alert: true },
                        (t, f) => th.count(sig, t.as_ref(), f.as_ref(), pkt.src, pkt.dst, now_ms),
                    };
                    if !v.matched {
                        counters.filtered.add(1);
                        continue;
                    }
                    action = Some(action.map_or(s.action, |a| a.min(s.action)));
                    if v.alert {
                        alerted[n_alerted] = sig;
                        n_alerted += 1;
                    } else {
                        counters.suppressed.add(1);
                    }
                }
            }
        }
        let verdict = match action {
            None | Some(SigAction::Pass) => return Inspected::Forward,
            Some(SigAction::Alert) => Inspected::Forward,
            Some(SigAction::Drop) => Inspected::Drop,
            Some(SigAction::Reject) => Inspected::Reject,
        };
        let code = match (verdict, monitor) {
            (Inspected::Forward, _) => AlertCode::Allowed,
            (Inspected::Drop, false) => AlertCode::Dropped,
            (Inspected::Reject, false) => AlertCode::Rejected,
            (Inspected::Drop, true) => AlertCode::WouldDrop,
            (Inspected::Reject, true) => AlertCode::WouldReject,
        };
        if verdict != Inspected::Forward && !monitor {
            counters.blocked.add(1);
        }
        counters.unlisted.add(matches.more() as u64);
        for &sig in &alerted[..n_alerted] {
            counters.alerts.add(1);
            if let Some(c) = ins.counters.get(sig as usize).and_then(|&c| cx.counters.signatures.get(c as usize)) {
                c.add(1);
            }
            let (data, value) = FlowEventData::pack(&meta.src_addr, &meta.dst_addr, pkt.src_port, pkt.dst_port, meta.ip_proto, Some(sig));
            push_event(cx, EventRecord { tsc: crate::rdtsc(), kind: EventKind::Alert as u16, port: slot as u16, code: code as u16, value, len: 32, data, ..Default::default() });
        }
        verdict
    }
}

/// The stream of a flow direction in `entries` (a power of two long): its own, else a free
/// or idle one (reset for it); None when the probe window has no room. `fresh`: the flow
/// was just opened, so a stream found for its key belonged to an earlier flow.
fn stream<'a>(entries: &'a mut [Entry], key: &FlowKey, hash: u64, dir: u8, now_ms: u64, idle_ms: u64, fresh: bool) -> Option<&'a mut Entry> {
    let mask = entries.len() - 1;
    let start = (hash as usize ^ dir as usize) & mask;
    let mut free = None;
    for i in 0..PROBE {
        let at = (start + i) & mask;
        let e = &entries[at];
        if e.live && e.dir == dir && e.key == *key {
            let e = &mut entries[at];
            if fresh {
                reset(e, now_ms);
            }
            e.used_ms = now_ms;
            return Some(e);
        }
        if free.is_none() && (!e.live || now_ms.saturating_sub(e.used_ms) > idle_ms) {
            free = Some(at);
        }
    }
    let e = &mut entries[free?];
    e.key = *key;
    e.dir = dir;
    e.live = true;
    reset(e, now_ms);
    Some(e)
}

/// Makes `stream` continue after `pkt` alone: scanned as the first packet of a stream.
fn restart_after(db: &Database, pkt: &Packet, stream: &mut Stream, discard: &mut Matches) {
    stream.reset();
    db.scan(pkt, Some(stream), discard);
}

fn reset(e: &mut Entry, now_ms: u64) {
    e.next_seq = None;
    e.used_ms = now_ms;
    e.stream.reset();
}

/// Whether a flow in this state has seen traffic both ways.
fn established(state: FlowState) -> bool {
    use FlowState::*;
    matches!(state, TcpEstablished | TcpFinWait | TcpCloseWait | TcpLastAck | TcpTimeWait | UdpReplied | IcmpReplied | GenericReplied)
}

/// A TCP segment's sequence number.
fn tcp_seq(frame: &[u8], meta: &Meta) -> Option<u32> {
    let at = meta.l4_offset as usize + 4;
    let b = frame.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// An address as the signatures see it (IPv4 unmapped).
fn ip(a: &[u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(*a);
    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
}
