//! Malformed frames map to the right drop reason; every reason is reachable.

mod common;

use common::*;
use rampart_packet::{parse, validate, ParseError, ParseError::*};

fn edit(mut frame: Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    f(&mut frame);
    frame
}

fn set16(frame: &mut [u8], at: usize, value: u16) {
    frame[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// IPv6 frame whose payload is `exts` (each `(kind, 8-byte header)`, next-header fields
/// filled in here) followed by a 20-byte TCP header.
fn ipv6_chain(kinds: &[u8]) -> Vec<u8> {
    let tcp = &ipv6_tcp().frame[54..74];
    let mut frame = ipv6_tcp().frame[..54].to_vec();
    frame[20] = kinds.first().copied().unwrap_or(6);
    for i in 0..kinds.len() {
        let next = kinds.get(i + 1).copied().unwrap_or(6);
        if kinds[i] == 44 {
            frame.extend_from_slice(&[next, 0, 0, 0, 0, 0, 0, 0]); // offset 0, M clear
        } else {
            frame.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]); // PadN(4)
        }
    }
    frame.extend_from_slice(tcp);
    let payload_len = (frame.len() - 54) as u16;
    set16(&mut frame, 18, payload_len);
    frame
}

fn cases() -> Vec<(&'static str, Vec<u8>, ParseError)> {
    let v4 = ipv4_tcp_syn().frame; // l3 14, l4 34, total 40, 6 bytes padding
    let udp = ipv4_udp().frame; // l4 34, UDP length 13, total 33
    let v6 = ipv6_tcp().frame; // l3 14, l4 54
    let mut c = vec![
        ("empty frame", vec![], EthernetTruncated),
        ("13 bytes", v4[..13].to_vec(), EthernetTruncated),
        (
            "vlan tag cut",
            edit(v4.clone(), |f| {
                f.splice(12..12, [0x81, 0x00]);
                f.truncate(16)
            }),
            VlanTruncated,
        ),
        (
            "qinq inner tag cut",
            qinq_ipv4_udp().frame[..20].to_vec(),
            VlanTruncated,
        ),
        (
            "three tags",
            edit(v4.clone(), |f| {
                f.splice(12..12, [0x88, 0xa8, 0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3]);
            }),
            VlanTooManyTags,
        ),
        (
            "S-tag inside C-tag",
            edit(v4.clone(), |f| {
                f.splice(12..12, [0x81, 0x00, 0, 1, 0x88, 0xa8, 0, 2]);
            }),
            VlanTooManyTags,
        ),
        ("arp cut", arp_request().frame[..41].to_vec(), ArpTruncated),
        (
            "arp with huge address lengths",
            edit(arp_request().frame, |f| {
                f[18] = 255;
                f[19] = 255
            }),
            ArpTruncated,
        ),
        ("ipv4 19 bytes", v4[..33].to_vec(), Ipv4Truncated),
        (
            "ipv4 version 6",
            edit(v4.clone(), |f| f[14] = 0x65),
            Ipv4BadVersion,
        ),
        (
            "ipv6 under ipv4 ethertype",
            edit(v6.clone(), |f| f[12..14].copy_from_slice(&[8, 0])),
            Ipv4BadVersion,
        ),
        (
            "ipv4 IHL 15 past the buffer",
            edit(v4.clone(), |f| f[14] = 0x4f),
            Ipv4Truncated,
        ),
        (
            "ipv4 IHL 6 past a 20-byte buffer",
            edit(v4[..34].to_vec(), |f| f[14] = 0x46),
            Ipv4Truncated,
        ),
        (
            "ipv4 total length 19",
            edit(v4.clone(), |f| set16(f, 16, 19)),
            Ipv4BadTotalLength,
        ),
        (
            "ipv4 total length 0",
            edit(v4.clone(), |f| set16(f, 16, 0)),
            Ipv4BadTotalLength,
        ),
        (
            "ipv4 total length < IHL*4",
            edit(ipv4_options_udp().frame, |f| set16(f, 16, 27)),
            Ipv4BadTotalLength,
        ),
        (
            "ipv4 total length > buffer",
            edit(v4.clone(), |f| set16(f, 16, 47)),
            Ipv4BadTotalLength,
        ),
        (
            "ipv4 total length 65535",
            edit(v4.clone(), |f| set16(f, 16, 0xffff)),
            Ipv4BadTotalLength,
        ),
        ("ipv6 39 bytes", v6[..53].to_vec(), Ipv6Truncated),
        (
            "ipv6 version 4",
            edit(v6.clone(), |f| f[14] = 0x40),
            Ipv6BadVersion,
        ),
        (
            "ipv6 payload length > buffer",
            edit(v6.clone(), |f| set16(f, 18, 21)),
            Ipv6BadPayloadLength,
        ),
        (
            "ipv6 payload length 65535",
            edit(v6.clone(), |f| set16(f, 18, 0xffff)),
            Ipv6BadPayloadLength,
        ),
        (
            "ipv6 ext header length past payload",
            edit(ipv6_chain(&[60]), |f| f[55] = 3),
            Ipv6ExtHeaderTruncated,
        ),
        (
            "ipv6 ext header cut by payload length",
            edit(ipv6_chain(&[60]), |f| {
                set16(f, 18, 4);
                f.truncate(58)
            }),
            Ipv6ExtHeaderTruncated,
        ),
        (
            "ipv6 9 destination options",
            ipv6_chain(&[60; 9]),
            Ipv6TooManyExtHeaders,
        ),
        (
            "ipv6 routing header loop",
            ipv6_chain(&[43; 12]),
            Ipv6TooManyExtHeaders,
        ),
        (
            "ipv6 9 mixed ext headers",
            ipv6_chain(&[0, 60, 43, 60, 43, 60, 51, 60, 60]),
            Ipv6TooManyExtHeaders,
        ),
        (
            "ipv6 hop-by-hop not first",
            ipv6_chain(&[60, 0]),
            Ipv6BadExtHeaderOrder,
        ),
        (
            "ipv6 hop-by-hop twice",
            ipv6_chain(&[0, 0]),
            Ipv6BadExtHeaderOrder,
        ),
        (
            "ipv6 two fragment headers",
            ipv6_chain(&[44, 44]),
            Ipv6BadExtHeaderOrder,
        ),
        (
            "tcp 19 bytes",
            edit(v4[..53].to_vec(), |f| set16(f, 16, 39)),
            TcpTruncated,
        ),
        (
            "tcp data offset 15 past the segment",
            edit(v4.clone(), |f| f[46] = 0xf0),
            TcpBadDataOffset,
        ),
        (
            "tcp data offset 6 past the segment",
            edit(v4.clone(), |f| f[46] = 0x60),
            TcpBadDataOffset,
        ),
        (
            "udp 7 bytes",
            edit(udp[..41].to_vec(), |f| set16(f, 16, 27)),
            UdpTruncated,
        ),
        (
            "udp length > buffer",
            edit(udp.clone(), |f| set16(f, 38, 14)),
            UdpBadLength,
        ),
        (
            "udp length 65535",
            edit(udp.clone(), |f| set16(f, 38, 0xffff)),
            UdpBadLength,
        ),
        (
            "icmp 7 bytes",
            edit(icmp_echo().frame[..41].to_vec(), |f| set16(f, 16, 27)),
            IcmpTruncated,
        ),
        (
            "icmpv6 7 bytes",
            edit(icmpv6_echo().frame[..61].to_vec(), |f| set16(f, 18, 7)),
            Icmpv6Truncated,
        ),
        // Fragments.
        (
            "ipv4 tiny first tcp fragment",
            edit(v4[..42].to_vec(), |f| {
                set16(f, 16, 28);
                set16(f, 20, 0x2000)
            }),
            FragmentTooSmall,
        ),
        (
            "ipv4 first tcp fragment cutting options",
            edit(vlan_ipv4_tcp().frame[..62].to_vec(), |f| {
                set16(f, 20, 44);
                set16(f, 24, 0x2000);
                f[50] = 0x70
            }),
            FragmentTooSmall,
        ),
        (
            "ipv4 empty first udp fragment",
            edit(udp[..34].to_vec(), |f| {
                set16(f, 16, 20);
                set16(f, 20, 0x2000)
            }),
            FragmentTooSmall,
        ),
        (
            "ipv4 empty first icmp fragment",
            edit(icmp_echo().frame[..34].to_vec(), |f| {
                set16(f, 16, 20);
                set16(f, 20, 0x2000)
            }),
            FragmentTooSmall,
        ),
        (
            "ipv6 first fragment without its tcp header",
            edit(ipv6_chain(&[44]), |f| {
                f[56] = 0;
                f[57] = 1;
                set16(f, 18, 16);
                f.truncate(70)
            }),
            FragmentTooSmall,
        ),
        (
            "ipv6 first fragment cutting an ext header",
            edit(ipv6_chain(&[44, 60]), |f| {
                f[56] = 0;
                f[57] = 1;
                f[63] = 3;
            }),
            FragmentTooSmall,
        ),
        (
            "ipv4 non-last fragment of 13 bytes",
            edit(udp.clone(), |f| set16(f, 20, 0x2000)),
            FragmentBadLength,
        ),
        (
            "ipv4 ping of death",
            edit(ipv4_later_fragment().frame, |f| set16(f, 20, 0x1fff)),
            FragmentBadLength,
        ),
        (
            "ipv6 fragment past 65535",
            edit(ipv6_later_fragment().frame, |f| set16(f, 56, 0xfff8)),
            FragmentBadLength,
        ),
        (
            "ipv6 non-last fragment of 20 bytes",
            edit(ipv6_chain(&[44]), |f| {
                f[56] = 0;
                f[57] = 1
            }),
            FragmentBadLength,
        ),
        (
            "ipv4 tcp fragment at offset 8",
            edit(v4.clone(), |f| set16(f, 20, 0x0001)),
            FragmentBadOffset,
        ),
        (
            "ipv6 tcp fragment at offset 8",
            edit(ipv6_chain(&[44]), |f| set16(f, 56, 0x0008)),
            FragmentBadOffset,
        ),
    ];
    for ihl in 0..5u8 {
        c.push((
            "ipv4 IHL < 5",
            edit(v4.clone(), |f| f[14] = 0x40 | ihl),
            Ipv4BadIhl,
        ));
    }
    for doff in 0..5u8 {
        c.push((
            "tcp data offset < 5",
            edit(v4.clone(), |f| f[46] = doff << 4),
            TcpBadDataOffset,
        ));
    }
    for len in 0..8u16 {
        c.push((
            "udp length < 8",
            edit(udp.clone(), |f| set16(f, 38, len)),
            UdpBadLength,
        ));
        c.push((
            "udp length < 8 in first fragment",
            edit(ipv4_first_fragment().frame, |f| set16(f, 38, len)),
            UdpBadLength,
        ));
    }
    c
}

