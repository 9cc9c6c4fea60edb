//! Single-producer / single-consumer rings of fixed 64-byte records in
//! shared memory: the command ring (control → dataplane main lcore) and the
//! event rings (each worker → control).
//!
//! The producer owns `head`, the consumer owns `tail`. A full ring never
//! blocks the producer: the record is dropped and `overflow` counted, so loss
//! is always visible. Records carry the sequence number they were written
//! at, and the consumer distrusts indexes it reads from the other process
//! (a corrupt `head` cannot make it read out of bounds or loop forever).

use crate::layout::ShmSafe;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, Ordering};

#[repr(C, align(64))]
struct Index(AtomicU64);

/// An SPSC ring of `N` records (N a power of two).
#[repr(C, align(64))]
pub struct SpscRing<T, const N: usize> {
    /// Next sequence number to write; producer-owned.
    head: Index,
    /// Next sequence number to read; consumer-owned (persists across consumer restarts).
    tail: Index,
    /// Records the producer dropped because the ring was full.
    overflow: Index,
    slots: [UnsafeCell<T>; N],
}

// SAFETY: #[repr(C)]; indexes are atomics; slots are plain records (ShmSafe,
// Copy, any bit pattern valid) whose ownership passes between producer and
// consumer through the head/tail protocol below.
unsafe impl<T: ShmSafe + Copy, const N: usize> ShmSafe for SpscRing<T, N> {}

// SAFETY: one producer and one consumer hand slots over through the
// head/tail protocol; no slot is accessed by both at once.
unsafe impl<T: Send, const N: usize> Sync for SpscRing<T, N> {}

/// A record that knows its sequence number.
pub trait Sequenced {
    fn set_seq(&mut self, seq: u64);
}

impl<T: ShmSafe + Copy + Sequenced, const N: usize> SpscRing<T, N> {
    const MASK: u64 = {
        assert!(N.is_power_of_two());
        N as u64 - 1
    };

