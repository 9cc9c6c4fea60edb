//! Builds the answer a `reject` rule sends back to a sender: a TCP RST for
//! TCP (RFC 9293 §3.10.7.1: sequence from the offending segment's ACK, or
//! RST+ACK acknowledging it), an ICMP port unreachable (IPv4, RFC 792) or
//! ICMPv6 port unreachable (RFC 4443) for everything else. The L2 header is
//! the original's (VLAN tags kept) with the MACs swapped; the IP and L4
//! headers are the packet crate's `Repr`s emitted in place, lengths and
//! checksums filled in. No allocation (it runs on the worker for each rejected
//! packet), DPDK-free: the worker copies the result into a fresh mbuf.

use rampart_packet::ip::protocol;
use rampart_packet::{ethernet, icmp, icmpv6, ipv4, ipv6, tcp, IpProtocol, Meta, TcpFlags, L3};

/// Largest reply this builds (fits any mbuf).
pub const MAX_REPLY: usize = 640;

/// Most of the offending IPv4 datagram an ICMP error quotes: the error stays within 576
/// bytes (RFC 1812 §4.3.2.3).
const MAX_ICMP_V4: usize = 576 - 20 - icmp::HEADER_LEN;

/// What the answer carries above IP.
enum Answer<'a> {
    Rst(tcp::Repr),
    /// Port unreachable quoting these bytes of the offending packet.
    Unreachable(&'a [u8]),
}

/// The RST answering the TCP segment at `l4` of `frame` (RFC 9293 §3.10.7.1); None for an RST.
fn rst(frame: &[u8], meta: &Meta, l4: usize) -> Option<tcp::Repr> {
    let flags = meta.tcp_flags;
    if flags.rst() {
        return None;
    }
    let segment = tcp::Packet::new_unchecked(frame.get(l4..l4 + tcp::HEADER_LEN)?);
    let mut rst = tcp::Repr { window_len: 0, ..tcp::Repr::new(meta.dst_port, meta.src_port, TcpFlags::RST) };
    if flags.ack() {
        rst.seq_number = segment.ack_number();
    } else {
        // SEG.SEQ + SEG.LEN: SYN and FIN count one each.
        let syn_fin = flags.syn() as u32 + flags.fin() as u32;
        rst.ack_number = segment.seq_number().wrapping_add(meta.payload_len as u32).wrapping_add(syn_fin);
        rst.flags = TcpFlags(TcpFlags::RST | TcpFlags::ACK);
    }
    Some(rst)
}