#[test]
fn malformed_frames_give_their_drop_reason() {
    for (name, frame, want) in cases() {
        assert_eq!(parse(&frame), Err(want), "{name}");
        assert_eq!(validate(&frame), Err(want), "validate: {name}");
    }
}

#[test]
fn every_drop_reason_is_reachable() {
    let reached: Vec<ParseError> = cases().into_iter().map(|(_, _, e)| e).collect();
    for e in ParseError::ALL {
        assert!(reached.contains(&e), "no malformed case reaches {e:?}");
    }
}

#[test]
fn chains_at_the_limit_still_parse() {
    // Exactly 8 extension headers (Hop-by-Hop first) is fine.
    let frame = ipv6_chain(&[0, 60, 43, 60, 43, 51, 60, 60]);
    let m = parse(&frame).unwrap();
    assert_eq!(
        (m.ip_proto, m.l4_offset as usize, m.src_port, m.dst_port),
        (6, 54 + 64, 80, 40000)
    );
    // IHL 15 with a total length that covers it.
    let mut frame = ipv4_tcp_syn().frame[..34].to_vec();
    frame[14] = 0x4f;
    frame.extend_from_slice(&[1; 40]); // NOP options
    frame.extend_from_slice(&ipv4_tcp_syn().frame[34..54]);
    set16(&mut frame, 16, 80);
    let m = parse(&frame).unwrap();
    assert_eq!((m.l4_offset, m.src_port, m.dst_port), (74, 12345, 80));
    // TCP data offset 15 with the options present.
    let mut frame = ipv4_tcp_syn().frame[..54].to_vec();
    frame[46] = 0xf0;
    frame.extend_from_slice(&[1; 40]);
    set16(&mut frame, 16, 80);
    let m = parse(&frame).unwrap();
    assert_eq!((m.payload_len, m.l4_header_len(&frame)), (0, 60));
    // UDP length shorter than the IP payload: trailing bytes are not payload.
    let frame = edit(ipv4_udp().frame, |f| set16(f, 38, 10));
    let m = parse(&frame).unwrap();
    assert_eq!(m.payload(&frame), b"he");
}