    /// Producer side: appends a record, or counts it as overflow when full.
    /// Returns whether it was stored. Only one thread may produce.
    #[inline]
    pub fn push(&self, mut record: T) -> bool {
        // Relaxed: only this producer writes head.
        let head = self.head.0.load(Ordering::Relaxed);
        // Acquire: the consumer's reads of slots before it advanced tail
        // happen-before we overwrite them.
        let tail = self.tail.0.load(Ordering::Acquire);
        if head.wrapping_sub(tail) >= N as u64 {
            self.overflow.0.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        record.set_seq(head);
        // SAFETY: slot `head & MASK` is not readable by the consumer until we
        // publish head + 1 below, and it finished with it (tail > head - N).
        unsafe { *self.slots[(head & Self::MASK) as usize].get() = record };
        // Release: the record's bytes are visible before the new head.
        self.head.0.store(head.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer side: takes the next record, if any. Only one thread may consume.
    /// Returns the record and how many records were skipped because the
    /// indexes were inconsistent (a producer restart or corruption).
    pub fn pop(&self) -> Option<(T, u64)> {
        let mut tail = self.tail.0.load(Ordering::Relaxed);
        // Acquire: pairs with the producer's Release store of head.
        let head = self.head.0.load(Ordering::Acquire);
        let mut skipped = 0;
        let pending = head.wrapping_sub(tail);
        if pending == 0 {
            return None;
        }
        if pending > N as u64 {
            // Impossible for a healthy producer: resynchronise to the newest N.
            skipped = pending - N as u64;
            tail = head.wrapping_sub(N as u64);
        }
        // SAFETY: tail < head, so the producer published this slot and will
        // not touch it again until we advance tail past it.
        let record = unsafe { *self.slots[(tail & Self::MASK) as usize].get() };
        // Release: our read of the slot completes before the producer may reuse it.
        self.tail.0.store(tail.wrapping_add(1), Ordering::Release);
        Some((record, skipped))
    }

    /// Records dropped by the producer because the ring was full.
    pub fn overflow(&self) -> u64 {
        self.overflow.0.load(Ordering::Relaxed)
    }

    /// Records written so far (the producer's sequence number).
    pub fn produced(&self) -> u64 {
        self.head.0.load(Ordering::Relaxed)
    }

    /// Records waiting to be consumed.
    pub fn len(&self) -> u64 {
        self.head.0.load(Ordering::Relaxed).wrapping_sub(self.tail.0.load(Ordering::Relaxed)).min(N as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Kinds of [`EventRecord`].
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A packet dropped as malformed; `code` is the drop-reason index, `data` the first header bytes.
    Malformed = 1,
    /// A port was attached; `port` is its slot, `value` its DPDK port id.
    PortUp = 2,
    /// A port was detached.
    PortDown = 3,
    /// A policy generation was applied (`value`) on every worker.
    PolicyApplied = 4,
    /// A policy generation (`value`) was rejected; the reason is in the policy control block.
    PolicyRejected = 5,
    /// Answer to a [`CommandKind::Ping`] (`value` echoes its argument).
    Pong = 6,
    /// A port failed to attach; `data` holds the start of the DPDK error text.
    PortError = 7,
    /// A new flow decided by a rule with logging on (see [`FlowEventData`]).
    FlowStart = 8,
    /// A flow ended (expired, evicted, closed, cut by policy); `code` is the reason.
    FlowEnd = 9,
    /// A flow dump was written (`value` = request id, `code` unused).
    FlowsDumped = 10,
    /// Detailed drop records held back by the rate limit: `port` is the slot, `code` the
    /// drop-reason index, `value` the worker's cumulative count of held-back records.
    DropSummary = 11,
    /// A source address went over its new flows/s limit: `data[..16]` the address (IPv4
    /// mapped), `port` the slot it came in on, `value` the limit.
    SourceOverLimit = 12,
    /// A signature matched a packet of an inspected flow (see [`FlowEventData`]: the
    /// packet's addresses and ports, and the signature's index in the image in place of
    /// the rule); `code` is an [`AlertCode`].
    Alert = 13,
    /// Monitor mode: a packet the firewall would have dropped was forwarded (see
    /// [`FlowEventData`]: the packet's addresses and ports, and the rule); `code` is the
    /// drop-reason index.
    WouldDrop = 14,
    /// A protocol anomaly (see [`FlowEventData`]: the packet's addresses and ports, no
    /// rule); `code` is [`crate::anomaly::event_code`]: the kind and what was done.
    Anomaly = 15,
}

impl EventKind {
    pub fn from_u16(v: u16) -> Option<EventKind> {
        Some(match v {
            1 => EventKind::Malformed,
            2 => EventKind::PortUp,
            3 => EventKind::PortDown,
            4 => EventKind::PolicyApplied,
            5 => EventKind::PolicyRejected,
            6 => EventKind::Pong,
            7 => EventKind::PortError,
            8 => EventKind::FlowStart,
            9 => EventKind::FlowEnd,
            10 => EventKind::FlowsDumped,
            11 => EventKind::DropSummary,
            12 => EventKind::SourceOverLimit,
            13 => EventKind::Alert,
            14 => EventKind::WouldDrop,
            15 => EventKind::Anomaly,
            _ => return None,
        })
    }
}

/// The `code` of an [`EventKind::Alert`] record: what the signature did to the packet.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertCode {
    /// Logged; the packet was forwarded.
    Allowed = 0,
    /// A `drop` signature: the packet was dropped.
    Dropped = 1,
    /// A `reject` signature: the packet was dropped and the sender answered.
    Rejected = 2,
    /// Monitor mode: a `drop` signature matched; the packet was forwarded.
    WouldDrop = 3,
    /// Monitor mode: a `reject` signature matched; the packet was forwarded, unanswered.
    WouldReject = 4,
}

impl AlertCode {
    pub fn from_u16(v: u16) -> Option<AlertCode> {
        Some(match v {
            0 => AlertCode::Allowed,
            1 => AlertCode::Dropped,
            2 => AlertCode::Rejected,
            3 => AlertCode::WouldDrop,
            4 => AlertCode::WouldReject,
            _ => return None,
        })
    }
}

/// The `code` of an [`EventKind::FlowStart`] record for a flow a rule rejected (0: allowed).
pub const FLOW_START_REJECTED: u16 = 1;

/// Why a flow ended: the `code` of an [`EventKind::FlowEnd`] record, one list for the
/// dataplane that writes it and the control process that names it in the event log.
#[repr(u16)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowEndCode {
    /// Idle longer than its state's timeout.
    Timeout = 1,
    /// Evicted to make room for a new flow (table full, `evict-oldest`).
    Evicted = 2,
    /// Ended by `rampartctl flows --kill`.
    Removed = 3,
    /// A SYN reopened a closed TCP connection: the old flow ended, a new one starts.
    Reopened = 4,
    /// Cut: a new policy generation denies it.
    Policy = 100,
    /// A new policy generation passes it by a stateless rule: no longer tracked.
    Untracked = 101,
}

impl FlowEndCode {
    pub fn from_u16(v: u16) -> Option<FlowEndCode> {
        Some(match v {
            1 => FlowEndCode::Timeout,
            2 => FlowEndCode::Evicted,
            3 => FlowEndCode::Removed,
            4 => FlowEndCode::Reopened,
            100 => FlowEndCode::Policy,
            101 => FlowEndCode::Untracked,
            _ => return None,
        })
    }

    /// The event log's `flow.reason`.
    pub fn label(self) -> &'static str {
        match self {
            FlowEndCode::Timeout => "timeout",
            FlowEndCode::Evicted => "evicted",
            FlowEndCode::Removed => "removed",
            FlowEndCode::Reopened => "reopened",
            FlowEndCode::Policy => "policy",
            FlowEndCode::Untracked => "untracked",
        }
    }
}

/// A fixed-size event from the dataplane.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventRecord {
    /// Sequence number within its ring (set by `push`).
    pub seq: u64,
    /// TSC at the event (converted with the header's calibration).
    pub tsc: u64,
    /// [`EventKind`].
    pub kind: u16,
    /// Port slot, or `u16::MAX`.
    pub port: u16,
    pub code: u16,
    pub len: u16,
    pub value: u64,
    pub data: [u8; 32],
}

/// Kinds of [`CommandRecord`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Liveness probe through the whole command → event path.
    Ping = 1,
    /// Forget learned MAC addresses (all segments).
    FlushMacs = 2,
    /// Fill the flow-dump page (`value` = [`crate::DumpRequest::pack`]: dump id and cursor).
    DumpFlows = 3,
    /// End one flow now, logged as `removed` (the key: [`CommandRecord::kill_flow`]).
    KillFlow = 4,
}