/// Writes the reject answer to `frame` (parsed as `meta`) into `out`; returns its length.
/// None for frames that must not be answered (non-IP, ICMP errors, RSTs, later fragments).
pub fn build(frame: &[u8], meta: &Meta, out: &mut [u8; MAX_REPLY]) -> Option<usize> {
    let v6 = match meta.l3() {
        L3::Ipv4 => false,
        L3::Ipv6 => true,
        _ => return None,
    };
    if meta.is_later_fragment() || ethernet::is_multicast(&meta.dst_mac) {
        return None; // never answer fragments' tails or broadcast/multicast
    }
    let (l3, l4) = (meta.l3_offset(), meta.l4_offset as usize);
    let ip_len = if v6 { ipv6::HEADER_LEN } else { ipv4::HEADER_LEN };
    let at = l3 + ip_len;
    let (protocol, answer) = if meta.ip_proto == protocol::TCP {
        (IpProtocol::Tcp, Answer::Rst(rst(frame, meta, l4)?))
    } else if meta.icmp_inner_offset().is_some() {
        return None; // never answer an error with an error
    } else {
        // As much of the offending packet as fits (RFC 1812 §4.3.2.3, RFC 4443 §2.4), not
        // its Ethernet padding.
        let quoted = frame.get(l3..)?;
        let (protocol, ip_total, most) = match v6 {
            true => (IpProtocol::Icmpv6, ipv6::HEADER_LEN + ipv6::Packet::new_unchecked(quoted).payload_len() as usize, MAX_REPLY),
            false => (IpProtocol::Icmp, ipv4::Packet::new_unchecked(quoted).total_len() as usize, MAX_ICMP_V4),
        };
        let room = (MAX_REPLY - at - icmp::HEADER_LEN).min(most);
        (protocol, Answer::Unreachable(&quoted[..ip_total.min(quoted.len()).min(room)]))
    };
    let l4_len = match &answer {
        Answer::Rst(repr) => repr.header_len(),
        Answer::Unreachable(quoted) => icmp::HEADER_LEN + quoted.len(),
    };
    // L2: the original header with the MACs swapped.
    out[..l3].copy_from_slice(frame.get(..l3)?);
    let mut eth = ethernet::Packet::new_unchecked(&mut out[..l3]);
    eth.set_dst_addr(meta.src_mac);
    eth.set_src_addr(meta.dst_mac);
    // L3, back to the sender.
    let (src, dst) = (meta.dst_addr, meta.src_addr);
    let pseudo = if v6 {
        let ip = ipv6::Repr::new(src, dst, protocol, l4_len);
        ip.emit(&mut out[l3..]).ok()?;
        ip.pseudo_header()
    } else {
        let v4 = |a: [u8; 16]| [a[12], a[13], a[14], a[15]];
        let ip = ipv4::Repr { dont_frag: true, ..ipv4::Repr::new(v4(src), v4(dst), protocol, l4_len) };
        ip.emit(&mut out[l3..]).ok()?;
        ip.pseudo_header()
    };
    // L4, checksummed (ICMP over IPv4 has no pseudo-header).
    let l4 = &mut out[at..];
    match answer {
        Answer::Rst(repr) => repr.emit(l4, &[], &pseudo),
        Answer::Unreachable(quoted) if v6 => icmpv6::Repr::DstUnreachable { code: 4 }.emit(l4, quoted, &pseudo),
        Answer::Unreachable(quoted) => icmp::Repr::DstUnreachable { code: 3, next_hop_mtu: 0 }.emit(l4, quoted),
    }
    .ok()?;
    Some(at + l4_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_packet::build::{self, Frame};
    use rampart_packet::{icmp, icmpv6, ipv4, parse, IpProtocol, TcpFlags};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    const V4A: [u8; 4] = [10, 0, 0, 1];
    const V4B: [u8; 4] = [10, 0, 0, 2];
    const V6A: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    const V6B: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    /// A TCP segment 10.0.0.1:40000 → 10.0.0.2:80 from A to B.
    fn tcp(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Frame {
        build::tcp_v4(V4A, 40000, V4B, 80, flags, payload).macs(A, B).with_tcp(|t| (t.seq_number, t.ack_number) = (seq, ack))
    }

    /// A UDP datagram 10.0.0.1:40000 → 10.0.0.2:53 from A to B.
    fn udp(payload: &[u8]) -> Frame {
        build::udp_v4(V4A, 40000, V4B, 53, payload).macs(A, B)
    }

    /// The same over IPv6, fd00::1 → fd00::2.
    fn udp6(payload: &[u8]) -> Frame {
        build::udp_v6(V6A, 40000, V6B, 53, payload).macs(A, B)
    }

    fn bytes(frame: Frame) -> Vec<u8> {
        frame.build().unwrap()
    }

    /// `frame` with a 4-byte IPv4 option (Router Alert) after its 20-byte header.
    fn with_ipv4_option(mut f: Vec<u8>, l3: usize) -> Vec<u8> {
        f.splice(l3 + 20..l3 + 20, [0x94, 0x04, 0, 0]);
        let mut ip = ipv4::Packet::new_unchecked(&mut f[l3..]);
        ip.set_header_len(24);
        ip.set_total_len(ip.total_len() + 4);
        ip.fill_checksum();
        f
    }

    /// The inputs of [`answers_byte_for_byte`].
    fn inputs() -> Vec<(&'static str, Vec<u8>)> {
        use TcpFlags as F;
        let query = udp(&[1, 2, 3, 4]);
        vec![
            ("tcp syn", bytes(tcp(F::SYN, 1000, 0, b""))),
            ("tcp ack with payload", bytes(tcp(F::PSH | F::ACK, 5, 777, b"hello"))),
            ("tcp fin", bytes(tcp(F::FIN, 9, 0, b"bye").pad(60))),
            ("tcp syn with options", bytes(tcp(F::SYN, 0xffff_fff0, 0, b"").with_tcp(|t| t.options.mss = Some(1460)))),
            ("tcp rst", bytes(tcp(F::RST, 5, 0, b""))),
            ("tcp v6 syn-ack", bytes(build::tcp_v6(V6A, 40000, V6B, 22, F::SYN | F::ACK, b"").macs(A, B).with_tcp(|t| t.ack_number = 4242))),
            ("udp v4", bytes(query.clone())),
            ("udp v4 padded", bytes(query.clone().pad(60))),
            ("udp v6", bytes(udp6(&[1, 2, 3, 4]))),
            ("udp v6 destination options", bytes(udp6(b"opts").ext_header(IpProtocol::Ipv6Opts, &[1, 4, 0, 0, 0, 0]))),
            ("vlan tcp syn", bytes(tcp(F::SYN, 1000, 0, b"").vlan(100))),
            ("qinq udp", bytes(query.clone().qinq(10, 20))),
            ("ipv4 options", with_ipv4_option(bytes(query.clone()), 14)),
            ("icmp echo", bytes(build::icmp_echo_v4(V4A, V4B, 7, 1, b"ping").macs(A, B))),
            ("first fragment", udp(&[9; 40]).ident(5).fragments(16).unwrap().swap_remove(0)),
            ("later fragment", udp(&[9; 40]).ident(5).fragments(16).unwrap().swap_remove(1)),
            ("later fragment v6", udp6(&[9; 40]).ident(5).fragments(16).unwrap().swap_remove(1)),
            ("icmp error", bytes(build::icmp_v4(V4B, V4A, icmp::Repr::DstUnreachable { code: 3, next_hop_mtu: 0 }, &query.ip_packet().unwrap()).macs(A, B))),
            ("icmpv6 error", bytes(build::icmpv6(V6B, V6A, icmpv6::Repr::DstUnreachable { code: 4 }, &udp6(b"x").ip_packet().unwrap()).macs(A, B))),
            ("broadcast", bytes(query.clone().macs(A, [0xff; 6]))),
            ("ipv6 multicast mac", bytes(udp6(b"x").macs(A, [0x33, 0x33, 0, 0, 0, 1]))),
            ("arp", bytes(build::arp_request(A, V4A, V4B))),
        ]
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The answers, byte for byte, as the hand-poked builder this replaced wrote them
    /// (recorded from it before the change).
    const ANSWERS: [(&str, Option<&str>); 22] = [
            ("tcp syn", Some("02000000000a02000000000b08004500002800004000400626ce0a0000020a00000100509c4000000000000003e950140000fb540000")),
            ("tcp ack with payload", Some("02000000000a02000000000b08004500002800004000400626ce0a0000020a00000100509c40000003090000000050040000fc440000")),
            ("tcp fin", Some("02000000000a02000000000b08004500002800004000400626ce0a0000020a00000100509c40000000000000000d50140000ff300000")),
            ("tcp syn with options", Some("02000000000a02000000000b08004500002800004000400626ce0a0000020a00000100509c4000000000fffffff150140000ff4b0000")),
            ("tcp rst", None),
            ("tcp v6 syn-ack", Some("02000000000a02000000000b86dd6000000000140640fd000000000000000000000000000002fd00000000000000000000000000000100169c4000001092000000005004000008f40000")),
            ("udp v4", Some("02000000000a02000000000b08004500003c00004000400126bf0a0000020a0000010303111d000000004500002000000000401166cb0a0000010a0000029c400035000c4b5801020304")),
            ("udp v4 padded", Some("02000000000a02000000000b08004500003c00004000400126bf0a0000020a0000010303111d000000004500002000000000401166cb0a0000010a0000029c400035000c4b5801020304")),
            ("udp v6", Some("02000000000a02000000000b86dd60000000003c3a40fd000000000000000000000000000002fd000000000000000000000000000001010493510000000060000000000c1140fd000000000000000000000000000001fd0000000000000000000000000000029c400035000c655601020304")),
            ("udp v6 destination options", Some("02000000000a02000000000b86dd6000000000443a40fd000000000000000000000000000002fd0000000000000000000000000000010104563d000000006000000000143c40fd000000000000000000000000000001fd00000000000000000000000000000211000104000000009c400035000c85786f707473")),
            ("vlan tcp syn", Some("02000000000a02000000000b8100006408004500002800004000400626ce0a0000020a00000100509c4000000000000003e950140000fb540000")),
            ("qinq udp", Some("02000000000a02000000000b88a8000a8100001408004500003c00004000400126bf0a0000020a0000010303111d000000004500002000000000401166cb0a0000010a0000029c400035000c4b5801020304")),
            ("ipv4 options", Some("02000000000a02000000000b08004500004000004000400126bb0a0000020a0000010303111d0000000046000024000000004011d1c20a0000010a000002940400009c400035000c4b5801020304")),
            ("icmp echo", Some("02000000000a02000000000b08004500003c00004000400126bf0a0000020a0000010303fcfc000000004500002000000000400166db0a0000010a000002080019270007000170696e67")),
            ("first fragment", Some("02000000000a02000000000b08004500004000004000400126bb0a0000020a0000010303a1d1000000004500002400052000401146c20a0000010a0000029c40003500309a610909090909090909")),
            ("later fragment", None),
            ("later fragment v6", None),
            ("icmp error", None),
            ("icmpv6 error", None),
            ("broadcast", None),
            ("ipv6 multicast mac", None),
            ("arp", None),
    ];

    /// The answer to `frame`, if any.
    fn answer(frame: &[u8]) -> Option<Vec<u8>> {
        let mut out = [0u8; MAX_REPLY];
        build(frame, &parse(frame).unwrap(), &mut out).map(|n| out[..n].to_vec())
    }

    #[test]
    fn answers_byte_for_byte() {
        let inputs = inputs();
        assert_eq!(inputs.len(), ANSWERS.len());
        for ((name, frame), (want_name, want)) in inputs.iter().zip(ANSWERS) {
            assert_eq!(*name, want_name);
            assert_eq!(answer(frame).map(|a| hex(&a)).as_deref(), want, "{name}");
        }
    }

    /// RFC 1071 written apart from `rampart_packet::checksum` (bytes paired into a u64
    /// sum, the pseudo-header laid out as bytes): data with a right checksum sums to 0xffff.
    fn sums_to_ones(parts: &[&[u8]]) -> bool {
        let bytes = parts.concat();
        let mut sum: u64 = bytes.chunks(2).map(|c| (c[0] as u64) << 8 | c.get(1).copied().unwrap_or(0) as u64).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum == 0xffff
    }

    /// The IPv4 header checksum and the L4 checksum (with its pseudo-header) of `reply`.
    fn checksums_ok(reply: &[u8], meta: &Meta) -> bool {
        let (l3, l4) = (meta.l3_offset(), meta.l4_offset as usize);
        let (seg, proto) = (&reply[l4..], meta.ip_proto);
        let len = (seg.len() as u32).to_be_bytes();
        match meta.l3() {
            L3::Ipv4 if proto == 1 => sums_to_ones(&[&reply[l3..l4]]) && sums_to_ones(&[seg]),
            L3::Ipv4 => sums_to_ones(&[&reply[l3..l4]]) && sums_to_ones(&[&reply[l3 + 12..l3 + 20], &[0, proto], &len[2..], seg]),
            _ => sums_to_ones(&[&reply[l3 + 8..l3 + 40], &len, &[0, 0, 0, proto], seg]),
        }
    }

    #[test]
    fn every_answer_has_right_checksums_and_goes_back_to_the_sender() {
        for (name, frame) in inputs() {
            let Some(reply) = answer(&frame) else { continue };
            let (m, r) = (parse(&frame).unwrap(), parse(&reply).unwrap());
            assert!(checksums_ok(&reply, &r), "{name}");
            assert_eq!((r.src_mac, r.dst_mac, r.vlan()), (m.dst_mac, m.src_mac, m.vlan()), "{name}");
            assert_eq!((r.src_addr, r.dst_addr), (m.dst_addr, m.src_addr), "{name}");
        }
    }

    #[test]
    fn rst_for_a_syn_acknowledges_it() {
        let syn = bytes(tcp(TcpFlags::SYN, 1000, 0, b""));
        let reply = answer(&syn).unwrap();
        let r = parse(&reply).unwrap();
        assert_eq!((r.src_mac, r.dst_mac), (B, A));
        assert_eq!((r.src_port, r.dst_port), (80, 40000));
        assert_eq!(r.tcp_flags.0, TcpFlags::RST | TcpFlags::ACK);
        let rst = tcp::Packet::new_checked(&reply[34..]).unwrap();
        assert_eq!((rst.seq_number(), rst.ack_number()), (0, 1001), "acknowledges SYN's sequence + 1");
    }

    #[test]
    fn rst_for_an_ack_uses_its_ack_number() {
        let reply = answer(&bytes(tcp(TcpFlags::PSH | TcpFlags::ACK, 5, 777, b"hello"))).unwrap();
        let rst = tcp::Packet::new_checked(&reply[34..]).unwrap();
        assert_eq!(rst.flags().0, TcpFlags::RST, "bare RST");
        assert_eq!((rst.seq_number(), rst.ack_number()), (777, 0));
        assert!(answer(&bytes(tcp(TcpFlags::RST, 5, 0, b""))).is_none(), "never answer an RST");
    }

    #[test]
    fn icmp_port_unreachable_quotes_the_datagram() {
        let query = udp(&[1, 2, 3, 4]);
        let reply = answer(&bytes(query.clone().pad(60))).unwrap();
        let r = parse(&reply).unwrap();
        assert_eq!((r.ip_proto, r.icmp_type(), r.icmp_code()), (1, Some(3), Some(3)));
        assert_eq!(reply[42..], query.ip_packet().unwrap(), "the whole offending datagram, not the padding");
        assert!(answer(&reply).is_none(), "never answer an ICMP error");
    }

    #[test]
    fn icmpv6_port_unreachable_quotes_the_packet() {
        let query = udp6(&[1, 2, 3, 4]);
        let reply = answer(&bytes(query.clone())).unwrap();
        let r = parse(&reply).unwrap();
        assert_eq!((r.ip_proto, r.icmp_type(), r.icmp_code()), (58, Some(1), Some(4)));
        assert_eq!(reply[62..], query.ip_packet().unwrap());
        assert!(answer(&reply).is_none(), "never answer an ICMPv6 error");
    }

    /// A long datagram is quoted as far as the answer stays within 576 bytes of IPv4
    /// (RFC 1812 §4.3.2.3) — the builder this replaced quoted up to 598 bytes (626 of IPv4)
    /// — and an IPv6 packet as far as `MAX_REPLY` allows (under the 1280 RFC 4443 allows).
    #[test]
    fn a_long_packet_is_quoted_in_part() {
        let long = udp(&[7; 1000]).vlan(5);
        let reply = answer(&bytes(long.clone())).unwrap();
        assert_eq!(reply.len(), 18 + 576);
        assert_eq!(ipv4::Packet::new_checked(&reply[18..]).unwrap().total_len(), 576);
        assert_eq!(reply[18 + 28..], long.ip_packet().unwrap()[..548]);
        assert!(checksums_ok(&reply, &parse(&reply).unwrap()));
        let long6 = udp6(&[7; 1000]);
        let reply = answer(&bytes(long6.clone())).unwrap();
        assert_eq!(reply.len(), MAX_REPLY);
        assert_eq!(reply[62..], long6.ip_packet().unwrap()[..MAX_REPLY - 62]);
        assert!(checksums_ok(&reply, &parse(&reply).unwrap()));
    }
}
