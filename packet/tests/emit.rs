//! Writing packets: the builder reproduces the hand-made frames of `common` byte for byte
//! (they stay the independent oracle for emit as for parse), `parse(emit(repr)) == repr`
//! for random Reprs of every protocol, and frames built from random Reprs parse to a `Meta`
//! that says the same.

mod common;

use proptest::prelude::*;
use rampart_packet::build::{self, Checksums, Frame, Network, Transport};
use rampart_packet::checksum::{self, PseudoHeader};
use rampart_packet::ip::ipv4_mapped;
use rampart_packet::{
    arp, ethernet, icmp, icmpv6, ipv4, ipv6, parse, tcp, udp, vlan, EtherType, IpProtocol, Meta,
    ReprError, TcpFlags, L3,
};

const IP6_A: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];
const IP6_B: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
];

/// The builder's description of each hand-made sample it can express (all but IPv4
/// options and AH). The samples carry zero checksums.
fn rebuilt(name: &str) -> Option<Frame> {
    let udp_query = || build::udp_v4([10, 0, 0, 1], 54321, [10, 0, 0, 2], 53, b"hello").ident(1);
    let frame = match name {
        "ipv4_tcp_syn" => build::tcp_v4(
            [192, 168, 0, 1],
            12345,
            [192, 168, 0, 2],
            80,
            TcpFlags::SYN,
            b"",
        )
        .ident(0x1c46)
        .with_ipv4(|ip| ip.dont_frag = true)
        .with_tcp(|t| t.seq_number = 1)
        .pad(60),
        "ipv4_udp" => udp_query().pad(60),
        "qinq_ipv4_udp" => build::udp_v4([172, 16, 0, 1], 7, [172, 16, 0, 2], 9, b"")
            .ident(2)
            .qinq(10, 20)
            .pad(60),
        "vlan_ipv4_tcp" => {
            let flags = TcpFlags::PSH | TcpFlags::ACK;
            let mut f = build::tcp_v4([10, 1, 0, 5], 50000, [10, 1, 0, 6], 80, flags, b"GET /")
                .ident(0x1234)
                .with_ipv4(|ip| ip.dont_frag = true)
                .with_tcp(|t| {
                    (t.seq_number, t.ack_number, t.window_len) = (0x1000, 0x2000, 0x100);
                    t.options.mss = Some(1460);
                })
                .pad(70);
            f.ethernet.vlan = Some(vlan::Repr {
                pcp: 3,
                dei: false,
                vid: 100,
            });
            f
        }
        "icmp_echo" => build::icmp_echo_v4([10, 0, 0, 1], [10, 0, 0, 2], 0x1234, 1, b"ping")
            .ident(3)
            .pad(60),
        "icmp_dest_unreachable" => {
            let quoted = udp_query().checksums(Checksums::Zero).ip_packet().unwrap();
            let repr = icmp::Repr::DstUnreachable {
                code: 3,
                next_hop_mtu: 0,
            };
            build::icmp_v4([10, 0, 0, 254], [10, 0, 0, 1], repr, &quoted[..28]).ident(4)
        }
        "ipv6_tcp" => build::tcp_v6(IP6_B, 80, IP6_A, 40000, TcpFlags::SYN | TcpFlags::ACK, b"")
            .with_tcp(|t| (t.seq_number, t.ack_number, t.window_len) = (9, 2, 0x2000)),
        "icmpv6_echo" => build::icmpv6_echo(IP6_A, IP6_B, 7, 1, b"ping").ttl(255),
        "icmpv6_packet_too_big" => {
            let quoted = build::udp_v6(IP6_A, 5000, IP6_B, 5001, b"")
                .checksums(Checksums::Zero)
                .ip_packet()
                .unwrap();
            build::icmpv6(IP6_B, IP6_A, icmpv6::Repr::PktTooBig { mtu: 1280 }, &quoted)
        }
        "arp_request" => build::arp_request(common::SRC_MAC, [10, 0, 0, 1], [10, 0, 0, 2]).pad(60),
        "lldp" => build::raw(
            EtherType::Unknown(0x88cc),
            &[0x02, 0x07, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00],
        )
        .macs(common::SRC_MAC, [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e]),
        _ => return None,
    };
    Some(frame)
}

