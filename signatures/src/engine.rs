//! The matcher the dataplane runs per packet: a streaming multi-pattern prefilter selects
//! candidate signatures, and only those are verified.
//!
//! Design: [`Database::build`] picks one *prefilter pattern* per signature that has a
//! positive content (the content marked `fast_pattern`, else the longest positive one,
//! the first on ties; at most its last [`MAX_PATTERN_LEN`] bytes) and compiles them all,
//! deduplicated case-insensitively, into one `aho_corasick::dfa::DFA` (standard match
//! semantics, ASCII case-insensitive, unanchored). [`Database::scan`] walks the DFA over
//! the payload itself, one transition per byte, from the state saved in the flow's
//! [`Stream`], so a pattern split across segments is still seen. The walk is a chain of
//! dependent table loads, so a long payload is cut into four parts walked in lockstep
//! (each later walker starts `max_pattern_len` bytes early from the start state, which
//! makes its state exact where its part begins). Every pattern that ends in the payload
//! makes its signatures candidates (deduplicated in scratch space inside [`Matches`]).
//! Candidates, and the *always candidates* (signatures without a positive content, kept
//! in one list per protocol), are verified exactly: header, `flow`, `dsize`, then the
//! payload checks with bounded backtracking. Nothing on this path allocates, locks or
//! panics; the state is either in the shared, immutable [`Database`] or in caller-owned
//! fixed-size values ([`Stream`], [`Matches`]).
//!
//! # Semantics
//!
//! - **Header.** `Tcp` matches protocol 6, `Udp` 17, `Icmp` 1 and 58, `Ip` anything.
//!   Addresses: in one of `include` (any when empty) and in none of `exclude`; a v4 prefix
//!   never matches a v6 address (IPv4-in-IPv6 is not unwrapped). Ports likewise; on a
//!   packet other than TCP/UDP only an unconstrained port field matches.
//!   `bidirectional`: the header also matches with source and destination swapped.
//! - **Flow.** `to_server: Some(b)` requires `pkt.to_server == b`; `established` requires
//!   `pkt.established`, `not_established` requires its absence; `stateless` adds nothing.
//!   **`dsize`** bounds the length of this packet's payload.
//! - **Payload checks** run in order over a buffer `B` with a cursor `prev_end` (the end
//!   of the previous positive content's match, initially 0). A content matches at a start
//!   `s` where `B[s..s + len]` equals its bytes (ASCII case-insensitively with `nocase`)
//!   and: `s >= offset`; `s + len <= offset + depth`; `startswith`: `s == 0` (or
//!   `s == prev_end` when the content also has `distance`/`within`); `endswith`:
//!   `s + len == B.len()`. A content with `distance` or `within` is relative:
//!   `s >= max(0, prev_end + distance)` and `s + len <= prev_end + distance + within`. A
//!   content without them may match anywhere (Suricata's semantics) but still moves the
//!   cursor. A negated content passes iff no start satisfies its constraints and does not
//!   move the cursor. `isdataat:[!]pos[,relative]` passes iff `base + pos < B.len()`
//!   (negated: iff not), `base` being `prev_end` when relative, else 0. The chain must
//!   succeed as a whole: when a later check fails, the next start of an earlier content
//!   whose end a later check reads is tried (like Suricata's inspection recursion), at
//!   most [`BACKTRACK_BUDGET`] times per signature and packet; past that the signature
//!   does not match that packet. Retrying a content is skipped when nothing after it reads
//!   its end (the rest cannot change).
//!   `byte_test` reads `count` bytes at `base + offset` (`base` as for `isdataat`) —
//!   binary big- or little-endian, or a string: the digits of its base that start those
//!   bytes (at least one; overflowing 64 bits fails) — masks the value with `bitmask`
//!   (then shifted right by the mask's trailing zeros) and compares; a read outside the
//!   buffer fails even when negated; it does not move the cursor. `byte_jump` reads the
//!   same way and moves the cursor to `from + value × multiplier` (rounded up to a
//!   multiple of 4 with `align`) `+ post_offset`, `from` being the end of the bytes read,
//!   0 (`from_beginning`) or the buffer's length (`from_end`); a target before 0 or past
//!   the buffer's end fails (at its end passes). `pcre` (see [`crate::pcre`]) searches
//!   `B[base..]` (`base` = the cursor with `R`, else 0; `^` matches at `base`) for the
//!   leftmost-first match and moves the cursor to its end; it is not retried at later
//!   starts (an earlier content still is, re-running the pcre from its new cursor);
//!   negated, it passes iff there is no match and leaves the cursor.
//! - **Streaming.** With a [`Stream`], the window `W` is the kept tail (the last `tail`
//!   bytes of the previous `W`) followed by the payload. A signature is *per-packet only*
//!   — evaluated over the payload alone — when it has `dsize`, a non-relative `isdataat`,
//!   a negated content, a content with `offset`/`depth`/`startswith`/`endswith` or longer
//!   than `tail`, a `byte_test`, `byte_jump` or `pcre`, or no positive content at all. Every other signature is evaluated over
//!   `W` and counts only if the last byte of its last positive content's match lies in the
//!   payload (at index `>= tail_len`): a match entirely inside the tail was reported with
//!   the previous packet. Without a stream, everything is per-packet.
//! - **Candidates.** A signature is verified when its prefilter pattern occurs in the
//!   buffer it is evaluated over. The DFA state carried across packets finds occurrences
//!   that end in the payload (including those that started in the tail). When a
//!   streaming signature's prefilter content is *not* its last positive content, its
//!   pattern may occur wholly inside the tail while the rest of the match ends in the
//!   payload; such *tail-sensitive* patterns' occurrences inside the next tail are
//!   remembered in the [`Stream`] (up to [`MAX_PENDING`]; past that the next packet
//!   rescans the at most [`MAX_TAIL`] tail bytes from the DFA's start).
//! - **Reload.** A [`Stream`] remembers the [`Database::fingerprint`] it was scanned
//!   with. When it differs (and the stream is not fresh), the DFA state is rebuilt by
//!   walking the kept tail from the start state, the tail is cut to the new database's
//!   `tail`, and [`Matches::resynced`] is set.
//! - **Flowbits.** A flow carries [`MAX_FLOWBITS`] bits, one per flowbit name of the
//!   database ([`Database::flowbit_names`]), kept by the caller ([`FlowBitsStore`], read
//!   only when a signature that uses flowbits matched the rest of its conditions). Such a
//!   signature matches only if its `isset` (any of its names set) and `isnotset` (any of
//!   them not set) conditions hold, and then applies its `set`/`unset`/`toggle` in rule
//!   order. On one packet, the flowbit signatures that matched everything else are
//!   resolved after every other signature, those without conditions first, then those
//!   with, each group in signature order, over the bits as the earlier ones left them (as
//!   Suricata orders setters before checkers); past [`MAX_DEFERRED`] of them, the rest
//!   are resolved as verification finds them. Every match's effects apply, a `pass`
//!   match's and its silenced neighbours' alike. `noalert`: the match acts (and counts
//!   towards the action) but is not listed.
//! - **Report.** Precedence Pass > Drop > Reject > Alert: if a `pass` signature matched,
//!   [`Matches`] lists only it (the first in signature order), its action is `Pass` and
//!   nothing is counted in `more`. Otherwise it lists the first [`MAX_MATCHES`] matching
//!   signatures in signature order, counts the rest in [`Matches::more`], and its action
//!   is the strongest of all of them.

use crate::model::{
    AddrMatch, ByteJump, ByteOp, ByteRead, ByteTest, Cidr, Content, FlowMatch, FlowbitOp,
    IsDataAt, JumpFrom, PayloadCheck, PortMatch, SigAction, SigProto, Signature,
};
use crate::pcre::{Compiled, Unsupported};
use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, PatternID, StartKind};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// Bytes of the previous packet kept per flow and direction, at most.
pub const MAX_TAIL: usize = 256;
/// Signatures listed per packet; further matches are only counted.
pub const MAX_MATCHES: usize = 8;
/// Retries of an earlier content's next start after a later check failed, per signature
/// and packet (the analogue of Suricata's `inspection-recursion-limit`).
pub const BACKTRACK_BUDGET: u32 = 64;
/// Payload checks per signature, at most (bounds the verifier's recursion depth).
pub const MAX_CHECKS: usize = 128;
/// Occurrences of tail-sensitive patterns remembered per stream before falling back to a
/// rescan of the tail.
pub const MAX_PENDING: usize = 8;
/// Bytes of a content the prefilter looks for, at most: its last ones (an occurrence of
/// the suffix ends where the content's does, which streaming relies on). Bounds the DFA's
/// depth, hence the warm-up of the split walk, and its size.
pub const MAX_PATTERN_LEN: usize = 32;
/// Distinct flowbit names a database holds, at most.
pub const MAX_FLOWBITS: usize = 256;
/// Matches of flowbit signatures held back per packet, so that effects apply before
/// conditions (see the module doc); further ones are resolved as they are found.
const MAX_DEFERRED: usize = 32;
/// Distinct prefilter patterns tracked per packet before falling back to verifying every
/// signature that has a pattern.
const SEEN_CAP: usize = 256;
/// Slots of the direct-mapped "pattern already seen" table (a power of two).
const SLOTS: usize = 2048;
/// Protocol classes of the per-protocol lists: tcp, udp, icmp, other.
const CLASSES: usize = 4;

/// One packet as inspection sees it.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// IP protocol number: 6 tcp, 17 udp, 1 icmp, 58 icmpv6, other.
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 0 for protocols other than tcp/udp.
    pub src_port: u16,
    pub dst_port: u16,
    /// The packet travels from the flow's initiator.
    pub to_server: bool,
    /// The flow has seen traffic both ways (tcp: handshake done).
    pub established: bool,
    /// The L4 payload.
    pub payload: &'a [u8],
}

/// Matcher state of one flow and direction, kept by the caller (in a preallocated table)
/// between packets: plain data of a fixed size.
#[derive(Clone)]
pub struct Stream {
    /// Fingerprint of the database that last scanned this stream; 0: fresh.
    fingerprint: u64,
    /// The DFA state after the last scanned byte.
    state: u32,
    /// Valid bytes of `tail`.
    tail_len: u16,
    /// Valid entries of `pending_pat` / `pending_end`.
    pending_len: u8,
    /// More tail-sensitive occurrences lie in the tail than `pending` holds.
    pending_overflow: bool,
    /// Tail-sensitive patterns that occur wholly inside the tail...
    pending_pat: [u32; MAX_PENDING],
    /// ...and where each occurrence ends (exclusive, as an index into the tail).
    pending_end: [u16; MAX_PENDING],
    /// The last bytes of the previous window.
    tail: [u8; MAX_TAIL],
}

impl Stream {
    /// A fresh stream: no history, usable with any database.
    pub fn new() -> Stream {
        Stream {
            fingerprint: 0,
            state: 0,
            tail_len: 0,
            pending_len: 0,
            pending_overflow: false,
            pending_pat: [0; MAX_PENDING],
            pending_end: [0; MAX_PENDING],
            tail: [0; MAX_TAIL],
        }
    }

    /// Forgets the history (a new flow in the slot, or a gap in the stream).
    pub fn reset(&mut self) {
        self.fingerprint = 0;
        self.state = 0;
        self.tail_len = 0;
        self.pending_len = 0;
        self.pending_overflow = false;
    }
}

impl Default for Stream {
    /// Same as [`Stream::new`].
    fn default() -> Stream {
        Stream::new()
    }
}

impl std::fmt::Debug for Stream {
    /// The counters, not the tail bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("fingerprint", &self.fingerprint)
            .field("state", &self.state)
            .field("tail_len", &self.tail_len)
            .field("pending_len", &self.pending_len)
            .field("pending_overflow", &self.pending_overflow)
            .finish()
    }
}

/// What one scan found: up to [`MAX_MATCHES`] signature indexes in signature order, the
/// number of further matches, the strongest action, whether the stream was resynced. Also
/// holds the scan's fixed-size scratch space, so reuse one per worker.
#[derive(Clone)]
pub struct Matches {
    ids: [u32; MAX_MATCHES],
    len: usize,
    more: u32,
    action: Option<SigAction>,
    resynced: bool,
    /// The first matching pass signature, while scanning.
    pass: Option<u32>,
    /// Distinct prefilter patterns that occurred, in order of first occurrence.
    seen: [u32; SEEN_CAP],
    seen_len: usize,
    /// More patterns occurred than `seen` holds.
    seen_overflow: bool,
    /// `slots[p % SLOTS] == p + 1`: pattern `p` is in `seen`.
    slots: [u32; SLOTS],
    /// The strongest action of `noalert` matches (not listed).
    silent: Option<SigAction>,
    /// Flowbit signatures whose other conditions matched, resolved at the scan's end.
    deferred: [u32; MAX_DEFERRED],
    deferred_len: usize,
    /// The flow's bits as loaded (`bits_loaded`), and as this packet's matches left them.
    bits_before: FlowBits,
    bits: FlowBits,
    bits_loaded: bool,
}

/// A flow's flowbits: bit `i % 64` of word `i / 64` is flowbit name `i`.
pub type FlowBits = [u64; MAX_FLOWBITS / 64];

