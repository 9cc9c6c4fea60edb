//! What a parsed signature is: the header (action, protocol, addresses, ports,
//! direction) and the options Rampart evaluates, with variables already resolved.
//!
//! The model is plain data (serde), so the control process parses rule files and ships
//! the signatures to the dataplane inside the policy image; the dataplane builds its
//! matcher ([`crate::engine::Database`]) from them off the worker cores.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// What a matching signature does (Suricata's order of precedence: pass, drop, reject,
/// alert).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SigAction {
    /// Stop inspecting the packet: no other signature acts on it.
    Pass,
    /// Drop the packet (and log an alert).
    Drop,
    /// Drop the packet, answer the sender (TCP RST / ICMP unreachable), log an alert.
    Reject,
    /// Log an alert, forward the packet.
    Alert,
}

/// The protocol a signature's header names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigProto {
    Tcp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
    /// Any IP packet.
    Ip,
}

/// An address prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: IpAddr,
    /// Prefix length (32 / 128 for one address).
    pub len: u8,
}

/// An address field of a header: matches an address that lies in one of `include`
/// (or anywhere, when `include` is empty) and in none of `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrMatch {
    pub include: Vec<Cidr>,
    pub exclude: Vec<Cidr>,
}

/// A port field of a header: matches a port in one of the inclusive ranges of
/// `include` (or any, when empty) and in none of `exclude`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMatch {
    pub include: Vec<(u16, u16)>,
    pub exclude: Vec<(u16, u16)>,
}

/// The `flow` keyword's conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowMatch {
    /// `to_server` / `from_client` (Some(true)), `to_client` / `from_server` (Some(false)).
    pub to_server: Option<bool>,
    /// `established`.
    pub established: bool,
    /// `not_established`.
    pub not_established: bool,
    /// `stateless`: matches whether or not the flow is tracked.
    pub stateless: bool,
}

/// One `content` with its modifiers. Positions count bytes of the inspected buffer (the
/// packet's L4 payload).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Content {
    /// The bytes (`|..|` hex and escapes decoded).
    pub bytes: Vec<u8>,
    /// `content:!"..."`: the signature matches only if this content is absent (within
    /// its position constraints).
    pub negated: bool,
    /// `nocase`: ASCII letters compare case-insensitively.
    pub nocase: bool,
    /// `offset`: the match starts at or after this position of the buffer.
    pub offset: Option<u32>,
    /// `depth`: the match ends within this many bytes from `offset` (or the buffer start).
    pub depth: Option<u32>,
    /// `distance`: the match starts at least this many bytes after the end of the
    /// previous content's match (may be negative).
    pub distance: Option<i32>,
    /// `within`: the match ends within this many bytes after the end of the previous
    /// content's match (after `distance` is applied).
    pub within: Option<u32>,
    /// `startswith`: the match starts at the buffer start (or at the previous content's
    /// end when relative).
    pub startswith: bool,
    /// `endswith`: the match ends at the buffer end.
    pub endswith: bool,
    /// `fast_pattern`: this content is the one the prefilter looks for.
    pub fast_pattern: bool,
}

impl Content {
    /// Whether the content is positioned relative to the previous content's match.
    pub fn is_relative(&self) -> bool {
        self.distance.is_some() || self.within.is_some()
    }
}

/// `isdataat:[!]N[,relative]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsDataAt {
    pub pos: u32,
    pub relative: bool,
    pub negated: bool,
}

/// How `byte_test` and `byte_jump` read a number from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRead {
    /// Bytes read: 1..=8 binary, 1..=20 as a string.
    pub count: u8,
    /// Where the bytes start: from the buffer start, or from the cursor when `relative`.
    pub offset: i32,
    pub relative: bool,
    /// Binary numbers: little-endian (else big-endian, the default).
    pub little_endian: bool,
    /// `string,<base>`: the bytes are digits in this base (16, 10 or 8), not a binary number.
    pub string_base: Option<u8>,
    /// `bitmask`: the value is ANDed with it and shifted right by its trailing zeros.
    pub bitmask: Option<u64>,
}

/// `byte_test`'s comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ByteOp {
    Lt,
    Gt,
    Le,
    Ge,
    Eq,
    /// `&`: any bit in common.
    And,
    /// `^`: any bit different.
    Xor,
}

/// `byte_test:<count>,[!]<op>,<value>,<offset>[,relative][,big|little][,string,<base>][,bitmask <m>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteTest {
    pub read: ByteRead,
    pub op: ByteOp,
    /// `!`: the comparison's result is inverted (a read that fails still fails).
    pub negated: bool,
    pub value: u64,
}

/// Where `byte_jump` jumps from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JumpFrom {
    /// Just after the bytes read (the default).
    Read,
    /// `from_beginning`: the buffer start.
    Beginning,
    /// `from_end`: the buffer end.
    End,
}

/// `byte_jump:<count>,<offset>[,relative][,multiplier N][,big|little][,string,<base>][,align]
/// [,from_beginning|from_end][,post_offset N][,bitmask <m>]`: moves the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteJump {
    pub read: ByteRead,
    pub multiplier: u32,
    /// `align`: the jump (value × multiplier) is rounded up to a multiple of 4.
    pub align: bool,
    pub from: JumpFrom,
    pub post_offset: i32,
}

/// `pcre:[!]"/<pattern>/<flags>"`, in the subset a DFA runs (see [`crate::engine`]): the
/// pattern as written, and the flags that change its meaning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pcre {
    pub pattern: String,
    /// `!`: passes iff there is no match; does not move the cursor.
    pub negated: bool,
    /// `R`: searched from the cursor (where `^` then matches), else from the buffer start.
    pub relative: bool,
    /// `i`.
    pub nocase: bool,
    /// `s`: `.` matches `\n` too.
    pub dotall: bool,
    /// `m`: `^` and `$` match at line boundaries.
    pub multiline: bool,
    /// `x`: whitespace and `#` comments in the pattern are ignored.
    pub extended: bool,
    /// `A`: the match starts where the search does.
    pub anchored: bool,
    /// `G`: quantifiers are lazy by default.
    pub ungreedy: bool,
}

