//! A slow, obviously correct matcher that [`crate::engine`] is tested against.
//!
//! Design: every rule of the engine's semantics (see the [`crate::engine`] module doc) is
//! written out literally, with no prefilter, no precomputation and no budget: a content is
//! tried at every start position of the buffer, each constraint checked on its own, and
//! the chain of payload checks is searched exhaustively by recursion. Streaming is
//! modelled by rebuilding each packet's window from the previous one. It is meant for
//! tests on small inputs only.

use crate::engine::{Packet, MAX_MATCHES};
use crate::model::{
    AddrMatch, ByteJump, ByteOp, ByteRead, ByteTest, Cidr, Content, IsDataAt, JumpFrom,
    PayloadCheck, Pcre, PortMatch, SigAction, SigProto, Signature,
};
use regex_automata::nfa::thompson::pikevm::PikeVM;
use regex_automata::nfa::thompson::WhichCaptures;
use regex_automata::{Anchored, Input};
use std::net::IpAddr;

/// Whether `sig` matches `pkt` with its payload checks evaluated over `buffer` (`dsize`
/// still refers to `pkt.payload`).
pub fn matches(sig: &Signature, pkt: &Packet, buffer: &[u8]) -> bool {
    header_and_flow_match(sig, pkt) && chain_matches(sig, buffer, None)
}

/// Every signature that matches each packet of one flow direction, in signature order,
/// with the streaming semantics: per packet, the window is the last `tail` bytes of the
/// previous packet's window followed by the payload; per-packet-only signatures are
/// evaluated over the payload, the others over the window, where their last positive
/// content's match must end in the payload.
pub fn stream_matches(sigs: &[Signature], tail: usize, packets: &[Packet]) -> Vec<Vec<u32>> {
    let mut previous_window: Vec<u8> = Vec::new();
    let mut result = Vec::new();
    for pkt in packets {
        let keep = previous_window.len().min(tail);
        let mut window: Vec<u8> = previous_window[previous_window.len() - keep..].to_vec();
        let tail_len = window.len();
        window.extend_from_slice(pkt.payload);
        let mut matched = Vec::new();
        for (i, sig) in sigs.iter().enumerate() {
            let hit = if per_packet_only(sig, tail) {
                matches(sig, pkt, pkt.payload)
            } else {
                header_and_flow_match(sig, pkt) && chain_matches(sig, &window, Some(tail_len))
            };
            if hit {
                matched.push(i as u32);
            }
        }
        result.push(matched);
        previous_window = window;
    }
    result
}

/// What the engine reports for each packet of [`stream_matches`]: only the first
/// matching pass signature if there is one, else the first [`MAX_MATCHES`] matches.
pub fn scan_stream(sigs: &[Signature], tail: usize, packets: &[Packet]) -> Vec<Vec<u32>> {
    stream_matches(sigs, tail, packets)
        .into_iter()
        .map(|matched| report(sigs, &matched))
        .collect()
}

/// The listed part of a packet's matches (signature indexes in ascending order).
pub fn report(sigs: &[Signature], matched: &[u32]) -> Vec<u32> {
    for &i in matched {
        if sigs[i as usize].action == SigAction::Pass {
            return vec![i];
        }
    }
    matched.iter().copied().take(MAX_MATCHES).collect()
}

/// Whether a signature is evaluated over each payload alone: it has `dsize`, an
/// absolute `isdataat`, a negated content, a content with offset, depth, startswith or
/// endswith, a content longer than `tail`, a byte_test, byte_jump or pcre, or no positive
/// content.
pub fn per_packet_only(sig: &Signature, tail: usize) -> bool {
    if sig.dsize.is_some() {
        return true;
    }
    let mut positive_contents = 0;
    for check in &sig.checks {
        match check {
            PayloadCheck::Content(c) => {
                if c.negated {
                    return true;
                }
                if c.offset.is_some() || c.depth.is_some() || c.startswith || c.endswith {
                    return true;
                }
                if c.bytes.len() > tail {
                    return true;
                }
                positive_contents += 1;
            }
            PayloadCheck::IsDataAt(d) => {
                if !d.relative {
                    return true;
                }
            }
            PayloadCheck::ByteTest(_) | PayloadCheck::ByteJump(_) | PayloadCheck::Pcre(_) => {
                return true
            }
        }
    }
    positive_contents == 0
}

