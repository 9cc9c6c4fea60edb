//! Helpers shared by the integration tests: endpoints, keys, segments, and a `send` that
//! does what the dataplane does on every packet (prepare, lookup, track or insert).
#![allow(dead_code)]

use rampart_flow::{
    FlowRecord, FlowTable, FlowTableConfig, InsertError, NewFlow, PacketInfo, Stale, TcpSegment,
    Tracked,
};
use rampart_packet::{ipv4_mapped, FlowKey, TcpFlags};

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

pub const SYN: u8 = TcpFlags::SYN;
pub const ACK: u8 = TcpFlags::ACK;
pub const FIN: u8 = TcpFlags::FIN;
pub const RST: u8 = TcpFlags::RST;
pub const PSH: u8 = TcpFlags::PSH;

pub const SEC: u64 = 1000;

pub fn table(capacity: u32) -> FlowTable {
    FlowTable::new(&FlowTableConfig {
        capacity,
        hash_seed: Some(42),
        ..Default::default()
    })
    .unwrap()
}

pub fn table_with(config: FlowTableConfig) -> FlowTable {
    FlowTable::new(&config).unwrap()
}

/// Packet-order key `a:ap -> b:bp`.
pub fn key4(a: [u8; 4], ap: u16, b: [u8; 4], bp: u16, proto: u8) -> FlowKey {
    FlowKey {
        src_addr: ipv4_mapped(a),
        dst_addr: ipv4_mapped(b),
        src_port: ap,
        dst_port: bp,
        proto,
        zone: 0,
    }
}

pub fn seg(flags: u8, seq: u32, ack: u32, window: u16, len: u32) -> PacketInfo {
    PacketInfo {
        bytes: 40 + len,
        tcp: TcpSegment {
            flags: TcpFlags(flags),
            seq,
            ack,
            window,
            window_scale: None,
            payload_len: len,
        },
    }
}

pub fn syn(seq: u32, window: u16, scale: Option<u8>) -> PacketInfo {
    let mut p = seg(SYN, seq, 0, window, 0);
    p.tcp.window_scale = scale;
    p
}

pub fn synack(seq: u32, ack: u32, window: u16, scale: Option<u8>) -> PacketInfo {
    let mut p = seg(SYN | ACK, seq, ack, window, 0);
    p.tcp.window_scale = scale;
    p
}

pub fn datagram(len: u32) -> PacketInfo {
    PacketInfo {
        bytes: 28 + len,
        ..Default::default()
    }
}

/// What happened to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Tracked on an existing flow, or inserted (`created`).
    Tracked { tracked: Tracked, created: bool },
    /// The insert was refused.
    Refused(InsertError),
}

impl Sent {
    pub fn tracked(self) -> Tracked {
        match self {
            Sent::Tracked { tracked, .. } => tracked,
            Sent::Refused(e) => panic!("packet refused: {e:?}"),
        }
    }
}

/// The dataplane's per-packet flow step, for a packet with packet-order key `key`.
pub fn send(table: &FlowTable, key: &FlowKey, pkt: &PacketInfo, now: u64) -> Sent {
    send_as(
        table,
        key,
        pkt,
        now,
        NewFlow {
            verdict: 1,
            owner: 0,
        },
    )
}

pub fn send_as(table: &FlowTable, key: &FlowKey, pkt: &PacketInfo, now: u64, new: NewFlow) -> Sent {
    let (ckey, dir, hash) = table.prepare(key);
    if let Some(hit) = table.lookup(&ckey, hash) {
        match table.track(&hit, dir, pkt, now) {
            Ok(tracked) => {
                return Sent::Tracked {
                    tracked,
                    created: false,
                }
            }
            Err(Stale::Gone) | Err(Stale::Reopened(_)) => {}
        }
    }
    match table.insert(&ckey, hash, dir, new, pkt, now) {
        Ok(ins) => Sent::Tracked {
            tracked: ins.tracked,
            created: ins.created,
        },
        Err(e) => Sent::Refused(e),
    }
}

/// The record of the flow of `key` (either direction).
pub fn record(table: &FlowTable, key: &FlowKey, now: u64) -> Option<FlowRecord> {
    let (ckey, _, _) = table.prepare(key);
    let mut found = None;
    table.for_each_flow(now, |r| {
        if r.key == ckey {
            found = Some(*r);
        }
    });
    found
}

/// Sweep the whole table once.
pub fn sweep(table: &FlowTable, now: u64) -> Vec<rampart_flow::FlowEnd> {
    let mut ended = Vec::new();
    table.expire_step(now, table.slots(), |e| ended.push(*e));
    ended
}
