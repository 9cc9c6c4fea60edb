//! Per-worker counter blocks. Each worker writes only its own block, so a
//! counter is a plain load + store (no locked read-modify-write on the packet
//! path); readers in the control process sum the blocks of all workers.
//!
//! Each family of counters is one list: port counters and worker totals
//! (`counter_block!`: the shared-memory fields, their values, where each is reported)
//! and drop reasons (`drop_reasons!`: variant, metric label, meaning). The control
//! process's Prometheus families and `rampartctl stats` follow the lists, so a new
//! counter is one row.

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

/// Where a counter of a [`PortCounters`] or [`WorkerTotals`] list is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// In `rampartctl stats` and as the Prometheus counter family of this name (one
    /// metric per port or per worker).
    Metric(&'static str),
    /// In `rampartctl stats` only.
    Stats,
    /// Nowhere: the dataplane's own count (e.g. one reported another way).
    Internal,
}

/// One counter of a [`PortCounters`] or [`WorkerTotals`] list: its name (the field, and
/// its key in `rampartctl stats --json`), where it is reported and what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterField {
    pub name: &'static str,
    pub report: Report,
    pub help: &'static str,
}

impl CounterField {
    /// The Prometheus family it is exported as, if any.
    pub fn metric(&self) -> Option<&'static str> {
        match self.report {
            Report::Metric(name) => Some(name),
            Report::Stats | Report::Internal => None,
        }
    }

    /// Whether `rampartctl stats` shows it.
    pub fn in_stats(&self) -> bool {
        self.report != Report::Internal
    }
}