/// The fragment samples, as fragments of whole datagrams: (name, datagram, data per
/// fragment, which fragment).
fn rebuilt_fragments() -> Vec<(&'static str, Frame, usize, usize)> {
    let v4 = |payload: &[u8]| {
        build::udp_v4([10, 0, 0, 1], 5000, [10, 0, 0, 2], 5001, payload).ident(0x4242)
    };
    let v6 = |payload: &[u8]| build::udp_v6(IP6_A, 5000, IP6_B, 5001, payload).ident(0xdead_beef);
    let later_v4 = [[0; 16], [0xbb; 16]].concat();
    let first_v6 = [&[1, 2, 3, 4, 5, 6, 7, 8][..], &[0; 48]].concat();
    let later_v6 = [[0; 8], [0xcc; 8]].concat();
    vec![
        ("ipv4_first_fragment", v4(&[0xaa; 248]), 24, 0),
        ("ipv4_later_fragment", v4(&later_v4[..24]).pad(60), 24, 1),
        (
            "ipv6_hbh_frag_udp",
            v6(&first_v6).ext_header(IpProtocol::HopByHop, &[0x01, 0x04, 0, 0, 0, 0]),
            16,
            0,
        ),
        ("ipv6_later_fragment", v6(&later_v6), 16, 1),
    ]
}

#[test]
fn the_builder_reproduces_the_hand_made_frames() {
    let mut covered = 0;
    for sample in common::all() {
        let Some(frame) = rebuilt(sample.name) else {
            continue;
        };
        let bytes = frame.clone().checksums(Checksums::Zero).build().unwrap();
        assert_eq!(bytes, sample.frame, "{}", sample.name);
        // With checksums filled in, only the checksum fields differ, and they verify.
        let full = frame.build().unwrap();
        assert_checksums_ok(&full);
        assert_eq!(zero_checksums(&full), sample.frame, "{}", sample.name);
        covered += 1;
    }
    for (name, frame, data_len, index) in rebuilt_fragments() {
        let sample = common::all().into_iter().find(|s| s.name == name).unwrap();
        let parts = frame
            .checksums(Checksums::Zero)
            .fragments(data_len)
            .unwrap();
        assert_eq!(parts[index], sample.frame, "{name}");
        covered += 1;
    }
    assert_eq!(covered, 15, "every sample but IPv4 options and AH");
}

/// The L4 checksum field offset within the frame, if the frame carries a whole L4 header.
fn l4_checksum_at(meta: &Meta) -> Option<usize> {
    let offset = match meta.ip_proto {
        6 => 16,
        17 => 6,
        1 | 58 => 2,
        _ => return None,
    };
    (meta.has_l4_header() && !meta.is_fragment()).then_some(meta.l4_offset as usize + offset)
}

fn zero_checksums(frame: &[u8]) -> Vec<u8> {
    let meta = parse(frame).unwrap();
    let mut out = frame.to_vec();
    if meta.l3() == L3::Ipv4 {
        out[meta.l3_offset() + 10..meta.l3_offset() + 12].fill(0);
    }
    if let Some(at) = l4_checksum_at(&meta) {
        out[at..at + 2].fill(0);
    }
    out
}

/// The IPv4 header checksum and the L4 checksum (of an unfragmented packet) verify.
fn assert_checksums_ok(frame: &[u8]) {
    let meta = parse(frame).unwrap();
    let l3 = &frame[meta.l3_offset()..];
    let (pseudo, ip_end) = match meta.l3() {
        L3::Ipv4 => {
            let ip = ipv4::Packet::new_checked(l3).unwrap();
            assert!(ip.verify_checksum(), "IPv4 header checksum");
            (
                ip.pseudo_header(),
                meta.l3_offset() + ip.total_len() as usize,
            )
        }
        L3::Ipv6 => {
            let ip = ipv6::Packet::new_checked(l3).unwrap();
            (
                ip.pseudo_header(),
                meta.l3_offset() + 40 + ip.payload_len() as usize,
            )
        }
        _ => return,
    };
    if l4_checksum_at(&meta).is_some() {
        let segment = &frame[meta.l4_offset as usize..ip_end];
        let pseudo_sum = match meta.ip_proto {
            1 => 0,
            proto => pseudo.sum(proto, segment.len()),
        };
        assert!(
            checksum::verify(pseudo_sum, segment),
            "L4 checksum of {meta:?}"
        );
    }
}

