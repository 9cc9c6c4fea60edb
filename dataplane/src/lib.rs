//! `rampart-dataplane`: the DPDK primary process that owns the packet path.
//!
//! The main lcore ([`manager`]) talks to the control process through the
//! shared-memory segment and hot-plugs ports; worker lcores ([`worker`]) run
//! to completion over their queues using the current [`runtime::Runtime`].
//! Only [`dpdk`] calls DPDK. Forwarding logic ([`runtime`], [`mac_table`])
//! is DPDK-free and unit-tested without EAL.

pub mod dpdk;
pub mod firewall;
pub mod fragments;
pub mod mac_table;
pub mod manager;
pub mod reject;
pub mod runtime;
pub mod worker;

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64};

/// State shared by the main lcore and the workers.
pub struct Shared {
    pub segment: rampart_shm::Segment,
    /// Current runtime (RCU pointer); null until the first policy is applied.
    pub runtime: AtomicPtr<runtime::Runtime>,
    /// Epoch of the runtime each worker runs.
    pub worker_epoch: [AtomicU64; rampart_shm::MAX_WORKERS],
    pub stop: AtomicBool,
    pub workers: usize,
    pub idle_sleep_us: u32,
    /// The connection-tracking table, shared by all workers for the process lifetime.
    pub flows: rampart_flow::FlowTable,
    /// Packet buffers (workers allocate reject answers from it).
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
}
