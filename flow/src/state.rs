//! Flow states, per-packet outcomes and the reasons a packet is invalid.

use rampart_packet::Direction;
use rampart_packet::FlowKey;

/// Connection-tracking state of a flow. TCP states follow Linux conntrack (including
/// `SYN_SENT2` for simultaneous open); UDP, ICMP and other protocols have a pseudo-state
/// that only says whether the responder has answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum FlowState {
    /// SYN seen from the initiator.
    TcpSynSent = 0,
    /// Simultaneous open: both sides sent a SYN, no SYN-ACK yet.
    TcpSynSent2 = 1,
    /// SYN-ACK seen, waiting for the initiator's ACK.
    TcpSynRecv = 2,
    /// Three-way handshake complete.
    TcpEstablished = 3,
    /// One side (the "closer") sent FIN.
    TcpFinWait = 4,
    /// The other side acknowledged the closer's FIN but has not sent its own.
    TcpCloseWait = 5,
    /// Both sides sent FIN; the second FIN is not acknowledged yet.
    TcpLastAck = 6,
    /// The closer acknowledged the second FIN.
    TcpTimeWait = 7,
    /// Reset by a valid RST.
    TcpClose = 8,
    /// UDP, initiator's packets only.
    UdpUnreplied = 9,
    /// UDP, both directions seen.
    UdpReplied = 10,
    /// ICMP/ICMPv6 query (echo), request only.
    IcmpUnreplied = 11,
    /// ICMP/ICMPv6 query answered.
    IcmpReplied = 12,
    /// Other protocols, one direction seen.
    GenericUnreplied = 13,
    /// Other protocols, both directions seen.
    GenericReplied = 14,
}

/// Number of [`FlowState`] values.
pub(crate) const STATE_COUNT: usize = 15;

impl FlowState {
    /// Every state, in discriminant order.
    pub const ALL: [FlowState; STATE_COUNT] = [
        FlowState::TcpSynSent,
        FlowState::TcpSynSent2,
        FlowState::TcpSynRecv,
        FlowState::TcpEstablished,
        FlowState::TcpFinWait,
        FlowState::TcpCloseWait,
        FlowState::TcpLastAck,
        FlowState::TcpTimeWait,
        FlowState::TcpClose,
        FlowState::UdpUnreplied,
        FlowState::UdpReplied,
        FlowState::IcmpUnreplied,
        FlowState::IcmpReplied,
        FlowState::GenericUnreplied,
        FlowState::GenericReplied,
    ];

    /// Decode a stored state byte. The table only stores valid states; an impossible byte
    /// maps to `GenericUnreplied` rather than panicking.
    #[inline]
    pub(crate) fn from_u8(v: u8) -> FlowState {
        FlowState::ALL
            .get(v as usize)
            .copied()
            .unwrap_or(FlowState::GenericUnreplied)
    }

    /// True for TCP states.
    #[inline]
    pub fn is_tcp(self) -> bool {
        (self as u8) <= FlowState::TcpClose as u8
    }

    /// True once the responder has been seen and (for TCP) the handshake completed:
    /// the flows Linux calls "assured", which eviction spares as long as it can.
    #[inline]
    pub fn is_assured(self) -> bool {
        use FlowState::*;
        matches!(
            self,
            TcpEstablished
                | TcpFinWait
                | TcpCloseWait
                | TcpLastAck
                | TcpTimeWait
                | UdpReplied
                | IcmpReplied
                | GenericReplied
        )
    }

    /// Short lower-case name, as in `/proc/net/nf_conntrack` and eve.json `flow.state`.
    pub fn name(self) -> &'static str {
        use FlowState::*;
        match self {
            TcpSynSent => "syn_sent",
            TcpSynSent2 => "syn_sent2",
            TcpSynRecv => "syn_recv",
            TcpEstablished => "established",
            TcpFinWait => "fin_wait",
            TcpCloseWait => "close_wait",
            TcpLastAck => "last_ack",
            TcpTimeWait => "time_wait",
            TcpClose => "close",
            UdpUnreplied | IcmpUnreplied | GenericUnreplied => "new",
            UdpReplied | IcmpReplied | GenericReplied => "established",
        }
    }
}

