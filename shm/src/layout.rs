//! The segment's memory layout. Every type here is `#[repr(C)]`, holds only
//! integers, atomics and arrays of them, is valid for any bit pattern and
//! starts life all-zero (a freshly truncated file) — see [`ShmSafe`].

use crate::counters::WorkerCounters;
use crate::dump::{DumpedFlow, FlowDump};
use crate::ring::{CommandRecord, EventRecord, SpscRing};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// First bytes of every Rampart segment.
pub const MAGIC: [u8; 8] = *b"RAMPART\0";
/// Bumped on any change to the layout or to the meaning of a field.
pub const ABI_VERSION: u32 = 12;
/// Worker lcores a segment has room for.
pub const MAX_WORKERS: usize = 16;
/// Event rings: one per worker plus one for the main lcore (index `MAX_WORKERS`).
pub const MAX_EVENT_RINGS: usize = MAX_WORKERS + 1;
/// Index of the main lcore's event ring.
pub const MAIN_EVENT_RING: usize = MAX_WORKERS;
/// Ports (counter slots) a segment has room for.
pub const MAX_PORTS: usize = 64;
/// Rules with their own counters (stable counter slots, assigned by the control process).
pub const MAX_RULE_COUNTERS: usize = 16384;
/// Signatures with their own alert counters (by the stable slot the control process gives
/// each gid:sid); the others share no counter but the totals.
pub const MAX_SIGNATURE_COUNTERS: usize = 8192;
/// Drop-reason counters per worker.
pub const MAX_DROP_REASONS: usize = 96;
/// Records per event ring (power of two).
pub const EVENT_RING_RECORDS: usize = 4096;
/// Records in the command ring (power of two).
pub const COMMAND_RING_RECORDS: usize = 256;
/// Largest compiled policy image (slots are sparse in tmpfs until written).
pub const POLICY_SLOT_BYTES: usize = 16 << 20;
/// Bytes of a rejection reason, NUL-padded UTF-8.
pub const REASON_BYTES: usize = 248;

/// Memory that may be placed in the shared segment.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain no pointers or references,
/// consist only of integers, atomics, `UnsafeCell`s of those and arrays of
/// them (so every bit pattern, including all-zero, is a valid value), and be
/// safe to access concurrently from two processes through the atomics or
/// protocols documented on each type.
pub unsafe trait ShmSafe {}

/// Segment lifecycle, in [`Header::state`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Zeroed, or being initialised by the dataplane.
    Initializing = 0,
    /// The dataplane is running and serving this segment.
    Ready = 1,
    /// The dataplane is shutting down cleanly.
    Stopping = 2,
}

/// Identity, versions and liveness of the segment.
#[repr(C, align(64))]
pub struct Header {
    pub magic: [u8; 8],
    pub abi_version: u32,
    /// `size_of::<Layout>()` as the creator compiled it.
    pub layout_size: u32,
    /// Sizes of the main record types, so a foreign build with equal totals is still refused.
    pub record_sizes: [u32; 5],
    pub max_workers: u32,
    pub max_ports: u32,
    /// [`SegmentState`], stored last on creation with `Release`.
    pub state: AtomicU32,
    pub owner_pid: AtomicU32,
    /// Random per dataplane start: a changed instance means the dataplane restarted.
    pub instance: AtomicU64,
    /// Worker lcores actually running.
    pub workers: AtomicU32,
    pub control_pid: AtomicU32,
    /// TSC calibration for converting event timestamps to wall-clock time.
    pub tsc_hz: AtomicU64,
    pub tsc_at_start: AtomicU64,
    pub realtime_ns_at_start: AtomicU64,
    /// CLOCK_MONOTONIC ns of the dataplane's last heartbeat (main lcore, every few ms).
    pub dataplane_heartbeat_ns: AtomicU64,
    /// CLOCK_MONOTONIC ns of the control process's last heartbeat.
    pub control_heartbeat_ns: AtomicU64,
}

