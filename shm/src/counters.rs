//! Per-worker counter blocks. Each worker writes only its own block, so a
//! counter is a plain load + store (no locked read-modify-write on the packet
//! path); readers in the control process sum the blocks of all workers.

use crate::layout::{ShmSafe, MAX_DROP_REASONS, MAX_PORTS};
use rampart_packet::ParseError;
use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter with a single writer.
#[repr(transparent)]
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this, so load + store cannot
    /// lose an update; `Relaxed` because readers need no ordering with other
    /// memory, only an eventually visible, untorn 64-bit value.
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Zeroes the counter; only while no worker can write it (port slot not in use).
    pub fn reset(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Traffic of one port as seen by one worker.
#[repr(C, align(64))]
#[derive(Default)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub rx_bytes: Counter,
    pub tx_packets: Counter,
    pub tx_bytes: Counter,
    /// Packets received on this port and dropped (any reason).
    pub drop_packets: Counter,
    pub drop_bytes: Counter,
    /// Packets for this port that its transmit queue refused.
    pub tx_full: Counter,
}

/// Work accounting of one worker (DESIGN.md §8's busy cycles per packet).
#[repr(C, align(64))]
#[derive(Default)]
pub struct WorkerTotals {
    /// TSC cycles spent in loop iterations that received packets.
    pub busy_cycles: Counter,
    /// Packets received in those iterations.
    pub busy_packets: Counter,
    /// Iterations that found no packet on any queue.
    pub idle_polls: Counter,
    /// Times the worker slept because it had been idle.
    pub sleeps: Counter,
    /// Events that did not fit in the worker's event ring.
    pub events_lost: Counter,
}

/// What one worker counted for one rule (by the rule's stable counter slot).
#[repr(C)]
#[derive(Default)]
pub struct RuleCounters {
    /// Packets of flows this rule decided (first packets and tracked packets).
    pub packets: Counter,
    pub bytes: Counter,
    /// New flows this rule decided.
    pub flows: Counter,
}

/// One worker's counter block.
#[repr(C, align(64))]
pub struct WorkerCounters {
    pub ports: [PortCounters; MAX_PORTS],
    pub drops: [Counter; MAX_DROP_REASONS],
    pub totals: WorkerTotals,
    pub rules: [RuleCounters; crate::layout::MAX_RULE_COUNTERS],
}

// SAFETY: #[repr(C)], only AtomicU64-based counters; all-zero is the initial
// state; every field is single-writer (its worker) and read atomically.
unsafe impl ShmSafe for WorkerCounters {}

impl WorkerCounters {
    #[inline(always)]
    pub fn drop(&self, port: usize, reason: DropReason, bytes: u64) {
        self.drops[reason.index()].add(1);
        if let Some(p) = self.ports.get(port) {
            p.drop_packets.add(1);
            p.drop_bytes.add(bytes);
        }
    }
}

/// Why a packet was dropped: a parse failure or a decision on the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The frame failed parsing (counted per malformation).
    Malformed(ParseError),
    /// Received on a port whose admin state is disabled.
    PortDisabled,
    /// The policy's default action is drop.
    PolicyDrop,
    /// No policy applied yet: fail closed.
    NoPolicy,
    /// The destination's transmit queue was full.
    TxFull,
    /// Nowhere to send it (segment has no other port, wire peer absent).
    NoDestination,
    /// Destination is the port it came from.
    Hairpin,
    /// Received on a port that is being detached.
    PortDetached,
    /// A `deny` rule matched the flow's first packet.
    RuleDeny,
    /// A `reject` rule matched (an RST / ICMP unreachable was sent back).
    RuleReject,
    /// Not consistent with its tracked connection (TCP window, flags, state).
    ConntrackInvalid,
    /// The first packet of a TCP flow was not a SYN.
    ConntrackNotSyn,
    /// The flow table is full (table-full policy `refuse`).
    FlowTableFull,
    /// The sending guest is at its flow quota.
    FlowQuota,
    /// A non-first IP fragment (fragments after the first are dropped by policy).
    Fragment,
    /// An ICMP error whose quoted packet matches no tracked flow (where defaults track or drop).
    IcmpUnrelated,
    /// A flow the new policy generation denies (cut at the first packet after the reload).
    PolicyCut,
    /// An IPv6 packet with an IPv4-mapped address (invalid on the wire; it would
    /// otherwise be classified by IPv4 rules).
    Ipv6MappedAddress,
    /// A multi-segment packet the dataplane could not linearise: never passed on
    /// uninspected.
    Chained,
}

