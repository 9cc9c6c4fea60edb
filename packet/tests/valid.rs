//! Hand-made valid frames parse to exactly the expected `Meta`.

mod common;

use common::*;
use rampart_packet::{ipv4, parse, udp, EtherType, IpProtocol, Meta, L3};
use std::net::{IpAddr, Ipv4Addr};

#[test]
fn meta_is_one_cache_line() {
    assert_eq!(std::mem::size_of::<Meta>(), 64);
}

macro_rules! sample_tests {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() {
            let sample = common::$name();
            let meta = sample.check();
            assert_sane(&sample.frame, &meta);
        }
    )*};
}

/// One test per sample, named after it (`parses::ipv4_tcp_syn`, ...).
mod parses {
    use super::common::{self, assert_sane};

    sample_tests!(
        ipv4_tcp_syn,
        ipv4_udp,
        ipv4_options_udp,
        vlan_ipv4_tcp,
        qinq_ipv4_udp,
        icmp_echo,
        icmp_dest_unreachable,
        ipv4_first_fragment,
        ipv4_later_fragment,
        ipv6_tcp,
        ipv6_hbh_frag_udp,
        ipv6_later_fragment,
        ipv6_dstopts_ah_tcp,
        icmpv6_echo,
        icmpv6_packet_too_big,
        arp_request,
        lldp,
    );
}

#[test]
fn typed_accessors() {
    let s = ipv4_tcp_syn();
    let m = parse(&s.frame).unwrap();
    assert_eq!(m.ether_type(), EtherType::Ipv4);
    assert_eq!(m.ip_protocol(), IpProtocol::Tcp);
    assert_eq!(m.src_ip(), Some(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1))));
    assert_eq!(m.dst_ip(), Some(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 2))));
    assert!(m.tcp_flags.syn() && !m.tcp_flags.ack());
    assert!(m.has_ports() && m.has_l4_header() && !m.is_icmp());
    assert_eq!(m.vlan_tags(), 0);
    assert_eq!(m.icmp_type(), None);

    let s = ipv6_tcp();
    let m = parse(&s.frame).unwrap();
    assert_eq!(m.src_ip(), Some(IpAddr::V6("2001:db8::2".parse().unwrap())));

    let s = icmp_dest_unreachable();
    let m = parse(&s.frame).unwrap();
    assert_eq!((m.icmp_type(), m.icmp_code()), (Some(3), Some(3)));
    assert!(!m.has_ports());
    // The inner header at the advertised offset is the original (cut-short) datagram.
    let inner = ipv4::Packet::new_unchecked(&s.frame[m.icmp_inner_offset().unwrap()..]);
    assert_eq!(
        (inner.version(), inner.protocol(), inner.dst_addr()),
        (4, IpProtocol::Udp, [10, 0, 0, 2])
    );
    let inner_udp =
        udp::Packet::new_unchecked(&s.frame[m.icmp_inner_offset().unwrap() + inner.header_len()..]);
    assert_eq!((inner_udp.src_port(), inner_udp.dst_port()), (54321, 53));

    let s = icmpv6_echo();
    let m = parse(&s.frame).unwrap();
    assert_eq!((m.icmp_type(), m.icmp_code()), (Some(128), Some(0)));
    assert_eq!(m.icmp_inner_offset(), None);

    let s = arp_request();
    let m = parse(&s.frame).unwrap();
    assert_eq!(m.src_ip(), Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert!(!m.is_ip() && !m.has_l4_header());

    let s = lldp();
    let m = parse(&s.frame).unwrap();
    assert_eq!(m.src_ip(), None);
    assert_eq!(m.ether_type(), EtherType::Unknown(0x88cc));

    let s = ipv6_later_fragment();
    let m = parse(&s.frame).unwrap();
    assert!(m.is_later_fragment() && !m.has_l4_header() && !m.has_ports());
    assert_eq!(m.l4_header_len(&s.frame), 0);
}