/// State of the policy generation protocol (see [`crate::policy`]).
#[repr(C, align(64))]
pub struct PolicyControl {
    /// Latest sealed generation; it lives in slot `gen % 2`. Written by control.
    pub published_gen: AtomicU64,
    /// Generation every worker runs. Written by the dataplane.
    pub applied_gen: AtomicU64,
    /// Latest generation the dataplane refused; `reason` says why. Written by the dataplane.
    pub rejected_gen: AtomicU64,
    pub reason: UnsafeCell<[u8; REASON_BYTES]>,
    /// Generation each worker runs (its acknowledgement after the swap).
    pub worker_gen: [AtomicU64; MAX_WORKERS],
}

/// One of the two policy slots: a seqlock-protected compiled image.
#[repr(C, align(64))]
pub struct PolicySlot {
    /// 0 while control writes the slot; the sealed generation afterwards.
    pub gen: AtomicU64,
    pub len: AtomicU64,
    /// CRC-32 of `data[..len]`.
    pub checksum: AtomicU64,
    pub data: UnsafeCell<[u8; POLICY_SLOT_BYTES]>,
}

/// State of a port slot, in [`PortStatus::state`].
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortState {
    /// No port in this slot.
    Absent = 0,
    /// Attached and polled.
    Up = 1,
    /// The device failed to attach; `message` says why.
    Error = 2,
}

/// What the dataplane reports about one port slot. Written by the main lcore only.
#[repr(C, align(64))]
pub struct PortStatus {
    /// [`PortState`]; stored with Release after `message`.
    pub state: AtomicU32,
    /// DPDK port id while Up.
    pub port_id: AtomicU32,
    /// Policy generation that last changed this slot.
    pub gen: AtomicU64,
    /// Link status (1 = up; for vhost ports: a guest is connected).
    pub link: AtomicU32,
    pub message: UnsafeCell<[u8; 172]>,
}

/// How a [`FlowStatus`] counter is exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowMetric {
    /// A gauge family of its own, by this name.
    Gauge(&'static str),
    /// One `event` label of the `rampart_flow_events_total` counter family.
    Event(&'static str),
}

/// One [`FlowStatus`] counter: its name (the field, and its key in `rampartctl stats`),
/// how it is exported and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowField {
    pub name: &'static str,
    pub metric: FlowMetric,
    pub help: &'static str,
}

