//! Builds the answer a `reject` rule sends back to a sender: a TCP RST for
//! TCP (RFC 9293 §3.10.7.1: sequence from the offending segment's ACK, or
//! RST+ACK acknowledging it), an ICMP port unreachable (IPv4, RFC 792) or
//! ICMPv6 port unreachable (RFC 4443) for everything else. The L2 header is
//! the original's (VLAN tags kept) with the MACs swapped. DPDK-free: the
//! worker copies the result into a fresh mbuf.

use rampart_packet::{Meta, L3};

/// Largest reply this builds (fits any mbuf).
pub const MAX_REPLY: usize = 640;

fn sum16(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    if let [last] = chunks.remainder() {
        acc += (*last as u32) << 8;
    }
    acc
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Internet checksum of `data`, with an optional pseudo-header sum folded in.
pub fn checksum(data: &[u8], pseudo: u32) -> u16 {
    fold(sum16(data, pseudo))
}

fn pseudo_header(v6: bool, src: &[u8; 16], dst: &[u8; 16], proto: u8, len: usize) -> u32 {
    let (s, d) = if v6 { (&src[..], &dst[..]) } else { (&src[12..], &dst[12..]) };
    sum16(d, sum16(s, 0)) + proto as u32 + len as u32
}

/// Writes the reject answer to `frame` (parsed as `meta`) into `out`; returns its length.
/// None for frames that must not be answered (non-IP, ICMP errors, RSTs, later fragments).
pub fn build(frame: &[u8], meta: &Meta, out: &mut [u8; MAX_REPLY]) -> Option<usize> {
    let v6 = match meta.l3() {
        L3::Ipv4 => false,
        L3::Ipv6 => true,
        _ => return None,
    };
    if meta.is_later_fragment() || meta.dst_mac[0] & 1 != 0 {
        return None; // never answer fragments' tails or broadcast/multicast
    }
    let l3 = meta.l3_offset();
    let l4 = meta.l4_offset as usize;
    // L2: original header with the MACs swapped.
    out[..l3].copy_from_slice(frame.get(..l3)?);
    out[..6].copy_from_slice(&meta.src_mac);
    out[6..12].copy_from_slice(&meta.dst_mac);
    let ip_len = if v6 { 40 } else { 20 };
    let (proto, l4_len) = if meta.ip_proto == 6 {
        if meta.tcp_flags.0 & rampart_packet::TcpFlags::RST != 0 {
            return None;
        }
        let tcp = frame.get(l4..l4 + 20)?;
        let seq = u32::from_be_bytes(tcp[4..8].try_into().ok()?);
        let ack = u32::from_be_bytes(tcp[8..12].try_into().ok()?);
        let flags = meta.tcp_flags.0;
        let t = &mut out[l3 + ip_len..l3 + ip_len + 20];
        t.fill(0);
        t[0..2].copy_from_slice(&meta.dst_port.to_be_bytes());
        t[2..4].copy_from_slice(&meta.src_port.to_be_bytes());
        if flags & rampart_packet::TcpFlags::ACK != 0 {
            t[4..8].copy_from_slice(&ack.to_be_bytes());
            t[13] = rampart_packet::TcpFlags::RST;
        } else {
            let syn_fin = (flags & (rampart_packet::TcpFlags::SYN | rampart_packet::TcpFlags::FIN)).count_ones();
            let acked = seq.wrapping_add(meta.payload_len as u32).wrapping_add(syn_fin);
            t[8..12].copy_from_slice(&acked.to_be_bytes());
            t[13] = rampart_packet::TcpFlags::RST | rampart_packet::TcpFlags::ACK;
        }
        t[12] = 5 << 4;
        (6u8, 20usize)
    } else {
        if meta.icmp_inner_offset().is_some() {
            return None; // never answer an error with an error
        }
        // ICMP header + as much of the offending packet as fits (RFC 1812 §4.3.2.3, RFC 4443 §2.4).
        let quoted = frame.get(l3..)?;
        let ip_total = if v6 { 40 + u16::from_be_bytes([quoted[4], quoted[5]]) as usize } else { u16::from_be_bytes([quoted[2], quoted[3]]) as usize };
        let room = MAX_REPLY - l3 - ip_len - 8;
        let n = ip_total.min(quoted.len()).min(room);
        let icmp = &mut out[l3 + ip_len..l3 + ip_len + 8 + n];
        icmp[..8].fill(0);
        if v6 {
            icmp[0] = 1; // destination unreachable
            icmp[1] = 4; // port unreachable
        } else {
            icmp[0] = 3;
            icmp[1] = 3;
        }
        icmp[8..].copy_from_slice(&quoted[..n]);
        (if v6 { 58 } else { 1 }, 8 + n)
    };
    // L3 header.
    let ip = &mut out[l3..l3 + ip_len];
    ip.fill(0);
    if v6 {
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        ip[6] = proto;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&meta.dst_addr);
        ip[24..40].copy_from_slice(&meta.src_addr);
    } else {
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + l4_len) as u16).to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&meta.dst_addr[12..]);
        ip[16..20].copy_from_slice(&meta.src_addr[12..]);
        let c = checksum(ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
    }
    // L4 checksum (ICMPv4 has no pseudo-header).
    let l4s = l3 + ip_len;
    let pseudo = if proto == 1 { 0 } else { pseudo_header(v6, &meta.dst_addr, &meta.src_addr, proto, l4_len) };
    let off = if proto == 6 { 16 } else { 2 };
    let c = checksum(&out[l4s..l4s + l4_len], pseudo);
    out[l4s + off..l4s + off + 2].copy_from_slice(&c.to_be_bytes());
    Some(l4s + l4_len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_packet::parse;

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

    fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = B.to_vec();
        f.extend_from_slice(&A);
        f.extend_from_slice(&[0x08, 0]);
        let len = 20 + l4.len();
        let mut ip = vec![0x45, 0, (len >> 8) as u8, len as u8, 0, 1, 0, 0, 64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        let c = checksum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(l4);
        f
    }

    fn tcp(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
        let mut t = vec![0x9c, 0x40, 0, 80];
        t.extend_from_slice(&seq.to_be_bytes());
        t.extend_from_slice(&ack.to_be_bytes());
        t.extend_from_slice(&[5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        t.extend_from_slice(payload);
        t
    }

    /// RFC 1071 written apart from `checksum` (bytes paired into a u64 sum, the
    /// pseudo-header laid out as bytes): data with a right checksum sums to 0xffff.
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
    fn rst_for_a_syn_acknowledges_it() {
        let syn = ipv4(6, &tcp(0x02, 1000, 0, &[]));
        let m = parse(&syn).unwrap();
        let mut out = [0u8; MAX_REPLY];
        let n = build(&syn, &m, &mut out).unwrap();
        let r = parse(&out[..n]).unwrap();
        assert_eq!((r.src_mac, r.dst_mac), (B, A));
        assert_eq!((r.src_port, r.dst_port), (80, 40000));
        assert_eq!(r.src_addr, m.dst_addr);
        assert_eq!(r.tcp_flags.0, 0x14, "RST+ACK");
        assert_eq!(u32::from_be_bytes(out[42..46].try_into().unwrap()), 1001, "acknowledges SYN's sequence + 1");
        assert!(checksums_ok(&out[..n], &r), "IPv4 and TCP checksums");
    }

    #[test]
    fn rst_for_an_ack_uses_its_ack_number() {
        let seg = ipv4(6, &tcp(0x18, 5, 777, b"hello"));
        let m = parse(&seg).unwrap();
        let mut out = [0u8; MAX_REPLY];
        let n = build(&seg, &m, &mut out).unwrap();
        let r = parse(&out[..n]).unwrap();
        assert_eq!(r.tcp_flags.0, 0x04, "bare RST");
        assert_eq!(u32::from_be_bytes(out[38..42].try_into().unwrap()), 777);
        assert!(checksums_ok(&out[..n], &r));
        // Never answer an RST.
        let rst = ipv4(6, &tcp(0x04, 5, 0, &[]));
        assert!(build(&rst, &parse(&rst).unwrap(), &mut out).is_none());
    }

    #[test]
    fn icmp_port_unreachable_quotes_the_datagram() {
        let udp = ipv4(17, &[0x9c, 0x40, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        let m = parse(&udp).unwrap();
        let mut out = [0u8; MAX_REPLY];
        let n = build(&udp, &m, &mut out).unwrap();
        let r = parse(&out[..n]).unwrap();
        assert_eq!((r.ip_proto, r.icmp_type(), r.icmp_code()), (1, Some(3), Some(3)));
        assert_eq!(&out[42..n], &udp[14..], "the whole offending datagram is quoted");
        assert!(checksums_ok(&out[..n], &r), "IPv4 and ICMP checksums");
        // Never answer an ICMP error.
        assert!(build(&out[..n], &r, &mut [0u8; MAX_REPLY]).is_none());
    }

    #[test]
    fn icmpv6_port_unreachable_has_a_valid_checksum() {
        let mut f = B.to_vec();
        f.extend_from_slice(&A);
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 12, 17, 64]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        f.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 12, 0, 0, 1, 2, 3, 4]);
        let m = parse(&f).unwrap();
        let mut out = [0u8; MAX_REPLY];
        let n = build(&f, &m, &mut out).unwrap();
        let r = parse(&out[..n]).unwrap();
        assert_eq!((r.ip_proto, r.icmp_type(), r.icmp_code()), (58, Some(1), Some(4)));
        assert_eq!(r.dst_addr, m.src_addr);
        assert!(checksums_ok(&out[..n], &r), "ICMPv6 checksum with pseudo-header");
    }
}