#[test]
fn pseudo_only_checksums_hold_the_pseudo_header_sum() {
    let frame = build::tcp_v6(IP6_A, 1, IP6_B, 2, TcpFlags::ACK, b"data")
        .checksums(Checksums::PseudoOnly)
        .build()
        .unwrap();
    let meta = parse(&frame).unwrap();
    let field = u16::from_be_bytes([
        frame[meta.l4_offset as usize + 16],
        frame[meta.l4_offset as usize + 17],
    ]);
    let pseudo = PseudoHeader::V6 {
        src: IP6_A,
        dst: IP6_B,
    };
    assert!(checksum::holds_pseudo_only(field, &pseudo, 6, 24));
    // Rewriting the source as a NAT would: patch the partial sum, then let the "device"
    // finish it, and it equals the full checksum of the rewritten packet.
    let new_src = [0xfd; 16];
    let patched = checksum::update_pseudo_only(field, &IP6_A, &new_src);
    let mut rewritten = build::tcp_v6(new_src, 1, IP6_B, 2, TcpFlags::ACK, b"data")
        .build()
        .unwrap();
    let full = u16::from_be_bytes([rewritten[70], rewritten[71]]);
    rewritten[70..72].copy_from_slice(&patched.to_be_bytes());
    let finished = !checksum::sum(&rewritten[54..]);
    assert_eq!(finished, full);
    let icmp = build::icmp_echo_v4([1; 4], [2; 4], 1, 1, b"")
        .checksums(Checksums::PseudoOnly)
        .build()
        .unwrap();
    assert_eq!(&icmp[36..38], &[0, 0], "ICMPv4 has no pseudo-header");
}

#[test]
fn builder_errors_and_odd_cases() {
    let huge = build::udp_v4([1; 4], 1, [2; 4], 2, &[0; 65528]).build();
    assert_eq!(huge, Err(ReprError::TooLong { len: 65536 }));
    let arp = build::arp_reply([2; 6], [10, 0, 0, 2], [4; 6], [10, 0, 0, 1])
        .build()
        .unwrap();
    let view = arp::Packet::new_checked(&arp[14..]).unwrap();
    assert_eq!(
        arp::Repr::parse(&view).unwrap().operation,
        arp::Operation::Reply
    );
    assert_eq!(&arp[..6], &[4; 6]);
    assert_eq!(
        build::raw(EtherType::Unknown(0x88b5), b"x")
            .fragments(8)
            .unwrap()
            .len(),
        1
    );
    let ext = |n| {
        build::udp_v6([1; 16], 1, [2; 16], 2, b"").ext_header(IpProtocol::Ipv6Opts, &vec![0; n])
    };
    assert_eq!(ext(2047).build(), Err(ReprError::TooLong { len: 2049 }));
    let longest = ext(2046).build().unwrap();
    assert_eq!(parse(&longest).unwrap().l4_offset as usize, 14 + 40 + 2048);
    // An empty datagram still makes one fragment.
    let esp = |len| {
        build::ipv6(
            [1; 16],
            [2; 16],
            Transport::Raw(IpProtocol::Esp),
            &vec![0; len],
        )
    };
    assert_eq!(esp(0).fragments(8).unwrap().len(), 1);
    assert_eq!(esp(65535).fragments(32768).unwrap().len(), 2);
    assert_eq!(
        esp(65537).fragments(32768),
        Err(ReprError::TooLong { len: 65536 })
    );
}

// ---------------------------------------------------------------- strategies

fn ethertype() -> impl Strategy<Value = EtherType> {
    any::<u16>()
        .prop_filter("a TPID after the tags is read as another tag", |&v| {
            v != 0x8100 && v != 0x88a8
        })
        .prop_map(EtherType::from)
}

fn vlan_tag() -> impl Strategy<Value = vlan::Repr> {
    (0u8..8, any::<bool>(), 0u16..4096).prop_map(|(pcp, dei, vid)| vlan::Repr { pcp, dei, vid })
}

