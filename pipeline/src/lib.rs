//! `rampart-pipeline`: what happens to every burst of frames, without DPDK.
//!
//! The dataplane's worker receives a burst of mbufs on one port, hands their bytes to a
//! [`Pipeline`] as [`Frame`]s (mutable bytes plus what the mbuf says about them: segment
//! count, checksum state) and carries out the [`Action`] it gets back for each: forward
//! to a set of ports, send an answer the pipeline wrote in place back where it came
//! from, or drop (already counted, with its reason). Everything that decides lives here,
//! as stages named after their job:
//!
//! - [`runtime`]: one policy generation's forwarding state (ports, segments, wire pairs);
//! - [`mac_table`]: a segment's lock-free MAC learning table;
//! - [`guard`]: anti-spoofing and L2 hygiene of what guest ports send;
//! - [`anomaly`]: protocol anomalies in the headers (flags, land, options, TTL, ICMP size,
//!   checksums) and what is done about them;
//! - [`firewall`]: the stateful firewall (flow table hit, ACL on a miss, conntrack);
//! - [`fragments`]: later IP fragments follow their first fragment's verdict;
//! - [`inspect`]: inline inspection of the flows `inspect` rules allow (signatures);
//! - [`flowbits`]: the bits inspected flows carry between packets (`flowbits`);
//! - [`reject`]: the TCP RST / ICMP unreachable a `reject` rule answers with;
//! - [`event_limit`]: the per (port, reason) budget of detailed drop records;
//! - [`throttle`]: token buckets: a port's packets/s, bytes/s and floods;
//! - [`path`]: the per-burst order of those stages and the actions they produce.
//!
//! Nothing here depends on `rampart-ffi` or links DPDK, so the unit tests, the fuzz
//! targets and the benches run it on plain byte buffers. It writes only to shared-memory
//! types of `rampart-shm` (this worker's counter block and event ring) and the flow table.

pub mod anomaly;
pub mod event_limit;
pub mod firewall;
pub mod flowbits;
pub mod fragments;
pub mod guard;
pub mod inspect;
pub mod mac_table;
pub mod path;
pub mod reject;
pub mod runtime;
pub mod thresholds;
pub mod throttle;

pub use path::{Action, Checksums, Context, Frame, Pipeline, PortSet};

/// Highest DPDK port id + 1 that a runtime maps to local port indexes. The dataplane
/// asserts at compile time that this is DPDK's `RTE_MAX_ETHPORTS`.
pub const MAX_PORT_IDS: usize = 32;

/// The time-stamp counter: event timestamps and the busy-cycle accounting. Inlined
/// (DPDK's `rte_rdtsc()` executes the same instruction): it runs several times a burst.
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the time-stamp counter (no memory is touched); every
    // x86-64 CPU has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Hints the CPU to fetch the cache line at `p` (a frame's first bytes) ahead of use.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    // SAFETY: a prefetch is only a hint: it never faults and never reads memory into
    // the program's view, whatever the address.
    unsafe { core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p as *const i8) };
}