/// Where [`Database::scan_flow`] finds a flow's flowbits: loaded only when a signature
/// that uses them matched the rest of its conditions, stored only when they changed.
pub trait FlowBitsStore {
    /// The flow's bits.
    fn load(&mut self) -> FlowBits;
    /// This packet changed the bits from `before` (what [`FlowBitsStore::load`] gave) to
    /// `after`.
    fn store(&mut self, before: &FlowBits, after: &FlowBits);
}

/// No flow: every bit unset, changes forgotten ([`Database::scan`]).
pub struct NoFlow;

impl FlowBitsStore for NoFlow {
    fn load(&mut self) -> FlowBits {
        FlowBits::default()
    }
    fn store(&mut self, _: &FlowBits, _: &FlowBits) {}
}

impl Matches {
    /// Empty results.
    pub fn new() -> Matches {
        Matches {
            ids: [0; MAX_MATCHES],
            len: 0,
            more: 0,
            action: None,
            resynced: false,
            pass: None,
            seen: [0; SEEN_CAP],
            seen_len: 0,
            seen_overflow: false,
            slots: [0; SLOTS],
            silent: None,
            deferred: [0; MAX_DEFERRED],
            deferred_len: 0,
            bits_before: FlowBits::default(),
            bits: FlowBits::default(),
            bits_loaded: false,
        }
    }

    /// Empties the results and the scratch space ([`Database::scan`] does it first).
    pub fn clear(&mut self) {
        for &p in &self.seen[..self.seen_len] {
            self.slots[p as usize & (SLOTS - 1)] = 0;
        }
        self.seen_len = 0;
        self.seen_overflow = false;
        self.len = 0;
        self.more = 0;
        self.action = None;
        self.resynced = false;
        self.pass = None;
        self.silent = None;
        self.deferred_len = 0;
        self.bits_loaded = false;
    }

    /// The listed signature indexes (into [`Database::signatures`]), ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ids[..self.len].iter().copied()
    }

    /// The strongest action among the matches (Pass > Drop > Reject > Alert).
    pub fn action(&self) -> Option<SigAction> {
        self.action
    }

    /// Nothing matched.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Matching signatures that are not listed (past [`MAX_MATCHES`]).
    pub fn more(&self) -> u32 {
        self.more
    }

    /// The stream had been scanned with another database; its state was rebuilt.
    pub fn resynced(&self) -> bool {
        self.resynced
    }

    /// The strongest action of the `noalert` matches (which are not listed; part of
    /// [`Matches::action`]).
    pub fn silent_action(&self) -> Option<SigAction> {
        self.silent
    }

    /// Notes that prefilter pattern `p` occurred (deduplicated).
    #[inline]
    fn note(&mut self, p: u32) {
        let slot = p as usize & (SLOTS - 1);
        let tag = p.wrapping_add(1);
        let cur = self.slots[slot];
        if cur == tag {
            return;
        }
        if cur != 0 && self.seen[..self.seen_len].contains(&p) {
            return;
        }
        if self.seen_len == SEEN_CAP {
            self.seen_overflow = true;
            return;
        }
        if cur == 0 {
            self.slots[slot] = tag;
        }
        self.seen[self.seen_len] = p;
        self.seen_len += 1;
    }

    /// Records that signature `i` matched (each signature at most once per scan).
    fn record(&mut self, i: u32, action: SigAction, noalert: bool) {
        if action == SigAction::Pass {
            self.pass = Some(self.pass.map_or(i, |p| p.min(i)));
            return;
        }
        self.action = Some(self.action.map_or(action, |a| a.min(action)));
        if noalert {
            self.silent = Some(self.silent.map_or(action, |a| a.min(action)));
            return;
        }
        if self.len < MAX_MATCHES {
            let at = self.ids[..self.len].partition_point(|&x| x < i);
            self.ids.copy_within(at..self.len, at + 1);
            self.ids[at] = i;
            self.len += 1;
        } else {
            self.more = self.more.saturating_add(1);
            if i < self.ids[MAX_MATCHES - 1] {
                let at = self.ids.partition_point(|&x| x < i);
                self.ids.copy_within(at..MAX_MATCHES - 1, at + 1);
                self.ids[at] = i;
            }
        }
    }

    /// Applies the pass precedence once every candidate has been verified.
    fn finish(&mut self) {
        if let Some(p) = self.pass {
            self.ids[0] = p;
            self.len = 1;
            self.more = 0;
            self.action = Some(SigAction::Pass);
        }
    }
}

impl Default for Matches {
    /// Same as [`Matches::new`].
    fn default() -> Matches {
        Matches::new()
    }
}

impl std::fmt::Debug for Matches {
    /// The results, not the scratch space.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matches")
            .field("ids", &&self.ids[..self.len])
            .field("more", &self.more)
            .field("action", &self.action)
            .field("resynced", &self.resynced)
            .finish()
    }
}

/// Why a set of signatures cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("tail of {tail} bytes exceeds the maximum of {max}")]
    TailTooLong { tail: usize, max: usize },
    #[error("signature {sig} (sid {sid}) has an empty content")]
    EmptyContent { sig: usize, sid: u32 },
    #[error("signature {sig} (sid {sid}) has {checks} payload checks, more than {max}")]
    TooManyChecks {
        sig: usize,
        sid: u32,
        checks: usize,
        max: usize,
    },
    #[error("{count} signatures are more than a database holds")]
    TooManySignatures { count: usize },
    #[error("building the prefilter automaton failed: {0}")]
    Prefilter(String),
    #[error("signature {sig} (sid {sid}): pcre outside the supported subset: {reason}")]
    Pcre { sig: usize, sid: u32, reason: String },
    #[error("the signatures use {count} flowbit names, more than the {max} a rule set holds")]
    TooManyFlowbits { count: usize, max: usize },
}

/// What a [`Database`] holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbStats {
    pub signatures: usize,
    /// Distinct patterns in the prefilter automaton (equal ones are shared, case-insensitively).
    pub prefilter_patterns: usize,
    /// Signatures without a positive content: verified on every packet of their protocol.
    pub always_candidates: usize,
    /// Signatures evaluated over each payload alone, not across segments (they need
    /// absolute positions, sizes, absence, or have no positive content).
    pub per_packet_only: usize,
    /// Heap bytes of the matcher (automaton and tables, not the signatures themselves).
    pub memory_bytes: usize,
    /// `pcre` checks, and the heap bytes of their DFAs (part of `memory_bytes`).
    pub pcres: usize,
    pub pcre_memory_bytes: usize,
    /// Signatures with `flowbits`, and the distinct names they use.
    pub flowbit_signatures: usize,
    pub flowbit_names: usize,
}

/// What verification needs to know about one signature, precomputed.
#[derive(Debug, Clone)]
struct SigInfo {
    /// Bit per protocol class the header's protocol matches.
    class_mask: u8,
    /// Evaluated over the payload only.
    per_packet: bool,
    /// Index of the last positive content among the checks (`usize::MAX`: none).
    last_positive: usize,
    /// Bit `i`: a check after positive content `i` reads that content's end, so retrying
    /// content `i` at its next start can change the outcome.
    cursor_used: u128,
    /// Its pcre checks' DFAs, in check order: `Database::pcres[pcres.0..pcres.1]`.
    pcres: (u32, u32),
    /// Its flowbits, in rule order: `Database::flowbits[flowbits.0..flowbits.1]`.
    flowbits: (u32, u32),
    /// Some of them are conditions.
    fb_conditional: bool,
}

/// One `flowbits` option, compiled: its names as a mask.
#[derive(Debug, Clone)]
struct FbOp {
    op: FlowbitOp,
    mask: FlowBits,
}

/// The compiled prefilter: the automaton and what each pattern stands for.
#[derive(Debug, Clone)]
struct Prefilter {
    dfa: DFA,
    start: StateID,
    /// Signatures of pattern `p`: `pat_sigs[pat_sig_start[p]..pat_sig_start[p + 1]]`.
    pat_sig_start: Vec<u32>,
    pat_sigs: Vec<u32>,
    /// Length of each pattern.
    pat_len: Vec<u32>,
    /// Each pattern's occurrences inside the tail matter (see the module doc).
    pat_tail_sensitive: Vec<bool>,
    /// Some pattern is tail-sensitive.
    any_tail_sensitive: bool,
}

