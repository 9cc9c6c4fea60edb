//! Rampart's stateful flow table: connection tracking shared by every dataplane worker.
//!
//! Its job is step 5 of the packet path (DESIGN.md §3): given a packet's canonical
//! [`FlowKey`](rampart_packet::FlowKey), find its flow (a hit returns the cached verdict),
//! track the packet (TCP state machine with sequence-window checks in the spirit of Linux
//! conntrack, UDP/ICMP/generic pseudo-states, per-direction counters, timestamps), insert
//! new flows under per-guest quotas and an explicit table-full policy, and age flows out
//! incrementally with per-state timeouts, reporting each flow's end. One table is shared
//! by all workers without any global lock: lookups are wait-free and inserts never block
//! them (see the concurrency notes in `table/mod.rs`). Memory is allocated once, at
//! creation, and bounded. Its boundaries: it knows nothing of DPDK, mbufs, policy or
//! event rings — the caller passes keys, hashes, a [`PacketInfo`], the classifier's
//! verdict and the current time (`now` in milliseconds, from whatever clock it likes),
//! and decides what to do with invalid packets, refusals and ended flows. It never
//! allocates after [`FlowTable::new`], never panics on packet input, and has three small
//! `unsafe` blocks: two hints to the hardware/OS (a cache prefetch and
//! `madvise(MADV_HUGEPAGE)`) and the SSE2 tag compare; all shared state is atomics, so the concurrency needs none.
//!
//! ```
//! use rampart_flow::{FlowTable, FlowTableConfig, NewFlow, PacketInfo};
//! use rampart_packet::{ipv4_mapped, FlowKey};
//!
//! let table = FlowTable::new(&FlowTableConfig { capacity: 1024, ..Default::default() }).unwrap();
//! let query = FlowKey {
//!     src_addr: ipv4_mapped([10, 0, 0, 1]), dst_addr: ipv4_mapped([10, 0, 0, 2]),
//!     src_port: 5353, dst_port: 53, proto: 17, zone: 0,
//! };
//! let pkt = PacketInfo { bytes: 60, ..Default::default() };
//! let (key, dir, hash) = table.prepare(&query);
//! assert!(table.lookup(&key, hash).is_none());
//! let new = NewFlow { verdict: 7, owner: 1 };
//! table.insert(&key, hash, dir, new, &pkt, 1_000).unwrap();
//!
//! // The reply finds the same entry.
//! let (key, dir, hash) = table.prepare(&query.reversed());
//! let hit = table.lookup(&key, hash).unwrap();
//! assert_eq!(hit.verdict, 7);
//! let tracked = table.track(&hit, dir, &pkt, 1_500).unwrap();
//! assert!(tracked.reply && tracked.outcome.is_valid());
//! ```

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod config;
mod entry;
mod state;
mod table;
mod tcp;

pub use config::{FlowTableConfig, FullPolicy, Timeouts};
pub use entry::FlowEntry;
pub use state::{EndReason, FlowEnd, FlowRecord, FlowState, InvalidReason, Outcome};
pub use table::{
    ConfigError, ExpireStep, FlowHit, FlowStats, FlowTable, InsertError, Inserted, NewFlow,
    PacketInfo, Prepared, Related, Revisit, Stale, Tracked, MAX_CAPACITY,
};
pub use tcp::TcpSegment;
