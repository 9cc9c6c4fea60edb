//! The shared-memory contract between `rampart-dataplane` and the control
//! process — the only channel between them (DESIGN.md §2).
//!
//! One file-backed segment (normally under `/dev/shm`, mode 0600) holds a
//! versioned `#[repr(C)]` [`Layout`]: a header with magic, ABI version,
//! layout sizes, owner pid and heartbeats both ways; two policy slots with a
//! seal/publish/validate/acknowledge generation protocol ([`policy`]); a
//! command ring (control → dataplane) and one event ring per worker plus one
//! for the main lcore (dataplane → control), all single-producer /
//! single-consumer with sequence numbers and overflow counters ([`ring`]);
//! one cache-line-aligned counter block per worker ([`counters`]: port counters and
//! worker totals one list each, drop reasons one list); the flow
//! table's counters ([`FlowStatus`], one list) and a paged flow-dump region
//! ([`dump`]).
//! Offsets, never pointers: either process may restart and map it anew.
//!
//! The dataplane creates and owns the segment; the control process attaches,
//! and refuses a segment whose magic, ABI version or layout sizes differ
//! from its own. This crate depends on neither DPDK nor either process.

pub mod anomaly;
pub mod counters;
pub mod dump;
pub mod image;
pub mod layout;
pub mod policy;
pub mod ring;
mod segment;

pub use anomaly::{Anomaly, AnomalyAction, AnomalyImage, AnomalyOutcome, ChecksumScope};
pub use counters::{Counter, CounterField, DropReason, GuardCounterValues, GuardCounters, InspectCounterValues, InspectCounters, PortCounterValues, PortCounters, Report, WorkerCounters, WorkerTotalValues, WorkerTotals};
pub use dump::{DumpRequest, DumpedFlow, FlowDump, Page, DUMP_PAGE_RECORDS};
pub use image::{Attach, ConntrackImage, FirewallImage, GuardImage, InspectionImage, LimitsImage, MonitorImage, PolicyImage, PortImage, RateImage, RuleAction, RuleImage, SegmentImage, Verdict};
pub use layout::*;
pub use policy::{Fetched, PolicyOutcome};
pub use ring::{CommandRecord, EventRecord};
pub use segment::{Segment, ShmError};

/// Monotonic clock in nanoseconds (CLOCK_MONOTONIC), the heartbeat time base.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
