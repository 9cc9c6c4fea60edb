//! Hand-made test frames, written out byte by byte (lengths computed by hand, not by the
//! code under test), each with the `Meta` it must parse to. Shared by the integration
//! tests, the benchmark and the fuzz-seed generator test.
#![allow(dead_code)]

use rampart_packet::{parse, Meta, L3};

pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
const ETH_IPV4: [u8; 14] = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00];
const ETH_IPV6: [u8; 14] = [0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x86, 0xdd];
const IP6_A: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
];
const IP6_B: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
];

pub const fn v4(a: u8, b: u8, c: u8, d: u8) -> [u8; 16] {
    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d]
}

/// What a truncated copy of the frame must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// IPv4 header of `header_len` bytes at `l3`, packet ends at `end`.
    Ipv4 {
        l3: usize,
        header_len: usize,
        end: usize,
    },
    /// IPv6 at `l3`, packet ends at `end`.
    Ipv6 { l3: usize, end: usize },
    /// ARP at `l3`, 28 bytes.
    Arp { l3: usize },
    /// Unknown EtherType at `l3`.
    Other { l3: usize },
}

/// Every observable `Meta` value of a parsed frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub vlan: Option<u16>,
    pub inner_vlan: Option<u16>,
    pub ethertype: u16,
    pub l3: L3,
    pub l3_offset: usize,
    pub l4_offset: u16,
    pub ip_proto: u8,
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub tcp_flags: u8,
    pub payload_len: u16,
    pub payload: Vec<u8>,
    pub is_fragment: bool,
    pub is_first_fragment: bool,
    pub more_fragments: bool,
    pub frag_offset: u16,
    pub frag_id: u32,
    pub icmp_inner_offset: Option<usize>,
}

impl Expect {
    fn base(ethertype: u16, l3: L3) -> Self {
        Expect {
            dst_mac: DST_MAC,
            src_mac: SRC_MAC,
            vlan: None,
            inner_vlan: None,
            ethertype,
            l3,
            l3_offset: 14,
            l4_offset: 0,
            ip_proto: 0,
            src_addr: [0; 16],
            dst_addr: [0; 16],
            src_port: 0,
            dst_port: 0,
            tcp_flags: 0,
            payload_len: 0,
            payload: Vec::new(),
            is_fragment: false,
            is_first_fragment: false,
            more_fragments: false,
            frag_offset: 0,
            frag_id: 0,
            icmp_inner_offset: None,
        }
    }

    /// The observed values of `meta`, in the same shape, for a whole-struct comparison.
    pub fn observe(meta: &Meta, frame: &[u8]) -> Self {
        Expect {
            dst_mac: meta.dst_mac,
            src_mac: meta.src_mac,
            vlan: meta.vlan(),
            inner_vlan: meta.inner_vlan(frame),
            ethertype: meta.ethertype,
            l3: meta.l3(),
            l3_offset: meta.l3_offset(),
            l4_offset: meta.l4_offset,
            ip_proto: meta.ip_proto,
            src_addr: meta.src_addr,
            dst_addr: meta.dst_addr,
            src_port: meta.src_port,
            dst_port: meta.dst_port,
            tcp_flags: meta.tcp_flags.0,
            payload_len: meta.payload_len,
            payload: meta.payload(frame).to_vec(),
            is_fragment: meta.is_fragment(),
            is_first_fragment: meta.is_first_fragment(),
            more_fragments: meta.more_fragments(),
            frag_offset: meta.frag_offset(),
            frag_id: meta.frag_id,
            icmp_inner_offset: meta.icmp_inner_offset(),
        }
    }
}

pub struct Sample {
    pub name: &'static str,
    pub frame: Vec<u8>,
    pub layout: Layout,
    pub expect: Expect,
}