fn ethernet_repr() -> impl Strategy<Value = ethernet::Repr> {
    (
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
        prop::option::of(vlan_tag()),
        prop::option::of(vlan_tag()),
        ethertype(),
    )
        .prop_map(
            |(src_addr, dst_addr, outer_vlan, vlan, ethertype)| ethernet::Repr {
                src_addr,
                dst_addr,
                outer_vlan,
                vlan,
                ethertype,
            },
        )
}

fn ipv4_repr() -> impl Strategy<Value = ipv4::Repr> {
    (
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            0usize..64,
            any::<u8>(),
            any::<u16>(),
        ),
        (0u8..64, 0u8..4, any::<bool>(), any::<bool>(), 0u16..8192),
    )
        .prop_map(
            |((src, dst, proto, payload_len, ttl, ident), (dscp, ecn, df, mf, units))| {
                let mut repr = ipv4::Repr::new(src, dst, proto.into(), payload_len);
                (repr.ttl, repr.ident, repr.dscp, repr.ecn) = (ttl, ident, dscp, ecn);
                (repr.dont_frag, repr.more_frags, repr.frag_offset) = (df, mf, units * 8);
                repr
            },
        )
}

fn ipv6_repr() -> impl Strategy<Value = ipv6::Repr> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u8>(),
        0usize..64,
        any::<u8>(),
        any::<u8>(),
        0u32..1 << 20,
    )
        .prop_map(
            |(src, dst, next, payload_len, hop_limit, traffic_class, flow_label)| {
                let mut repr = ipv6::Repr::new(src, dst, next.into(), payload_len);
                (repr.hop_limit, repr.traffic_class, repr.flow_label) =
                    (hop_limit, traffic_class, flow_label);
                repr
            },
        )
}

fn tcp_repr() -> impl Strategy<Value = tcp::Repr> {
    let options = (
        prop::option::of(any::<u16>()),
        prop::option::of(any::<u8>()),
        any::<bool>(),
        prop::option::of(any::<(u32, u32)>()),
    )
        .prop_map(
            |(mss, window_scale, sack_permitted, timestamps)| tcp::Options {
                mss,
                window_scale,
                sack_permitted,
                timestamps,
            },
        );
    (
        any::<(u16, u16, u32, u32)>(),
        any::<(u8, u16, u16)>(),
        options,
    )
        .prop_map(
            |(
                (src_port, dst_port, seq_number, ack_number),
                (flags, window_len, urgent_at),
                options,
            )| tcp::Repr {
                src_port,
                dst_port,
                seq_number,
                ack_number,
                flags: TcpFlags(flags),
                window_len,
                urgent_at,
                options,
            },
        )
}

fn icmp_repr() -> impl Strategy<Value = icmp::Repr> {
    prop_oneof![
        any::<(u16, u16)>().prop_map(|(ident, seq_no)| icmp::Repr::EchoRequest { ident, seq_no }),
        any::<(u16, u16)>().prop_map(|(ident, seq_no)| icmp::Repr::EchoReply { ident, seq_no }),
        any::<(u8, u16)>()
            .prop_map(|(code, next_hop_mtu)| icmp::Repr::DstUnreachable { code, next_hop_mtu }),
        any::<u8>().prop_map(|code| icmp::Repr::TimeExceeded { code }),
        any::<(u8, u8)>().prop_map(|(code, pointer)| icmp::Repr::ParamProblem { code, pointer }),
        any::<(u8, u8, [u8; 4])>()
            .prop_filter("types with their own variant", |(t, ..)| ![0, 3, 8, 11, 12]
                .contains(t))
            .prop_map(|(msg_type, code, header_data)| icmp::Repr::Unknown {
                msg_type,
                code,
                header_data
            }),
    ]
}

