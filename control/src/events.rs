//! Drains the dataplane's event rings into the event log: one JSON object
//! per line in the spirit of Suricata's eve.json (`timestamp`,
//! `event_type`, `in_iface`, ...). Loss is never silent: ring overflows are
//! read from the segment and written to the log as `event_type: "loss"`.

use rampart_shm::ring::{EventKind, FlowEndCode, FlowEventData, FLOW_START_REJECTED};
use rampart_shm::{DropReason, EventRecord, Segment, MAX_EVENT_RINGS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

pub struct EventLog {
    out: std::io::BufWriter<std::fs::File>,
    pub written: u64,
    /// Value of the newest pong (answer to a ping command).
    pub last_pong: u64,
    /// Ring overflow counts already reported, per ring.
    reported_loss: [u64; MAX_EVENT_RINGS],
}

impl EventLog {
    pub fn open(path: &Path) -> std::io::Result<EventLog> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
        Ok(EventLog { out: std::io::BufWriter::new(f), written: 0, last_pong: 0, reported_loss: [0; MAX_EVENT_RINGS] })
    }

    /// Called after (re)attaching: loss counted before now belongs to the new segment's baseline.
    pub fn reset_baseline(&mut self) {
        self.reported_loss = [0; MAX_EVENT_RINGS];
    }

    pub fn write(&mut self, v: &Value) {
        if serde_json::to_writer(&mut self.out, v).is_ok() && self.out.write_all(b"\n").is_ok() {
            self.written += 1;
        }
    }

    /// Moves every pending record from the segment to the log. Returns how many.
    pub fn drain(&mut self, seg: &Segment, names: &BTreeMap<u16, String>, rules: &[String]) -> u64 {
        let h = seg.header();
        let clock = Clock {
            tsc_hz: h.tsc_hz.load(Ordering::Relaxed).max(1),
            tsc0: h.tsc_at_start.load(Ordering::Relaxed),
            real0: h.realtime_ns_at_start.load(Ordering::Relaxed),
        };
        let mut n = 0;
        for ring in 0..MAX_EVENT_RINGS {
            while let Some((rec, skipped)) = seg.events[ring].pop() {
                if skipped > 0 {
                    self.write(&json!({"timestamp": now(), "event_type": "loss", "loss": {"ring": ring, "records": skipped, "cause": "ring indexes inconsistent"}}));
                }
                if rec.kind == EventKind::Pong as u16 {
                    self.last_pong = rec.value;
                }
                self.write(&to_json(&rec, ring, &clock, names, rules));
                n += 1;
            }
            let lost = seg.events[ring].overflow();
            if lost > self.reported_loss[ring] {
                self.write(&json!({"timestamp": now(), "event_type": "loss", "loss": {"ring": ring, "records": lost - self.reported_loss[ring], "cause": "ring full"}}));
                self.reported_loss[ring] = lost;
            }
        }
        let _ = self.out.flush();
        n
    }
}

/// The dataplane's TSC calibration (from the segment header): turns a record's TSC into
/// wall-clock time.
pub struct Clock {
    pub tsc_hz: u64,
    pub tsc0: u64,
    pub real0: u64,
}

impl Clock {
    fn at(&self, tsc: u64) -> String {
        let delta = tsc.saturating_sub(self.tsc0) as u128 * 1_000_000_000 / self.tsc_hz.max(1) as u128;
        rfc3339(self.real0 as i128 + delta as i128)
    }
}

fn rfc3339(ns: i128) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ns)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

pub fn now() -> String {
    rfc3339(rampart_shm::realtime_ns() as i128)
}

fn ip(a: &[u8; 16]) -> String {
    let v6 = std::net::Ipv6Addr::from(*a);
    v6.to_ipv4_mapped().map(|v4| v4.to_string()).unwrap_or_else(|| v6.to_string())
}

pub fn proto_name(p: u8) -> String {
    match p {
        6 => "TCP".into(),
        17 => "UDP".into(),
        1 => "ICMP".into(),
        58 => "IPv6-ICMP".into(),
        n => n.to_string(),
    }
}

/// One event record as a log line. The record comes from another process's memory, so any
/// bytes must give a JSON object with an `event_type` (unknown kinds and codes are named as
/// such, never trusted as indexes).
pub fn to_json(rec: &EventRecord, ring: usize, clock: &Clock, names: &BTreeMap<u16, String>, rules: &[String]) -> Value {
    let iface = names.get(&rec.port).cloned();
    let text = String::from_utf8_lossy(rec.data()).into_owned();
    let ts = clock.at(rec.tsc);
    match EventKind::from_u16(rec.kind) {
        Some(EventKind::Malformed) => {
            let reason = DropReason::all().find(|r| r.index() == rec.code as usize).map(|r| r.label()).unwrap_or_default();
            let head: String = rec.data().iter().map(|b| format!("{b:02x}")).collect();
            json!({"timestamp": ts, "event_type": "drop", "in_iface": iface, "worker": ring,
                   "drop": {"reason": reason, "len": rec.value, "packet_head": head}})
        }
        Some(k @ (EventKind::PortUp | EventKind::PortDown | EventKind::PortError)) => {
            let state = match k {
                EventKind::PortUp => "up",
                EventKind::PortDown => "down",
                _ => "error",
            };
            json!({"timestamp": ts, "event_type": "port", "in_iface": iface,
                   "port": {"slot": rec.port, "state": state, "detail": text}})
        }
        Some(k @ (EventKind::PolicyApplied | EventKind::PolicyRejected)) => {
            let result = if k == EventKind::PolicyApplied { "applied" } else { "rejected" };
            json!({"timestamp": ts, "event_type": "policy", "policy": {"generation": rec.value, "result": result, "reason": text}})
        }
        Some(EventKind::Pong) => json!({"timestamp": ts, "event_type": "pong", "value": rec.value}),
        Some(k @ (EventKind::FlowStart | EventKind::FlowEnd)) => {
            let (src, dst, sport, dport, proto, rule) = FlowEventData::unpack(rec);
            let rule = rule.and_then(|r| rules.get(r as usize)).cloned();
            let flow = if k == EventKind::FlowStart {
                json!({"state": "new", "action": if rec.code == FLOW_START_REJECTED { "rejected" } else { "allowed" }})
            } else {
                let reason = FlowEndCode::from_u16(rec.code).map_or("unknown", FlowEndCode::label);
                json!({"state": "closed", "reason": reason})
            };
            json!({"timestamp": ts, "event_type": "flow", "in_iface": iface, "src_ip": ip(&src), "src_port": sport,
                   "dest_ip": ip(&dst), "dest_port": dport, "proto": proto_name(proto), "rule": rule, "flow": flow})
        }
        Some(EventKind::FlowsDumped) => json!({"timestamp": ts, "event_type": "flows_dumped", "request": rec.value}),
        None => json!({"timestamp": ts, "event_type": "unknown", "kind": rec.kind, "ring": ring}),
    }
}