impl CommandKind {
    pub fn from_u32(v: u32) -> Option<CommandKind> {
        match v {
            1 => Some(CommandKind::Ping),
            2 => Some(CommandKind::FlushMacs),
            3 => Some(CommandKind::DumpFlows),
            4 => Some(CommandKind::KillFlow),
            _ => None,
        }
    }
}

/// A fixed-size command from the control process.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommandRecord {
    pub seq: u64,
    pub kind: u32,
    pub arg: u32,
    pub value: u64,
    pub value2: u64,
    pub data: [u8; 32],
}

// SAFETY: #[repr(C)] plain integers and byte arrays; any bit pattern is valid.
unsafe impl ShmSafe for EventRecord {}
// SAFETY: #[repr(C)] of u64/u32 fields and a byte array, no padding that matters (it
// is written whole); any bit pattern is a valid record.
unsafe impl ShmSafe for CommandRecord {}

impl Sequenced for EventRecord {
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

impl Sequenced for CommandRecord {
    fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }
}

/// How flow events pack a flow into an [`EventRecord`]: `data` = source
/// address (16 bytes) + destination address (16 bytes), IPv4-mapped;
/// `value` = src port << 48 | dst port << 32 | protocol << 24 | rule index + 1
/// (0 = none) in the low 24 bits; `port` = owner port slot; `code` = action or end reason.
pub struct FlowEventData;

impl FlowEventData {
    pub fn pack(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16, proto: u8, rule: Option<u32>) -> ([u8; 32], u64) {
        let mut data = [0u8; 32];
        data[..16].copy_from_slice(src);
        data[16..].copy_from_slice(dst);
        let rule = rule.map(|r| (r + 1) & 0xff_ffff).unwrap_or(0) as u64;
        (data, (sport as u64) << 48 | (dport as u64) << 32 | (proto as u64) << 24 | rule)
    }

    /// (src, dst, sport, dport, proto, rule index)
    pub fn unpack(rec: &EventRecord) -> ([u8; 16], [u8; 16], u16, u16, u8, Option<u32>) {
        Self::unpack_parts(&rec.data, rec.value)
    }