fn icmpv6_repr() -> impl Strategy<Value = icmpv6::Repr> {
    use icmpv6::Repr as R;
    prop_oneof![
        any::<u8>().prop_map(|code| R::DstUnreachable { code }),
        any::<u32>().prop_map(|mtu| R::PktTooBig { mtu }),
        any::<u8>().prop_map(|code| R::TimeExceeded { code }),
        any::<(u8, u32)>().prop_map(|(code, pointer)| R::ParamProblem { code, pointer }),
        any::<(u16, u16)>().prop_map(|(ident, seq_no)| R::EchoRequest { ident, seq_no }),
        any::<(u16, u16)>().prop_map(|(ident, seq_no)| R::EchoReply { ident, seq_no }),
        Just(R::RouterSolicit),
        any::<(u8, u8, u16, u32, u32)>().prop_map(
            |(hop_limit, flags, router_lifetime, reachable_time, retrans_time)| {
                R::RouterAdvert {
                    hop_limit,
                    flags,
                    router_lifetime,
                    reachable_time,
                    retrans_time,
                }
            }
        ),
        any::<[u8; 16]>().prop_map(|target| R::NeighborSolicit { target }),
        any::<(u8, [u8; 16])>().prop_map(|(flags, target)| R::NeighborAdvert { flags, target }),
        any::<(u8, u8, [u8; 4])>()
            .prop_filter("types with their own variant", |(t, ..)| ![
                1, 2, 3, 4, 128, 129, 133, 134, 135, 136
            ]
            .contains(t))
            .prop_map(|(msg_type, code, header_data)| R::Unknown {
                msg_type,
                code,
                header_data
            }),
    ]
}

fn pseudo_header() -> impl Strategy<Value = PseudoHeader> {
    prop_oneof![
        any::<([u8; 4], [u8; 4])>().prop_map(|(src, dst)| PseudoHeader::V4 { src, dst }),
        any::<([u8; 16], [u8; 16])>().prop_map(|(src, dst)| PseudoHeader::V6 { src, dst }),
    ]
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
}

/// A whole IP frame: IPv4 or IPv6, TCP/UDP/ICMP(v6), maybe tagged.
fn ip_frame() -> impl Strategy<Value = Frame> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        prop_oneof![
            tcp_repr().prop_map(Transport::Tcp),
            any::<(u16, u16)>()
                .prop_map(|(src_port, dst_port)| Transport::Udp(udp::Repr { src_port, dst_port })),
            icmp_repr().prop_map(Transport::Icmp),
        ],
    )
        .prop_map(|(src, dst, transport)| (ipv4_mapped(src), ipv4_mapped(dst), transport));
    let v6 = (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        prop_oneof![
            tcp_repr().prop_map(Transport::Tcp),
            any::<(u16, u16)>()
                .prop_map(|(src_port, dst_port)| Transport::Udp(udp::Repr { src_port, dst_port })),
            icmpv6_repr().prop_map(Transport::Icmpv6),
        ],
    );
    (
        prop_oneof![v4, v6],
        payload(),
        (prop::option::of(vlan_tag()), prop::option::of(vlan_tag())),
        1u8..=255,
    )
        .prop_map(
            |((src, dst, transport), payload, (outer_vlan, vlan), ttl)| {
                let frame = match (
                    src[..12] == ipv4_mapped([0; 4])[..12],
                    dst[..12] == ipv4_mapped([0; 4])[..12],
                ) {
                    (true, true) if !matches!(transport, Transport::Icmpv6(_)) => {
                        let (s, d) = (src[12..].try_into().unwrap(), dst[12..].try_into().unwrap());
                        build::ipv4(s, d, transport, &payload)
                    }
                    _ => build::ipv6(src, dst, transport, &payload),
                };
                let mut frame = frame.ttl(ttl);
                (frame.ethernet.outer_vlan, frame.ethernet.vlan) = (outer_vlan, vlan);
                frame
            },
        )
}