/// Header, flow and dsize.
fn header_and_flow_match(sig: &Signature, pkt: &Packet) -> bool {
    if !proto_matches(sig.proto, pkt.proto) {
        return false;
    }
    let forward = address_matches(&sig.src, pkt.src)
        && port_field_matches(&sig.src_ports, pkt.proto, pkt.src_port)
        && address_matches(&sig.dst, pkt.dst)
        && port_field_matches(&sig.dst_ports, pkt.proto, pkt.dst_port);
    let backward = address_matches(&sig.src, pkt.dst)
        && port_field_matches(&sig.src_ports, pkt.proto, pkt.dst_port)
        && address_matches(&sig.dst, pkt.src)
        && port_field_matches(&sig.dst_ports, pkt.proto, pkt.src_port);
    if !(forward || (sig.bidirectional && backward)) {
        return false;
    }
    if let Some(want) = sig.flow.to_server {
        if pkt.to_server != want {
            return false;
        }
    }
    if sig.flow.established && !pkt.established {
        return false;
    }
    if sig.flow.not_established && pkt.established {
        return false;
    }
    if let Some(size) = sig.dsize {
        let len = pkt.payload.len() as u64;
        if len < size.min as u64 || len > size.max as u64 {
            return false;
        }
    }
    true
}

/// Whether a header's protocol covers an IP protocol number.
fn proto_matches(proto: SigProto, number: u8) -> bool {
    match proto {
        SigProto::Tcp => number == 6,
        SigProto::Udp => number == 17,
        SigProto::Icmp => number == 1 || number == 58,
        SigProto::Ip => true,
    }
}

/// The address's bits, most significant first.
fn bits(addr: IpAddr) -> Vec<bool> {
    let octets: Vec<u8> = match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    let mut out = Vec::new();
    for octet in octets {
        for k in (0..8).rev() {
            out.push(octet >> k & 1 == 1);
        }
    }
    out
}

/// Whether `addr` is inside the prefix: same family, first `len` bits equal.
fn in_prefix(prefix: &Cidr, addr: IpAddr) -> bool {
    if prefix.addr.is_ipv4() != addr.is_ipv4() {
        return false;
    }
    let want = bits(prefix.addr);
    let have = bits(addr);
    let len = (prefix.len as usize).min(want.len());
    want[..len] == have[..len]
}

/// Whether an address field matches.
fn address_matches(field: &AddrMatch, addr: IpAddr) -> bool {
    let included = field.include.is_empty() || field.include.iter().any(|p| in_prefix(p, addr));
    let excluded = field.exclude.iter().any(|p| in_prefix(p, addr));
    included && !excluded
}

/// Whether a port field matches; only "any" matches a packet without ports.
fn port_field_matches(field: &PortMatch, proto: u8, port: u16) -> bool {
    let any = field.include.is_empty() && field.exclude.is_empty();
    if any {
        return true;
    }
    if proto != 6 && proto != 17 {
        return false;
    }
    let included = field.include.is_empty()
        || field
            .include
            .iter()
            .any(|&(lo, hi)| lo <= port && port <= hi);
    let excluded = field
        .exclude
        .iter()
        .any(|&(lo, hi)| lo <= port && port <= hi);
    included && !excluded
}

/// Whether the payload checks succeed over `buffer`. `min_end`: the last positive
/// content's match must end after index `min_end` (its last byte at `>= min_end`).
fn chain_matches(sig: &Signature, buffer: &[u8], min_end: Option<usize>) -> bool {
    let last_positive = sig
        .checks
        .iter()
        .rposition(|c| matches!(c, PayloadCheck::Content(c) if !c.negated));
    search(&sig.checks, 0, 0, buffer, last_positive, min_end)
}

