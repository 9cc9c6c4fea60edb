//! Protocol anomalies: what the dataplane checks packets for beyond parsing, the action
//! the policy takes on each (`[anomalies]`), and how the kinds are named in counters,
//! drop reasons and events.
//!
//! Each kind has one [`DropReason`] (its drops and monitor-mode would-be drops are counted
//! there, and its event records are budgeted under it) and one slot in
//! [`crate::WorkerCounters::anomalies`] (every detection, whatever the action).

use crate::counters::DropReason;
use serde::{Deserialize, Serialize};

/// What the policy does about one kind of anomaly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AnomalyAction {
    /// Not checked at all (costs nothing).
    Ignore,
    /// Counted and logged; the packet goes on.
    Alert,
    /// Counted and logged; the packet is dropped (a monitor port forwards it as a would-be drop).
    #[default]
    Drop,
}

macro_rules! anomalies {
    ($($variant:ident => $label:literal, $reason:ident, $layer:literal, $default:ident, $help:literal;)*) => {
        /// One kind of protocol anomaly.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Anomaly {
            $(#[doc = $help] $variant,)*
        }

        impl Anomaly {
            /// Every kind, in counter order.
            pub const ALL: &'static [Anomaly] = &[$(Anomaly::$variant,)*];

            /// Name in the configuration, metrics and events, e.g. `tcp_flags`.
            pub fn label(self) -> &'static str {
                match self { $(Anomaly::$variant => $label,)* }
            }

            /// The drop reason its drops are counted under.
            pub fn reason(self) -> DropReason {
                match self { $(Anomaly::$variant => DropReason::$reason,)* }
            }

            /// Suricata's `anomaly.type`: `decode` (one packet's headers) or `stream` (a
            /// packet against its connection or datagram).
            pub fn layer(self) -> &'static str {
                match self { $(Anomaly::$variant => $layer,)* }
            }

            /// The action when the configuration says nothing.
            pub fn default_action(self) -> AnomalyAction {
                match self { $(Anomaly::$variant => AnomalyAction::$default,)* }
            }

            /// What the kind means, for help texts.
            pub fn help(self) -> &'static str {
                match self { $(Anomaly::$variant => $help,)* }
            }
        }
    };
}

anomalies! {
    TcpFlags => "tcp_flags", AnomalyTcpFlags, "decode", Drop, "A TCP flag combination no stack sends: SYN+FIN, SYN+RST, no flags (null scan) or FIN+PSH+URG (Xmas scan).";
    Land => "land", AnomalyLand, "decode", Drop, "Source address equal to destination address (the land attack).";
    FragmentOverlap => "fragment_overlap", AnomalyFragmentOverlap, "stream", Drop, "An IP fragment overlapping bytes an earlier fragment of its datagram carried (RFC 5722); a drop drops the rest of the datagram too.";
    TinyFragment => "tiny_fragment", AnomalyTinyFragment, "decode", Drop, "A first fragment too short to hold the transport header, or a TCP fragment at offset 8 (RFC 1858): always dropped, the firewall cannot judge it.";
    IpOptions => "ip_options", AnomalyIpOptions, "decode", Drop, "IPv4 source route (loose or strict) or record route options, or an IPv6 type 0 routing header (RFC 5095).";
    LowTtl => "low_ttl", AnomalyLowTtl, "decode", Alert, "A unicast IP packet with TTL or hop limit 0 or 1.";
    BadChecksum => "bad_checksum", AnomalyBadChecksum, "decode", Drop, "A wrong IPv4 header, TCP, UDP or ICMP checksum in a packet whose sender did not leave it to an offload.";
    OversizeIcmp => "oversize_icmp", AnomalyOversizeIcmp, "decode", Drop, "An ICMP or ICMPv6 message longer than `icmp_max_bytes`, or fragmented.";
    TcpWindow => "tcp_window", AnomalyTcpWindow, "stream", Drop, "A TCP segment outside the window its connection's tracked state allows.";
}

/// Detection counters per worker (room for kinds to come).
pub const MAX_ANOMALIES: usize = 16;
const _: () = assert!(Anomaly::ALL.len() <= MAX_ANOMALIES);