// ---------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ethernet_round_trips(repr in ethernet_repr()) {
        let mut buf = vec![0u8; repr.header_len() + 4];
        prop_assert_eq!(repr.emit(&mut buf), Ok(repr.header_len()));
        let view = ethernet::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ethernet::Repr::parse(&view), Ok(repr));
    }

    #[test]
    fn arp_round_trips(op in any::<u16>(), addrs in any::<([u8; 6], [u8; 4], [u8; 6], [u8; 4])>()) {
        let repr = arp::Repr {
            operation: op.into(),
            source_hardware_addr: addrs.0,
            source_protocol_addr: addrs.1,
            target_hardware_addr: addrs.2,
            target_protocol_addr: addrs.3,
        };
        let mut buf = [0u8; 28];
        repr.emit(&mut buf).unwrap();
        prop_assert_eq!(arp::Repr::parse(&arp::Packet::new_checked(&buf[..]).unwrap()), Ok(repr));
    }

    #[test]
    fn ipv4_round_trips(repr in ipv4_repr()) {
        let mut buf = vec![0u8; repr.buffer_len()];
        prop_assert_eq!(repr.emit(&mut buf), Ok(20));
        let view = ipv4::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(view.verify_checksum());
        prop_assert_eq!(ipv4::Repr::parse(&view), Ok(repr));
    }

    #[test]
    fn ipv6_round_trips(repr in ipv6_repr(), frag in any::<(u8, u16, bool, u32)>()) {
        let mut buf = vec![0u8; repr.buffer_len()];
        prop_assert_eq!(repr.emit(&mut buf), Ok(40));
        let view = ipv6::Packet::new_checked(&buf[..]).unwrap();
        prop_assert_eq!(ipv6::Repr::parse(&view), Ok(repr));
        let fragment = ipv6::FragmentRepr { next_header: frag.0.into(), offset: frag.1 & 0xfff8, more: frag.2, ident: frag.3 };
        let mut buf = [0u8; 8];
        fragment.emit(&mut buf).unwrap();
        let header = ipv6::ExtHeader::new_checked(44, &buf[..]).unwrap();
        prop_assert_eq!(ipv6::FragmentRepr::parse(&header), fragment);
    }

    #[test]
    fn tcp_round_trips(repr in tcp_repr(), data in payload(), pseudo in pseudo_header()) {
        let mut buf = vec![0u8; repr.buffer_len(data.len())];
        prop_assert_eq!(repr.emit(&mut buf, &data, &pseudo), Ok(buf.len()));
        let view = tcp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(view.verify_checksum(&pseudo));
        prop_assert_eq!(view.payload(), &data[..]);
        prop_assert_eq!(tcp::Repr::parse(&view), Ok(repr));
    }

    #[test]
    fn udp_round_trips(ports in any::<(u16, u16)>(), data in payload(), pseudo in pseudo_header()) {
        let repr = udp::Repr { src_port: ports.0, dst_port: ports.1 };
        let mut buf = vec![0u8; repr.buffer_len(data.len())];
        prop_assert_eq!(repr.emit(&mut buf, &data, &pseudo), Ok(buf.len()));
        let view = udp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(view.verify_checksum(&pseudo) && view.checksum() != 0);
        prop_assert_eq!(view.payload(), &data[..]);
        prop_assert_eq!(udp::Repr::parse(&view), Ok(repr));
    }

    #[test]
    fn icmp_round_trips(repr in icmp_repr(), data in payload()) {
        let mut buf = vec![0u8; repr.buffer_len(data.len())];
        prop_assert_eq!(repr.emit(&mut buf, &data), Ok(buf.len()));
        let view = icmp::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(view.verify_checksum());
        prop_assert_eq!(view.payload(), &data[..]);
        prop_assert_eq!(icmp::Repr::parse(&view), Ok(repr));
    }

    #[test]
    fn icmpv6_round_trips(repr in icmpv6_repr(), data in payload(), pseudo in pseudo_header()) {
        let mut buf = vec![0u8; repr.buffer_len(data.len())];
        prop_assert_eq!(repr.emit(&mut buf, &data, &pseudo), Ok(buf.len()));
        let view = icmpv6::Packet::new_checked(&buf[..]).unwrap();
        prop_assert!(view.verify_checksum(&pseudo));
        prop_assert_eq!(&buf[repr.header_len()..], &data[..]);
        prop_assert_eq!(icmpv6::Repr::parse(&view), Ok(repr));
    }

    /// A frame built from random Reprs parses to a Meta with its addresses, ports,
    /// protocol, tag and payload, and its checksums verify.
    #[test]
    fn built_frames_parse_to_their_reprs(frame in ip_frame()) {
        let bytes = frame.build().unwrap();
        let meta = parse(&bytes).unwrap();
        assert_checksums_ok(&bytes);
        let (outer, inner) = (frame.ethernet.outer_vlan, frame.ethernet.vlan);
        prop_assert_eq!(meta.vlan(), outer.or(inner).map(|t| t.vid));
        let qinq = outer.and(inner).map(|t| t.vid);
        prop_assert_eq!(meta.inner_vlan(&bytes), qinq);
        let (src, dst, transport, ttl) = match &frame.network {
            Network::Ipv4 { ip, transport } => (ipv4_mapped(ip.src_addr), ipv4_mapped(ip.dst_addr), *transport, ip.ttl),
            Network::Ipv6 { ip, transport, .. } => (ip.src_addr, ip.dst_addr, *transport, ip.hop_limit),
            _ => unreachable!(),
        };
        prop_assert_eq!((meta.src_addr, meta.dst_addr), (src, dst));
        prop_assert_eq!(meta.ip_protocol(), transport.protocol());
        let l3 = &bytes[meta.l3_offset()..];
        let ttl_seen = if meta.l3() == L3::Ipv4 { l3[8] } else { l3[7] };
        prop_assert_eq!(ttl_seen, ttl);
        let l4 = &bytes[meta.l4_offset as usize..];
        match transport {
            Transport::Tcp(repr) => {
                prop_assert_eq!((meta.src_port, meta.dst_port), (repr.src_port, repr.dst_port));
                prop_assert_eq!(meta.tcp_flags, repr.flags);
                prop_assert_eq!(tcp::Repr::parse(&tcp::Packet::new_checked(l4).unwrap()), Ok(repr));
            }
            Transport::Udp(repr) => prop_assert_eq!((meta.src_port, meta.dst_port), (repr.src_port, repr.dst_port)),
            Transport::Icmp(repr) => {
                prop_assert_eq!(icmp::Repr::parse(&icmp::Packet::new_checked(l4).unwrap()), Ok(repr));
                prop_assert_eq!(meta.icmp_type(), Some(l4[0]));
            }
            Transport::Icmpv6(repr) => {
                prop_assert_eq!(icmpv6::Repr::parse(&icmpv6::Packet::new_checked(l4).unwrap()), Ok(repr));
                prop_assert_eq!(meta.icmp_type(), Some(l4[0]));
            }
            Transport::Raw(_) => {}
        }
        let header_len = match transport { Transport::Icmpv6(r) => r.header_len() - 8, _ => 0 };
        prop_assert_eq!(&meta.payload(&bytes)[header_len..], &frame.payload[..]);
    }

    /// Fragments of a built datagram parse as fragments of it, with offsets that add up;
    /// those the parser must drop (RFC 1858, RFC 7112) fail with the expected reason.
    #[test]
    fn fragments_parse_and_cover_the_datagram(frame in ip_frame(), data_len in 8usize..64, ident in any::<u32>()) {
        let frame = frame.ident(ident);
        let whole = frame.build().unwrap();
        let whole_meta = parse(&whole).unwrap();
        let datagram_len = whole.len() - whole_meta.l4_offset as usize;
        // Where fragment data starts: after the IPv4 header, or after the IPv6 Fragment header.
        let data_start = whole_meta.l4_offset as usize + if whole_meta.l3() == L3::Ipv6 { 8 } else { 0 };
        let parts = frame.fragments(data_len).unwrap();
        let step = data_len / 8 * 8;
        let mut covered = 0;
        for (i, part) in parts.iter().enumerate() {
            covered += part.len() - data_start;
            let meta = match parse(part) {
                Ok(meta) => meta,
                Err(rampart_packet::ParseError::FragmentTooSmall) if i == 0 => continue,
                Err(rampart_packet::ParseError::FragmentBadOffset) if i * step == 8 && whole_meta.ip_proto == 6 => continue,
                Err(e) => panic!("fragment {i}: {e:?}"),
            };
            prop_assert_eq!((meta.src_addr, meta.dst_addr), (whole_meta.src_addr, whole_meta.dst_addr));
            prop_assert_eq!(meta.ip_proto, whole_meta.ip_proto);
            prop_assert_eq!(meta.is_fragment(), parts.len() > 1);
            prop_assert_eq!(meta.more_fragments(), i + 1 < parts.len());
            prop_assert_eq!(meta.frag_offset() as usize, i * step);
            if meta.l3() == L3::Ipv6 {
                prop_assert_eq!(meta.frag_id, ident);
            }
        }
        prop_assert_eq!(covered, datagram_len);
    }
}