/// First drop-reason index used by path (non-parse) reasons.
const PATH_BASE: usize = 40;
const PATH_REASONS: [DropReason; 18] = [
    DropReason::PortDisabled,
    DropReason::PolicyDrop,
    DropReason::NoPolicy,
    DropReason::TxFull,
    DropReason::NoDestination,
    DropReason::Hairpin,
    DropReason::PortDetached,
    DropReason::RuleDeny,
    DropReason::RuleReject,
    DropReason::ConntrackInvalid,
    DropReason::ConntrackNotSyn,
    DropReason::FlowTableFull,
    DropReason::FlowQuota,
    DropReason::Fragment,
    DropReason::IcmpUnrelated,
    DropReason::PolicyCut,
    DropReason::Ipv6MappedAddress,
    DropReason::Chained,
];
const _: () = assert!(ParseError::COUNT <= PATH_BASE);
const _: () = assert!(PATH_BASE + PATH_REASONS.len() <= MAX_DROP_REASONS);

impl DropReason {
    /// Index of this reason's counter in [`WorkerCounters::drops`].
    #[inline(always)]
    pub fn index(self) -> usize {
        match self {
            DropReason::Malformed(e) => e as usize,
            DropReason::PortDisabled => PATH_BASE,
            DropReason::PolicyDrop => PATH_BASE + 1,
            DropReason::NoPolicy => PATH_BASE + 2,
            DropReason::TxFull => PATH_BASE + 3,
            DropReason::NoDestination => PATH_BASE + 4,
            DropReason::Hairpin => PATH_BASE + 5,
            DropReason::PortDetached => PATH_BASE + 6,
            DropReason::RuleDeny => PATH_BASE + 7,
            DropReason::RuleReject => PATH_BASE + 8,
            DropReason::ConntrackInvalid => PATH_BASE + 9,
            DropReason::ConntrackNotSyn => PATH_BASE + 10,
            DropReason::FlowTableFull => PATH_BASE + 11,
            DropReason::FlowQuota => PATH_BASE + 12,
            DropReason::Fragment => PATH_BASE + 13,
            DropReason::IcmpUnrelated => PATH_BASE + 14,
            DropReason::PolicyCut => PATH_BASE + 15,
            DropReason::Ipv6MappedAddress => PATH_BASE + 16,
            DropReason::Chained => PATH_BASE + 17,
        }
    }

    /// Every reason, in counter order.
    pub fn all() -> impl Iterator<Item = DropReason> {
        ParseError::ALL.iter().map(|&e| DropReason::Malformed(e)).chain(PATH_REASONS)
    }

    /// Metric label, e.g. `malformed_ipv4_bad_ihl` or `port_disabled`.
    pub fn label(self) -> String {
        match self {
            DropReason::Malformed(e) => format!("malformed_{}", e.name()),
            DropReason::PortDisabled => "port_disabled".into(),
            DropReason::PolicyDrop => "policy_drop".into(),
            DropReason::NoPolicy => "no_policy".into(),
            DropReason::TxFull => "tx_full".into(),
            DropReason::NoDestination => "no_destination".into(),
            DropReason::Hairpin => "hairpin".into(),
            DropReason::PortDetached => "port_detached".into(),
            DropReason::RuleDeny => "rule_deny".into(),
            DropReason::RuleReject => "rule_reject".into(),
            DropReason::ConntrackInvalid => "conntrack_invalid".into(),
            DropReason::ConntrackNotSyn => "conntrack_not_syn".into(),
            DropReason::FlowTableFull => "flow_table_full".into(),
            DropReason::FlowQuota => "flow_quota".into(),
            DropReason::Fragment => "fragment".into(),
            DropReason::IcmpUnrelated => "icmp_unrelated".into(),
            DropReason::PolicyCut => "policy_cut".into(),
            DropReason::Ipv6MappedAddress => "ipv6_mapped_address".into(),
            DropReason::Chained => "chained".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reason_indexes_are_distinct_and_in_range() {
        let mut seen = std::collections::HashSet::new();
        for r in DropReason::all() {
            assert!(r.index() < MAX_DROP_REASONS);
            assert!(seen.insert(r.index()), "{r:?} shares an index");
            assert!(!r.label().is_empty());
        }
    }

    #[test]
    fn counter_adds() {
        let c = Counter::default();
        c.add(3);
        c.add(4);
        assert_eq!(c.get(), 7);
    }
}