/// Defines a cache-line block of single-writer counters from one list, and the plain
/// values it reads as: each row is the field, where it is reported ([`Report`]) and its
/// meaning. The shared-memory struct (fields in list order: a new counter goes at the end
/// of a list, within the block's 64 bytes), `FIELDS`, reading, summing over workers,
/// resetting, and the values' JSON (the fields not `Internal`, by name) all follow it;
/// the control process derives the Prometheus families and `rampartctl stats` from
/// `FIELDS`.
macro_rules! counter_block {
    (
        $(#[$block_doc:meta])* $block:ident,
        $(#[$values_doc:meta])* $values:ident {
            $($field:ident: $report:ident $(($metric:literal))?, $help:literal;)*
        }
    ) => {
        $(#[$block_doc])*
        #[repr(C, align(64))]
        #[derive(Default)]
        pub struct $block {
            $(#[doc = $help] pub $field: Counter,)*
        }

        $(#[$values_doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
        #[serde(default)]
        pub struct $values {
            $(#[doc = $help] pub $field: u64,)*
        }

        impl $block {
            /// Every counter, in order.
            pub const FIELDS: &[CounterField] = &[$(CounterField { name: stringify!($field), report: Report::$report $(($metric))?, help: $help },)*];

            /// The counters' values now (each an untorn 64-bit value, not a snapshot of all).
            pub fn read(&self) -> $values {
                $values { $($field: self.$field.get(),)* }
            }

            /// Zeroes every counter; only while no worker can write the block.
            pub fn reset(&self) {
                $(self.$field.reset();)*
            }
        }

        impl $values {
            /// Every counter with its value, in list order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static CounterField, u64)> {
                $block::FIELDS.iter().zip([$(self.$field,)*])
            }

            /// The value of the counter `field` (a row of `FIELDS`) names; 0 for a name
            /// not in the list.
            pub fn get(&self, field: &CounterField) -> u64 {
                match field.name {
                    $(stringify!($field) => self.$field,)*
                    _ => 0,
                }
            }
        }

        impl std::ops::AddAssign for $values {
            /// Adds `other`'s counts (wrapping, as the counters themselves do).
            fn add_assign(&mut self, other: $values) {
                $(self.$field = self.$field.wrapping_add(other.$field);)*
            }
        }

        impl std::iter::Sum for $values {
            fn sum<I: Iterator<Item = $values>>(iter: I) -> $values {
                iter.fold($values::default(), |mut total, v| {
                    total += v;
                    total
                })
            }
        }

        impl serde::Serialize for $values {
            /// The counters `rampartctl stats` shows, by name ([`CounterField::in_stats`]).
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeStruct;
                let shown = || self.fields().filter(|(f, _)| f.in_stats());
                let mut out = serializer.serialize_struct(stringify!($values), shown().count())?;
                for (f, v) in shown() {
                    out.serialize_field(f.name, &v)?;
                }
                out.end()
            }
        }
    };
}

counter_block! {
    /// Traffic of one port as seen by one worker.
    PortCounters,
    /// A port's counters as read ([`PortCounters::read`]), or summed over workers.
    PortCounterValues {
        rx_packets: Metric("rampart_port_rx_packets_total"), "Packets received on the port";
        rx_bytes: Metric("rampart_port_rx_bytes_total"), "Bytes received on the port";
        tx_packets: Metric("rampart_port_tx_packets_total"), "Packets sent on the port";
        tx_bytes: Metric("rampart_port_tx_bytes_total"), "Bytes sent on the port";
        drop_packets: Metric("rampart_port_drop_packets_total"), "Packets received on the port and dropped (any reason)";
        drop_bytes: Metric("rampart_port_drop_bytes_total"), "Bytes received on the port and dropped";
        tx_full: Metric("rampart_port_tx_full_total"), "Packets for the port its transmit queue refused";
        would_drop: Metric("rampart_port_would_drop_total"), "Monitor mode: would-be drops of packets received on the port, which were forwarded (one per protection that would have dropped a packet)";
    }
}

counter_block! {
    /// Work accounting of one worker (DESIGN.md §8's busy cycles per packet).
    WorkerTotals,
    /// A worker's totals as read ([`WorkerTotals::read`]).
    WorkerTotalValues {
        busy_cycles: Metric("rampart_worker_busy_cycles_total"), "TSC cycles workers spent on bursts that carried packets";
        busy_packets: Metric("rampart_worker_busy_packets_total"), "Packets in those bursts";
        idle_polls: Stats, "Iterations that found no packet on any queue";
        sleeps: Stats, "Times the worker slept because it had been idle";
        events_lost: Internal, "Events that did not fit in the worker's event ring (reported as the rings' overflow)";
    }
}

counter_block! {
    /// What the guard (anti-spoofing, L2 hygiene) and the port's limits dropped from one
    /// port, by reason, as seen by one worker (two cache lines). Each is also counted in
    /// the worker's drops by reason.
    GuardCounters,
    /// A port's guard counters as read ([`GuardCounters::read`]), or summed over workers.
    GuardCounterValues {
        spoof_mac: Metric("rampart_port_spoof_mac_total"), "Packets dropped: source MAC not the guest's";
        spoof_ip: Metric("rampart_port_spoof_ip_total"), "Packets dropped: source IP address not the guest's";
        arp_spoof: Metric("rampart_port_arp_spoof_total"), "ARP packets dropped: sender address or MAC not the guest's";
        nd_spoof: Metric("rampart_port_nd_spoof_total"), "Neighbour Advertisements dropped: target address not the guest's";
        rogue_dhcp: Metric("rampart_port_rogue_dhcp_total"), "DHCP/DHCPv6 server messages dropped: the port does not serve DHCP";
        rogue_ra: Metric("rampart_port_rogue_ra_total"), "Router Advertisements and Redirects dropped: the port does not serve RA";
        mac_limit: Metric("rampart_port_mac_limit_total"), "Packets dropped: a new source MAC beyond the port's cap of learned MACs";
        throttled: Metric("rampart_port_throttled_total"), "Packets dropped: over the port's packets/s or bytes/s limit";
        storm: Metric("rampart_port_storm_total"), "Floods dropped: broadcast, multicast or unknown unicast over the port's flood limit";
        new_flow_rate: Metric("rampart_port_new_flow_rate_total"), "New flows dropped: over the port's new flows/s limit";
        source_rate: Metric("rampart_port_source_rate_total"), "New flows dropped: over their source address's new flows/s limit";
        destination_rate: Metric("rampart_port_destination_rate_total"), "New flows dropped: over their destination address's new flows/s limit";
    }
}

impl GuardCounters {
    /// The counter of a guard drop reason; `None` for other reasons.
    #[inline(always)]
    pub fn of(&self, reason: DropReason) -> Option<&Counter> {
        Some(match reason {
            DropReason::SpoofMac => &self.spoof_mac,
            DropReason::SpoofIp => &self.spoof_ip,
            DropReason::ArpSpoof => &self.arp_spoof,
            DropReason::NdSpoof => &self.nd_spoof,
            DropReason::RogueDhcp => &self.rogue_dhcp,
            DropReason::RogueRa => &self.rogue_ra,
            DropReason::MacLimit => &self.mac_limit,
            DropReason::Throttled => &self.throttled,
            DropReason::Storm => &self.storm,
            DropReason::NewFlowRate => &self.new_flow_rate,
            DropReason::SourceRate => &self.source_rate,
            DropReason::DestinationRate => &self.destination_rate,
            _ => return None,
        })
    }
}

counter_block! {
    /// Inline inspection as seen by one worker.
    InspectCounters,
    /// Inspection counters as read ([`InspectCounters::read`]), or summed over workers.
    InspectCounterValues {
        packets: Metric("rampart_inspect_packets_total"), "Packets of inspected flows (each scanned by the signatures)";
        bytes: Metric("rampart_inspect_bytes_total"), "Payload bytes scanned";
        alerts: Metric("rampart_inspect_alerts_total"), "Signature matches logged as alerts (all actions)";
        blocked: Metric("rampart_inspect_blocked_total"), "Packets dropped or rejected by a signature";
        streams_refused: Metric("rampart_inspect_streams_refused_total"), "Packets inspected on their own because no stream was free for their flow (a match split across segments may be missed)";
        out_of_order: Metric("rampart_inspect_out_of_order_total"), "TCP segments not in sequence (a gap, a retransmission, an overlap): inspected on their own, the stream restarts from them";
        resynced: Metric("rampart_inspect_resynced_total"), "Streams that met a changed rule set: resumed from the kept tail (a match spanning more than the tail may be missed)";
        unlisted: Metric("rampart_inspect_unlisted_matches_total"), "Signature matches beyond the per-packet limit of listed matches: counted, not logged";
        suppressed: Metric("rampart_inspect_threshold_suppressed_total"), "Signature matches whose alert a `threshold` held back (a drop or reject still acted)";
        filtered: Metric("rampart_inspect_detection_filtered_total"), "Signature matches a `detection_filter` held back: neither acted on nor alerted";
        flowbits_refused: Metric("rampart_inspect_flowbits_refused_total"), "Flowbit changes not kept: their flow found no free entry in the rule set's flowbit table (its bits stay unset)";
    }
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
    /// Guard drops per port slot, by reason.
    pub guard: [GuardCounters; MAX_PORTS],
    pub inspect: InspectCounters,
    /// Monitor mode: packets forwarded that would have been dropped, by reason.
    pub would: [Counter; MAX_DROP_REASONS],
    /// Alerts per signature, by the signature's counter slot.
    pub signatures: [Counter; crate::layout::MAX_SIGNATURE_COUNTERS],
    /// Protocol anomalies detected, by [`crate::anomaly::Anomaly::index`] (whatever the action).
    pub anomalies: [Counter; crate::anomaly::MAX_ANOMALIES],
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
    assert!(offset_of!(PortCounters, would_drop) == 56);
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
    assert!(offset_of!(WorkerCounters, guard) == 398_144);
    assert!(size_of::<GuardCounters>() == 128);
    assert!(offset_of!(WorkerCounters, inspect) == 398_144 + MAX_PORTS * 128);
    assert!(size_of::<InspectCounters>() == 128);
    assert!(offset_of!(WorkerCounters, would) == 398_144 + MAX_PORTS * 128 + 128);
    assert!(offset_of!(WorkerCounters, signatures) == 398_144 + MAX_PORTS * 128 + 128 + MAX_DROP_REASONS * 8);
    assert!(size_of::<WorkerCounters>() == 398_144 + MAX_PORTS * 128 + 128 + MAX_DROP_REASONS * 8 + crate::layout::MAX_SIGNATURE_COUNTERS * 8 + crate::anomaly::MAX_ANOMALIES * 8);
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

    /// Counts a packet received on port `port` (in monitor mode) that is forwarded though
    /// `reason` would have dropped it.
    #[inline]
    pub fn would_drop(&self, port: usize, reason: DropReason) {
        self.would[reason.index()].add(1);
        if let Some(p) = self.ports.get(port) {
            p.would_drop.add(1);
        }
    }

    /// Counts a guard drop of a packet received on port `port` (it is counted as a drop
    /// by [`WorkerCounters::drop`] too, where the packet's action is decided).
    #[inline]
    pub fn guard_drop(&self, port: usize, reason: DropReason) {
        if let Some(c) = self.guard.get(port).and_then(|g| g.of(reason)) {
            c.add(1);
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
    SpoofMac => "spoof_mac", "A guest port sent from a source MAC the guest does not own (guard).";
    SpoofIp => "spoof_ip", "A guest port sent from a source IP address the guest does not own (guard).";
    ArpSpoof => "arp_spoof", "An ARP packet from a guest claiming an address or MAC the guest does not own (guard).";
    NdSpoof => "nd_spoof", "An IPv6 Neighbour Advertisement from a guest for an address the guest does not own (guard).";
    RogueDhcp => "rogue_dhcp", "A DHCP or DHCPv6 server message from a port not allowed to serve DHCP (guard).";
    RogueRa => "rogue_ra", "An IPv6 Router Advertisement or Redirect from a port not allowed to serve them (guard).";
    MacLimit => "mac_limit", "A new source MAC from a port that is at its cap of learned MACs (guard).";
    Throttled => "throttled", "Over the sending port's packets/s or bytes/s limit.";
    Storm => "storm", "A broadcast, multicast or unknown-unicast frame over the sending port's flood limit (storm control).";
    NewFlowRate => "new_flow_rate", "A new flow over the opening port's new flows/s limit.";
    SourceRate => "source_rate", "A new flow over its source address's new flows/s limit.";
    DestinationRate => "destination_rate", "A new flow over its destination address's new flows/s limit (a victim hit by many sources).";
    Signature => "signature", "A `drop` or `reject` signature matched the packet (inline inspection; an alert is logged).";
    SignatureFlow => "signature_flow", "A packet of a flow that a `drop` or `reject` signature blocked earlier (inline inspection, `inspection_state.drop_flow`).";
    AnomalyTcpFlags => "anomaly_tcp_flags", "Protocol anomaly `tcp_flags`: SYN+FIN, SYN+RST, null or Xmas TCP flags.";
    AnomalyLand => "anomaly_land", "Protocol anomaly `land`: source address equal to destination address.";
    AnomalyFragmentOverlap => "anomaly_fragment_overlap", "Protocol anomaly `fragment_overlap`: an IP fragment overlapping an earlier one of its datagram, or a later fragment of such a datagram.";
    AnomalyTinyFragment => "anomaly_tiny_fragment", "Protocol anomaly `tiny_fragment` (never a drop reason itself: such fragments are dropped as malformed_fragment_*).";
    AnomalyIpOptions => "anomaly_ip_options", "Protocol anomaly `ip_options`: IPv4 source or record route, IPv6 type 0 routing header.";
    AnomalyLowTtl => "anomaly_low_ttl", "Protocol anomaly `low_ttl`: a unicast packet with TTL or hop limit 0 or 1.";
    AnomalyBadChecksum => "anomaly_bad_checksum", "Protocol anomaly `bad_checksum`: a wrong IPv4, TCP, UDP or ICMP checksum the sender did not leave to an offload.";
    AnomalyOversizeIcmp => "anomaly_oversize_icmp", "Protocol anomaly `oversize_icmp`: an ICMP message over `icmp_max_bytes`, or fragmented.";
    AnomalyTcpWindow => "anomaly_tcp_window", "Protocol anomaly `tcp_window`: a TCP segment outside its connection's window.";
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
    fn counter_blocks_read_sum_reset_and_show_what_the_list_says() {
        let (a, b) = (PortCounters::default(), PortCounters::default());
        a.rx_packets.add(1);
        a.tx_full.add(2);
        b.rx_packets.add(10);
        let sum: PortCounterValues = [a.read(), b.read()].into_iter().sum();
        assert_eq!(sum, PortCounterValues { rx_packets: 11, tx_full: 2, ..Default::default() });
        let names: Vec<&str> = PortCounters::FIELDS.iter().map(|f| f.name).collect();
        assert_eq!(names, ["rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "drop_packets", "drop_bytes", "tx_full", "would_drop"]);
        for (f, v) in sum.fields() {
            assert_eq!(sum.get(f), v, "{}", f.name);
        }
        a.reset();
        assert_eq!(a.read(), PortCounterValues::default());

        let t = WorkerTotals::default();
        t.sleeps.add(3);
        t.events_lost.add(4);
        let json = serde_json::to_value(t.read()).unwrap();
        assert_eq!(json, serde_json::json!({"busy_cycles": 0, "busy_packets": 0, "idle_polls": 0, "sleeps": 3}), "internal counters are not shown");
        let back: WorkerTotalValues = serde_json::from_value(json).unwrap();
        assert_eq!(back, WorkerTotalValues { sleeps: 3, ..Default::default() });
        let metrics: Vec<_> = WorkerTotals::FIELDS.iter().filter_map(|f| f.metric()).collect();
        assert_eq!(metrics, ["rampart_worker_busy_cycles_total", "rampart_worker_busy_packets_total"]);
    }

    #[test]
    fn counter_adds() {
        let c = Counter::default();
        c.add(3);
        c.add(4);
        assert_eq!(c.get(), 7);
    }
}