impl Prefilter {
    /// The signatures whose prefilter pattern is `p`.
    fn sigs(&self, p: u32) -> &[u32] {
        let p = p as usize;
        match (self.pat_sig_start.get(p), self.pat_sig_start.get(p + 1)) {
            (Some(&a), Some(&b)) => self.pat_sigs.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Length of pattern `p` (0 for an unknown id).
    fn len_of(&self, p: u32) -> usize {
        self.pat_len.get(p as usize).map_or(0, |&l| l as usize)
    }

    /// Whether pattern `p`'s occurrences inside the tail matter.
    fn tail_sensitive(&self, p: u32) -> bool {
        self.pat_tail_sensitive
            .get(p as usize)
            .copied()
            .unwrap_or(false)
    }
}

/// The compiled signature set: immutable, shared by the worker cores.
#[derive(Clone)]
pub struct Database {
    sigs: Vec<Signature>,
    info: Vec<SigInfo>,
    tail: usize,
    fingerprint: u64,
    budget: u32,
    prefilter: Option<Prefilter>,
    /// Always-candidates per protocol class.
    always: [Vec<u32>; CLASSES],
    /// Every signature's pcre checks, compiled (see [`SigInfo::pcres`]).
    pcres: Vec<Compiled>,
    /// Every signature's flowbits (see [`SigInfo::flowbits`]), and the names' bit order.
    flowbits: Vec<FbOp>,
    flowbit_names: Vec<String>,
    stats: DbStats,
}

impl std::fmt::Debug for Database {
    /// The statistics, not the automaton.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("tail", &self.tail)
            .field("fingerprint", &self.fingerprint)
            .field("budget", &self.budget)
            .field("stats", &self.stats)
            .finish()
    }
}

/// Protocol class of an IP protocol number (index into the per-protocol lists).
fn proto_class(proto: u8) -> usize {
    match proto {
        6 => 0,
        17 => 1,
        1 | 58 => 2,
        _ => 3,
    }
}

/// Protocol classes a header's protocol matches, as a bit mask.
fn class_mask(proto: SigProto) -> u8 {
    match proto {
        SigProto::Tcp => 1,
        SigProto::Udp => 2,
        SigProto::Icmp => 4,
        SigProto::Ip => 0b1111,
    }
}

/// The content with `fast_pattern`, else the longest positive one (the first on ties),
/// with its index among the checks.
fn prefilter_content(sig: &Signature) -> Option<(usize, &Content)> {
    let positive = || {
        sig.checks.iter().enumerate().filter_map(|(i, c)| match c {
            PayloadCheck::Content(c) if !c.negated => Some((i, c)),
            _ => None,
        })
    };
    if let Some(found) = positive().find(|(_, c)| c.fast_pattern) {
        return Some(found);
    }
    let mut best: Option<(usize, &Content)> = None;
    for (i, c) in positive() {
        if best.is_none_or(|(_, b)| c.bytes.len() > b.bytes.len()) {
            best = Some((i, c));
        }
    }
    best
}

/// Whether a signature is evaluated over each payload alone (see the module doc).
fn is_per_packet(sig: &Signature, tail: usize) -> bool {
    let has_positive = sig
        .checks
        .iter()
        .any(|c| matches!(c, PayloadCheck::Content(c) if !c.negated));
    sig.dsize.is_some()
        || !has_positive
        || sig.checks.iter().any(|c| match c {
            PayloadCheck::Content(c) => {
                c.offset.is_some()
                    || c.depth.is_some()
                    || c.startswith
                    || c.endswith
                    || c.negated
                    || c.bytes.len() > tail
            }
            PayloadCheck::IsDataAt(d) => !d.relative,
            PayloadCheck::ByteTest(_) | PayloadCheck::ByteJump(_) | PayloadCheck::Pcre(_) => true,
        })
}

/// Whether a check reads the cursor.
fn is_relative(check: &PayloadCheck) -> bool {
    match check {
        PayloadCheck::Content(c) => c.is_relative(),
        PayloadCheck::IsDataAt(d) => d.relative,
        PayloadCheck::ByteTest(t) => t.read.relative,
        PayloadCheck::ByteJump(j) => j.read.relative,
        PayloadCheck::Pcre(p) => p.relative,
    }
}

/// Whether a check sets the cursor: a positive content or pcre, a byte_jump.
fn moves_cursor(check: &PayloadCheck) -> bool {
    match check {
        PayloadCheck::Content(c) => !c.negated,
        PayloadCheck::Pcre(p) => !p.negated,
        PayloadCheck::ByteJump(_) => true,
        PayloadCheck::IsDataAt(_) | PayloadCheck::ByteTest(_) => false,
    }
}

/// Whether a check is a positive content (one that moves the cursor).
fn is_positive(check: &PayloadCheck) -> bool {
    matches!(check, PayloadCheck::Content(c) if !c.negated)
}

/// Bit `i` set for each positive content `i` whose end a later check reads.
fn cursor_used(checks: &[PayloadCheck]) -> u128 {
    let mut mask = 0u128;
    for (i, check) in checks.iter().enumerate() {
        if !is_positive(check) {
            continue;
        }
        for later in &checks[i + 1..] {
            if is_relative(later) {
                mask |= 1u128 << i;
                break;
            }
            if moves_cursor(later) {
                break;
            }
        }
    }
    mask
}

impl Database {
    /// Builds the matcher. `tail`: bytes of the previous segment kept per flow and
    /// direction (at most [`MAX_TAIL`]).
    pub fn build(sigs: Vec<Signature>, tail: usize) -> Result<Database, BuildError> {
        if tail > MAX_TAIL {
            return Err(BuildError::TailTooLong {
                tail,
                max: MAX_TAIL,
            });
        }
        if sigs.len() >= u32::MAX as usize {
            return Err(BuildError::TooManySignatures { count: sigs.len() });
        }
        let mut info = Vec::with_capacity(sigs.len());
        let mut always: [Vec<u32>; CLASSES] = Default::default();
        let mut pattern_ids: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        let mut pattern_sigs: Vec<Vec<u32>> = Vec::new();
        let mut tail_sensitive: Vec<bool> = Vec::new();
        let mut pcres: Vec<Compiled> = Vec::new();
        let mut flowbits: Vec<FbOp> = Vec::new();
        let mut flowbit_names: Vec<String> = Vec::new();
        let mut flowbit_ids: HashMap<&str, usize> = HashMap::new();
        let mut stats = DbStats {
            signatures: sigs.len(),
            ..DbStats::default()
        };
        for (i, sig) in sigs.iter().enumerate() {
            if sig.checks.len() > MAX_CHECKS {
                return Err(BuildError::TooManyChecks {
                    sig: i,
                    sid: sig.sid,
                    checks: sig.checks.len(),
                    max: MAX_CHECKS,
                });
            }
            let empty = sig
                .checks
                .iter()
                .any(|c| matches!(c, PayloadCheck::Content(c) if c.bytes.is_empty()));
            if empty {
                return Err(BuildError::EmptyContent {
                    sig: i,
                    sid: sig.sid,
                });
            }
            let first_pcre = pcres.len() as u32;
            for check in &sig.checks {
                if let PayloadCheck::Pcre(p) = check {
                    let compiled = Compiled::new(p).map_err(|e| BuildError::Pcre {
                        sig: i,
                        sid: sig.sid,
                        reason: match e {
                            Unsupported::Syntax(text) => text,
                            Unsupported::TooLarge => "its DFA is too large".to_string(),
                        },
                    })?;
                    stats.pcre_memory_bytes += compiled.memory();
                    pcres.push(compiled);
                }
            }
            let first_flowbit = flowbits.len() as u32;
            for fb in &sig.flowbits {
                let mut mask = FlowBits::default();
                for name in &fb.names {
                    let next = flowbit_ids.len();
                    let bit = *flowbit_ids.entry(name.as_str()).or_insert(next);
                    if bit == next {
                        flowbit_names.push(name.clone());
                    }
                    if bit >= MAX_FLOWBITS {
                        continue;
                    }
                    mask[bit / 64] |= 1 << (bit % 64);
                }
                flowbits.push(FbOp { op: fb.op, mask });
            }
            if !sig.flowbits.is_empty() {
                stats.flowbit_signatures += 1;
            }
            let per_packet = is_per_packet(sig, tail);
            let last_positive = sig
                .checks
                .iter()
                .rposition(is_positive)
                .unwrap_or(usize::MAX);
            let mask = class_mask(sig.proto);
            if per_packet {
                stats.per_packet_only += 1;
            }
            match prefilter_content(sig) {
                Some((c, content)) => {
                    let suffix = content.bytes.len().saturating_sub(MAX_PATTERN_LEN);
                    let key = content.bytes[suffix..].to_ascii_lowercase();
                    let next = patterns.len() as u32;
                    let p = *pattern_ids.entry(key.clone()).or_insert(next);
                    if p == next {
                        patterns.push(key);
                        pattern_sigs.push(Vec::new());
                        tail_sensitive.push(false);
                    }
                    pattern_sigs[p as usize].push(i as u32);
                    if !per_packet && c != last_positive {
                        tail_sensitive[p as usize] = true;
                    }
                }
                None => {
                    stats.always_candidates += 1;
                    for (class, list) in always.iter_mut().enumerate() {
                        if mask & (1 << class) != 0 {
                            list.push(i as u32);
                        }
                    }
                }
            }
            info.push(SigInfo {
                class_mask: mask,
                per_packet,
                last_positive,
                cursor_used: cursor_used(&sig.checks),
                pcres: (first_pcre, pcres.len() as u32),
                flowbits: (first_flowbit, flowbits.len() as u32),
                fb_conditional: sig.flowbits.iter().any(|f| f.op.is_condition()),
            });
        }
        if flowbit_names.len() > MAX_FLOWBITS {
            return Err(BuildError::TooManyFlowbits { count: flowbit_names.len(), max: MAX_FLOWBITS });
        }
        stats.flowbit_names = flowbit_names.len();
        stats.prefilter_patterns = patterns.len();
        stats.pcres = pcres.len();
        let prefilter = if patterns.is_empty() {
            None
        } else {
            let dfa = DFA::builder()
                .match_kind(MatchKind::Standard)
                .ascii_case_insensitive(true)
                .start_kind(StartKind::Unanchored)
                .byte_classes(true)
                .prefilter(false)
                .build(&patterns)
                .map_err(|e| BuildError::Prefilter(e.to_string()))?;
            let start = dfa
                .start_state(Anchored::No)
                .map_err(|e| BuildError::Prefilter(e.to_string()))?;
            let mut pat_sig_start = Vec::with_capacity(patterns.len() + 1);
            let mut pat_sigs = Vec::with_capacity(sigs.len());
            for list in &pattern_sigs {
                pat_sig_start.push(pat_sigs.len() as u32);
                pat_sigs.extend_from_slice(list);
            }
            pat_sig_start.push(pat_sigs.len() as u32);
            let pat_len = patterns.iter().map(|p| p.len() as u32).collect();
            Some(Prefilter {
                dfa,
                start,
                pat_sig_start,
                pat_sigs,
                pat_len,
                any_tail_sensitive: tail_sensitive.iter().any(|&t| t),
                pat_tail_sensitive: tail_sensitive,
            })
        };
        stats.memory_bytes = info.capacity() * std::mem::size_of::<SigInfo>()
            + always.iter().map(|l| l.capacity() * 4).sum::<usize>()
            + prefilter.as_ref().map_or(0, |p| {
                p.dfa.memory_usage()
                    + (p.pat_sig_start.capacity() + p.pat_sigs.capacity() + p.pat_len.capacity())
                        * 4
                    + p.pat_tail_sensitive.capacity()
            })
            + stats.pcre_memory_bytes
            + flowbits.capacity() * std::mem::size_of::<FbOp>();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        format!("{:?}", sigs).hash(&mut hasher);
        tail.hash(&mut hasher);
        let fingerprint = hasher.finish().max(1);
        Ok(Database {
            sigs,
            info,
            tail,
            fingerprint,
            budget: BACKTRACK_BUDGET,
            prefilter,
            always,
            pcres,
            flowbits,
            flowbit_names,
            stats,
        })
    }

    /// The flowbit names, in bit order (empty: the signatures use no flowbits, and
    /// [`Database::scan_flow`] never touches a flow's bits).
    pub fn flowbit_names(&self) -> &[String] {
        &self.flowbit_names
    }

    /// The signatures, in the order [`Matches`] indexes them.
    pub fn signatures(&self) -> &[Signature] {
        &self.sigs
    }

    /// What the database holds.
    pub fn stats(&self) -> DbStats {
        self.stats
    }