impl Anomaly {
    /// Index of its counter and its event code.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind of counter or event code `i`.
    pub fn from_index(i: usize) -> Option<Anomaly> {
        Anomaly::ALL.get(i).copied()
    }

    /// The kind named `label` in a configuration.
    pub fn from_label(label: &str) -> Option<Anomaly> {
        Anomaly::ALL.iter().copied().find(|a| a.label() == label)
    }
}

/// Which packets' checksums are verified (`[anomalies] checksums`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumScope {
    /// Packets of inspected flows: where a packet the receiver discards could mislead the
    /// signatures, and whose payload is read anyway.
    #[default]
    Inspected,
    /// Every IP packet (a sum over every byte of every packet: costs cycles per byte).
    All,
}

/// The anomaly policy of one generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyImage {
    /// By [`Anomaly::index`].
    pub actions: [AnomalyAction; MAX_ANOMALIES],
    /// Longest ICMP/ICMPv6 message (header and data) that is not `oversize_icmp`.
    pub icmp_max_bytes: u16,
    pub checksums: ChecksumScope,
}

/// Default of [`AnomalyImage::icmp_max_bytes`]: what a 1500-byte MTU carries unfragmented.
pub const ICMP_MAX_BYTES: u16 = 1480;

impl Default for AnomalyImage {
    /// Every kind at its default action.
    fn default() -> AnomalyImage {
        let mut actions = [AnomalyAction::Ignore; MAX_ANOMALIES];
        for a in Anomaly::ALL {
            actions[a.index()] = a.default_action();
        }
        AnomalyImage { actions, icmp_max_bytes: ICMP_MAX_BYTES, checksums: ChecksumScope::Inspected }
    }
}

impl AnomalyImage {
    /// Nothing checked (tests and benches that measure the rest).
    pub fn off() -> AnomalyImage {
        AnomalyImage { actions: [AnomalyAction::Ignore; MAX_ANOMALIES], ..AnomalyImage::default() }
    }

    /// The action for `kind`.
    #[inline(always)]
    pub fn action(&self, kind: Anomaly) -> AnomalyAction {
        self.actions[kind.index()]
    }

    /// Whether `kind` is checked at all.
    #[inline(always)]
    pub fn checks(&self, kind: Anomaly) -> bool {
        self.action(kind) != AnomalyAction::Ignore
    }
}

/// An anomaly event's `code`: the kind in the low byte, what was done in the high byte.
pub fn event_code(kind: Anomaly, outcome: AnomalyOutcome) -> u16 {
    kind.index() as u16 | (outcome as u16) << 8
}

/// What became of a packet with an anomaly (the high byte of its event's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum AnomalyOutcome {
    /// `alert`: forwarded.
    Allowed = 0,
    /// `drop`: dropped.
    Dropped = 1,
    /// `drop` on a monitor port: forwarded.
    WouldDrop = 2,
}

/// The kind and outcome an anomaly event's `code` names.
pub fn parse_event_code(code: u16) -> (Option<Anomaly>, Option<AnomalyOutcome>) {
    let outcome = match code >> 8 {
        0 => Some(AnomalyOutcome::Allowed),
        1 => Some(AnomalyOutcome::Dropped),
        2 => Some(AnomalyOutcome::WouldDrop),
        _ => None,
    };
    (Anomaly::from_index((code & 0xff) as usize), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_labels_indexes_and_event_codes() {
        for &a in Anomaly::ALL {
            assert_eq!(Anomaly::from_label(a.label()), Some(a));
            assert_eq!(Anomaly::from_index(a.index()), Some(a));
            assert!(a.reason().label().ends_with(a.label()), "{}", a.reason().label());
            for o in [AnomalyOutcome::Allowed, AnomalyOutcome::Dropped, AnomalyOutcome::WouldDrop] {
                assert_eq!(parse_event_code(event_code(a, o)), (Some(a), Some(o)));
            }
        }
        assert_eq!(parse_event_code(0xffff), (None, None));
        assert_eq!(Anomaly::from_label("nope"), None);
        let d = AnomalyImage::default();
        assert_eq!(d.action(Anomaly::LowTtl), AnomalyAction::Alert);
        assert_eq!(d.action(Anomaly::TcpFlags), AnomalyAction::Drop);
        assert!(!AnomalyImage::off().checks(Anomaly::Land));
    }
}