impl Sample {
    /// Parse and compare every field.
    pub fn check(&self) -> Meta {
        let meta = parse(&self.frame).unwrap_or_else(|e| panic!("{}: {e:?}", self.name));
        assert_eq!(
            Expect::observe(&meta, &self.frame),
            self.expect,
            "{}",
            self.name
        );
        meta
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// IPv4 TCP SYN, 192.168.0.1:12345 → 192.168.0.2:80, padded to 60 bytes.
pub fn ipv4_tcp_syn() -> Sample {
    let frame = cat(&[
        &ETH_IPV4,
        &[
            0x45, 0x00, 0x00, 0x28, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,
        ],
        &[192, 168, 0, 1, 192, 168, 0, 2],
        &[
            0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ],
        &[0; 6],
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.l4_offset = 34;
    e.ip_proto = 6;
    e.src_addr = v4(192, 168, 0, 1);
    e.dst_addr = v4(192, 168, 0, 2);
    (e.src_port, e.dst_port) = (12345, 80);
    e.tcp_flags = 0x02;
    e.frag_id = 0x1c46;
    Sample {
        name: "ipv4_tcp_syn",
        frame,
        layout: Layout::Ipv4 {
            l3: 14,
            header_len: 20,
            end: 54,
        },
        expect: e,
    }
}

/// IPv4 UDP 10.0.0.1:54321 → 10.0.0.2:53 carrying "hello", padded to 60 bytes.
pub fn ipv4_udp() -> Sample {
    let frame = cat(&[
        &ETH_IPV4,
        &[
            0x45, 0x00, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,
        ],
        &[10, 0, 0, 1, 10, 0, 0, 2],
        &[0xd4, 0x31, 0x00, 0x35, 0x00, 0x0d, 0x00, 0x00],
        b"hello",
        &[0; 13],
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.l4_offset = 34;
    e.ip_proto = 17;
    e.src_addr = v4(10, 0, 0, 1);
    e.dst_addr = v4(10, 0, 0, 2);
    (e.src_port, e.dst_port) = (54321, 53);
    e.payload_len = 5;
    e.payload = b"hello".to_vec();
    e.frag_id = 1;
    Sample {
        name: "ipv4_udp",
        frame,
        layout: Layout::Ipv4 {
            l3: 14,
            header_len: 20,
            end: 47,
        },
        expect: e,
    }
}

/// IPv4 with IHL 7 (router alert + NOP NOP NOP EOL) carrying UDP 1024 → 2048.
pub fn ipv4_options_udp() -> Sample {
    let frame = cat(&[
        &ETH_IPV4,
        &[
            0x47, 0x00, 0x00, 0x28, 0xab, 0xcd, 0x00, 0x00, 0x01, 0x11, 0x00, 0x00,
        ],
        &[10, 0, 0, 1, 224, 0, 0, 22],
        &[0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00],
        &[0x04, 0x00, 0x08, 0x00, 0x00, 0x0c, 0x00, 0x00],
        &[0xde, 0xad, 0xbe, 0xef],
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.l4_offset = 42;
    e.ip_proto = 17;
    e.src_addr = v4(10, 0, 0, 1);
    e.dst_addr = v4(224, 0, 0, 22);
    (e.src_port, e.dst_port) = (1024, 2048);
    e.payload_len = 4;
    e.payload = vec![0xde, 0xad, 0xbe, 0xef];
    e.frag_id = 0xabcd;
    Sample {
        name: "ipv4_options_udp",
        frame,
        layout: Layout::Ipv4 {
            l3: 14,
            header_len: 28,
            end: 54,
        },
        expect: e,
    }
}

/// 802.1Q VLAN 100 (PCP 3), IPv4 TCP PSH|ACK with an MSS option carrying "GET /".
pub fn vlan_ipv4_tcp() -> Sample {
    let frame = cat(&[
        &DST_MAC,
        &SRC_MAC,
        &[0x81, 0x00, 0x60, 0x64, 0x08, 0x00],
        &[
            0x45, 0x00, 0x00, 0x31, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,
        ],
        &[10, 1, 0, 5, 10, 1, 0, 6],
        &[
            0xc3, 0x50, 0x00, 0x50, 0, 0, 0x10, 0, 0, 0, 0x20, 0, 0x60, 0x18, 0x01, 0x00, 0, 0, 0,
            0,
        ],
        &[0x02, 0x04, 0x05, 0xb4],
        b"GET /",
        &[0; 3],
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.vlan = Some(100);
    e.l3_offset = 18;
    e.l4_offset = 38;
    e.ip_proto = 6;
    e.src_addr = v4(10, 1, 0, 5);
    e.dst_addr = v4(10, 1, 0, 6);
    (e.src_port, e.dst_port) = (50000, 80);
    e.tcp_flags = 0x18;
    e.payload_len = 5;
    e.payload = b"GET /".to_vec();
    e.frag_id = 0x1234;
    Sample {
        name: "vlan_ipv4_tcp",
        frame,
        layout: Layout::Ipv4 {
            l3: 18,
            header_len: 20,
            end: 67,
        },
        expect: e,
    }
}

/// QinQ: S-tag VID 10 (0x88a8), C-tag VID 20 (0x8100), IPv4 UDP 7 → 9, no data.
pub fn qinq_ipv4_udp() -> Sample {
    let frame = cat(&[
        &DST_MAC,
        &SRC_MAC,
        &[0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14, 0x08, 0x00],
        &[
            0x45, 0x00, 0x00, 0x1c, 0x00, 0x02, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00,
        ],
        &[172, 16, 0, 1, 172, 16, 0, 2],
        &[0x00, 0x07, 0x00, 0x09, 0x00, 0x08, 0x00, 0x00],
        &[0; 10],
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.vlan = Some(10);
    e.inner_vlan = Some(20);
    e.l3_offset = 22;
    e.l4_offset = 42;
    e.ip_proto = 17;
    e.src_addr = v4(172, 16, 0, 1);
    e.dst_addr = v4(172, 16, 0, 2);
    (e.src_port, e.dst_port) = (7, 9);
    e.frag_id = 2;
    Sample {
        name: "qinq_ipv4_udp",
        frame,
        layout: Layout::Ipv4 {
            l3: 22,
            header_len: 20,
            end: 50,
        },
        expect: e,
    }
}

/// ICMP echo request id 0x1234 seq 1, "ping".
pub fn icmp_echo() -> Sample {
    let frame = cat(&[
        &ETH_IPV4,
        &[
            0x45, 0x00, 0x00, 0x20, 0x00, 0x03, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00,
        ],
        &[10, 0, 0, 1, 10, 0, 0, 2],
        &[0x08, 0x00, 0x00, 0x00, 0x12, 0x34, 0x00, 0x01],
        b"ping",
        &[0; 14],
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.l4_offset = 34;
    e.ip_proto = 1;
    e.src_addr = v4(10, 0, 0, 1);
    e.dst_addr = v4(10, 0, 0, 2);
    (e.src_port, e.dst_port) = (0x0800, 0x1234);
    e.payload_len = 4;
    e.payload = b"ping".to_vec();
    e.frag_id = 3;
    Sample {
        name: "icmp_echo",
        frame,
        layout: Layout::Ipv4 {
            l3: 14,
            header_len: 20,
            end: 46,
        },
        expect: e,
    }
}

/// ICMP port unreachable from 10.0.0.254 carrying the offending IPv4/UDP header.
pub fn icmp_dest_unreachable() -> Sample {
    let inner: &[u8] = &[
        0x45, 0x00, 0x00, 0x21, 0x00, 0x01, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 0, 0, 1, 10, 0,
        0, 2, // inner IPv4 header
        0xd4, 0x31, 0x00, 0x35, 0x00, 0x0d, 0x00, 0x00, // inner UDP header
    ];
    let frame = cat(&[
        &ETH_IPV4,
        &[
            0x45, 0x00, 0x00, 0x38, 0x00, 0x04, 0x00, 0x00, 0x40, 0x01, 0x00, 0x00,
        ],
        &[10, 0, 0, 254, 10, 0, 0, 1],
        &[0x03, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
        inner,
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.l4_offset = 34;
    e.ip_proto = 1;
    e.src_addr = v4(10, 0, 0, 254);
    e.dst_addr = v4(10, 0, 0, 1);
    (e.src_port, e.dst_port) = (0x0303, 0);
    e.payload_len = 28;
    e.payload = inner.to_vec();
    e.frag_id = 4;
    e.icmp_inner_offset = Some(42);
    Sample {
        name: "icmp_dest_unreachable",
        frame,
        layout: Layout::Ipv4 {
            l3: 14,
            header_len: 20,
            end: 70,
        },
        expect: e,
    }
}

/// IPv4 first fragment (MF, offset 0) of a 256-byte UDP datagram, 16 data bytes.
pub fn ipv4_first_fragment() -> Sample {
    let frame = cat(&[
        &ETH_IPV4,
        &[
            0x45, 0x00, 0x00, 0x2c, 0x42, 0x42, 0x20, 0x00, 0x40, 0x11, 0x00, 0x00,
        ],
        &[10, 0, 0, 1, 10, 0, 0, 2],
        &[0x13, 0x88, 0x13, 0x89, 0x01, 0x00, 0x00, 0x00],
        &[0xaa; 16],
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.l4_offset = 34;
    e.ip_proto = 17;
    e.src_addr = v4(10, 0, 0, 1);
    e.dst_addr = v4(10, 0, 0, 2);
    (e.src_port, e.dst_port) = (5000, 5001);
    e.payload_len = 16;
    e.payload = vec![0xaa; 16];
    e.is_fragment = true;
    e.is_first_fragment = true;
    e.more_fragments = true;
    e.frag_id = 0x4242;
    Sample {
        name: "ipv4_first_fragment",
        frame,
        layout: Layout::Ipv4 {
            l3: 14,
            header_len: 20,
            end: 58,
        },
        expect: e,
    }
}

/// IPv4 last fragment at offset 24 bytes (3 units), 8 data bytes, no L4 header.
pub fn ipv4_later_fragment() -> Sample {
    let frame = cat(&[
        &ETH_IPV4,
        &[
            0x45, 0x00, 0x00, 0x1c, 0x42, 0x42, 0x00, 0x03, 0x40, 0x11, 0x00, 0x00,
        ],
        &[10, 0, 0, 1, 10, 0, 0, 2],
        &[0xbb; 8],
        &[0; 18],
    ]);
    let mut e = Expect::base(0x0800, L3::Ipv4);
    e.l4_offset = 34;
    e.ip_proto = 17;
    e.src_addr = v4(10, 0, 0, 1);
    e.dst_addr = v4(10, 0, 0, 2);
    e.payload_len = 8;
    e.payload = vec![0xbb; 8];
    e.is_fragment = true;
    e.frag_offset = 24;
    e.frag_id = 0x4242;
    Sample {
        name: "ipv4_later_fragment",
        frame,
        layout: Layout::Ipv4 {
            l3: 14,
            header_len: 20,
            end: 42,
        },
        expect: e,
    }
}

/// IPv6 TCP SYN|ACK 2001:db8::2:80 → 2001:db8::1:40000.
pub fn ipv6_tcp() -> Sample {
    let frame = cat(&[
        &ETH_IPV6,
        &[0x60, 0x00, 0x00, 0x00, 0x00, 0x14, 0x06, 0x40],
        &IP6_B,
        &IP6_A,
        &[
            0x00, 0x50, 0x9c, 0x40, 0, 0, 0, 9, 0, 0, 0, 2, 0x50, 0x12, 0x20, 0x00, 0, 0, 0, 0,
        ],
    ]);
    let mut e = Expect::base(0x86dd, L3::Ipv6);
    e.l4_offset = 54;
    e.ip_proto = 6;
    e.src_addr = IP6_B;
    e.dst_addr = IP6_A;
    (e.src_port, e.dst_port) = (80, 40000);
    e.tcp_flags = 0x12;
    Sample {
        name: "ipv6_tcp",
        frame,
        layout: Layout::Ipv6 { l3: 14, end: 74 },
        expect: e,
    }
}

/// IPv6 Hop-by-Hop (PadN) → Fragment (offset 0, M, id 0xdeadbeef) → UDP 5000 → 5001,
/// first fragment of a 64-byte datagram carrying 8 data bytes.
pub fn ipv6_hbh_frag_udp() -> Sample {
    let frame = cat(&[
        &ETH_IPV6,
        &[0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x00, 0x40],
        &IP6_A,
        &IP6_B,
        &[0x2c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00], // HBH: next 44, len 0, PadN(4)
        &[0x11, 0x00, 0x00, 0x01, 0xde, 0xad, 0xbe, 0xef], // Fragment: next 17, off 0, M
        &[0x13, 0x88, 0x13, 0x89, 0x00, 0x40, 0x00, 0x00], // UDP, length 64
        &[1, 2, 3, 4, 5, 6, 7, 8],
    ]);
    let mut e = Expect::base(0x86dd, L3::Ipv6);
    e.l4_offset = 70;
    e.ip_proto = 17;
    e.src_addr = IP6_A;
    e.dst_addr = IP6_B;
    (e.src_port, e.dst_port) = (5000, 5001);
    e.payload_len = 8;
    e.payload = vec![1, 2, 3, 4, 5, 6, 7, 8];
    e.is_fragment = true;
    e.is_first_fragment = true;
    e.more_fragments = true;
    e.frag_id = 0xdeadbeef;
    Sample {
        name: "ipv6_hbh_frag_udp",
        frame,
        layout: Layout::Ipv6 { l3: 14, end: 86 },
        expect: e,
    }
}

/// IPv6 last fragment at offset 16, 8 data bytes, no L4 header.
pub fn ipv6_later_fragment() -> Sample {
    let frame = cat(&[
        &ETH_IPV6,
        &[0x60, 0x00, 0x00, 0x00, 0x00, 0x10, 0x2c, 0x40],
        &IP6_A,
        &IP6_B,
        &[0x11, 0x00, 0x00, 0x10, 0xde, 0xad, 0xbe, 0xef], // Fragment: next 17, off 16
        &[0xcc; 8],
    ]);
    let mut e = Expect::base(0x86dd, L3::Ipv6);
    e.l4_offset = 62;
    e.ip_proto = 17;
    e.src_addr = IP6_A;
    e.dst_addr = IP6_B;
    e.payload_len = 8;
    e.payload = vec![0xcc; 8];
    e.is_fragment = true;
    e.frag_offset = 16;
    e.frag_id = 0xdeadbeef;
    Sample {
        name: "ipv6_later_fragment",
        frame,
        layout: Layout::Ipv6 { l3: 14, end: 70 },
        expect: e,
    }
}

/// IPv6 Destination Options → AH (24 bytes) → TCP RST 22 → 50022.
pub fn ipv6_dstopts_ah_tcp() -> Sample {
    let frame = cat(&[
        &ETH_IPV6,
        &[0x60, 0x00, 0x00, 0x00, 0x00, 0x34, 0x3c, 0x40],
        &IP6_A,
        &IP6_B,
        &[0x33, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00], // DestOpts: next 51, PadN(4)
        &[0x06, 0x04, 0x00, 0x00, 0, 0, 1, 0, 0, 0, 0, 1], // AH: next 6, len 4, SPI, seq
        &[0x11; 12],                                       // AH ICV
        &[
            0x00, 0x16, 0xc3, 0x66, 0, 0, 0, 5, 0, 0, 0, 0, 0x50, 0x04, 0, 0, 0, 0, 0, 0,
        ],
    ]);
    let mut e = Expect::base(0x86dd, L3::Ipv6);
    e.l4_offset = 86;
    e.ip_proto = 6;
    e.src_addr = IP6_A;
    e.dst_addr = IP6_B;
    (e.src_port, e.dst_port) = (22, 50022);
    e.tcp_flags = 0x04;
    Sample {
        name: "ipv6_dstopts_ah_tcp",
        frame,
        layout: Layout::Ipv6 { l3: 14, end: 106 },
        expect: e,
    }
}

/// ICMPv6 echo request id 7 seq 1, "ping".
pub fn icmpv6_echo() -> Sample {
    let frame = cat(&[
        &ETH_IPV6,
        &[0x60, 0x00, 0x00, 0x00, 0x00, 0x0c, 0x3a, 0xff],
        &IP6_A,
        &IP6_B,
        &[0x80, 0x00, 0x00, 0x00, 0x00, 0x07, 0x00, 0x01],
        b"ping",
    ]);
    let mut e = Expect::base(0x86dd, L3::Ipv6);
    e.l4_offset = 54;
    e.ip_proto = 58;
    e.src_addr = IP6_A;
    e.dst_addr = IP6_B;
    (e.src_port, e.dst_port) = (0x8000, 7);
    e.payload_len = 4;
    e.payload = b"ping".to_vec();
    Sample {
        name: "icmpv6_echo",
        frame,
        layout: Layout::Ipv6 { l3: 14, end: 66 },
        expect: e,
    }
}

/// ICMPv6 packet too big (MTU 1280) carrying the offending IPv6/UDP header.
pub fn icmpv6_packet_too_big() -> Sample {
    let inner = cat(&[
        &[0x60, 0, 0, 0, 0x00, 0x08, 0x11, 0x40],
        &IP6_A,
        &IP6_B,
        &[0x13, 0x88, 0x13, 0x89, 0x00, 0x08, 0, 0],
    ]);
    let frame = cat(&[
        &ETH_IPV6,
        &[0x60, 0x00, 0x00, 0x00, 0x00, 0x38, 0x3a, 0x40],
        &IP6_B,
        &IP6_A,
        &[0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00],
        &inner,
    ]);
    let mut e = Expect::base(0x86dd, L3::Ipv6);
    e.l4_offset = 54;
    e.ip_proto = 58;
    e.src_addr = IP6_B;
    e.dst_addr = IP6_A;
    (e.src_port, e.dst_port) = (0x0200, 0);
    e.payload_len = 48;
    e.payload = inner;
    e.icmp_inner_offset = Some(62);
    Sample {
        name: "icmpv6_packet_too_big",
        frame,
        layout: Layout::Ipv6 { l3: 14, end: 110 },
        expect: e,
    }
}

/// ARP who-has 10.0.0.2 tell 10.0.0.1, broadcast, padded to 60 bytes.
pub fn arp_request() -> Sample {
    let frame = cat(&[
        &[0xff; 6],
        &SRC_MAC,
        &[0x08, 0x06],
        &[0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01],
        &SRC_MAC,
        &[10, 0, 0, 1],
        &[0; 6],
        &[10, 0, 0, 2],
        &[0; 18],
    ]);
    let mut e = Expect::base(0x0806, L3::Arp);
    e.dst_mac = [0xff; 6];
    e.src_addr = v4(10, 0, 0, 1);
    e.dst_addr = v4(10, 0, 0, 2);
    e.payload_len = 28;
    e.payload = frame[14..42].to_vec();
    Sample {
        name: "arp_request",
        frame,
        layout: Layout::Arp { l3: 14 },
        expect: e,
    }
}

/// LLDP (EtherType 0x88cc): not IP, switched.
pub fn lldp() -> Sample {
    let frame = cat(&[
        &[0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e],
        &SRC_MAC,
        &[0x88, 0xcc],
        &[0x02, 0x07, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00],
    ]);
    let mut e = Expect::base(0x88cc, L3::Other);
    e.dst_mac = [0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e];
    e.payload_len = 10;
    e.payload = frame[14..].to_vec();
    Sample {
        name: "lldp",
        frame,
        layout: Layout::Other { l3: 14 },
        expect: e,
    }
}

/// Every valid sample.
pub fn all() -> Vec<Sample> {
    vec![
        ipv4_tcp_syn(),
        ipv4_udp(),
        ipv4_options_udp(),
        vlan_ipv4_tcp(),
        qinq_ipv4_udp(),
        icmp_echo(),
        icmp_dest_unreachable(),
        ipv4_first_fragment(),
        ipv4_later_fragment(),
        ipv6_tcp(),
        ipv6_hbh_frag_udp(),
        ipv6_later_fragment(),
        ipv6_dstopts_ah_tcp(),
        icmpv6_echo(),
        icmpv6_packet_too_big(),
        arp_request(),
        lldp(),
    ]
}

/// Invariants every `Ok` must satisfy, whatever the input.
pub fn assert_sane(frame: &[u8], meta: &Meta) {
    let len = frame.len();
    assert!(len >= 14);
    assert!(
        meta.l3_offset() <= len,
        "l3_offset {} > {len}",
        meta.l3_offset()
    );
    assert!(
        meta.l4_offset as usize <= len,
        "l4_offset {} > {len}",
        meta.l4_offset
    );
    if meta.is_ip() {
        assert!(meta.l4_offset as usize >= meta.l3_offset() + 20);
        let start = meta.l4_offset as usize + meta.l4_header_len(frame);
        assert!(
            start + meta.payload_len as usize <= len,
            "payload past the end"
        );
        assert_eq!(meta.payload(frame).len(), meta.payload_len as usize);
    } else {
        assert_eq!(meta.l4_offset, 0);
        assert!(meta.l3_offset() + meta.payload_len as usize <= len);
        assert_eq!((meta.src_port, meta.dst_port), (0, 0));
    }
    if meta.is_later_fragment() {
        assert_eq!((meta.src_port, meta.dst_port, meta.tcp_flags.0), (0, 0, 0));
    }
    if let Some(inner) = meta.icmp_inner_offset() {
        assert!(inner <= len);
    }
}