    /// Hash of the signature set and `tail`: equal sets give equal fingerprints (never 0).
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Sets the backtracking budget per signature and packet ([`BACKTRACK_BUDGET`] by
    /// default; `u32::MAX` makes verification exhaustive, as the reference matcher is).
    pub fn set_backtrack_budget(&mut self, retries: u32) {
        self.budget = retries;
    }

    /// Scans one packet. `stream`: the flow and direction's state (`None`: per-packet
    /// only, e.g. when no state could be allocated). Fills `out` (cleared first). Never
    /// allocates, never panics, bounded work per byte. Flowbits are those of no flow (all
    /// unset; see [`Database::scan_flow`]).
    pub fn scan(&self, pkt: &Packet, stream: Option<&mut Stream>, out: &mut Matches) {
        self.scan_flow(pkt, stream, &mut NoFlow, out)
    }

    /// [`Database::scan`] for a packet of a flow whose flowbits `bits` keeps.
    pub fn scan_flow(&self, pkt: &Packet, stream: Option<&mut Stream>, bits: &mut dyn FlowBitsStore, out: &mut Matches) {
        out.clear();
        let class = proto_class(pkt.proto);
        let flat = Buf {
            head: &[],
            body: pkt.payload,
        };
        match stream {
            None => {
                if let Some(pf) = &self.prefilter {
                    walk_split(&pf.dfa, pf.start, pf.start, pkt.payload, |p, _| out.note(p));
                }
                self.verify_candidates(pkt, class, flat, None, bits, out);
            }
            Some(st) => self.scan_stream(pkt, class, st, bits, out),
        }
        for &i in self.always.get(class).map_or(&[][..], |l| &l[..]) {
            self.verify(i, pkt, class, flat, None, bits, out);
        }
        if out.deferred_len > 0 {
            let n = out.deferred_len.min(MAX_DEFERRED);
            let info = &self.info;
            out.deferred[..n].sort_unstable_by_key(|&i| (info.get(i as usize).is_some_and(|f| f.fb_conditional), i));
            for k in 0..n {
                let i = out.deferred[k];
                self.resolve_flowbits(i, bits, out);
            }
        }
        if out.bits_loaded && out.bits != out.bits_before {
            bits.store(&out.bits_before, &out.bits);
        }
        out.finish();
    }

    /// Signature `i` matched all but its flowbits: records it if its conditions hold over
    /// the flow's bits, and applies its effects.
    fn resolve_flowbits(&self, i: u32, bits: &mut dyn FlowBitsStore, out: &mut Matches) {
        let (Some(sig), Some(info)) = (self.sigs.get(i as usize), self.info.get(i as usize)) else {
            return;
        };
        if !out.bits_loaded {
            out.bits_before = bits.load();
            out.bits = out.bits_before;
            out.bits_loaded = true;
        }
        let ops = self.flowbits.get(info.flowbits.0 as usize..info.flowbits.1 as usize).unwrap_or(&[]);
        let any = |m: &FlowBits, f: &dyn Fn(u64, u64) -> u64| m.iter().zip(&out.bits).any(|(&m, &b)| f(m, b) != 0);
        let holds = ops.iter().all(|fb| match fb.op {
            FlowbitOp::IsSet => any(&fb.mask, &|m, b| m & b),
            FlowbitOp::IsNotSet => any(&fb.mask, &|m, b| m & !b),
            _ => true,
        });
        if !holds {
            return;
        }
        for fb in ops {
            for (b, &m) in out.bits.iter_mut().zip(&fb.mask) {
                match fb.op {
                    FlowbitOp::Set => *b |= m,
                    FlowbitOp::Unset => *b &= !m,
                    FlowbitOp::Toggle => *b ^= m,
                    FlowbitOp::IsSet | FlowbitOp::IsNotSet => {}
                }
            }
        }
        out.record(i, sig.action, sig.noalert);
    }

    /// The streaming half of [`Database::scan`]: prefilter from the saved state, verify
    /// the candidates over the window, save the state and the new tail.
    fn scan_stream(&self, pkt: &Packet, class: usize, st: &mut Stream, bits: &mut dyn FlowBitsStore, out: &mut Matches) {
        let mut rescan = false;
        let mut resync = false;
        if st.fingerprint == 0 {
            st.tail_len = 0;
            st.pending_len = 0;
            st.pending_overflow = false;
        } else if st.fingerprint != self.fingerprint {
            let old = (st.tail_len as usize).min(MAX_TAIL);
            let keep = old.min(self.tail);
            st.tail.copy_within(old - keep..old, 0);
            st.tail_len = keep as u16;
            st.pending_len = 0;
            rescan = true;
            resync = true;
            out.resynced = true;
        } else if st.pending_overflow {
            rescan = true;
        }
        st.fingerprint = self.fingerprint;

        let payload = pkt.payload;
        let head_len = (st.tail_len as usize).min(self.tail);
        let w_len = head_len + payload.len();
        let new_tail = self.tail.min(w_len);
        // Occurrences starting at or after `cutoff` (window index) lie in the next tail.
        let cutoff = w_len - new_tail;
        let mut next = Pending::default();

        if let Some(pf) = &self.prefilter {
            let head = &st.tail[..head_len];
            let mut sid = if st.state == 0 {
                pf.start
            } else {
                StateID::from_u32_unchecked(st.state)
            };
            // After a reload the state comes from walking the kept tail; that walk (or a
            // rescan after a pending overflow) also finds the tail-sensitive occurrences.
            let mut carry = |p: u32, end: usize, out: &mut Matches| {
                let len = pf.len_of(p);
                if end >= len && pf.tail_sensitive(p) {
                    out.note(p);
                    if end - len >= cutoff {
                        next.push(p, end - cutoff);
                    }
                }
            };
            if rescan && pf.any_tail_sensitive {
                let walked = walk(&pf.dfa, pf.start, head, |p, j| carry(p, j + 1, out));
                if resync {
                    sid = walked;
                }
            } else if resync {
                sid = walk(&pf.dfa, pf.start, head, |_, _| {});
            } else if pf.any_tail_sensitive {
                for k in 0..(st.pending_len as usize).min(MAX_PENDING) {
                    carry(st.pending_pat[k], st.pending_end[k] as usize, out);
                }
            }
            sid = if pf.any_tail_sensitive {
                walk_split(&pf.dfa, pf.start, sid, payload, |p, j| {
                    out.note(p);
                    if pf.tail_sensitive(p) {
                        let end = head_len + j + 1;
                        let len = pf.len_of(p);
                        if end >= len + cutoff {
                            next.push(p, end - cutoff);
                        }
                    }
                })
            } else {
                walk_split(&pf.dfa, pf.start, sid, payload, |p, _| out.note(p))
            };
            st.state = sid.as_u32();
        }

        let window = Buf {
            head: &st.tail[..head_len],
            body: payload,
        };
        self.verify_candidates(pkt, class, window, Some(head_len), bits, out);

        // The new tail: the last `new_tail` bytes of the window.
        if payload.len() >= new_tail {
            st.tail[..new_tail].copy_from_slice(&payload[payload.len() - new_tail..]);
        } else {
            let from_head = new_tail - payload.len();
            st.tail.copy_within(head_len - from_head..head_len, 0);
            st.tail[from_head..new_tail].copy_from_slice(payload);
        }
        st.tail_len = new_tail as u16;
        st.pending_len = next.len as u8;
        st.pending_pat = next.pat;
        st.pending_end = next.end;
        st.pending_overflow = next.overflow;
    }

    /// Verifies the signatures of every pattern noted in `out` (or of every pattern, when
    /// too many were noted). `window`: the buffer of streaming signatures, whose match must
    /// end past `min_end` (`None`: per-packet scan, `window` is the payload).
    fn verify_candidates(
        &self,
        pkt: &Packet,
        class: usize,
        window: Buf,
        min_end: Option<usize>,
        bits: &mut dyn FlowBitsStore,
        out: &mut Matches,
    ) {
        let Some(pf) = &self.prefilter else { return };
        let flat = Buf {
            head: &[],
            body: pkt.payload,
        };
        let one = |i: u32, bits: &mut dyn FlowBitsStore, out: &mut Matches| {
            let per_packet =
                min_end.is_none() || self.info.get(i as usize).is_none_or(|info| info.per_packet);
            if per_packet {
                self.verify(i, pkt, class, flat, None, bits, out);
            } else {
                self.verify(i, pkt, class, window, min_end, bits, out);
            }
        };
        if out.seen_overflow {
            for p in 0..pf.pat_len.len() as u32 {
                for &i in pf.sigs(p) {
                    one(i, bits, out);
                }
            }
        } else {
            for k in 0..out.seen_len {
                let p = out.seen[k];
                for &i in pf.sigs(p) {
                    one(i, bits, out);
                }
            }
        }
    }

    /// Verifies signature `i` over `buf` and records a match in `out` (a flowbit
    /// signature's is resolved later, see [`Database::resolve_flowbits`]).
    #[allow(clippy::too_many_arguments)]
    fn verify(
        &self,
        i: u32,
        pkt: &Packet,
        class: usize,
        buf: Buf,
        min_end: Option<usize>,
        bits: &mut dyn FlowBitsStore,
        out: &mut Matches,
    ) {
        let (Some(sig), Some(info)) = (self.sigs.get(i as usize), self.info.get(i as usize)) else {
            return;
        };
        if info.class_mask & (1 << class) == 0
            || !header_matches(sig, pkt)
            || !flow_matches(&sig.flow, pkt)
        {
            return;
        }
        if let Some(d) = sig.dsize {
            let n = pkt.payload.len();
            if n < d.min as usize || n > d.max as usize {
                return;
            }
        }
        let mut chain = Chain {
            checks: &sig.checks,
            buf,
            last_positive: info.last_positive,
            min_end,
            cursor_used: info.cursor_used,
            budget: self.budget,
            pcres: self.pcres.get(info.pcres.0 as usize..info.pcres.1 as usize).unwrap_or(&[]),
        };
        if !chain.run(0, 0) {
            return;
        }
        if info.flowbits.0 == info.flowbits.1 {
            out.record(i, sig.action, sig.noalert);
        } else if out.deferred_len < MAX_DEFERRED {
            out.deferred[out.deferred_len] = i;
            out.deferred_len += 1;
        } else {
            self.resolve_flowbits(i, bits, out);
        }
    }
}

/// Walks the DFA over `bytes` from `sid`, calling `on(pattern, index)` for every pattern
/// that ends at `bytes[index]`; returns the final state.
#[inline(always)]
fn walk(dfa: &DFA, mut sid: StateID, bytes: &[u8], mut on: impl FnMut(u32, usize)) -> StateID {
    let mut at = 0;
    loop {
        let (j, next) = run_to_match(dfa, sid, bytes, at);
        sid = next;
        if j >= bytes.len() {
            return sid;
        }
        for k in 0..dfa.match_len(sid) {
            let p: PatternID = dfa.match_pattern(sid, k);
            on(p.as_u32(), j);
        }
        at = j + 1;
    }
}

/// Interleaved walkers of the split walk.
const WALKERS: usize = 4;
/// Payloads at least this long (and `2 * WALKERS` times the longest pattern) are walked
/// by [`WALKERS`] interleaved walkers.
const SPLIT_MIN: usize = 128;

/// Like [`walk`], but a long `bytes` is cut into [`WALKERS`] parts walked at once: the DFA
/// walk is one dependent table load per byte, so independent chains overlap their
/// latencies. Walker 0 starts at 0 from `sid`; walker `w > 0` starts from `start`
/// `max_pattern_len` bytes before its part (a state stands for at most the last
/// `max_pattern_len` bytes, so its state is exact from its part on) and reports only
/// within its part. All take the same number of steps; the last one walks the remainder.
#[inline(always)]
fn walk_split(
    dfa: &DFA,
    start: StateID,
    sid: StateID,
    bytes: &[u8],
    mut on: impl FnMut(u32, usize),
) -> StateID {
    let warm = dfa.max_pattern_len();
    let n = bytes.len();
    if n < SPLIT_MIN || n < 2 * WALKERS * warm {
        return walk(dfa, sid, bytes, on);
    }
    // Steps per walker; walker w covers base[w]..base[w] + steps and reports from
    // base[w] + warm (w > 0), which is where walker w - 1 stops.
    let steps = (n + (WALKERS - 1) * warm) / WALKERS;
    let base: [usize; WALKERS] = std::array::from_fn(|w| w * (steps - warm));
    let parts: [Option<&[u8]>; WALKERS] =
        std::array::from_fn(|w| bytes.get(base[w]..base[w] + steps));
    let [Some(p0), Some(p1), Some(p2), Some(p3)] = parts else {
        return walk(dfa, sid, bytes, on);
    };
    let mut states = [sid, start, start, start];
    let mut t = 0;
    while t < steps {
        let next = run4_to_match(dfa, &mut states, [p0, p1, p2, p3], t);
        if next == t {
            break;
        }
        t = next;
        for (w, &st) in states.iter().enumerate() {
            let j = base[w] + t - 1;
            if dfa.is_match(st) && (w == 0 || j >= base[w] + warm) {
                for k in 0..dfa.match_len(st) {
                    on(dfa.match_pattern(st, k).as_u32(), j);
                }
            }
        }
    }
    let done = base[WALKERS - 1] + t;
    let rest = bytes.get(done..).unwrap_or(&[]);
    walk(dfa, states[WALKERS - 1], rest, |p, j| on(p, done + j))
}

/// The split walk's hot loop: steps the four walkers over their parts in lockstep from
/// step `from` until one enters a match state (or the parts end); returns the steps done.
#[inline(never)]
fn run4_to_match(
    dfa: &DFA,
    states: &mut [StateID; WALKERS],
    parts: [&[u8]; WALKERS],
    from: usize,
) -> usize {
    let [mut a, mut b, mut c, mut d] = *states;
    let [p0, p1, p2, p3] = parts.map(|p| p.get(from..).unwrap_or(&[]));
    let steps = p0.len().min(p1.len()).min(p2.len()).min(p3.len());
    for (t, (((&x0, &x1), &x2), &x3)) in p0.iter().zip(p1).zip(p2).zip(p3).enumerate() {
        a = dfa.next_state(Anchored::No, a, x0);
        b = dfa.next_state(Anchored::No, b, x1);
        c = dfa.next_state(Anchored::No, c, x2);
        d = dfa.next_state(Anchored::No, d, x3);
        if dfa.is_match(a) | dfa.is_match(b) | dfa.is_match(c) | dfa.is_match(d) {
            *states = [a, b, c, d];
            return from + t + 1;
        }
    }
    *states = [a, b, c, d];
    from + steps
}

/// The hot loop: steps the DFA from `sid` over `bytes[at..]` until it enters a match
/// state; returns the index of the byte that entered it (`bytes.len()`: none did) and the
/// state. Kept apart so that the state stays in a register (it is the loop's only
/// dependency chain: one table load per byte).
#[inline(never)]
fn run_to_match(dfa: &DFA, mut sid: StateID, bytes: &[u8], at: usize) -> (usize, StateID) {
    let rest = bytes.get(at..).unwrap_or(&[]);
    for (j, &b) in rest.iter().enumerate() {
        sid = dfa.next_state(Anchored::No, sid, b);
        if dfa.is_match(sid) {
            return (at + j, sid);
        }
    }
    (bytes.len(), sid)
}

/// Tail-sensitive occurrences for the next tail, while scanning.
struct Pending {
    pat: [u32; MAX_PENDING],
    end: [u16; MAX_PENDING],
    len: usize,
    overflow: bool,
}

impl Default for Pending {
    /// Empty.
    fn default() -> Pending {
        Pending {
            pat: [0; MAX_PENDING],
            end: [0; MAX_PENDING],
            len: 0,
            overflow: false,
        }
    }
}

impl Pending {
    /// Remembers that pattern `p` occurs ending at `end` (index into the next tail).
    fn push(&mut self, p: u32, end: usize) {
        if self.len == MAX_PENDING {
            self.overflow = true;
            return;
        }
        self.pat[self.len] = p;
        self.end[self.len] = end as u16;
        self.len += 1;
    }
}

/// A buffer made of two slices (the kept tail and the payload), indexed as one.
#[derive(Clone, Copy)]
struct Buf<'a> {
    head: &'a [u8],
    body: &'a [u8],
}

impl Buf<'_> {
    /// Bytes in the buffer.
    fn len(&self) -> usize {
        self.head.len() + self.body.len()
    }

    /// The byte at `i`, if any.
    #[inline]
    fn get(&self, i: usize) -> Option<u8> {
        match i.checked_sub(self.head.len()) {
            None => self.head.get(i).copied(),
            Some(j) => self.body.get(j).copied(),
        }
    }

    /// Whether `pat` occurs at `s` (ASCII case-insensitively with `nocase`).
    fn eq_at(&self, s: usize, pat: &[u8], nocase: bool) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if nocase {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let h = self.head.len();
        let end = s + pat.len();
        if s >= h {
            self.body.get(s - h..end - h).is_some_and(|b| eq(b, pat))
        } else if end <= h {
            self.head.get(s..end).is_some_and(|b| eq(b, pat))
        } else {
            let (first, second) = pat.split_at(h - s);
            self.head.get(s..).is_some_and(|b| eq(b, first))
                && self.body.get(..second.len()).is_some_and(|b| eq(b, second))
        }
    }
}

/// One signature's payload checks being evaluated over a buffer.
struct Chain<'a> {
    checks: &'a [PayloadCheck],
    buf: Buf<'a>,
    last_positive: usize,
    /// The last positive content's match must end past this index.
    min_end: Option<usize>,
    cursor_used: u128,
    budget: u32,
    /// The signature's compiled pcre checks, in check order.
    pcres: &'a [Compiled],
}

impl Chain<'_> {
    /// Whether checks `i..` succeed with the cursor at `prev_end`.
    fn run(&mut self, i: usize, prev_end: usize) -> bool {
        let Some(check) = self.checks.get(i) else {
            return true;
        };
        match check {
            PayloadCheck::IsDataAt(d) => {
                isdataat_passes(d, prev_end, self.buf.len()) && self.run(i + 1, prev_end)
            }
            PayloadCheck::ByteTest(t) => {
                byte_test_passes(t, &self.buf, prev_end) && self.run(i + 1, prev_end)
            }
            PayloadCheck::ByteJump(j) => {
                byte_jump_target(j, &self.buf, prev_end).is_some_and(|to| self.run(i + 1, to))
            }
            PayloadCheck::Pcre(p) => {
                let ordinal = self.checks[..i]
                    .iter()
                    .filter(|c| matches!(c, PayloadCheck::Pcre(_)))
                    .count();
                // Signatures with a pcre are per-packet only: the buffer is the payload, whole.
                let (Some(re), true) = (self.pcres.get(ordinal), self.buf.head.is_empty()) else {
                    return false;
                };
                let base = if p.relative { prev_end } else { 0 };
                let found = self.buf.body.get(base..).and_then(|hay| re.find(hay));
                match (found, p.negated) {
                    (None, true) => self.run(i + 1, prev_end),
                    (Some((_, end)), false) => self.run(i + 1, base + end),
                    _ => false,
                }
            }
            PayloadCheck::Content(c) => {
                let min_end = if i == self.last_positive {
                    self.min_end
                } else {
                    None
                };
                let range = start_range(c, self.buf.len(), prev_end, min_end);
                if c.negated {
                    let found = range.is_some_and(|(lo, hi)| self.find(c, lo, hi).is_some());
                    return !found && self.run(i + 1, prev_end);
                }
                let Some((mut lo, hi)) = range else {
                    return false;
                };
                let used = i < 128 && self.cursor_used & (1u128 << i) != 0;
                loop {
                    let Some(s) = self.find(c, lo, hi) else {
                        return false;
                    };
                    if self.run(i + 1, s + c.bytes.len()) {
                        return true;
                    }
                    if !used || self.budget == 0 {
                        return false;
                    }
                    self.budget -= 1;
                    lo = s + 1;
                }
            }
        }
    }

    /// The first start in `lo..=hi` where content `c` occurs.
    fn find(&self, c: &Content, lo: usize, hi: usize) -> Option<usize> {
        let first = *c.bytes.first()?;
        for s in lo..=hi {
            let b = self.buf.get(s)?;
            let hit = if c.nocase {
                b.eq_ignore_ascii_case(&first)
            } else {
                b == first
            };
            if hit && self.buf.eq_at(s, &c.bytes, c.nocase) {
                return Some(s);
            }
        }
        None
    }
}

