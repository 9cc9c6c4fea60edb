//! Protocol anomalies: the checks a parsed packet's headers get beyond parsing, and what
//! the path does about one it finds (see [`rampart_shm::anomaly`] for the kinds and
//! `[anomalies]` for the actions).
//!
//! Where each kind is found:
//! - [`headers`], on every IP packet a port parses, before the firewall: `tcp_flags`,
//!   `land`, `ip_options`, `low_ttl`, `oversize_icmp`, and `bad_checksum` when the policy
//!   verifies every packet's checksums ([`ChecksumScope::All`]). Reads only the headers
//!   (a few loads on the packet's first cache line), except checksums (every byte).
//! - [`checksums_ok`], on the packets of inspected flows before their payload is scanned
//!   ([`ChecksumScope::Inspected`], the default): a segment the receiver would discard
//!   must not mislead the signatures, and its bytes are read anyway.
//! - the firewall's connection tracking (`tcp_window`) and the fragment table
//!   (`fragment_overlap`); tiny first fragments are the parser's (always dropped).
//!
//! [`found`] counts a detection (whatever the action), logs it within the port's budget
//! of drop records (an `Anomaly` event: the packet's addresses and ports, the kind and
//! what was done), and says whether the packet is dropped.

use crate::event_limit::EventLimiter;
use crate::path::{push_event, Checksums, Context};
use crate::runtime::Runtime;
use rampart_packet::checksum::{self, PseudoHeader};
use rampart_packet::tcp::TcpFlags;
use rampart_packet::{Meta, L3};
use rampart_shm::anomaly::{event_code, AnomalyOutcome};
use rampart_shm::ring::{EventKind, FlowEventData};
use rampart_shm::{Anomaly, AnomalyAction, AnomalyImage, ChecksumScope, DropReason, EventRecord};

const TCP: u8 = 6;
const UDP: u8 = 17;
const ICMP: u8 = 1;
const ICMPV6: u8 = 58;
/// IPv6 extension headers walked to find a routing header.
const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const AUTH: u8 = 51;
const DEST_OPTS: u8 = 60;

/// Whether the policy makes [`headers`] check anything.
pub fn checks_headers(img: &AnomalyImage) -> bool {
    [Anomaly::TcpFlags, Anomaly::Land, Anomaly::IpOptions, Anomaly::LowTtl, Anomaly::OversizeIcmp].into_iter().any(|k| img.checks(k))
        || (img.checks(Anomaly::BadChecksum) && img.checksums == ChecksumScope::All)
}

/// The first anomaly (in kind order) that the policy checks for in the headers of the IP
/// packet `meta` parsed from `data`.
#[inline]
pub fn headers(img: &AnomalyImage, meta: &Meta, data: &[u8], sums: Checksums) -> Option<Anomaly> {
    let l3 = meta.l3_offset();
    let v4 = meta.l3() == L3::Ipv4;
    if img.checks(Anomaly::TcpFlags) && meta.ip_proto == TCP && meta.has_l4_header() && bad_flags(meta.tcp_flags) {
        return Some(Anomaly::TcpFlags);
    }
    if img.checks(Anomaly::Land) && meta.src_addr == meta.dst_addr {
        return Some(Anomaly::Land);
    }
    if img.checks(Anomaly::IpOptions) && routes(meta, data, v4) {
        return Some(Anomaly::IpOptions);
    }
    if img.checks(Anomaly::LowTtl) {
        let ttl = data.get(l3 + if v4 { 8 } else { 7 }).copied().unwrap_or(u8::MAX);
        if ttl <= 1 && unicast(meta, v4) {
            return Some(Anomaly::LowTtl);
        }
    }
    if img.checks(Anomaly::OversizeIcmp) && meta.ip_proto == if v4 { ICMP } else { ICMPV6 } {
        let fragmented = meta.is_fragment();
        if fragmented || meta.l4_header_len(data) + meta.payload_len as usize > img.icmp_max_bytes as usize {
            return Some(Anomaly::OversizeIcmp);
        }
    }
    if img.checks(Anomaly::BadChecksum) && img.checksums == ChecksumScope::All && !checksums_ok(meta, data, sums) {
        return Some(Anomaly::BadChecksum);
    }
    None
}

