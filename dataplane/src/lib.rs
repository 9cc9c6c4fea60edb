//! `rampart-dataplane`: the DPDK shell around the packet path.
//!
//! The packet path's decisions live in `rampart-pipeline` (DPDK-free); this crate runs
//! them on DPDK: [`dpdk`] is the only module that calls DPDK (EAL, ports, the owning
//! [`dpdk::Mbuf`]); worker lcores ([`worker`]) receive bursts, hand them to their
//! pipeline and carry out its actions; the main lcore ([`manager`]) talks to the control
//! process through the shared-memory segment, hot-plugs ports and replaces the runtime
//! the workers read ([`rcu`]).

pub mod dpdk;
pub mod manager;
pub mod rcu;
pub mod worker;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// State shared by the main lcore and the workers.
pub struct Shared {
    pub segment: rampart_shm::Segment,
    /// The current runtime, swapped in RCU style.
    pub runtime: Arc<rcu::RuntimeCell>,
    /// Set by SIGINT/SIGTERM: every lcore returns.
    pub stop: Arc<AtomicBool>,
    pub workers: usize,
    /// The idle back-off of every worker.
    pub idle: worker::Backoff,
    /// Flow directions each worker keeps inspection state for (`[inspection_state]`).
    pub inspect_streams: usize,
    /// The connection-tracking table, shared by all workers for the process lifetime.
    pub flows: rampart_flow::FlowTable,
    /// Packet buffers (every port's receive queues fill from it).
    pub pool: dpdk::Mempool,
    /// TSC at start and TSC ticks per millisecond: the flow table's clock.
    pub tsc0: u64,
    pub tsc_per_ms: u64,
}

impl Shared {
    /// Milliseconds since the dataplane started (the flow table's time base).
    #[inline(always)]
    pub fn now_ms(&self) -> u64 {
        dpdk::rdtsc().wrapping_sub(self.tsc0) / self.tsc_per_ms.max(1)
    }

    /// The same clock in milliseconds and in nanoseconds, from one TSC read.
    #[inline(always)]
    pub fn now(&self) -> (u64, u64) {
        let (t, per_ms) = (dpdk::rdtsc().wrapping_sub(self.tsc0), self.tsc_per_ms.max(1));
        let ms = t / per_ms;
        (ms, ms * 1_000_000 + (t % per_ms) * 1_000_000 / per_ms)
    }
}
