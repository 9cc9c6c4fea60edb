//! FlowKey: both directions of a flow share one canonical key.

mod common;

use common::*;
use rampart_packet::{parse, Direction, FlowKey};

/// Swap MACs, addresses and ports of an IPv4 TCP/UDP frame (l3 at `l3`, l4 at `l4`).
fn reply_v4(frame: &[u8], l3: usize, l4: usize) -> Vec<u8> {
    let mut r = frame.to_vec();
    r[0..6].copy_from_slice(&frame[6..12]);
    r[6..12].copy_from_slice(&frame[0..6]);
    r[l3 + 12..l3 + 16].copy_from_slice(&frame[l3 + 16..l3 + 20]);
    r[l3 + 16..l3 + 20].copy_from_slice(&frame[l3 + 12..l3 + 16]);
    r[l4..l4 + 2].copy_from_slice(&frame[l4 + 2..l4 + 4]);
    r[l4 + 2..l4 + 4].copy_from_slice(&frame[l4..l4 + 2]);
    r
}

fn key(frame: &[u8]) -> FlowKey {
    FlowKey::from_meta(&parse(frame).unwrap()).unwrap()
}

#[test]
fn both_directions_of_a_tcp_flow_share_the_canonical_key() {
    let syn = vlan_ipv4_tcp().frame;
    let mut synack = reply_v4(&syn, 18, 38);
    synack[51] = 0x12;
    let (forward, reverse) = (key(&syn), key(&synack));
    assert_ne!(forward, reverse);
    assert_eq!(forward.reversed(), reverse);
    let (a, dir_a) = forward.canonical();
    let (b, dir_b) = reverse.canonical();
    assert_eq!(a, b);
    assert_ne!(dir_a, dir_b);
    // 10.1.0.5:50000 sorts below 10.1.0.6:80, so the client's packets are Forward.
    assert_eq!(dir_a, Direction::Forward);
    assert_eq!(a.src_port, 50000);
    assert_eq!((a.proto, a.zone), (6, 100));
}

#[test]
fn same_address_flows_order_by_port() {
    let mut frame = ipv4_udp().frame;
    frame[30..34].copy_from_slice(&[10, 0, 0, 1]); // dst = src
    let k = key(&frame);
    let (c, dir) = k.canonical();
    assert_eq!(dir, Direction::Reverse); // 54321 > 53
    assert_eq!((c.src_port, c.dst_port), (53, 54321));
    assert_eq!(k.reversed().canonical(), (c, Direction::Forward));
}

#[test]
fn ipv6_flow_is_symmetric() {
    let frame = ipv6_tcp().frame;
    let k = key(&frame);
    assert_eq!(k.canonical().0, k.reversed().canonical().0);
    assert_eq!(k.canonical().1, Direction::Reverse); // src 2001:db8::2 > dst ::1
}

#[test]
fn icmp_echo_request_and_reply_share_a_key() {
    let request = icmp_echo().frame;
    let mut reply = request.clone();
    reply[26..30].copy_from_slice(&request[30..34]);
    reply[30..34].copy_from_slice(&request[26..30]);
    reply[34] = 0; // echo reply
    let (req, rep) = (key(&request), key(&reply));
    assert_eq!((req.src_port, req.dst_port), (0x1234, 0x1234));
    assert_eq!(req.canonical().0, rep.canonical().0);
    assert_ne!(req.canonical().1, rep.canonical().1);

    let unreachable = key(&icmp_dest_unreachable().frame);
    assert_eq!((unreachable.src_port, unreachable.dst_port), (0x0303, 0));

    let v6 = key(&icmpv6_echo().frame);
    assert_eq!((v6.src_port, v6.dst_port, v6.proto), (7, 7, 58));
}

#[test]
fn non_ip_frames_have_no_flow_key_and_fragments_have_no_ports() {
    assert_eq!(
        FlowKey::from_meta(&parse(&arp_request().frame).unwrap()),
        None
    );
    assert_eq!(FlowKey::from_meta(&parse(&lldp().frame).unwrap()), None);
    let later = key(&ipv4_later_fragment().frame);
    assert_eq!((later.src_port, later.dst_port, later.proto), (0, 0, 17));
    let first = key(&ipv4_first_fragment().frame);
    assert_eq!((first.src_port, first.dst_port), (5000, 5001));
}

#[test]
fn flow_key_hashes_equal_for_equal_keys() {
    use std::collections::HashSet;
    let syn = vlan_ipv4_tcp().frame;
    let reply = reply_v4(&syn, 18, 38);
    let set: HashSet<FlowKey> = [key(&syn).canonical().0, key(&reply).canonical().0].into();
    assert_eq!(set.len(), 1);
}