/// Why a packet of a tracked flow (or the first packet of a new one) is invalid. The
/// table never drops anything itself: it reports, counts (`invalid`) and leaves the flow
/// state untouched; the dataplane's policy decides (drop by default, like `ct state
/// invalid drop`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidReason {
    /// TCP flag combination no stack sends (SYN+FIN, SYN+RST, FIN without ACK, none…).
    TcpBadFlags,
    /// First packet of a TCP flow is not a SYN (and mid-stream pickup is off).
    TcpNotSyn,
    /// Sequence or acknowledgement number outside the windows seen so far.
    TcpOutOfWindow,
    /// RST inside the window but not at the exact expected sequence: the endpoint will
    /// answer with a challenge ACK (RFC 5961); the connection stays.
    TcpRstInexact,
    /// RST outside the window (or an RST|ACK in SYN_SENT not acknowledging the SYN).
    TcpRstOutOfWindow,
    /// SYN on a synchronized connection. The endpoint answers with a challenge ACK; if
    /// the initiator really restarted, its RST (exact sequence) closes the old flow and a
    /// later SYN opens a new one.
    TcpSynOnEstablished,
    /// SYN-ACK that does not acknowledge the initiator's SYN, or arrives after the
    /// handshake (stale or reused).
    TcpStaleSynAck,
    /// A packet that is not valid in the current state (e.g. data before the SYN-ACK).
    TcpUnexpected,
}

/// Result of tracking one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The packet is consistent with the flow; state, counters and timer were updated.
    Valid,
    /// The packet is not; nothing was updated except the table's `invalid` counter.
    Invalid(InvalidReason),
}

impl Outcome {
    /// True for [`Outcome::Valid`].
    #[inline]
    pub fn is_valid(self) -> bool {
        self == Outcome::Valid
    }
}

/// Why a flow left the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// Idle longer than its state's timeout ([`crate::FlowTable::expire_step`]).
    Expired,
    /// Evicted to make room for a new flow ([`crate::FullPolicy::EvictOldest`]).
    Evicted,
    /// Removed on request ([`crate::FlowTable::remove`]).
    Removed,
    /// A SYN reopened a closed (TIME_WAIT/CLOSE) TCP connection: the old flow ends, the
    /// packet starts a new one (re-classified, as Linux does).
    Reopened,
}

/// Everything the table knows about one flow: what flow-end events and the control
/// plane's flow listings need.
///
/// Counters are indexed by canonical [`Direction`] (`Forward` = packets from
/// `key.src_addr`). They are 32-bit and wrap (4 Gi packets or 4 GiB per direction):
/// 64-bit counters do not fit the 64-byte entry; consumers that need exact totals of
/// long-lived elephant flows export deltas periodically.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    /// The canonical key ([`FlowKey::canonical`]).
    pub key: FlowKey,
    /// Which endpoint of the canonical key opened the flow.
    pub initiator: Direction,
    /// State when the record was taken.
    pub state: FlowState,
    /// Guest slot that owns the flow (charged against its quota).
    pub owner: u8,
    /// The verdict / rule index the classifier gave when the flow was created.
    pub verdict: u32,
    /// Valid packets per canonical direction (wrapping).
    pub packets: [u32; 2],
    /// Bytes per canonical direction, as passed in [`crate::PacketInfo::bytes`] (wrapping).
    pub bytes: [u32; 2],
    /// Creation time, in the caller's milliseconds, rounded down to a whole second.
    pub start_ms: u64,
    /// Time of the last valid packet, in the caller's milliseconds.
    pub last_ms: u64,
}

impl FlowRecord {
    /// The key as the initiator sent it: source = the endpoint that opened the flow (how
    /// flow records are reported, as eve.json's `src_*` / `dest_*` are).
    pub fn opener_key(&self) -> FlowKey {
        match self.initiator {
            Direction::Forward => self.key,
            Direction::Reverse => self.key.reversed(),
        }
    }
    /// Packets sent by the initiator ("to server" in eve.json).
    pub fn packets_from_initiator(&self) -> u32 {
        self.packets[self.initiator as usize]
    }
    /// Packets sent by the responder ("to client").
    pub fn packets_from_responder(&self) -> u32 {
        self.packets[self.initiator as usize ^ 1]
    }
    /// Bytes sent by the initiator.
    pub fn bytes_from_initiator(&self) -> u32 {
        self.bytes[self.initiator as usize]
    }
    /// Bytes sent by the responder.
    pub fn bytes_from_responder(&self) -> u32 {
        self.bytes[self.initiator as usize ^ 1]
    }
}

/// A flow that left the table, for the flow-end event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowEnd {
    /// The flow as it was when it left.
    pub record: FlowRecord,
    /// Why it left.
    pub reason: EndReason,
}