/// Defines [`FlowStatus`] from one list of counters: each row is the field, how it is
/// exported, where the main lcore takes it from (`table`: the flow table's `FlowStats`
/// field of that name; `capacity`: the table's capacity; `main`: counted by the main
/// lcore itself) and its meaning. The shared-memory fields, [`FlowStatus::publish`],
/// [`FlowStatus::fields`] (the Prometheus metrics and `rampartctl stats`) all follow it.
macro_rules! flow_status {
    ($($field:ident: $kind:ident($metric:literal) from $source:ident, $help:literal;)*) => {
        /// The flow table as the main lcore last saw it (refreshed every ~100 ms).
        #[repr(C, align(64))]
        pub struct FlowStatus {
            $(#[doc = $help] pub $field: AtomicU64,)*
            /// Live flows owned by each port slot.
            pub per_port: [AtomicU64; MAX_PORTS],
        }

        impl FlowStatus {
            /// Every counter, in order.
            pub const FIELDS: &[FlowField] = &[$(FlowField { name: stringify!($field), metric: FlowMetric::$kind($metric), help: $help },)*];

            /// Every counter with its value now.
            pub fn fields(&self) -> impl Iterator<Item = (&'static FlowField, u64)> {
                // Relaxed: independent statistics, each an untorn 64-bit value.
                let values = [$(self.$field.load(Ordering::Relaxed),)*];
                Self::FIELDS.iter().zip(values)
            }

            /// Main lcore: stores the flow table's counters (all but those it counts itself).
            pub fn publish(&self, stats: &rampart_flow::FlowStats, capacity: u32) {
                $(flow_status!(@store self, stats, capacity, $field, $source);)*
            }
        }
    };
    // Relaxed: statistics; readers want untorn values, no ordering with other memory.
    (@store $self:ident, $stats:ident, $capacity:ident, $field:ident, table) => {
        $self.$field.store($stats.$field as u64, Ordering::Relaxed)
    };
    (@store $self:ident, $stats:ident, $capacity:ident, $field:ident, capacity) => {
        $self.$field.store($capacity as u64, Ordering::Relaxed)
    };
    (@store $self:ident, $stats:ident, $capacity:ident, $field:ident, main) => {};
}

flow_status! {
    live: Gauge("rampart_flows") from table, "Live flows in the connection-tracking table";
    capacity: Gauge("rampart_flow_table_capacity") from capacity, "Flow table capacity";
    creations: Event("created") from table, "Flows created";
    expirations: Event("expired") from table, "Flows ended by ageing (idle longer than their state's timeout)";
    evictions: Event("evicted") from table, "Flows evicted to make room for new ones (table full, `evict-oldest`)";
    removals: Event("removed") from table, "Flows a reload cut or untracked, or `rampartctl flows --kill` ended";
    reopened: Event("reopened") from table, "TCP flows a SYN reopened";
    invalid: Event("invalid") from table, "Packets invalid for their flow (or as a flow's first packet)";
    full_refusals: Event("refused_full") from table, "New flows refused: the table was full";
    quota_refusals: Event("refused_quota") from table, "New flows refused: the guest was at its flow quota";
    killed: Event("killed") from main, "Flows ended by `KillFlow` commands (`rampartctl flows --kill`)";
}

pub type EventRing = SpscRing<EventRecord, EVENT_RING_RECORDS>;
pub type CommandRing = SpscRing<CommandRecord, COMMAND_RING_RECORDS>;

/// The whole segment.
#[repr(C)]
pub struct Layout {
    pub header: Header,
    pub policy: PolicyControl,
    pub commands: CommandRing,
    pub ports: [PortStatus; MAX_PORTS],
    pub flows: FlowStatus,
    pub flow_dump: FlowDump,
    pub workers: [WorkerCounters; MAX_WORKERS],
    pub events: [EventRing; MAX_EVENT_RINGS],
    pub slots: [PolicySlot; 2],
}

// SAFETY: all of these are #[repr(C)], made only of integers, atomics and
// UnsafeCell'd byte arrays; all-zero is their initial state; cross-process
// access goes through atomics or the seqlock/ring protocols documented on them.
unsafe impl ShmSafe for Header {}
// SAFETY: #[repr(C)] atomics (generations, acknowledgements) and an UnsafeCell'd
// rejection reason written before `rejected_gen` and read as untrusted bytes; all-zero
// means "nothing published".
unsafe impl ShmSafe for PolicyControl {}
// SAFETY: #[repr(C)] atomics (generation, length, CRC) and an UnsafeCell'd byte array
// that control writes only while `gen` is 0 and readers trust only when the CRC over
// `len` bytes matches a sealed generation; all-zero is an empty slot.
unsafe impl ShmSafe for PolicySlot {}
// SAFETY: #[repr(C)] atomics and an UnsafeCell'd message that the dataplane writes
// before its Release store of `state`; readers treat it as untrusted bytes; all-zero is
// "absent".
unsafe impl ShmSafe for PortStatus {}
// SAFETY: #[repr(C)] AtomicU64 counters only (the flow_status! list); all-zero is a fresh table.
unsafe impl ShmSafe for FlowStatus {}
// SAFETY: #[repr(C)] of the ShmSafe parts above and below (header, rings, counters, dump, slots) and nothing else.
unsafe impl ShmSafe for Layout {}
// SAFETY: the Layout is only ever accessed through shared references whose
// interior mutability is atomics or protocol-guarded UnsafeCells.
unsafe impl Sync for Layout {}

const _: () = assert!(std::mem::size_of::<EventRecord>() == 64);
const _: () = assert!(std::mem::size_of::<CommandRecord>() == 64);
const _: () = assert!(std::mem::size_of::<Header>() <= 4096);
const _: () = assert!(std::mem::size_of::<Layout>() < u32::MAX as usize);
const _: () = assert!(std::mem::size_of::<WorkerCounters>().is_multiple_of(64));
const _: () = assert!(std::mem::size_of::<PortStatus>() == 192);

// The header's layout is the contract's anchor: `magic` and `abi_version` must never move
// (that is how another ABI version is recognised and named), and any other change must
// come with an ABI_VERSION bump. These fail to compile when a field moves.
const _: () = {
    use core::mem::offset_of;
    assert!(offset_of!(Header, magic) == 0);
    assert!(offset_of!(Header, abi_version) == 8);
    assert!(offset_of!(Header, layout_size) == 12);
    assert!(offset_of!(Header, record_sizes) == 16);
    assert!(offset_of!(Header, max_workers) == 36);
    assert!(offset_of!(Header, max_ports) == 40);
    assert!(offset_of!(Header, state) == 44);
    assert!(offset_of!(Header, owner_pid) == 48);
    assert!(offset_of!(Header, instance) == 56);
    assert!(offset_of!(Header, workers) == 64);
    assert!(offset_of!(Header, control_pid) == 68);
    assert!(offset_of!(Header, tsc_hz) == 72);
    assert!(offset_of!(Header, tsc_at_start) == 80);
    assert!(offset_of!(Header, realtime_ns_at_start) == 88);
    assert!(offset_of!(Header, dataplane_heartbeat_ns) == 96);
    assert!(offset_of!(Header, control_heartbeat_ns) == 104);
    assert!(std::mem::size_of::<Header>() == 128);
    assert!(offset_of!(Layout, header) == 0);
};

/// Where the header's identity fields sit in the file, for reading them before the
/// segment is mapped (a segment of another ABI version has another size).
pub const MAGIC_OFFSET: usize = core::mem::offset_of!(Header, magic);
pub const ABI_VERSION_OFFSET: usize = core::mem::offset_of!(Header, abi_version);

impl PortStatus {
    /// Main lcore: records a port's state and message.
    pub fn set(&self, state: PortState, port_id: u16, gen: u64, message: &str) {
        let mut bytes = [0u8; 172];
        let n = message.len().min(bytes.len() - 1);
        bytes[..n].copy_from_slice(&message.as_bytes()[..n]);
        // SAFETY: single writer (the main lcore); readers Acquire-load `state` first.
        unsafe { *self.message.get() = bytes };
        self.port_id.store(port_id as u32, Ordering::Relaxed);
        self.gen.store(gen, Ordering::Relaxed);
        // Release: message and id are visible to a reader that sees the state.
        self.state.store(state as u32, Ordering::Release);
    }

    /// Reader: (state, port id, message). The message may be mid-update; it is informational.
    pub fn get(&self) -> (u32, u32, String) {
        let state = self.state.load(Ordering::Acquire);
        // SAFETY: plain bytes; a concurrent update can at worst mix two messages.
        let bytes = unsafe { *self.message.get() };
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        (state, self.port_id.load(Ordering::Relaxed), String::from_utf8_lossy(&bytes[..end]).into_owned())
    }
}

/// The sizes recorded in (and checked against) the header.
pub fn record_sizes() -> [u32; 5] {
    [
        std::mem::size_of::<DumpedFlow>() as u32,
        std::mem::size_of::<Header>() as u32,
        std::mem::size_of::<WorkerCounters>() as u32,
        std::mem::size_of::<EventRing>() as u32,
        std::mem::size_of::<PolicySlot>() as u32,
    ]
}
