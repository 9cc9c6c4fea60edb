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

// The counter blocks are part of the segment's ABI: a field that moves must come with an
// ABI_VERSION bump. These fail to compile when one does.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(PortCounters, rx_packets) == 0);
    assert!(offset_of!(PortCounters, rx_bytes) == 8);
    assert!(offset_of!(PortCounters, tx_packets) == 16);
    assert!(offset_of!(PortCounters, tx_bytes) == 24);
    assert!(offset_of!(PortCounters, drop_packets) == 32);
    assert!(offset_of!(PortCounters, drop_bytes) == 40);
    assert!(offset_of!(PortCounters, tx_full) == 48);
    assert!(size_of::<PortCounters>() == 64);
    assert!(offset_of!(WorkerTotals, busy_cycles) == 0);
    assert!(offset_of!(WorkerTotals, busy_packets) == 8);
    assert!(offset_of!(WorkerTotals, idle_polls) == 16);
    assert!(offset_of!(WorkerTotals, sleeps) == 24);
    assert!(offset_of!(WorkerTotals, events_lost) == 32);
    assert!(size_of::<WorkerTotals>() == 64);
    assert!(offset_of!(WorkerCounters, ports) == 0);
    assert!(offset_of!(WorkerCounters, drops) == MAX_PORTS * 64);
    assert!(offset_of!(WorkerCounters, totals) == MAX_PORTS * 64 + MAX_DROP_REASONS * 8);
    assert!(offset_of!(WorkerCounters, rules) == MAX_PORTS * 64 + MAX_DROP_REASONS * 8 + 64);
    assert!(size_of::<WorkerCounters>() == 397_888);
};

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

/// Defines [`DropReason`] from one list of path (non-parse) reasons: each row is the
/// variant, its metric label and its meaning (the variant's doc). The counter index, the
/// label and the order of [`DropReason::all`] all follow the list; a new reason goes at
/// its end (indexes of the others stay put).
macro_rules! drop_reasons {
    ($($variant:ident => $label:literal, $help:literal;)*) => {
        /// Why a packet was dropped: a parse failure or a decision on the path.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum DropReason {
            /// The frame failed parsing (counted per malformation).
            Malformed(ParseError),
            $(#[doc = $help] $variant,)*
        }

        /// Position of each path reason in the list (its counter is `PATH_BASE + position`).
        #[allow(dead_code)]
        enum PathIndex { $($variant,)* }

        const PATH_REASONS: &[DropReason] = &[$(DropReason::$variant,)*];

        impl DropReason {
            /// Index of this reason's counter in [`WorkerCounters::drops`].
            #[inline(always)]
            pub fn index(self) -> usize {
                match self {
                    DropReason::Malformed(e) => e as usize,
                    $(DropReason::$variant => PATH_BASE + PathIndex::$variant as usize,)*
                }
            }

            /// Metric label, e.g. `malformed_ipv4_bad_ihl` or `port_disabled`.
            pub fn label(self) -> String {
                match self {
                    DropReason::Malformed(e) => format!("malformed_{}", e.name()),
                    $(DropReason::$variant => $label.into(),)*
                }
            }

            /// What the reason means, for help texts.
            pub fn help(self) -> &'static str {
                match self {
                    DropReason::Malformed(_) => "The frame failed parsing (counted per malformation).",
                    $(DropReason::$variant => $help,)*
                }
            }
        }
    };
}

drop_reasons! {
    PortDisabled => "port_disabled", "Received on a port whose admin state is disabled.";
    PolicyDrop => "policy_drop", "The policy's default action is drop.";
    NoPolicy => "no_policy", "No policy applied yet: fail closed.";
    TxFull => "tx_full", "The destination's transmit queue was full.";
    NoDestination => "no_destination", "Nowhere to send it (segment has no other port, wire peer absent).";
    Hairpin => "hairpin", "Destination is the port it came from.";
    PortDetached => "port_detached", "Received on a port that is being detached.";
    RuleDeny => "rule_deny", "A `deny` rule matched the flow's first packet.";
    RuleReject => "rule_reject", "A `reject` rule matched (an RST / ICMP unreachable was sent back).";
    ConntrackInvalid => "conntrack_invalid", "Not consistent with its tracked connection (TCP window, flags, state).";
    ConntrackNotSyn => "conntrack_not_syn", "The first packet of a TCP flow was not a SYN.";
    FlowTableFull => "flow_table_full", "The flow table is full (table-full policy `refuse`).";
    FlowQuota => "flow_quota", "The sending guest is at its flow quota.";
    Fragment => "fragment", "A non-first IP fragment (fragments after the first are dropped by policy).";
    IcmpUnrelated => "icmp_unrelated", "An ICMP error whose quoted packet matches no tracked flow (where defaults track or drop).";
    PolicyCut => "policy_cut", "A flow the new policy generation denies (cut at the first packet after the reload).";
    Ipv6MappedAddress => "ipv6_mapped_address", "An IPv6 packet with an IPv4-mapped address (invalid on the wire; it would otherwise be classified by IPv4 rules).";
    Chained => "chained", "A multi-segment packet the dataplane could not linearise; never passed uninspected.";
}

/// First drop-reason index used by path (non-parse) reasons.
const PATH_BASE: usize = 40;
const _: () = assert!(ParseError::COUNT <= PATH_BASE);
const _: () = assert!(PATH_BASE + PATH_REASONS.len() <= MAX_DROP_REASONS);

impl DropReason {
    /// Every reason, in counter order.
    pub fn all() -> impl Iterator<Item = DropReason> {
        ParseError::ALL.iter().map(|&e| DropReason::Malformed(e)).chain(PATH_REASONS.iter().copied())
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
            assert!(!r.label().is_empty() && !r.help().is_empty());
        }
        // Indexes of existing reasons never move (dashboards and old counters keep them).
        assert_eq!(DropReason::PortDisabled.index(), PATH_BASE);
        assert_eq!(DropReason::Ipv6MappedAddress.index(), PATH_BASE + 16);
        assert_eq!((DropReason::Chained.index(), DropReason::Chained.label().as_str()), (PATH_BASE + 17, "chained"));
    }

    #[test]
    fn counter_adds() {
        let c = Counter::default();
        c.add(3);
        c.add(4);
        assert_eq!(c.get(), 7);
    }
}