/// The number `r` reads with the cursor at `prev_end`, and where the bytes it read end;
/// None when they are not all in the buffer, or (strings) do not start with a digit of the
/// base or overflow 64 bits.
fn byte_read(r: &ByteRead, buf: &Buf, prev_end: usize) -> Option<(u64, usize)> {
    let base = if r.relative { prev_end as i64 } else { 0 };
    let start = usize::try_from(base + r.offset as i64).ok()?;
    let end = start + r.count as usize;
    if end > buf.len() {
        return None;
    }
    let mut value: u64 = 0;
    match r.string_base {
        None => {
            for k in 0..r.count as usize {
                let b = buf.get(if r.little_endian { end - 1 - k } else { start + k })? as u64;
                value = value << 8 | b;
            }
        }
        Some(radix) => {
            let mut digits = 0;
            for k in start..end {
                let Some(d) = (buf.get(k)? as char).to_digit(radix as u32) else {
                    break;
                };
                value = value.checked_mul(radix as u64)?.checked_add(d as u64)?;
                digits += 1;
            }
            if digits == 0 {
                return None;
            }
        }
    }
    if let Some(mask) = r.bitmask {
        value = (value & mask) >> mask.trailing_zeros().min(63);
    }
    Some((value, end))
}

/// Whether `byte_test` passes with the cursor at `prev_end`.
fn byte_test_passes(t: &ByteTest, buf: &Buf, prev_end: usize) -> bool {
    let Some((v, _)) = byte_read(&t.read, buf, prev_end) else {
        return false;
    };
    let result = match t.op {
        ByteOp::Lt => v < t.value,
        ByteOp::Gt => v > t.value,
        ByteOp::Le => v <= t.value,
        ByteOp::Ge => v >= t.value,
        ByteOp::Eq => v == t.value,
        ByteOp::And => v & t.value != 0,
        ByteOp::Xor => v ^ t.value != 0,
    };
    result != t.negated
}

/// Where `byte_jump` moves the cursor from `prev_end`: None when the read fails or the
/// target lies before the buffer start or past its end (at the end is allowed).
fn byte_jump_target(j: &ByteJump, buf: &Buf, prev_end: usize) -> Option<usize> {
    let (v, read_end) = byte_read(&j.read, buf, prev_end)?;
    let mut jump = (v as i128) * j.multiplier as i128;
    if j.align {
        jump = (jump + 3) / 4 * 4;
    }
    let from = match j.from {
        JumpFrom::Read => read_end,
        JumpFrom::Beginning => 0,
        JumpFrom::End => buf.len(),
    } as i128;
    let to = from + jump + j.post_offset as i128;
    if to < 0 || to > buf.len() as i128 {
        return None;
    }
    Some(to as usize)
}

/// Whether `isdataat` passes with the cursor at `prev_end` over `len` bytes.
fn isdataat_passes(d: &IsDataAt, prev_end: usize, len: usize) -> bool {
    let base = if d.relative { prev_end } else { 0 };
    let present = (base as u64 + d.pos as u64) < len as u64;
    present != d.negated
}

/// The inclusive range of starts a content's position constraints allow over `len`
/// bytes with the cursor at `prev_end` (`None`: none). `min_end`: the match must end past
/// this index.
fn start_range(
    c: &Content,
    len: usize,
    prev_end: usize,
    min_end: Option<usize>,
) -> Option<(usize, usize)> {
    let n = c.bytes.len() as i64;
    let len = len as i64;
    let prev_end = prev_end as i64;
    let mut lo: i64 = 0;
    let mut hi: i64 = len - n;
    if let Some(o) = c.offset {
        lo = lo.max(o as i64);
    }
    if let Some(d) = c.depth {
        hi = hi.min(c.offset.unwrap_or(0) as i64 + d as i64 - n);
    }
    let relative = c.is_relative();
    if relative {
        let base = prev_end + c.distance.unwrap_or(0) as i64;
        lo = lo.max(base);
        if let Some(w) = c.within {
            hi = hi.min(base + w as i64 - n);
        }
    }
    if c.startswith {
        let at = if relative { prev_end } else { 0 };
        lo = lo.max(at);
        hi = hi.min(at);
    }
    if c.endswith {
        lo = lo.max(len - n);
    }
    if let Some(t) = min_end {
        lo = lo.max(t as i64 + 1 - n);
    }
    if lo > hi {
        None
    } else {
        Some((lo as usize, hi as usize))
    }
}

/// Whether the header (protocol, addresses, ports, direction) matches.
fn header_matches(sig: &Signature, pkt: &Packet) -> bool {
    let proto_ok = match sig.proto {
        SigProto::Tcp => pkt.proto == 6,
        SigProto::Udp => pkt.proto == 17,
        SigProto::Icmp => pkt.proto == 1 || pkt.proto == 58,
        SigProto::Ip => true,
    };
    if !proto_ok {
        return false;
    }
    let ports = pkt.proto == 6 || pkt.proto == 17;
    let forward = addr_matches(&sig.src, pkt.src)
        && port_matches(&sig.src_ports, pkt.src_port, ports)
        && addr_matches(&sig.dst, pkt.dst)
        && port_matches(&sig.dst_ports, pkt.dst_port, ports);
    forward
        || (sig.bidirectional
            && addr_matches(&sig.src, pkt.dst)
            && port_matches(&sig.src_ports, pkt.dst_port, ports)
            && addr_matches(&sig.dst, pkt.src)
            && port_matches(&sig.dst_ports, pkt.src_port, ports))
}

/// Whether the `flow` conditions hold.
fn flow_matches(flow: &FlowMatch, pkt: &Packet) -> bool {
    flow.to_server.is_none_or(|t| t == pkt.to_server)
        && (!flow.established || pkt.established)
        && (!flow.not_established || !pkt.established)
}

/// Whether `addr` lies in the prefix (never across address families).
fn cidr_contains(c: &Cidr, addr: IpAddr) -> bool {
    match (c.addr, addr) {
        (IpAddr::V4(net), IpAddr::V4(a)) => {
            let len = u32::from(c.len.min(32));
            len == 0 || (u32::from(net) ^ u32::from(a)) >> (32 - len) == 0
        }
        (IpAddr::V6(net), IpAddr::V6(a)) => {
            let len = u32::from(c.len.min(128));
            len == 0 || (u128::from(net) ^ u128::from(a)) >> (128 - len) == 0
        }
        _ => false,
    }
}

/// Whether an address field matches `addr`.
fn addr_matches(m: &AddrMatch, addr: IpAddr) -> bool {
    (m.include.is_empty() || m.include.iter().any(|c| cidr_contains(c, addr)))
        && !m.exclude.iter().any(|c| cidr_contains(c, addr))
}