/// Exhaustive search: whether checks `i..` succeed with the cursor at `prev_end`.
fn search(
    checks: &[PayloadCheck],
    i: usize,
    prev_end: usize,
    buffer: &[u8],
    last_positive: Option<usize>,
    min_end: Option<usize>,
) -> bool {
    if i == checks.len() {
        return true;
    }
    match &checks[i] {
        PayloadCheck::IsDataAt(d) => {
            isdataat_holds(d, prev_end, buffer)
                && search(checks, i + 1, prev_end, buffer, last_positive, min_end)
        }
        PayloadCheck::ByteTest(t) => {
            byte_test_holds(t, prev_end, buffer)
                && search(checks, i + 1, prev_end, buffer, last_positive, min_end)
        }
        PayloadCheck::ByteJump(j) => match jump_target(j, prev_end, buffer) {
            Some(to) => search(checks, i + 1, to, buffer, last_positive, min_end),
            None => false,
        },
        PayloadCheck::Pcre(p) => {
            let base = if p.relative { prev_end } else { 0 };
            match (pcre_match_end(p, &buffer[base.min(buffer.len())..]), p.negated) {
                (None, true) => search(checks, i + 1, prev_end, buffer, last_positive, min_end),
                (Some(end), false) => {
                    search(checks, i + 1, base + end, buffer, last_positive, min_end)
                }
                _ => false,
            }
        }
        PayloadCheck::Content(c) if c.negated => {
            let found = (0..=buffer.len()).any(|s| content_fits(c, s, prev_end, buffer));
            !found && search(checks, i + 1, prev_end, buffer, last_positive, min_end)
        }
        PayloadCheck::Content(c) => {
            for s in 0..=buffer.len() {
                if !content_fits(c, s, prev_end, buffer) {
                    continue;
                }
                let end = s + c.bytes.len();
                if Some(i) == last_positive {
                    if let Some(t) = min_end {
                        // The match's last byte, end - 1, must be at or after t.
                        if end < t + 1 {
                            continue;
                        }
                    }
                }
                if search(checks, i + 1, end, buffer, last_positive, min_end) {
                    return true;
                }
            }
            false
        }
    }
}

/// The bytes a byte_test/byte_jump reads (their start: cursor or 0, plus offset), if all
/// are in the buffer, and the index just past them.
fn read_window<'a>(r: &ByteRead, prev_end: usize, buffer: &'a [u8]) -> Option<(&'a [u8], usize)> {
    let start = if r.relative { prev_end as i64 } else { 0 } + r.offset as i64;
    if start < 0 {
        return None;
    }
    let start = start as usize;
    let end = start + r.count as usize;
    Some((buffer.get(start..end)?, end))
}

/// The value read: a binary number, or the longest prefix of digits parsed as a string.
fn read_value(r: &ByteRead, bytes: &[u8]) -> Option<u64> {
    let value = match r.string_base {
        None => {
            let mut ordered = bytes.to_vec();
            if r.little_endian {
                ordered.reverse();
            }
            let mut wide = [0u8; 8];
            wide[8 - ordered.len()..].copy_from_slice(&ordered);
            u64::from_be_bytes(wide)
        }
        Some(radix) => {
            let digits: String = bytes
                .iter()
                .map(|&b| b as char)
                .take_while(|c| c.is_digit(radix as u32))
                .collect();
            u64::from_str_radix(&digits, radix as u32).ok()?
        }
    };
    Some(match r.bitmask {
        Some(mask) => {
            let mut v = value & mask;
            let mut m = mask;
            while m != 0 && m & 1 == 0 {
                v >>= 1;
                m >>= 1;
            }
            v
        }
        None => value,
    })
}