/// SYN+FIN, SYN+RST, none of the six classic flags (null scan), FIN+PSH+URG (Xmas scan).
#[inline]
fn bad_flags(flags: TcpFlags) -> bool {
    let f = flags.0 & 0x3f;
    let has = |bits: u8| f & bits == bits;
    f == 0 || has(TcpFlags::SYN | TcpFlags::FIN) || has(TcpFlags::SYN | TcpFlags::RST) || has(TcpFlags::FIN | TcpFlags::PSH | TcpFlags::URG)
}

/// Not sent to a broadcast or multicast address (where a TTL of 1 is the norm).
#[inline]
fn unicast(meta: &Meta, v4: bool) -> bool {
    let d = &meta.dst_addr;
    meta.dst_mac[0] & 1 == 0 && if v4 { d[12] < 224 && d[12..] != [255; 4] } else { d[0] != 0xff }
}

/// An IPv4 source route (loose 131, strict 137) or record route (7) option, or an IPv6
/// type 0 routing header.
#[inline]
fn routes(meta: &Meta, data: &[u8], v4: bool) -> bool {
    let l3 = meta.l3_offset();
    if v4 {
        let ihl = (data.get(l3).copied().unwrap_or(0x45) & 0xf) as usize * 4;
        return ihl > 20 && data.get(l3 + 20..l3 + ihl).is_some_and(ipv4_routes);
    }
    ipv6_routing_type(meta, data) == Some(0)
}

/// Whether the options of an IPv4 header hold a source or record route.
fn ipv4_routes(options: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&kind) = options.get(i) {
        match kind {
            0 => return false,
            1 => i += 1,
            7 | 131 | 137 => return true,
            _ => match options.get(i + 1) {
                Some(&len) if len >= 2 => i += len as usize,
                _ => return false,
            },
        }
    }
    false
}

/// The type of an IPv6 packet's routing header, if it has one before its upper layer.
fn ipv6_routing_type(meta: &Meta, data: &[u8]) -> Option<u8> {
    ipv6_ext_header(meta, data, ROUTING).and_then(|off| data.get(off + 2).copied())
}

/// Where an IPv6 packet's first extension header of type `kind` starts, if it has one
/// before its upper layer.
pub(crate) fn ipv6_ext_header(meta: &Meta, data: &[u8], kind: u8) -> Option<usize> {
    let l3 = meta.l3_offset();
    let end = meta.l4_offset as usize;
    let mut next = *data.get(l3 + 6)?;
    let mut off = l3 + 40;
    // The parser bounds the chain; so does this walk.
    for _ in 0..8 {
        if off >= end {
            return None;
        }
        if next == kind {
            return Some(off);
        }
        let (nh, len_field) = (*data.get(off)?, *data.get(off + 1)? as usize);
        off += match next {
            HOP_BY_HOP | DEST_OPTS | ROUTING => (len_field + 1) * 8,
            FRAGMENT => 8,
            AUTH => (len_field + 2) * 4,
            _ => return None,
        };
        next = nh;
    }
    None
}

/// Whether the IPv4 header checksum and the TCP/UDP/ICMP/ICMPv6 checksum of the packet are
/// right. The L4 sum is checked only where the sender completed it ([`Checksums::Complete`])
/// and the packet is whole (not a fragment; an IPv6 packet without a routing header, whose
/// pseudo-header names the final destination).
#[inline]
pub fn checksums_ok(meta: &Meta, data: &[u8], sums: Checksums) -> bool {
    let l3 = meta.l3_offset();
    let be16 = |at: usize| data.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]])) as usize;
    let (end, pseudo) = match meta.l3() {
        L3::Ipv4 => {
            let ihl = (data.get(l3).copied().unwrap_or(0x45) & 0xf) as usize * 4;
            if data.get(l3..l3 + ihl).is_some_and(|h| !checksum::verify(0, h)) {
                return false;
            }
            let (src, dst) = (meta.src_addr[12..].try_into().unwrap_or_default(), meta.dst_addr[12..].try_into().unwrap_or_default());
            (l3 + be16(l3 + 2), PseudoHeader::V4 { src, dst })
        }
        L3::Ipv6 if ipv6_routing_type(meta, data).is_none() => (l3 + 40 + be16(l3 + 4), PseudoHeader::V6 { src: meta.src_addr, dst: meta.dst_addr }),
        _ => return true,
    };
    if sums != Checksums::Complete || meta.is_fragment() {
        return true;
    }
    let Some(l4) = data.get(meta.l4_offset as usize..end) else { return true };
    let v4 = matches!(pseudo, PseudoHeader::V4 { .. });
    match meta.ip_proto {
        TCP => pseudo.verify(TCP, l4),
        // A UDP-over-IPv4 checksum of 0 is none (RFC 768).
        UDP if v4 && l4.get(6..8) == Some(&[0, 0]) => true,
        UDP => pseudo.verify(UDP, l4),
        ICMP if v4 => checksum::verify(0, l4),
        ICMPV6 if !v4 => pseudo.verify(ICMPV6, l4),
        _ => true,
    }
}