/// Whether a port field matches `port`; `has_ports`: the packet is tcp or udp.
fn port_matches(m: &PortMatch, port: u16, has_ports: bool) -> bool {
    if m.include.is_empty() && m.exclude.is_empty() {
        return true;
    }
    let within = |&(lo, hi): &(u16, u16)| lo <= port && port <= hi;
    has_ports
        && (m.include.is_empty() || m.include.iter().any(within))
        && !m.exclude.iter().any(within)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Pcre, SizeRange};
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A content with no modifiers.
    fn ct(bytes: &[u8]) -> Content {
        Content {
            bytes: bytes.to_vec(),
            ..Content::default()
        }
    }

    /// `alert ip any any -> any any` with these contents.
    fn sig(contents: Vec<Content>) -> Signature {
        sig_checks(contents.into_iter().map(PayloadCheck::Content).collect())
    }

    /// `alert ip any any -> any any` with these checks.
    fn sig_checks(checks: Vec<PayloadCheck>) -> Signature {
        Signature::new(SigAction::Alert, SigProto::Ip, 1, checks)
    }

    /// A TCP packet 10.0.0.1:1234 -> 10.0.0.2:80, to the server, established.
    fn pkt(payload: &[u8]) -> Packet<'_> {
        Packet {
            proto: 6,
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 1234,
            dst_port: 80,
            to_server: true,
            established: true,
            payload,
        }
    }

    /// The listed matches of one per-packet scan.
    fn scan(db: &Database, p: &Packet) -> Vec<u32> {
        let mut out = Matches::new();
        db.scan(p, None, &mut out);
        out.iter().collect()
    }

    /// Whether a single-signature database matches `payload` (per packet).
    fn hit(s: Signature, payload: &[u8]) -> bool {
        let db = Database::build(vec![s], 16).unwrap();
        !scan(&db, &pkt(payload)).is_empty()
    }

    /// The listed matches of each packet, scanned through one stream.
    fn stream_scan(db: &Database, payloads: &[&[u8]]) -> Vec<Vec<u32>> {
        let mut st = Stream::new();
        let mut out = Matches::new();
        payloads
            .iter()
            .map(|p| {
                db.scan(&pkt(p), Some(&mut st), &mut out);
                out.iter().collect()
            })
            .collect()
    }

    /// Exact bytes, and ASCII case folding with `nocase`.
    #[test]
    fn plain_and_nocase() {
        assert!(hit(sig(vec![ct(b"abc")]), b"xxabcxx"));
        assert!(!hit(sig(vec![ct(b"abc")]), b"xxABCxx"));
        let nc = Content {
            nocase: true,
            ..ct(b"abc")
        };
        assert!(hit(sig(vec![nc.clone()]), b"xxAbCxx"));
        assert!(!hit(sig(vec![nc]), b"xxabxcx"));
        assert!(!hit(sig(vec![ct(b"abc")]), b"ab"));
        assert!(!hit(sig(vec![ct(b"abc")]), b""));
    }

    /// Absolute positions: `offset` bounds the start, `depth` the end.
    #[test]
    fn offset_and_depth() {
        let off = |o, d| Content {
            offset: o,
            depth: d,
            ..ct(b"ab")
        };
        assert!(hit(sig(vec![off(Some(2), None)]), b"xxab"));
        assert!(!hit(sig(vec![off(Some(3), None)]), b"xxab"));
        assert!(hit(sig(vec![off(None, Some(4))]), b"xxab"));
        assert!(!hit(sig(vec![off(None, Some(3))]), b"xxab"));
        assert!(hit(sig(vec![off(Some(1), Some(3))]), b"xxab"));
        assert!(!hit(sig(vec![off(Some(1), Some(2))]), b"xxab"));
        // A later occurrence satisfies the constraints when the first does not.
        assert!(hit(sig(vec![off(Some(3), None)]), b"abxab"));
    }

    /// Relative positions, negative distances, backtracking, non-relative order.
    #[test]
    fn distance_and_within() {
        let rel = |d, w| Content {
            distance: d,
            within: w,
            ..ct(b"cd")
        };
        assert!(hit(sig(vec![ct(b"ab"), rel(Some(0), None)]), b"abcd"));
        assert!(hit(sig(vec![ct(b"ab"), rel(Some(2), None)]), b"abxxcd"));
        assert!(!hit(sig(vec![ct(b"ab"), rel(Some(3), None)]), b"abxxcd"));
        assert!(hit(sig(vec![ct(b"ab"), rel(None, Some(4))]), b"abxxcd"));
        assert!(!hit(sig(vec![ct(b"ab"), rel(None, Some(3))]), b"abxxcd"));
        assert!(hit(sig(vec![ct(b"ab"), rel(Some(1), Some(3))]), b"abxcd"));
        assert!(!hit(sig(vec![ct(b"ab"), rel(Some(1), Some(2))]), b"abxxcd"));
        // Negative distance: before the previous match's end, floored at 0.
        assert!(hit(sig(vec![ct(b"ab"), rel(Some(-4), None)]), b"cdab"));
        assert!(hit(sig(vec![ct(b"ab"), rel(Some(-10), None)]), b"cdab"));
        assert!(!hit(sig(vec![ct(b"ab"), rel(Some(-1), None)]), b"cdab"));
        assert!(hit(
            sig(vec![
                ct(b"abcd"),
                Content {
                    distance: Some(-2),
                    within: Some(2),
                    ..ct(b"cd")
                }
            ]),
            b"abcd"
        ));
        // Relative to the second occurrence of "ab" (backtracking).
        assert!(hit(
            sig(vec![ct(b"ab"), rel(Some(0), Some(2))]),
            b"abxxabcd"
        ));
        // A content without distance/within matches anywhere, even before the previous one.
        assert!(hit(sig(vec![ct(b"ab"), ct(b"cd")]), b"cdab"));
    }

    /// Anchoring at the buffer start / end, and relative `startswith`.
    #[test]
    fn startswith_and_endswith() {
        let sw = Content {
            startswith: true,
            ..ct(b"ab")
        };
        let ew = Content {
            endswith: true,
            ..ct(b"ab")
        };
        assert!(hit(sig(vec![sw.clone()]), b"abxx"));
        assert!(!hit(sig(vec![sw.clone()]), b"xabx"));
        assert!(hit(sig(vec![ew.clone()]), b"xxab"));
        assert!(!hit(sig(vec![ew.clone()]), b"xabx"));
        assert!(hit(sig(vec![ew]), b"abxab"));
        // Relative startswith: right at the previous content's end.
        let rsw = Content {
            startswith: true,
            distance: Some(0),
            ..ct(b"cd")
        };
        assert!(hit(sig(vec![ct(b"ab"), rsw.clone()]), b"xabcd"));
        assert!(!hit(sig(vec![ct(b"ab"), rsw]), b"xabxcd"));
    }

    /// `isdataat` absolute, relative, negated, and alone.
    fn read(count: u8, offset: i32) -> ByteRead {
        ByteRead { count, offset, relative: false, little_endian: false, string_base: None, bitmask: None }
    }

    fn test(read: ByteRead, op: ByteOp, value: u64) -> PayloadCheck {
        PayloadCheck::ByteTest(ByteTest { read, op, negated: false, value })
    }

    #[test]
    fn byte_test() {
        let p = b"\x01\x02127x";
        assert!(hit(sig_checks(vec![test(read(2, 0), ByteOp::Eq, 0x0102)]), p));
        assert!(hit(sig_checks(vec![test(ByteRead { little_endian: true, ..read(2, 0) }, ByteOp::Eq, 0x0201)]), p));
        assert!(!hit(sig_checks(vec![test(read(2, 0), ByteOp::Eq, 0x0201)]), p));
        // Strings: the digits that start the bytes read.
        let dec = ByteRead { string_base: Some(10), ..read(4, 2) };
        assert!(hit(sig_checks(vec![test(dec, ByteOp::Eq, 127)]), p));
        assert!(hit(sig_checks(vec![test(ByteRead { string_base: Some(8), ..dec }, ByteOp::Eq, 0o127)]), p));
        assert!(hit(sig_checks(vec![test(ByteRead { string_base: Some(16), ..dec }, ByteOp::Eq, 0x127)]), p));
        assert!(!hit(sig_checks(vec![test(ByteRead { offset: 5, ..dec }, ByteOp::Ge, 0)]), p), "no digit");
        // A read past the end fails, negated or not.
        let past = ByteTest { read: read(2, 5), op: ByteOp::Eq, negated: true, value: 7 };
        assert!(!hit(sig_checks(vec![PayloadCheck::ByteTest(past)]), p));
        assert!(!hit(sig_checks(vec![test(read(1, -1), ByteOp::Ge, 0)]), p));
        let negated = ByteTest { read: read(1, 0), op: ByteOp::Eq, negated: true, value: 7 };
        assert!(hit(sig_checks(vec![PayloadCheck::ByteTest(negated)]), p));
        // Operators and the bitmask (shifted by its trailing zeros).
        for (op, value, want) in [
            (ByteOp::Lt, 2, true),
            (ByteOp::Lt, 1, false),
            (ByteOp::Le, 1, true),
            (ByteOp::Gt, 0, true),
            (ByteOp::Ge, 2, false),
            (ByteOp::And, 3, true),
            (ByteOp::And, 2, false),
            (ByteOp::Xor, 1, false),
            (ByteOp::Xor, 3, true),
        ] {
            assert_eq!(hit(sig_checks(vec![test(read(1, 0), op, value)]), p), want, "{op:?} {value}");
        }
        let masked = ByteRead { bitmask: Some(0xff00), ..read(2, 0) };
        assert!(hit(sig_checks(vec![test(masked, ByteOp::Eq, 1)]), p));
        // Relative: from the end of the previous content.
        let rel = ByteRead { relative: true, string_base: Some(10), ..read(2, 0) };
        assert!(hit(sig_checks(vec![PayloadCheck::Content(ct(b"1")), test(rel, ByteOp::Eq, 27)]), p));
    }

    #[test]
    fn byte_jump() {
        let jump = |read, from, align, post_offset| PayloadCheck::ByteJump(ByteJump { read, multiplier: 1, align, from, post_offset });
        let xyz = |within| PayloadCheck::Content(Content { distance: Some(0), within: Some(within), ..ct(b"XYZ") });
        let p = b"\x00\x03abcXYZ";
        assert!(hit(sig_checks(vec![jump(read(2, 0), JumpFrom::Read, false, 0), xyz(3)]), p));
        assert!(!hit(sig_checks(vec![jump(read(2, 0), JumpFrom::Read, false, 1), xyz(3)]), p));
        assert!(!hit(sig_checks(vec![jump(read(2, 0), JumpFrom::Read, true, 0), xyz(3)]), p), "3 aligned is 4");
        assert!(hit(sig_checks(vec![jump(read(2, 0), JumpFrom::Read, true, -1), xyz(3)]), p));
        assert!(hit(sig_checks(vec![jump(read(2, 0), JumpFrom::Beginning, false, 2), xyz(3)]), p));
        assert!(hit(sig_checks(vec![jump(read(2, 0), JumpFrom::End, false, -6), xyz(3)]), p));
        let multiplied = PayloadCheck::ByteJump(ByteJump { read: read(1, 1), multiplier: 2, align: false, from: JumpFrom::Read, post_offset: -3 });
        assert!(hit(sig_checks(vec![multiplied, xyz(3)]), p));
        // To the very end passes (nothing is left); past it fails (the value read is 3).
        let end = |post| jump(read(2, 0), JumpFrom::End, false, post - 3);
        let nothing_left = PayloadCheck::IsDataAt(IsDataAt { pos: 0, relative: true, negated: true });
        assert!(hit(sig_checks(vec![PayloadCheck::Content(ct(b"a")), end(0), nothing_left]), p));
        assert!(!hit(sig_checks(vec![PayloadCheck::Content(ct(b"a")), end(1)]), p));
        assert!(!hit(sig_checks(vec![PayloadCheck::Content(ct(b"a")), jump(read(2, 0), JumpFrom::Beginning, false, -4)]), p));
        // Relative reads start at the cursor.
        let rel = ByteRead { relative: true, ..read(1, 0) };
        assert!(hit(sig_checks(vec![PayloadCheck::Content(ct(b"\x00")), jump(rel, JumpFrom::Read, false, 0), xyz(3)]), p));
    }

    #[test]
    fn pcre_checks() {
        let re = |pattern: &str, relative, negated| PayloadCheck::Pcre(Pcre { relative, negated, ..Pcre::new(pattern) });
        let a = || PayloadCheck::Content(ct(b"a"));
        assert!(hit(sig_checks(vec![a(), re("^b", true, false)]), b"xab"));
        assert!(!hit(sig_checks(vec![a(), re("^b", true, false)]), b"xacb"));
        assert!(!hit(sig_checks(vec![a(), re("^b", false, false)]), b"xab"), "not relative: ^ is the buffer start");
        assert!(hit(sig_checks(vec![a(), re("c", true, true)]), b"cab"), "no c after the a");
        assert!(!hit(sig_checks(vec![a(), re("c", true, true)]), b"acb"));
        // The cursor moves to the match's end.
        let d = PayloadCheck::Content(Content { distance: Some(0), within: Some(1), ..ct(b"d") });
        assert!(hit(sig_checks(vec![a(), re("b+", true, false), d.clone()]), b"abbbd"));
        assert!(!hit(sig_checks(vec![a(), re("b+", true, false), d]), b"abbbxd"));
        // An earlier content is retried, the pcre re-run from its new cursor.
        assert!(hit(sig_checks(vec![a(), re("^z", true, false)]), b"ab az"));
        let db = Database::build(vec![sig_checks(vec![a(), re("b", false, false)])], 16).unwrap();
        assert_eq!(db.stats().pcres, 1);
        assert!(db.stats().pcre_memory_bytes > 0);
        let bad = Database::build(vec![sig_checks(vec![a(), re("(a)\\1", false, false)])], 16).unwrap_err();
        assert!(matches!(bad, BuildError::Pcre { sig: 0, sid: 1, .. }), "{bad}");
    }

    #[test]
    fn isdataat() {
        let at = |pos, relative, negated| {
            PayloadCheck::IsDataAt(IsDataAt {
                pos,
                relative,
                negated,
            })
        };
        let c = PayloadCheck::Content(ct(b"ab"));
        assert!(hit(
            sig_checks(vec![c.clone(), at(3, false, false)]),
            b"abcd"
        ));
        assert!(!hit(
            sig_checks(vec![c.clone(), at(4, false, false)]),
            b"abcd"
        ));
        assert!(hit(
            sig_checks(vec![c.clone(), at(4, false, true)]),
            b"abcd"
        ));
        assert!(hit(
            sig_checks(vec![c.clone(), at(1, true, false)]),
            b"abcd"
        ));
        assert!(!hit(
            sig_checks(vec![c.clone(), at(2, true, false)]),
            b"abcd"
        ));
        assert!(hit(sig_checks(vec![c.clone(), at(2, true, true)]), b"abcd"));
        // The relative check backtracks to an earlier "ab".
        assert!(hit(
            sig_checks(vec![c.clone(), at(2, true, false)]),
            b"abcdab"
        ));
        // No content: an always-candidate.
        assert!(hit(sig_checks(vec![at(0, false, false)]), b"a"));
        assert!(!hit(sig_checks(vec![at(0, false, false)]), b""));
    }

    /// Absence, absolute and relative; it does not move the cursor.
    #[test]
    fn negated_content() {
        let neg = |d: Option<i32>, w| Content {
            negated: true,
            distance: d,
            within: w,
            ..ct(b"cd")
        };
        assert!(hit(sig(vec![ct(b"ab"), neg(None, None)]), b"abxx"));
        assert!(!hit(sig(vec![ct(b"ab"), neg(None, None)]), b"cdab"));
        // Relative absence: "cd" must not follow within 2 bytes.
        assert!(!hit(sig(vec![ct(b"ab"), neg(Some(0), Some(2))]), b"abcd"));
        assert!(hit(sig(vec![ct(b"ab"), neg(Some(0), Some(2))]), b"abxcd"));
        // Backtracking finds an "ab" without "cd" after it.
        assert!(hit(sig(vec![ct(b"ab"), neg(Some(0), Some(2))]), b"abcdab"));
        // A negated content alone is an always-candidate.
        assert!(hit(sig(vec![neg(None, None)]), b"xyz"));
        assert!(!hit(sig(vec![neg(None, None)]), b"xcdz"));
        // The cursor does not move: "ef" relative to "ab".
        let ef = Content {
            distance: Some(0),
            within: Some(2),
            ..ct(b"ef")
        };
        assert!(hit(sig(vec![ct(b"ab"), neg(None, None), ef]), b"abef"));
    }

    /// `dsize` bounds the payload length inclusively.
    #[test]
    fn dsize() {
        let mut s = sig(vec![ct(b"ab")]);
        s.dsize = Some(SizeRange { min: 3, max: 4 });
        assert!(!hit(s.clone(), b"ab"));
        assert!(hit(s.clone(), b"abc"));
        assert!(hit(s.clone(), b"abcd"));
        assert!(!hit(s, b"abcde"));
    }

    /// The prefilter takes `fast_pattern`, else the longest positive content.
    #[test]
    fn fast_pattern_selection() {
        let db = Database::build(
            vec![
                sig(vec![ct(b"ab"), ct(b"longer")]),
                sig(vec![
                    Content {
                        fast_pattern: true,
                        ..ct(b"ab")
                    },
                    ct(b"longer"),
                ]),
                sig(vec![ct(b"xyz"), ct(b"uvw")]),
                sig(vec![
                    Content {
                        negated: true,
                        fast_pattern: true,
                        ..ct(b"zzzzzz")
                    },
                    ct(b"q"),
                ]),
            ],
            16,
        )
        .unwrap();
        let pf = db.prefilter.as_ref().unwrap();
        let pattern_of = |i: u32| (0..pf.pat_len.len() as u32).find(|&p| pf.sigs(p).contains(&i));
        let len_of = |i| pf.len_of(pattern_of(i).unwrap());
        assert_eq!(len_of(0), 6);
        assert_eq!(len_of(1), 2);
        assert_eq!(len_of(2), 3);
        assert_eq!(len_of(3), 1);
        // Ties: the first ("xyz" is a candidate, "uvw" is not).
        let db2 = Database::build(vec![sig(vec![ct(b"xyz"), ct(b"uvw")])], 16).unwrap();
        let mut out = Matches::new();
        db2.scan(&pkt(b"uvw"), None, &mut out);
        assert_eq!(out.seen_len, 0);
        db2.scan(&pkt(b"xyz"), None, &mut out);
        assert_eq!(out.seen_len, 1);
        assert!(out.is_empty());
        assert_eq!(db.stats().prefilter_patterns, 4);
        // Shared patterns, case-insensitively.
        let db3 = Database::build(
            vec![
                sig(vec![ct(b"Abc")]),
                sig(vec![Content {
                    nocase: true,
                    ..ct(b"aBC")
                }]),
            ],
            16,
        )
        .unwrap();
        assert_eq!(db3.stats().prefilter_patterns, 1);
        assert_eq!(scan(&db3, &pkt(b"abc")), vec![1]);
        assert_eq!(scan(&db3, &pkt(b"Abc")), vec![0, 1]);
    }

    /// Protocol, prefixes with exclusions, port ranges, v4/v6, bidirectional.
    #[test]
    fn header() {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let net = |addr, len| Cidr { addr, len };
        let mut s = sig(vec![ct(b"ab")]);
        s.proto = SigProto::Tcp;
        s.src.include = vec![net(v4(10, 0, 0, 0), 8)];
        s.src.exclude = vec![net(v4(10, 9, 0, 0), 16)];
        s.dst_ports.include = vec![(80, 80), (443, 443)];
        s.src_ports.exclude = vec![(0, 1023)];
        let db = Database::build(vec![s.clone()], 16).unwrap();
        let base = pkt(b"ab");
        assert_eq!(scan(&db, &base), vec![0]);
        assert!(scan(&db, &Packet { proto: 17, ..base }).is_empty());
        assert!(scan(
            &db,
            &Packet {
                src: v4(11, 0, 0, 1),
                ..base
            }
        )
        .is_empty());
        assert!(scan(
            &db,
            &Packet {
                src: v4(10, 9, 1, 1),
                ..base
            }
        )
        .is_empty());
        assert!(scan(
            &db,
            &Packet {
                dst_port: 8080,
                ..base
            }
        )
        .is_empty());
        assert_eq!(
            scan(
                &db,
                &Packet {
                    dst_port: 443,
                    ..base
                }
            ),
            vec![0]
        );
        assert!(scan(
            &db,
            &Packet {
                src_port: 22,
                ..base
            }
        )
        .is_empty());
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
        assert!(scan(&db, &Packet { src: v6, ..base }).is_empty());
        // Swapped: only with bidirectional.
        let swapped = Packet {
            src: base.dst,
            dst: v4(10, 1, 1, 1),
            src_port: 80,
            dst_port: 40000,
            ..base
        };
        assert!(scan(&db, &swapped).is_empty());
        s.bidirectional = true;
        let db = Database::build(vec![s], 16).unwrap();
        assert_eq!(scan(&db, &swapped), vec![0]);
        // Ports on ICMP: only "any" matches.
        let mut icmp = sig(vec![ct(b"ab")]);
        icmp.proto = SigProto::Icmp;
        let db = Database::build(vec![icmp.clone()], 16).unwrap();
        let ping = Packet {
            proto: 58,
            src_port: 0,
            dst_port: 0,
            ..base
        };
        assert_eq!(scan(&db, &ping), vec![0]);
        assert_eq!(scan(&db, &Packet { proto: 1, ..ping }), vec![0]);
        assert!(scan(&db, &base).is_empty());
        icmp.dst_ports.exclude = vec![(1, 1)];
        let db = Database::build(vec![icmp], 16).unwrap();
        assert!(scan(&db, &ping).is_empty());
        // v6 prefixes.
        let mut s6 = sig(vec![ct(b"ab")]);
        s6.dst.include = vec![net(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0)),
            16,
        )];
        let db = Database::build(vec![s6], 16).unwrap();
        assert_eq!(scan(&db, &Packet { dst: v6, ..base }), vec![0]);
        assert!(scan(&db, &base).is_empty());
        // /0 matches its family only.
        let mut s0 = sig(vec![ct(b"ab")]);
        s0.src.include = vec![net(v4(0, 0, 0, 0), 0)];
        let db = Database::build(vec![s0], 16).unwrap();
        assert_eq!(scan(&db, &base), vec![0]);
        assert!(scan(&db, &Packet { src: v6, ..base }).is_empty());
    }

    /// `flow` direction and establishment.
    #[test]
    fn flow() {
        let with = |to_server, established, not_established| {
            let mut s = sig(vec![ct(b"ab")]);
            s.flow = FlowMatch {
                to_server,
                established,
                not_established,
                stateless: false,
            };
            Database::build(vec![s], 16).unwrap()
        };
        let p = pkt(b"ab");
        let reply = Packet {
            to_server: false,
            ..p
        };
        let new = Packet {
            established: false,
            ..p
        };
        assert_eq!(scan(&with(Some(true), false, false), &p), vec![0]);
        assert!(scan(&with(Some(true), false, false), &reply).is_empty());
        assert_eq!(scan(&with(Some(false), false, false), &reply), vec![0]);
        assert_eq!(scan(&with(None, true, false), &p), vec![0]);
        assert!(scan(&with(None, true, false), &new).is_empty());
        assert_eq!(scan(&with(None, false, true), &new), vec![0]);
        assert!(scan(&with(None, false, true), &p).is_empty());
    }

    /// A match split at every point is reported once, with the packet it ends in.
    #[test]
    fn split_across_two_packets_at_every_point() {
        let text = b"xxGET /admin HTTP/1.1";
        let s = sig(vec![Content {
            nocase: true,
            ..ct(b"get /admin")
        }]);
        let db = Database::build(vec![s], 32).unwrap();
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            let got = stream_scan(&db, &[a, b]);
            let start = 2;
            let end = 12;
            let expect: Vec<Vec<u32>> = if split >= end {
                vec![vec![0], vec![]]
            } else {
                vec![vec![], vec![0]]
            };
            assert_eq!(got, expect, "split at {split} (match {start}..{end})");
        }
        // Two contents, the prefilter one (longest) wholly in the first packet.
        let s = sig(vec![
            ct(b"login"),
            Content {
                distance: Some(0),
                within: Some(3),
                ..ct(b"=x")
            },
        ]);
        let db = Database::build(vec![s], 32).unwrap();
        let text = b"..login=x..";
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            let got = stream_scan(&db, &[a, b]);
            let expect: Vec<Vec<u32>> = if split >= 9 {
                vec![vec![0], vec![]]
            } else {
                vec![vec![], vec![0]]
            };
            assert_eq!(got, expect, "split at {split}");
        }
        // Over three packets: the first content two packets back, still in the tail.
        assert_eq!(
            stream_scan(&db, &[b"login", b"=", b"x"]),
            vec![vec![], vec![], vec![0]]
        );
        // Past the tail: not found.
        let db = Database::build(db.signatures().to_vec(), 6).unwrap();
        assert_eq!(
            stream_scan(&db, &[b"login", b"==", b"=x"]),
            vec![vec![], vec![], vec![]]
        );
    }

    /// A match already reported stays in the tail without being reported again.
    #[test]
    fn tail_only_match_not_reported_twice() {
        let db = Database::build(vec![sig(vec![ct(b"abc")])], 16).unwrap();
        assert_eq!(
            stream_scan(&db, &[b"xabcx", b"yy", b"abc"]),
            vec![vec![0], vec![], vec![0]]
        );
        // Per-packet signatures see each payload alone.
        let db = Database::build(
            vec![sig(vec![Content {
                depth: Some(5),
                ..ct(b"abc")
            }])],
            16,
        )
        .unwrap();
        assert_eq!(
            stream_scan(&db, &[b"xab", b"c", b"abc"]),
            vec![vec![], vec![], vec![0]]
        );
    }

    /// Too many tail-sensitive occurrences fall back to rescanning the tail.
    #[test]
    fn pending_overflow_rescans_the_tail() {
        // More tail-sensitive occurrences than a stream remembers.
        let s = sig(vec![
            ct(b"ab"),
            Content {
                distance: Some(0),
                within: Some(1),
                ..ct(b"z")
            },
        ]);
        let db = Database::build(vec![s], 64).unwrap();
        let many = b"ab".repeat(MAX_PENDING + 4);
        assert_eq!(stream_scan(&db, &[&many, b"z"]), vec![vec![], vec![0]]);
        let mut st = Stream::new();
        let mut out = Matches::new();
        db.scan(&pkt(&many), Some(&mut st), &mut out);
        assert!(st.pending_overflow);
        db.scan(&pkt(b"q"), Some(&mut st), &mut out);
        assert!(out.is_empty());
        db.scan(&pkt(b"abz"), Some(&mut st), &mut out);
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![0]);
    }

    /// Pass suppresses everything else; otherwise the strongest action wins.
    #[test]
    fn pass_precedence_and_actions() {
        let with = |action| Signature {
            action,
            ..sig(vec![ct(b"ab")])
        };
        let db = Database::build(
            vec![
                with(SigAction::Alert),
                with(SigAction::Reject),
                with(SigAction::Drop),
            ],
            16,
        )
        .unwrap();
        let mut out = Matches::new();
        db.scan(&pkt(b"ab"), None, &mut out);
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(out.action(), Some(SigAction::Drop));
        let db = Database::build(
            vec![
                with(SigAction::Drop),
                with(SigAction::Pass),
                with(SigAction::Alert),
                with(SigAction::Pass),
            ],
            16,
        )
        .unwrap();
        db.scan(&pkt(b"ab"), None, &mut out);
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(out.action(), Some(SigAction::Pass));
        assert_eq!(out.more(), 0);
        db.scan(&pkt(b"xx"), None, &mut out);
        assert!(out.is_empty());
        assert_eq!(out.action(), None);
    }

    /// The first `MAX_MATCHES` in signature order are listed, the rest counted.
    #[test]
    fn max_matches_truncation() {
        let sigs: Vec<Signature> = (0..20)
            .map(|i| {
                // Different patterns, so the candidates are found in a scrambled order.
                let mut c = vec![b'k'; 1 + (19 - i) % 7];
                c.push(b'0' + (i % 10) as u8);
                sig(vec![ct(&c)])
            })
            .collect();
        let payload: Vec<u8> = sigs
            .iter()
            .flat_map(|s| match &s.checks[0] {
                PayloadCheck::Content(c) => [&c.bytes[..], b" "].concat(),
                _ => unreachable!(),
            })
            .collect();
        let db = Database::build(sigs.clone(), 16).unwrap();
        let mut out = Matches::new();
        db.scan(&pkt(&payload), None, &mut out);
        let all: Vec<u32> = (0..20u32)
            .filter(|&i| crate::reference::matches(&sigs[i as usize], &pkt(&payload), &payload))
            .collect();
        assert!(all.len() > MAX_MATCHES);
        assert_eq!(out.iter().collect::<Vec<_>>(), all[..MAX_MATCHES].to_vec());
        assert_eq!(out.more() as usize, all.len() - MAX_MATCHES);
        assert_eq!(out.action(), Some(SigAction::Alert));
    }

    /// A reload rebuilds the stream state from the kept tail.
    #[test]
    fn resync_after_fingerprint_change() {
        let old = Database::build(vec![sig(vec![ct(b"zzz")])], 16).unwrap();
        let new = Database::build(vec![sig(vec![ct(b"zzz")]), sig(vec![ct(b"abcd")])], 16).unwrap();
        assert_ne!(old.fingerprint(), new.fingerprint());
        let same = Database::build(vec![sig(vec![ct(b"zzz")])], 16).unwrap();
        assert_eq!(old.fingerprint(), same.fingerprint());
        let mut st = Stream::new();
        let mut out = Matches::new();
        old.scan(&pkt(b"xxab"), Some(&mut st), &mut out);
        assert!(out.is_empty() && !out.resynced());
        new.scan(&pkt(b"cd"), Some(&mut st), &mut out);
        assert!(out.resynced());
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![1]);
        new.scan(&pkt(b"abcd"), Some(&mut st), &mut out);
        assert!(!out.resynced());
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![1]);
        // A smaller tail after the reload cuts the kept bytes.
        let short = Database::build(vec![sig(vec![ct(b"abcd")])], 2).unwrap();
        assert!(short.stats().per_packet_only == 1);
        let short3 = Database::build(vec![sig(vec![ct(b"abc")])], 3).unwrap();
        new.scan(&pkt(b"xab"), Some(&mut st), &mut out);
        short3.scan(&pkt(b"c"), Some(&mut st), &mut out);
        assert!(out.resynced());
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![0]);
        // A fresh stream is not "resynced".
        let mut st = Stream::new();
        new.scan(&pkt(b"ab"), Some(&mut st), &mut out);
        assert!(!out.resynced());
        st.reset();
        new.scan(&pkt(b"cd"), Some(&mut st), &mut out);
        assert!(out.is_empty() && !out.resynced());
    }

    /// Without a stream nothing spans packets.
    #[test]
    fn no_stream_is_per_packet() {
        let db = Database::build(vec![sig(vec![ct(b"abcd")])], 16).unwrap();
        let mut out = Matches::new();
        db.scan(&pkt(b"ab"), None, &mut out);
        db.scan(&pkt(b"cd"), None, &mut out);
        assert!(out.is_empty());
        db.scan(&pkt(b"abcd"), None, &mut out);
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![0]);
        assert_eq!(db.stats().per_packet_only, 0);
    }

    /// Signatures without contents are verified on every packet of their protocol.
    #[test]
    fn always_candidates_by_protocol() {
        let mut udp = sig_checks(vec![]);
        udp.proto = SigProto::Udp;
        let any = sig_checks(vec![]);
        let db = Database::build(vec![udp, any, sig(vec![ct(b"q")])], 16).unwrap();
        assert_eq!(db.stats().always_candidates, 2);
        assert_eq!(db.stats().per_packet_only, 2);
        assert_eq!(scan(&db, &pkt(b"")), vec![1]);
        assert_eq!(
            scan(
                &db,
                &Packet {
                    proto: 17,
                    ..pkt(b"q")
                }
            ),
            vec![0, 1, 2]
        );
    }

    /// The retry budget bounds dependent backtracking only.
    #[test]
    fn backtracking_budget() {
        // "a" then "b" right after it, on 200 "a"s: 199 retries needed.
        let s = sig(vec![
            ct(b"a"),
            Content {
                distance: Some(0),
                within: Some(1),
                ..ct(b"b")
            },
        ]);
        let mut payload = vec![b'a'; 200];
        payload.push(b'b');
        let mut db = Database::build(vec![s], 16).unwrap();
        assert!(scan(&db, &pkt(&payload)).is_empty());
        db.set_backtrack_budget(u32::MAX);
        assert_eq!(scan(&db, &pkt(&payload)), vec![0]);
        // Independent contents are never retried: the budget does not limit them.
        let s = sig(vec![ct(b"a"), ct(b"b")]);
        let db = Database::build(vec![s], 16).unwrap();
        assert_eq!(scan(&db, &pkt(&payload)), vec![0]);
    }

    /// What `Database::build` rejects, and an empty database.
    #[test]
    fn build_errors() {
        assert!(matches!(
            Database::build(vec![], MAX_TAIL + 1),
            Err(BuildError::TailTooLong { .. })
        ));
        assert!(matches!(
            Database::build(vec![sig(vec![ct(b"")])], 16),
            Err(BuildError::EmptyContent { sig: 0, .. })
        ));
        let many = sig(vec![ct(b"a"); MAX_CHECKS + 1]);
        assert!(matches!(
            Database::build(vec![many], 16),
            Err(BuildError::TooManyChecks { .. })
        ));
        let db = Database::build(vec![], 0).unwrap();
        let mut st = Stream::new();
        let mut out = Matches::new();
        db.scan(&pkt(b"abc"), Some(&mut st), &mut out);
        assert!(out.is_empty());
    }

    /// The four-walker walk misses nothing at its part boundaries.
    #[test]
    fn split_walk_finds_patterns_across_the_parts() {
        // The longest pattern at every position of a payload long enough to be walked in
        // parts; each walker's warm-up must cover it exactly.
        let long = b"0123456789";
        let db = Database::build(vec![sig(vec![ct(long)]), sig(vec![ct(b"zz")])], 16).unwrap();
        for n in [200usize, 201] {
            for s in 0..=n - long.len() {
                let mut payload = vec![b'x'; n];
                payload[s..s + long.len()].copy_from_slice(long);
                assert_eq!(scan(&db, &pkt(&payload)), vec![0], "n {n}, at {s}");
                // Streamed, after a packet that ends with a prefix of the pattern.
                let got = stream_scan(&db, &[b"01234", &payload]);
                assert_eq!(got, vec![vec![], vec![0]], "n {n}, at {s}, streamed");
            }
        }
        // A prefix left in the stream state completes right at the payload's start.
        let mut payload = vec![b'x'; 300];
        payload[..5].copy_from_slice(b"56789");
        assert_eq!(
            stream_scan(&db, &[b"01234", &payload]),
            vec![vec![], vec![0]]
        );
    }

    /// Contents longer than `MAX_PATTERN_LEN` prefilter on their suffix, streamed too.
    #[test]
    fn long_contents_prefilter_on_their_suffix() {
        let long: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        let sigs = vec![
            sig(vec![ct(&long)]),
            sig(vec![
                ct(b"k="),
                Content {
                    distance: Some(0),
                    ..ct(&long)
                },
            ]),
        ];
        let db = Database::build(sigs.clone(), 64).unwrap();
        assert_eq!(
            db.prefilter.as_ref().unwrap().pat_len,
            vec![MAX_PATTERN_LEN as u32]
        );
        let text = [&b"..k="[..], &long, b".."].concat();
        for split in 0..=text.len() {
            let (a, b) = text.split_at(split);
            let got = stream_scan(&db, &[a, b]);
            let want = crate::reference::scan_stream(&sigs, 64, &[pkt(a), pkt(b)]);
            assert_eq!(got, want, "split at {split}");
            let end = 4 + long.len();
            assert_eq!(
                got[usize::from(split < end)],
                vec![0, 1],
                "split at {split}"
            );
        }
        // The suffix alone is a candidate, not a match.
        assert!(scan(&db, &pkt(&long[8..])).is_empty());
    }

    /// More candidate patterns than the scratch holds: every signature is verified.
    #[test]
    fn many_candidates_overflow_the_seen_list() {
        let sigs: Vec<Signature> = (0..SEEN_CAP as u32 + 50)
            .map(|i| sig(vec![ct(format!("<{i}>").as_bytes())]))
            .collect();
        let payload: Vec<u8> = (0..SEEN_CAP as u32 + 50)
            .flat_map(|i| format!("<{i}>").into_bytes())
            .collect();
        let db = Database::build(sigs, 16).unwrap();
        let mut out = Matches::new();
        db.scan(&pkt(&payload), None, &mut out);
        assert!(out.seen_overflow);
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            (0..MAX_MATCHES as u32).collect::<Vec<_>>()
        );
        assert_eq!(out.more() as usize, SEEN_CAP + 50 - MAX_MATCHES);
        // The scratch space is clean for the next packet.
        db.scan(&pkt(b"<3>"), None, &mut out);
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![3]);
    }

    /// A flow's bits kept in memory, counting the matcher's loads and stores.
    #[derive(Default)]
    struct Mem {
        bits: FlowBits,
        loads: usize,
        stores: usize,
    }

    impl FlowBitsStore for Mem {
        fn load(&mut self) -> FlowBits {
            self.loads += 1;
            self.bits
        }
        fn store(&mut self, before: &FlowBits, after: &FlowBits) {
            assert_eq!(before, &self.bits, "the bits stored are changed from those loaded");
            self.stores += 1;
            self.bits = *after;
        }
    }

    /// A signature with one content and these flowbits (`op` and `|`-separated names).
    fn fb_sig(action: SigAction, content: &[u8], flowbits: &[(FlowbitOp, &str)]) -> Signature {
        let mut s = Signature::new(action, SigProto::Ip, 1, vec![PayloadCheck::Content(ct(content))]);
        s.flowbits = flowbits
            .iter()
            .map(|&(op, names)| crate::model::Flowbit { op, names: names.split('|').map(str::to_string).collect() })
            .collect();
        s
    }

    /// The listed matches and action of one per-packet scan over `mem`'s bits.
    fn scan_bits(db: &Database, payload: &[u8], mem: &mut Mem) -> (Vec<u32>, Option<SigAction>) {
        let mut out = Matches::new();
        db.scan_flow(&pkt(payload), None, mem, &mut out);
        (out.iter().collect(), out.action())
    }

    /// A bit set by one packet's match is seen by the flow's next packet, not by another
    /// flow; `noalert` acts without being listed; the bits are read only when a flowbit
    /// signature matched the rest of its conditions.
    #[test]
    fn flowbits_carry_from_packet_to_packet_of_a_flow() {
        use FlowbitOp::*;
        let mut login = fb_sig(SigAction::Alert, b"login", &[(Set, "auth")]);
        login.noalert = true;
        let db = Database::build(vec![login, fb_sig(SigAction::Drop, b"cmd", &[(IsSet, "auth")])], 16).unwrap();
        assert_eq!(db.flowbit_names(), ["auth"]);
        assert_eq!((db.stats().flowbit_signatures, db.stats().flowbit_names), (2, 1));
        let mut flow = Mem::default();
        assert_eq!(scan_bits(&db, b"cmd", &mut flow), (vec![], None), "not set yet");
        assert_eq!((flow.loads, flow.stores), (1, 0));
        assert_eq!(scan_bits(&db, b"hello", &mut flow), (vec![], None));
        assert_eq!(flow.loads, 1, "no flowbit signature matched: the bits are not read");
        let mut out = Matches::new();
        db.scan_flow(&pkt(b"login"), None, &mut flow, &mut out);
        assert_eq!((out.iter().count(), out.action(), out.silent_action()), (0, Some(SigAction::Alert), Some(SigAction::Alert)));
        assert_eq!(flow.stores, 1);
        assert_eq!(scan_bits(&db, b"cmd", &mut flow), (vec![1], Some(SigAction::Drop)));
        assert_eq!(flow.stores, 1, "a condition changes nothing");
        assert_eq!(scan_bits(&db, b"cmd", &mut Mem::default()), (vec![], None), "another flow");
        // Without a flow (`scan`), every bit is unset.
        assert!(scan(&db, &pkt(b"login cmd")).contains(&1), "set and checked on one packet");
        assert!(scan(&db, &pkt(b"cmd")).is_empty());
    }

    /// On one packet, setters are resolved before checkers whatever their order; `isnotset`,
    /// `unset`, `toggle` and `a|b` conditions.
    #[test]
    fn flowbit_effects_and_conditions() {
        use FlowbitOp::*;
        let db = Database::build(
            vec![
                fb_sig(SigAction::Alert, b"check", &[(IsSet, "a")]),
                fb_sig(SigAction::Alert, b"give", &[(Set, "a")]),
                fb_sig(SigAction::Alert, b"fresh", &[(IsNotSet, "a"), (Set, "b")]),
                fb_sig(SigAction::Alert, b"clear", &[(Unset, "a|b")]),
                fb_sig(SigAction::Alert, b"flip", &[(Toggle, "c")]),
                fb_sig(SigAction::Alert, b"any", &[(IsSet, "b|c")]),
                fb_sig(SigAction::Alert, b"lacks", &[(IsNotSet, "a|c")]),
            ],
            16,
        )
        .unwrap();
        assert_eq!(db.flowbit_names(), ["a", "b", "c"]);
        let bit = |i: usize| 1u64 << i;
        let mut flow = Mem::default();
        // "check" comes first in the packet and in signature order, "give" after both.
        assert_eq!(scan_bits(&db, b"check give", &mut flow).0, vec![0, 1]);
        assert_eq!(flow.bits[0], bit(0));
        // `fresh` needs `a` unset: a checker's effects wait for the setters too.
        assert_eq!(scan_bits(&db, b"fresh", &mut flow).0, Vec::<u32>::new());
        assert_eq!(scan_bits(&db, b"clear", &mut flow).0, vec![3]);
        assert_eq!(flow.bits[0], 0);
        assert_eq!(scan_bits(&db, b"fresh any", &mut flow).0, vec![2, 5], "b set by fresh, seen by any");
        assert_eq!(flow.bits[0], bit(1));
        assert_eq!(scan_bits(&db, b"flip lacks", &mut flow).0, vec![4, 6], "a is not set (c is, now)");
        assert_eq!(flow.bits[0], bit(1) | bit(2));
        assert_eq!(scan_bits(&db, b"flip", &mut flow).0, vec![4]);
        assert_eq!(flow.bits[0], bit(1));
        let mut empty = Mem::default();
        assert_eq!(scan_bits(&db, b"any lacks", &mut empty).0, vec![6], "neither b nor c; lacks both a and c");
        assert_eq!(empty.stores, 0, "conditions alone store nothing");
    }

    /// A `pass` match's effects apply, and so do those of the matches it silences.
    #[test]
    fn flowbit_effects_apply_under_a_pass() {
        use FlowbitOp::*;
        let db = Database::build(
            vec![fb_sig(SigAction::Pass, b"ok", &[(Set, "ok")]), fb_sig(SigAction::Drop, b"bad", &[(Set, "bad")])],
            16,
        )
        .unwrap();
        let mut flow = Mem::default();
        assert_eq!(scan_bits(&db, b"ok bad", &mut flow), (vec![0], Some(SigAction::Pass)));
        assert_eq!(flow.bits[0], 0b11);
    }

    /// More distinct names than a rule set holds is a build error; names shared between
    /// signatures count once.
    #[test]
    fn too_many_flowbit_names() {
        use FlowbitOp::*;
        let names: Vec<String> = (0..MAX_FLOWBITS).map(|i| format!("n{i}")).collect();
        let mut sigs: Vec<Signature> = names.iter().map(|n| fb_sig(SigAction::Alert, b"x", &[(Set, n)])).collect();
        sigs.push(fb_sig(SigAction::Alert, b"y", &[(IsSet, &names[..3].join("|"))]));
        let db = Database::build(sigs.clone(), 16).unwrap();
        assert_eq!(db.flowbit_names().len(), MAX_FLOWBITS);
        let mut flow = Mem::default();
        assert_eq!(scan_bits(&db, b"x", &mut flow).0.len(), MAX_MATCHES);
        assert!(flow.bits.iter().all(|&w| w == u64::MAX), "all {MAX_FLOWBITS} bits, past the deferred list too");
        sigs.push(fb_sig(SigAction::Alert, b"z", &[(Set, "one-too-many")]));
        match Database::build(sigs, 16) {
            Err(BuildError::TooManyFlowbits { count, max }) => assert_eq!((count, max), (MAX_FLOWBITS + 1, MAX_FLOWBITS)),
            other => panic!("{other:?}"),
        }
    }
}