/// `byte_test`.
fn byte_test_holds(t: &ByteTest, prev_end: usize, buffer: &[u8]) -> bool {
    let Some((bytes, _)) = read_window(&t.read, prev_end, buffer) else {
        return false;
    };
    let Some(v) = read_value(&t.read, bytes) else {
        return false;
    };
    let holds = match t.op {
        ByteOp::Lt => v < t.value,
        ByteOp::Gt => v > t.value,
        ByteOp::Le => v <= t.value,
        ByteOp::Ge => v >= t.value,
        ByteOp::Eq => v == t.value,
        ByteOp::And => (v & t.value) != 0,
        ByteOp::Xor => (v ^ t.value) != 0,
    };
    if t.negated {
        !holds
    } else {
        holds
    }
}

/// `byte_jump`'s new cursor, if it lands inside the buffer or at its end.
fn jump_target(j: &ByteJump, prev_end: usize, buffer: &[u8]) -> Option<usize> {
    let (bytes, after) = read_window(&j.read, prev_end, buffer)?;
    let v = read_value(&j.read, bytes)? as i128 * j.multiplier as i128;
    let v = if j.align && v % 4 != 0 { v + 4 - v % 4 } else { v };
    let from = match j.from {
        JumpFrom::Read => after as i128,
        JumpFrom::Beginning => 0,
        JumpFrom::End => buffer.len() as i128,
    };
    let to = from + v + j.post_offset as i128;
    if (0..=buffer.len() as i128).contains(&to) {
        Some(to as usize)
    } else {
        None
    }
}

/// The end of `p`'s leftmost-first match in `hay`, by an NFA simulation (the PikeVM, not
/// the DFAs the engine runs). A pattern outside the subset never matches.
fn pcre_match_end(p: &Pcre, hay: &[u8]) -> Option<usize> {
    let vm = PikeVM::builder()
        .syntax(crate::pcre::syntax_config(p))
        .thompson(crate::pcre::thompson_config().which_captures(WhichCaptures::Implicit))
        .build(&p.pattern)
        .ok()?;
    let mut cache = vm.create_cache();
    let anchored = if p.anchored { Anchored::Yes } else { Anchored::No };
    vm.find(&mut cache, Input::new(hay).anchored(anchored)).map(|m| m.end())
}

/// `isdataat`: is there a byte at `base + pos`?
fn isdataat_holds(d: &IsDataAt, prev_end: usize, buffer: &[u8]) -> bool {
    let base = if d.relative { prev_end } else { 0 };
    let there = (base as u64 + d.pos as u64) < buffer.len() as u64;
    if d.negated {
        !there
    } else {
        there
    }
}

/// Whether content `c` matches at start `s` with the cursor at `prev_end`, each
/// constraint checked on its own.
fn content_fits(c: &Content, s: usize, prev_end: usize, buffer: &[u8]) -> bool {
    let len = c.bytes.len();
    if s + len > buffer.len() {
        return false;
    }
    let window = &buffer[s..s + len];
    let same = if c.nocase {
        window.eq_ignore_ascii_case(&c.bytes)
    } else {
        window == &c.bytes[..]
    };
    if !same {
        return false;
    }
    let s = s as i64;
    let len = len as i64;
    let prev_end = prev_end as i64;
    let offset = c.offset.unwrap_or(0) as i64;
    if s < offset {
        return false;
    }
    if let Some(depth) = c.depth {
        if s + len > offset + depth as i64 {
            return false;
        }
    }
    let relative = c.distance.is_some() || c.within.is_some();
    let distance = c.distance.unwrap_or(0) as i64;
    if relative {
        let earliest = (prev_end + distance).max(0);
        if s < earliest {
            return false;
        }
        if let Some(within) = c.within {
            if s + len > prev_end + distance + within as i64 {
                return false;
            }
        }
    }
    if c.startswith {
        let at = if relative { prev_end } else { 0 };
        if s != at {
            return false;
        }
    }
    if c.endswith && s + len != buffer.len() as i64 {
        return false;
    }
    true
}