/// Handles an anomaly `kind` found in `meta`'s packet on port `slot`: counts it, logs it
/// (within the port's budget of drop records) and returns the drop reason if the packet
/// is dropped. `enforce`: false on a monitor port that does not enforce anomalies (a drop
/// becomes a counted would-be drop).
#[cold]
#[allow(clippy::too_many_arguments)]
pub fn found(cx: &Context, limiter: &mut EventLimiter, rt: &Runtime, slot: usize, kind: Anomaly, meta: &Meta, enforce: bool) -> Option<DropReason> {
    let action = rt.anomalies.action(kind);
    if action == AnomalyAction::Ignore {
        return None;
    }
    cx.counters.anomalies[kind.index()].add(1);
    let reason = kind.reason();
    let outcome = match action {
        AnomalyAction::Ignore | AnomalyAction::Alert => AnomalyOutcome::Allowed,
        AnomalyAction::Drop if enforce => AnomalyOutcome::Dropped,
        AnomalyAction::Drop => {
            cx.counters.would_drop(slot, reason);
            AnomalyOutcome::WouldDrop
        }
    };
    if limiter.admit(slot, reason.index(), rt.drop_events_per_s, cx.now_ms) {
        let (data, value) = FlowEventData::pack(&meta.src_addr, &meta.dst_addr, meta.src_port, meta.dst_port, meta.ip_proto, None);
        let (kind_code, code) = (EventKind::Anomaly as u16, event_code(kind, outcome));
        push_event(cx, EventRecord { tsc: crate::rdtsc(), kind: kind_code, port: slot as u16, code, value, len: 32, data, ..Default::default() });
    }
    (outcome == AnomalyOutcome::Dropped).then_some(reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_packet::build;

    fn check(img: &AnomalyImage, frame: &[u8]) -> Option<Anomaly> {
        let meta = rampart_packet::parse(frame).unwrap();
        headers(img, &meta, frame, Checksums::Complete)
    }

    /// `frame` (IPv4, no options) with `options` (a multiple of 4 bytes) in its header.
    pub(crate) fn with_options(mut frame: Vec<u8>, options: &[u8]) -> Vec<u8> {
        frame.splice(34..34, options.iter().copied());
        frame[14] = 0x40 | (5 + options.len() / 4) as u8;
        let total = u16::from_be_bytes([frame[16], frame[17]]) + options.len() as u16;
        frame[16..18].copy_from_slice(&total.to_be_bytes());
        frame[24..26].copy_from_slice(&[0, 0]);
        let sum = checksum::compute(&frame[14..34 + options.len()]);
        frame[24..26].copy_from_slice(&sum.to_be_bytes());
        frame
    }

    fn tcp(flags: u8) -> Vec<u8> {
        build::tcp_v4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, flags, &[]).build().unwrap()
    }

    #[test]
    fn tcp_flag_combinations_no_stack_sends_are_found() {
        let img = AnomalyImage::default();
        use TcpFlags as F;
        for bad in [F::SYN | F::FIN, F::SYN | F::RST, 0, F::FIN | F::PSH | F::URG, F::FIN | F::PSH | F::URG | F::ACK] {
            assert_eq!(check(&img, &tcp(bad)), Some(Anomaly::TcpFlags), "flags {bad:#x}");
        }
        for good in [F::SYN, F::SYN | F::ACK, F::ACK, F::FIN | F::ACK, F::RST, F::PSH | F::ACK, F::FIN | F::PSH | F::ACK] {
            assert_eq!(check(&img, &tcp(good)), None, "flags {good:#x}");
        }
        assert_eq!(check(&AnomalyImage::off(), &tcp(0)), None, "ignored: not checked");
    }

    #[test]
    fn land_low_ttl_and_oversize_icmp_are_found() {
        let img = AnomalyImage::default();
        let land = build::udp_v4([10, 0, 0, 1], 7, [10, 0, 0, 1], 7, &[1]).build().unwrap();
        assert_eq!(check(&img, &land), Some(Anomaly::Land));
        let ttl = |ttl: u8, dst: [u8; 4]| build::udp_v4([10, 0, 0, 1], 7, dst, 7, &[1]).ttl(ttl).build().unwrap();
        assert_eq!(check(&img, &ttl(1, [10, 0, 0, 2])), Some(Anomaly::LowTtl));
        assert_eq!(check(&img, &ttl(0, [10, 0, 0, 2])), Some(Anomaly::LowTtl));
        assert_eq!(check(&img, &ttl(2, [10, 0, 0, 2])), None);
        assert_eq!(check(&img, &ttl(1, [224, 0, 0, 251])), None, "multicast with TTL 1 is normal");
        let ping = |n: usize| build::icmp_echo_v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, &vec![0; n]).build().unwrap();
        assert_eq!(check(&img, &ping(1472)), None, "8 + 1472 = icmp_max_bytes");
        assert_eq!(check(&img, &ping(1473)), Some(Anomaly::OversizeIcmp));
        let frag = build::icmp_echo_v4([10, 0, 0, 1], [10, 0, 0, 2], 1, 1, &[0; 64]).with_ipv4(|ip| ip.more_frags = true).build().unwrap();
        assert_eq!(check(&img, &frag), Some(Anomaly::OversizeIcmp), "a fragmented ICMP message");
    }

    #[test]
    fn source_and_record_route_options_are_found_and_others_are_not() {
        let img = AnomalyImage::default();
        let with = |options: &[u8]| with_options(build::udp_v4([10, 0, 0, 1], 7, [10, 0, 0, 2], 7, &[1]).build().unwrap(), options);
        assert_eq!(check(&img, &with(&[131, 7, 4, 10, 0, 0, 9, 0])), Some(Anomaly::IpOptions), "loose source route");
        assert_eq!(check(&img, &with(&[1, 137, 7, 4, 10, 0, 0, 9])), Some(Anomaly::IpOptions), "strict, after a NOP");
        assert_eq!(check(&img, &with(&[7, 7, 4, 0, 0, 0, 0, 0])), Some(Anomaly::IpOptions), "record route");
        assert_eq!(check(&img, &with(&[148, 4, 0, 0])), None, "router alert");
        assert_eq!(check(&img, &with(&[0, 131, 7, 4])), None, "after the end of the list");
    }

    #[test]
    fn checksums_are_verified_where_the_sender_completed_them() {
        let good = build::tcp_v4([10, 0, 0, 1], 1000, [10, 0, 0, 2], 80, TcpFlags::ACK, b"hello").build().unwrap();
        let meta = rampart_packet::parse(&good).unwrap();
        assert!(checksums_ok(&meta, &good, Checksums::Complete));
        let mut bad_l4 = good.clone();
        *bad_l4.last_mut().unwrap() ^= 1;
        assert!(!checksums_ok(&meta, &bad_l4, Checksums::Complete));
        assert!(checksums_ok(&meta, &bad_l4, Checksums::L4Partial), "left to an offload");
        let mut bad_ip = good.clone();
        bad_ip[14 + 10] ^= 1;
        assert!(!checksums_ok(&meta, &bad_ip, Checksums::L4Partial), "the IPv4 header is always the sender's");
        let all = AnomalyImage { checksums: ChecksumScope::All, ..AnomalyImage::default() };
        assert_eq!(headers(&all, &meta, &bad_l4, Checksums::Complete), Some(Anomaly::BadChecksum));
        assert_eq!(headers(&AnomalyImage::default(), &meta, &bad_l4, Checksums::Complete), None, "scope inspected: not here");
        let udp = build::udp_v6([0xfd; 16], 7, [0xfe; 16], 7, b"abc").build().unwrap();
        let m6 = rampart_packet::parse(&udp).unwrap();
        assert!(checksums_ok(&m6, &udp, Checksums::Complete));
        let mut bad6 = udp.clone();
        *bad6.last_mut().unwrap() ^= 0x10;
        assert!(!checksums_ok(&m6, &bad6, Checksums::Complete));
        let mut none = build::udp_v4([10, 0, 0, 1], 7, [10, 0, 0, 2], 7, b"abc").build().unwrap();
        none[14 + 20 + 6..14 + 20 + 8].copy_from_slice(&[0, 0]);
        assert!(checksums_ok(&rampart_packet::parse(&none).unwrap(), &none, Checksums::Complete), "UDPv4 without a checksum");
    }
}
