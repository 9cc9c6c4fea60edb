//! Every valid sample cut at every byte offset: the exact error (or the exact shorter
//! `Meta`) is asserted, and nothing panics.

mod common;

use common::*;
use rampart_packet::{parse, validate, ParseError};

/// What `frame[..cut]` must parse to.
fn expected(sample: &Sample, cut: usize) -> Result<Expect, ParseError> {
    let l3 = match sample.layout {
        Layout::Ipv4 { l3, .. }
        | Layout::Ipv6 { l3, .. }
        | Layout::Arp { l3 }
        | Layout::Other { l3 } => l3,
    };
    if cut < 14 {
        return Err(ParseError::EthernetTruncated);
    }
    if cut < l3 {
        return Err(ParseError::VlanTruncated);
    }
    match sample.layout {
        Layout::Ipv4 {
            header_len, end, ..
        } => {
            if cut < l3 + header_len {
                return Err(ParseError::Ipv4Truncated);
            }
            if cut < end {
                return Err(ParseError::Ipv4BadTotalLength);
            }
        }
        Layout::Ipv6 { end, .. } => {
            if cut < l3 + 40 {
                return Err(ParseError::Ipv6Truncated);
            }
            if cut < end {
                return Err(ParseError::Ipv6BadPayloadLength);
            }
        }
        Layout::Arp { .. } => {
            if cut < l3 + 28 {
                return Err(ParseError::ArpTruncated);
            }
        }
        Layout::Other { .. } => {
            let mut e = sample.expect.clone();
            e.payload_len = (cut - l3) as u16;
            e.payload = sample.frame[l3..cut].to_vec();
            return Ok(e);
        }
    }
    // Only padding was cut: the same Meta.
    Ok(sample.expect.clone())
}

#[test]
fn every_truncation_of_every_sample() {
    let mut checked = 0;
    for sample in all() {
        for cut in 0..=sample.frame.len() {
            let frame = &sample.frame[..cut];
            let got = parse(frame).map(|m| {
                assert_sane(frame, &m);
                Expect::observe(&m, frame)
            });
            let want = expected(&sample, cut);
            assert_eq!(validate(frame), want.as_ref().map(|_| ()).map_err(|e| *e), "validate: {} cut at {cut}", sample.name);
            assert_eq!(got, want, "{} cut at {cut}", sample.name);
            checked += 1;
        }
    }
    assert!(checked > 1000);
}

/// Outcome when the IP packet is shortened to `p` bytes of IP payload *and its length
/// field is rewritten to match*, so the cut lands in the extension headers or L4 header.
/// `Ok(n)` means the same Meta with `n` payload bytes.
fn consistent_cut(name: &str, p: usize) -> Result<usize, ParseError> {
    use ParseError::*;
    let bad = |cond: bool, e: ParseError| if cond { Err(e) } else { Ok(()) };
    match name {
        "ipv4_tcp_syn" | "ipv6_tcp" => bad(p < 20, TcpTruncated).map(|_| p - 20),
        "vlan_ipv4_tcp" => {
            bad(p < 20, TcpTruncated)?;
            bad(p < 24, TcpBadDataOffset).map(|_| p - 24)
        }
        "ipv4_udp" => {
            bad(p < 8, UdpTruncated)?;
            bad(p < 13, UdpBadLength).map(|_| 5)
        }
        "ipv4_options_udp" => {
            bad(p < 8, UdpTruncated)?;
            bad(p < 12, UdpBadLength).map(|_| 4)
        }
        "qinq_ipv4_udp" => bad(p < 8, UdpTruncated).map(|_| 0),
        "icmp_echo" | "icmp_dest_unreachable" => bad(p < 8, IcmpTruncated).map(|_| p - 8),
        "icmpv6_echo" | "icmpv6_packet_too_big" => bad(p < 8, Icmpv6Truncated).map(|_| p - 8),
        "ipv4_first_fragment" => {
            bad(!p.is_multiple_of(8), FragmentBadLength)?;
            bad(p < 8, FragmentTooSmall).map(|_| p - 8)
        }
        "ipv4_later_fragment" => Ok(p),
        "ipv6_hbh_frag_udp" => {
            bad(p < 16, Ipv6ExtHeaderTruncated)?;
            bad(!(p - 16).is_multiple_of(8), FragmentBadLength)?;
            bad(p < 24, FragmentTooSmall).map(|_| p - 24)
        }
        "ipv6_later_fragment" => bad(p < 8, Ipv6ExtHeaderTruncated).map(|_| p - 8),
        "ipv6_dstopts_ah_tcp" => {
            bad(p < 32, Ipv6ExtHeaderTruncated)?;
            bad(p < 52, TcpTruncated).map(|_| 0)
        }
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn every_consistent_truncation_inside_the_ip_payload() {
    for sample in all() {
        let (l3, ip_header, end) = match sample.layout {
            Layout::Ipv4 {
                l3,
                header_len,
                end,
            } => (l3, header_len, end),
            Layout::Ipv6 { l3, end } => (l3, 40, end),
            _ => continue,
        };
        let is_v4 = matches!(sample.layout, Layout::Ipv4 { .. });
        for new_end in l3 + ip_header..=end {
            let mut frame = sample.frame[..new_end].to_vec();
            let len_field = if is_v4 {
                new_end - l3
            } else {
                new_end - l3 - 40
            } as u16;
            frame[l3 + if is_v4 { 2 } else { 4 }..][..2].copy_from_slice(&len_field.to_be_bytes());
            let p = new_end - l3 - ip_header;
            let want = consistent_cut(sample.name, p).map(|n| {
                let mut e = sample.expect.clone();
                e.payload_len = n as u16;
                e.payload.truncate(n);
                e
            });
            let got = parse(&frame).map(|m| {
                assert_sane(&frame, &m);
                Expect::observe(&m, &frame)
            });
            assert_eq!(got, want, "{} with {p} bytes of IP payload", sample.name);
        }
    }
}