#[test]
fn priority_tagged_frame_has_vlan_zero() {
    let mut frame = ipv4_udp().frame;
    frame.splice(12..12, [0x81, 0x00, 0xe0, 0x00]); // PCP 7, VID 0
    let m = parse(&frame).unwrap();
    assert_eq!(m.vlan(), Some(0));
    assert_eq!(m.l3_offset(), 18);
    assert_eq!(m.inner_vlan(&frame), None);
    assert_eq!((m.src_port, m.dst_port), (54321, 53));
}

#[test]
fn double_8100_tags_are_accepted_as_qinq() {
    let mut frame = ipv4_udp().frame;
    frame.splice(12..12, [0x81, 0x00, 0x00, 0x05, 0x81, 0x00, 0x00, 0x06]);
    let m = parse(&frame).unwrap();
    assert_eq!(
        (m.vlan(), m.inner_vlan(&frame), m.l3_offset()),
        (Some(5), Some(6), 22)
    );
    assert_eq!(m.l3(), L3::Ipv4);
}

#[test]
fn ipv4_protocol_zero_and_unknown_protocols_have_no_ports() {
    for proto in [0u8, 47, 50, 132, 58] {
        let mut frame = ipv4_udp().frame;
        frame[23] = proto;
        let m = parse(&frame).unwrap();
        assert_eq!(m.ip_proto, proto);
        assert_eq!((m.src_port, m.dst_port), (0, 0));
        assert_eq!(m.l4_offset, 34);
        assert_eq!(m.payload_len, 13, "whole IP payload for protocol {proto}");
        assert_eq!(m.payload(&frame), &frame[34..47]);
    }
}

#[test]
fn ipv6_no_next_header_and_esp_end_the_walk() {
    let mut frame = ipv6_tcp().frame;
    for nh in [59u8, 50] {
        frame[20] = nh;
        let m = parse(&frame).unwrap();
        assert_eq!((m.ip_proto, m.l4_offset, m.payload_len), (nh, 54, 20));
        assert_eq!((m.src_port, m.dst_port), (0, 0));
    }
}

#[test]
fn ipv6_atomic_fragment_is_not_a_fragment() {
    // Fragment header with offset 0 and M clear (RFC 6946) in front of TCP.
    let s = ipv6_tcp();
    let mut frame = s.frame[..54].to_vec();
    frame[18..20].copy_from_slice(&[0, 28]);
    frame[20] = 44;
    frame.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 9]);
    frame.extend_from_slice(&s.frame[54..]);
    let m = parse(&frame).unwrap();
    assert!(!m.is_fragment());
    assert_eq!(m.frag_id, 9);
    assert_eq!(
        (m.ip_proto, m.l4_offset, m.src_port, m.dst_port),
        (6, 62, 80, 40000)
    );
}

#[test]
fn icmp_types_without_identifier_leave_dst_port_zero() {
    let mut frame = icmp_echo().frame;
    frame[34] = 11; // time exceeded
    frame[35] = 1;
    let m = parse(&frame).unwrap();
    assert_eq!((m.src_port, m.dst_port), (0x0b01, 0));
    assert_eq!(m.icmp_inner_offset(), Some(42));
}

#[test]
fn non_ethernet_arp_parses_without_addresses() {
    let mut frame = arp_request().frame;
    frame[14..16].copy_from_slice(&[0, 6]); // IEEE 802 hardware type
    let m = parse(&frame).unwrap();
    assert_eq!(m.l3(), L3::Arp);
    assert_eq!((m.src_addr, m.dst_addr), ([0; 16], [0; 16]));
    assert_eq!(m.src_ip(), None);
}

#[test]
fn fuzz_seed_corpus_holds_every_sample() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/parse");
    for sample in common::all() {
        let seed = std::fs::read(dir.join(sample.name)).unwrap_or_else(|e| {
            panic!(
                "seed {} missing ({e}); copy the sample bytes there",
                sample.name
            )
        });
        assert_eq!(seed, sample.frame, "seed {} is stale", sample.name);
    }
}