impl Pcre {
    /// `pattern` with every flag off.
    pub fn new(pattern: &str) -> Pcre {
        Pcre {
            pattern: pattern.to_string(),
            negated: false,
            relative: false,
            nocase: false,
            dotall: false,
            multiline: false,
            extended: false,
            anchored: false,
            ungreedy: false,
        }
    }
}

/// A check on the payload, evaluated in signature order (relative checks refer to the
/// cursor: the end of the previous content's or pcre's match, or where a `byte_jump` went).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadCheck {
    Content(Content),
    IsDataAt(IsDataAt),
    ByteTest(ByteTest),
    ByteJump(ByteJump),
    Pcre(Pcre),
}

/// An inclusive range of payload sizes (`dsize:N`, `dsize:<N`, `dsize:>N`, `dsize:N<>M`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SizeRange {
    pub min: u32,
    pub max: u32,
}

/// What `threshold` and `detection_filter` count matches by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Track {
    /// `by_src`: per source address.
    BySrc,
    /// `by_dst`: per destination address.
    ByDst,
    /// `by_both`: per source and destination pair.
    ByBoth,
    /// `by_rule`: one count for the signature.
    ByRule,
}

/// `threshold`'s type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThresholdKind {
    /// `limit`: alert on the first `count` matches of each window.
    Limit,
    /// `threshold`: alert on every `count`th match of a window.
    Threshold,
    /// `both`: alert once per window, at its `count`th match.
    Both,
}

/// `threshold:type <kind>, track <track>, count <n>, seconds <s>` (`kind` set) or
/// `detection_filter:track <track>, count <n>, seconds <s>` (`kind` None). Windows are fixed:
/// one starts at a match `seconds` or more after the current window's first match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Threshold {
    pub kind: Option<ThresholdKind>,
    pub track: Track,
    pub count: u32,
    pub seconds: u32,
}

/// What a `flowbits` option does with its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FlowbitOp {
    /// `set`: the flow gets the bit when the signature matches.
    Set,
    /// `unset`: the flow loses it.
    Unset,
    /// `toggle`: the bit is flipped.
    Toggle,
    /// `isset`: the signature matches only if the flow has the bit (with `a|b`: any of them).
    IsSet,
    /// `isnotset`: only if the flow lacks it (with `a|b`: lacks any of them).
    IsNotSet,
}

impl FlowbitOp {
    /// A condition on the flow's bits (else an effect of a match).
    pub fn is_condition(self) -> bool {
        matches!(self, FlowbitOp::IsSet | FlowbitOp::IsNotSet)
    }
}

/// One `flowbits:<op>,<name>[|<name>...]` (several names only for conditions).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Flowbit {
    pub op: FlowbitOp,
    pub names: Vec<String>,
}

/// Where a signature came from, for messages and `rampartctl check`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub file: String,
    pub line: u32,
}

/// One signature, variables resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub action: SigAction,
    pub proto: SigProto,
    pub src: AddrMatch,
    pub src_ports: PortMatch,
    pub dst: AddrMatch,
    pub dst_ports: PortMatch,
    /// `<>`: the header also matches with source and destination swapped.
    pub bidirectional: bool,
    pub msg: String,
    pub sid: u32,
    pub rev: u32,
    /// Generator id (1 unless the rule says otherwise).
    pub gid: u32,
    pub classtype: Option<String>,
    /// The classtype's description, where `classification.config` gives one (what eve's
    /// `alert.category` shows, as Suricata writes it).
    pub category: Option<String>,
    /// `priority`, else the classtype's (when `classification.config` names it), else 3.
    pub priority: u8,
    pub references: Vec<String>,
    pub metadata: Vec<String>,
    pub flow: FlowMatch,
    pub dsize: Option<SizeRange>,
    pub checks: Vec<PayloadCheck>,
    /// `threshold`: which matches are alerted (a drop or reject still acts on every match).
    pub threshold: Option<Threshold>,
    /// `detection_filter`: the signature matches only past `count` matches in a window (its
    /// action and alert apply from then on).
    pub detection_filter: Option<Threshold>,
    /// `flowbits` conditions and effects, in rule order (see [`crate::engine`]).
    pub flowbits: Vec<Flowbit>,
    /// `flowbits:noalert` / `noalert`: a match acts but logs no alert.
    pub noalert: bool,
    pub origin: Origin,
}

impl Signature {
    /// A signature over any addresses and ports, with `checks`
    /// and defaults elsewhere (gid 1, rev 1, priority 3, no message): for tests, benches
    /// and tools that build signatures without a rule file.
    pub fn new(action: SigAction, proto: SigProto, sid: u32, checks: Vec<PayloadCheck>) -> Signature {
        Signature {
            action,
            proto,
            src: AddrMatch::default(),
            src_ports: PortMatch::default(),
            dst: AddrMatch::default(),
            dst_ports: PortMatch::default(),
            bidirectional: false,
            msg: String::new(),
            sid,
            rev: 1,
            gid: 1,
            classtype: None,
            category: None,
            priority: 3,
            references: Vec::new(),
            metadata: Vec::new(),
            flow: FlowMatch::default(),
            dsize: None,
            checks,
            threshold: None,
            detection_filter: None,
            flowbits: Vec::new(),
            noalert: false,
            origin: Origin::default(),
        }
    }
}