    fn unpack_parts(data: &[u8; 32], v: u64) -> ([u8; 16], [u8; 16], u16, u16, u8, Option<u32>) {
        let mut src = [0u8; 16];
        let mut dst = [0u8; 16];
        src.copy_from_slice(&data[..16]);
        dst.copy_from_slice(&data[16..]);
        let rule = (v & 0xff_ffff) as u32;
        (src, dst, (v >> 48) as u16, (v >> 32) as u16, (v >> 24) as u8, rule.checked_sub(1))
    }
}

impl CommandRecord {
    /// [`CommandKind::KillFlow`] for the flow with this key, seen from either end
    /// (`data` and `value` as [`FlowEventData`] packs them, `arg` = zone).
    pub fn kill_flow(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16, proto: u8, zone: u16) -> CommandRecord {
        let (data, value) = FlowEventData::pack(src, dst, sport, dport, proto, None);
        CommandRecord { kind: CommandKind::KillFlow as u32, arg: zone as u32, value, data, ..Default::default() }
    }

    /// The key a [`CommandKind::KillFlow`] names: (src, dst, sport, dport, proto, zone).
    pub fn flow_key(&self) -> ([u8; 16], [u8; 16], u16, u16, u8, u16) {
        let (src, dst, sport, dport, proto, _) = FlowEventData::unpack_parts(&self.data, self.value);
        (src, dst, sport, dport, proto, self.arg as u16)
    }
}

impl EventRecord {
    /// Copies up to 32 bytes of `bytes` into `data`.
    pub fn with_data(mut self, bytes: &[u8]) -> Self {
        let n = bytes.len().min(self.data.len());
        self.data[..n].copy_from_slice(&bytes[..n]);
        self.len = n as u16;
        self
    }

    pub fn data(&self) -> &[u8] {
        &self.data[..(self.len as usize).min(self.data.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring<const N: usize>() -> Box<SpscRing<EventRecord, N>> {
        // SAFETY: SpscRing is ShmSafe: all-zero is its valid initial state.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    fn ev(v: u64) -> EventRecord {
        EventRecord { value: v, ..Default::default() }
    }

    #[test]
    fn fifo_with_sequence_numbers() {
        let r = ring::<8>();
        for i in 0..5 {
            assert!(r.push(ev(i)));
        }
        for i in 0..5 {
            let (rec, skipped) = r.pop().unwrap();
            assert_eq!((rec.value, rec.seq, skipped), (i, i, 0));
        }
        assert!(r.pop().is_none());
    }

    #[test]
    fn overflow_is_counted_never_overwrites() {
        let r = ring::<4>();
        for i in 0..10 {
            r.push(ev(i));
        }
        assert_eq!(r.overflow(), 6);
        let got: Vec<u64> = std::iter::from_fn(|| r.pop()).map(|(e, _)| e.value).collect();
        assert_eq!(got, vec![0, 1, 2, 3], "oldest records kept, newer ones counted as lost");
        assert!(r.push(ev(99)));
        assert_eq!(r.pop().unwrap().0.value, 99);
    }

    #[test]
    fn corrupt_head_cannot_overrun_consumer() {
        let r = ring::<4>();
        r.head.0.store(1_000_000, Ordering::Relaxed);
        let (_, skipped) = r.pop().unwrap();
        assert_eq!(skipped, 1_000_000 - 4);
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn concurrent_producer_consumer_loses_nothing_silently() {
        let r: &'static SpscRing<EventRecord, 64> = Box::leak(ring::<64>());
        const TOTAL: u64 = 200_000;
        let producer = std::thread::spawn(move || {
            let mut stored = 0;
            for i in 0..TOTAL {
                if r.push(ev(i)) {
                    stored += 1;
                }
            }
            stored
        });
        let mut received = 0u64;
        let mut last = None;
        loop {
            match r.pop() {
                Some((rec, _)) => {
                    if let Some(l) = last {
                        assert!(rec.value > l, "records out of order");
                    }
                    assert_eq!(rec.seq, received, "sequence numbers are contiguous");
                    last = Some(rec.value);
                    received += 1;
                }
                None if producer.is_finished() && r.is_empty() => break,
                None => std::hint::spin_loop(),
            }
        }
        let stored = producer.join().unwrap();
        assert_eq!(received, stored);
        assert_eq!(stored + r.overflow(), TOTAL, "every record is either delivered or counted lost");
    }
}
