//! Table configuration: size, table-full policy, per-guest quota and per-state timeouts.

use serde::{Deserialize, Serialize};

use crate::FlowState;

/// Idle timeouts per state, in seconds. Defaults are Linux conntrack's
/// (`nf_conntrack-sysctl.rst`). A flow expires once it has seen no *valid* packet for its
/// state's timeout; invalid packets (out of window, bad flags) never refresh it.
///
/// Timeouts above 2^31 ms (about 24.8 days) are clamped: the table keeps
/// millisecond timestamps in 32 bits and compares them with wrapping arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// TCP: SYN seen from the initiator only (also used for simultaneous open).
    pub tcp_syn_sent: u32,
    /// TCP: SYN-ACK seen, waiting for the final ACK.
    pub tcp_syn_recv: u32,
    /// TCP: handshake done.
    pub tcp_established: u32,
    /// TCP: one side sent FIN.
    pub tcp_fin_wait: u32,
    /// TCP: the first FIN was acknowledged, the other side has not closed yet.
    pub tcp_close_wait: u32,
    /// TCP: both sides sent FIN, the second is not acknowledged yet.
    pub tcp_last_ack: u32,
    /// TCP: both FINs acknowledged.
    pub tcp_time_wait: u32,
    /// TCP: reset.
    pub tcp_close: u32,
    /// UDP: packets seen in one direction only.
    pub udp_unreplied: u32,
    /// UDP: packets seen in both directions.
    pub udp_replied: u32,
    /// ICMP/ICMPv6 query flows (echo and friends), replied or not.
    pub icmp: u32,
    /// Any other protocol.
    pub generic: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 432_000,
            tcp_fin_wait: 120,
            tcp_close_wait: 60,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp_unreplied: 30,
            udp_replied: 120,
            icmp: 30,
            generic: 600,
        }
    }
}

impl Timeouts {
    /// The timeout of `state`, in seconds.
    pub fn for_state(&self, state: FlowState) -> u32 {
        use FlowState::*;
        match state {
            TcpSynSent | TcpSynSent2 => self.tcp_syn_sent,
            TcpSynRecv => self.tcp_syn_recv,
            TcpEstablished => self.tcp_established,
            TcpFinWait => self.tcp_fin_wait,
            TcpCloseWait => self.tcp_close_wait,
            TcpLastAck => self.tcp_last_ack,
            TcpTimeWait => self.tcp_time_wait,
            TcpClose => self.tcp_close,
            UdpUnreplied => self.udp_unreplied,
            UdpReplied => self.udp_replied,
            IcmpUnreplied | IcmpReplied => self.icmp,
            GenericUnreplied | GenericReplied => self.generic,
        }
    }

    /// The timeout of `state` in milliseconds, clamped to `i32::MAX`.
    pub(crate) fn ms(&self, state: FlowState) -> u32 {
        (self.for_state(state) as u64 * 1000).min(i32::MAX as u64) as u32
    }
}

/// What [`crate::FlowTable::insert`] does when a new flow finds no room: the table holds
/// `capacity` live flows, or both candidate buckets of the new key are full.
///
/// Like Suricata's exception policies, the choice is explicit and every outcome is counted
/// (`full_refusals`, `evictions`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FullPolicy {
    /// The new flow is refused ([`crate::InsertError::Full`]); established flows are never
    /// disturbed. What VPP's ACL plugin does.
    #[default]
    Refuse,
    /// Evict one flow from the new key's two candidate buckets (its "probe window", 32
    /// slots): an expired flow if there is one, else the oldest idle flow that never saw a
    /// reply (half-open TCP, unreplied UDP), else the oldest idle flow. The victim is
    /// reported as a [`crate::FlowEnd`] with [`crate::EndReason::Evicted`]. Like Linux's
    /// `early_drop`, it only looks at a bounded window, so it never stalls a worker; if the
    /// window holds no flow at all the insert is refused.
    EvictOldest,
}

/// Flow-table configuration (the `flow_table` section of the policy's defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowTableConfig {
    /// Maximum number of live flows; memory for them (plus 25 % slack so buckets rarely
    /// overflow) is allocated and touched at creation, never later.
    pub capacity: u32,
    /// What to do when the table (or a new key's buckets) is full.
    pub full_policy: FullPolicy,
    /// Default per-guest limit on live flows owned by the guest (`u32::MAX`: none).
    /// Change one guest's limit at run time with [`crate::FlowTable::set_guest_quota`].
    /// Guests cannot starve each other as long as the quotas add up to at most `capacity`.
    pub guest_quota: u32,
    /// Accept a TCP flow whose first packet is an ACK (mid-stream pickup, e.g. after a
    /// dataplane restart), as Linux's `nf_conntrack_tcp_loose`. Such flows are tracked
    /// without window checks ("be liberal"). Off: only a SYN opens a TCP flow.
    pub tcp_loose: bool,
    /// Per-state idle timeouts.
    pub timeouts: Timeouts,
    /// Seed of the keyed flow hash; `None` picks a random one (the default: guests choose
    /// the 5-tuples, so they must not be able to predict bucket collisions).
    pub hash_seed: Option<u64>,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            capacity: 1 << 20,
            full_policy: FullPolicy::Refuse,
            guest_quota: u32::MAX,
            tcp_loose: false,
            timeouts: Timeouts::default(),
            hash_seed: None,
        }
    }
}
