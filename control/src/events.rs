//! Drains the dataplane's event rings into the event log: one JSON object
//! per line in the spirit of Suricata's eve.json (`timestamp`,
//! `event_type`, `in_iface`, ...). Loss is never silent: ring overflows are
//! read from the segment and written to the log as `event_type: "loss"`.

use rampart_shm::ring::{AlertCode, EventKind, FlowEndCode, FlowEventData, FLOW_START_REJECTED};
use rampart_shm::{AnomalyOutcome, DropReason, EventRecord, Segment, MAX_EVENT_RINGS};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

/// The event log file. Records are formatted into a buffer and written once per drain, whole
/// records only: a short or failed write (a full or failing disk) is cut back to the last
/// whole record, the records that did not make it are counted (`unwritten`, and each failed
/// write in `write_errors`), stderr says so once per episode, and the first write that works
/// again starts with a `loss` record saying exactly how many records were not written and why.
pub struct EventLog {
    file: std::fs::File,
    path: std::path::PathBuf,
    /// Bytes of whole records in the file (where a short write is cut back to).
    len: u64,
    /// Formatted records not written yet, each ending in a newline, and where each ends.
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Records in the file.
    pub written: u64,
    /// Records that could not be written and that no loss record has reported yet.
    pub unwritten: u64,
    /// Writes that failed (each loses the records it carried).
    pub write_errors: u64,
    /// The error of the current episode of failed writes.
    failing: Option<String>,
    /// The file ends in a torn record that could not be cut back.
    torn: bool,
    /// Value of the newest pong (answer to a ping command).
    pub last_pong: u64,
    /// Sources that went over their new flows/s limit (address, limit), for the
    /// supervisor to block (`throttle.block_for`); taken by it.
    pub over_limit: Vec<(std::net::IpAddr, u64)>,
    /// Ring overflow counts already reported, per ring.
    reported_loss: [u64; MAX_EVENT_RINGS],
}

/// A buffer this large is written at once, not only at the end of a drain.
const FLUSH_BYTES: usize = 256 << 10;

impl EventLog {
    pub fn open(path: &Path) -> std::io::Result<EventLog> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
        let len = file.metadata()?.len();
        Ok(EventLog {
            file,
            path: path.to_path_buf(),
            len,
            buf: Vec::new(),
            ends: Vec::new(),
            written: 0,
            unwritten: 0,
            write_errors: 0,
            failing: None,
            torn: false,
            last_pong: 0,
            over_limit: Vec::new(),
            reported_loss: [0; MAX_EVENT_RINGS],
        })
    }

    /// Called after (re)attaching: loss counted before now belongs to the new segment's baseline.
    pub fn reset_baseline(&mut self) {
        self.reported_loss = [0; MAX_EVENT_RINGS];
    }

    /// Queues one record; it reaches the file at the next [`Self::flush`].
    pub fn write(&mut self, v: &Value) {
        if serde_json::to_writer(&mut self.buf, v).is_ok() {
            self.buf.push(b'\n');
            self.ends.push(self.buf.len());
        } else {
            self.buf.truncate(self.ends.last().copied().unwrap_or(0));
        }
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// Writes the queued records (after a loss record for what earlier failed writes lost).
    pub fn flush(&mut self) {
        if self.ends.is_empty() && self.unwritten == 0 {
            return;
        }
        // First line: the end of a torn record that could not be cut back, then the loss record.
        let mut head = if self.torn { b"\n".to_vec() } else { Vec::new() };
        let loss_end = if self.unwritten > 0 {
            let cause = format!("event log write failed: {}", self.failing.as_deref().unwrap_or("unknown error"));
            let rec = json!({"timestamp": now(), "event_type": "loss", "loss": {"records": self.unwritten, "cause": cause}});
            serde_json::to_writer(&mut head, &rec).expect("a JSON value");
            head.push(b'\n');
            Some(head.len())
        } else {
            None
        };
        let (buf, ends) = (std::mem::take(&mut self.buf), std::mem::take(&mut self.ends));
        let (done, error) = match self.write_all(&[&head, &buf]) {
            Ok(()) => (head.len() + buf.len(), None),
            Err((done, e)) => (done, Some(e)),
        };
        // What made it whole: the loss record, and the queued records up to the last whole one.
        let loss = loss_end.is_some_and(|end| done >= end);
        let queued = ends.iter().take_while(|&&e| head.len() + e <= done).count();
        let whole = if queued > 0 { head.len() + ends[queued - 1] } else { loss_end.filter(|_| loss).unwrap_or(0) };
        self.torn = false;
        if done > whole {
            // A torn record: cut it back off, or else end its line before the next write.
            if self.file.set_len(self.len + whole as u64).is_err() {
                self.torn = true;
            }
        }
        self.len = if self.torn { self.len + done as u64 } else { self.len + whole as u64 };
        self.written += queued as u64 + loss as u64;
        if loss {
            self.unwritten = 0;
        }
        match error {
            Some(e) => {
                self.write_errors += 1;
                self.unwritten += (ends.len() - queued) as u64;
                if self.failing.is_none() {
                    eprintln!(
                        "rampartctl: event log {}: write failed ({e}); records are counted as lost until writes work again",
                        self.path.display()
                    );
                }
                self.failing = Some(e.to_string());
            }
            None if self.failing.take().is_some() => {
                eprintln!("rampartctl: event log {}: writes work again; a loss record says how many records were not written", self.path.display());
            }
            None => {}
        }
    }

    /// Writes `parts` in full, or returns how many bytes made it and the error.
    fn write_all(&mut self, parts: &[&[u8]]) -> Result<(), (usize, std::io::Error)> {
        let mut done = 0;
        for part in parts {
            let mut rest: &[u8] = part;
            while !rest.is_empty() {
                match self.file.write(rest) {
                    Ok(0) => return Err((done, std::io::Error::from(std::io::ErrorKind::WriteZero))),
                    Ok(n) => {
                        done += n;
                        rest = &rest[n..];
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err((done, e)),
                }
            }
        }
        Ok(())
    }

    /// Moves every pending record from the segment to the log. Returns how many.
    pub fn drain(&mut self, seg: &Segment, names: &BTreeMap<u16, String>, rules: &[String], signatures: &[SignatureInfo]) -> u64 {
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
                if rec.kind == EventKind::SourceOverLimit as u16 {
                    self.over_limit.push((source_of(&rec), rec.value));
                }
                self.write(&to_json(&rec, ring, &clock, names, rules, signatures));
                n += 1;
            }
            let lost = seg.events[ring].overflow();
            if lost > self.reported_loss[ring] {
                self.write(&json!({"timestamp": now(), "event_type": "loss", "loss": {"ring": ring, "records": lost - self.reported_loss[ring], "cause": "ring full"}}));
                self.reported_loss[ring] = lost;
            }
        }
        self.flush();
        n
    }
}

/// The source address of a [`EventKind::SourceOverLimit`] record.
fn source_of(rec: &EventRecord) -> std::net::IpAddr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&rec.data[..16]);
    let v6 = std::net::Ipv6Addr::from(a);
    v6.to_ipv4_mapped().map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4)
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

/// Suricata's `flow_id`: one number on every record of a flow, either direction — a hash
/// (FNV-1a) of its protocol and its endpoints in canonical order (ICMP: the addresses and the
/// identifier, so a request and its reply agree), below 2^53 so JSON tools read it exactly.
/// Stable across restarts; flows of two segments with the same addresses and ports share it.
pub fn flow_id(src: &[u8; 16], dst: &[u8; 16], sport: u16, dport: u16, proto: u8) -> u64 {
    let (sport, dport) = if matches!(proto, 1 | 58) { (dport, dport) } else { (sport, dport) };
    let (a, b) = if (src, sport) <= (dst, dport) { ((src, sport), (dst, dport)) } else { ((dst, dport), (src, sport)) };
    let (pa, pb) = (a.1.to_be_bytes(), b.1.to_be_bytes());
    let bytes = std::iter::once(&proto).chain(a.0).chain(&pa).chain(b.0).chain(&pb);
    let h = bytes.fold(0xcbf2_9ce4_8422_2325u64, |h, &byte| (h ^ byte as u64).wrapping_mul(0x0100_0000_01b3));
    h & ((1 << 53) - 1)
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

/// What an alert record says of the signature that matched (by its index in the image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureInfo {
    pub gid: u32,
    pub sid: u32,
    pub rev: u32,
    pub msg: String,
    /// The classtype's description where `classification.config` gives one, else its name.
    pub category: String,
    pub severity: u8,
}

impl SignatureInfo {
    pub fn of(s: &rampart_signatures::Signature) -> SignatureInfo {
        SignatureInfo { gid: s.gid, sid: s.sid, rev: s.rev, msg: s.msg.clone(), category: s.category.clone().or_else(|| s.classtype.clone()).unwrap_or_default(), severity: s.priority }
    }
}

/// One event record as a log line. The record comes from another process's memory, so any
/// bytes must give a JSON object with an `event_type` (unknown kinds and codes are named as
/// such, never trusted as indexes).
pub fn to_json(rec: &EventRecord, ring: usize, clock: &Clock, names: &BTreeMap<u16, String>, rules: &[String], signatures: &[SignatureInfo]) -> Value {
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
        Some(EventKind::SourceOverLimit) => {
            json!({"timestamp": ts, "event_type": "throttle", "in_iface": iface,
                   "throttle": {"reason": "source_rate", "src_ip": source_of(rec).to_string(), "new_flows_per_s": rec.value}})
        }
        Some(EventKind::DropSummary) => {
            let reason = DropReason::all().find(|r| r.index() == rec.code as usize).map(|r| r.label()).unwrap_or_default();
            json!({"timestamp": ts, "event_type": "drop", "in_iface": iface, "worker": ring,
                   "drop": {"reason": reason, "summary": {"held_back_total": rec.value}}})
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
            json!({"timestamp": ts, "event_type": "flow", "in_iface": iface, "flow_id": flow_id(&src, &dst, sport, dport, proto), "src_ip": ip(&src), "src_port": sport,
                   "dest_ip": ip(&dst), "dest_port": dport, "proto": proto_name(proto), "rule": rule, "flow": flow})
        }
        Some(EventKind::Alert) => {
            let (src, dst, sport, dport, proto, sig) = FlowEventData::unpack(rec);
            let code = AlertCode::from_u16(rec.code);
            let (action, rampart) = match code {
                Some(AlertCode::Allowed) => ("allowed", json!({"action": "alert"})),
                Some(AlertCode::Dropped) => ("blocked", json!({"action": "drop"})),
                Some(AlertCode::Rejected) => ("blocked", json!({"action": "reject"})),
                // Monitor mode: forwarded, as Suricata's IDS mode writes it; what inline would do.
                Some(AlertCode::WouldDrop) => ("allowed", json!({"action": "drop", "would": "drop"})),
                Some(AlertCode::WouldReject) => ("allowed", json!({"action": "reject", "would": "reject"})),
                None => ("unknown", json!({"action": "unknown"})),
            };
            let mut alert = json!({"action": action});
            match sig.and_then(|i| signatures.get(i as usize)) {
                Some(s) => {
                    alert["gid"] = s.gid.into();
                    alert["signature_id"] = s.sid.into();
                    alert["rev"] = s.rev.into();
                    alert["signature"] = s.msg.clone().into();
                    alert["category"] = s.category.clone().into();
                    alert["severity"] = s.severity.into();
                }
                // A reload replaced the signatures between the match and this drain.
                None => alert["signature"] = "(signature of an earlier policy generation)".into(),
            }
            json!({"timestamp": ts, "event_type": "alert", "in_iface": iface, "flow_id": flow_id(&src, &dst, sport, dport, proto), "src_ip": ip(&src), "src_port": sport,
                   "dest_ip": ip(&dst), "dest_port": dport, "proto": proto_name(proto), "alert": alert, "rampart": rampart})
        }
        Some(EventKind::WouldDrop) => {
            let (src, dst, sport, dport, proto, rule) = FlowEventData::unpack(rec);
            let reason = DropReason::all().find(|r| r.index() == rec.code as usize).map(|r| r.label()).unwrap_or_default();
            let rule = rule.and_then(|r| rules.get(r as usize)).cloned();
            json!({"timestamp": ts, "event_type": "drop", "in_iface": iface, "flow_id": flow_id(&src, &dst, sport, dport, proto), "src_ip": ip(&src), "src_port": sport,
                   "dest_ip": ip(&dst), "dest_port": dport, "proto": proto_name(proto), "rule": rule,
                   "drop": {"reason": reason}, "rampart": {"would": "drop", "action": "allowed"}})
        }
        Some(EventKind::Anomaly) => {
            let (src, dst, sport, dport, proto, _) = FlowEventData::unpack(rec);
            let (kind, outcome) = rampart_shm::anomaly::parse_event_code(rec.code);
            let anomaly = match kind {
                Some(k) => json!({"type": k.layer(), "event": k.label()}),
                None => json!({"type": "unknown", "event": "unknown"}),
            };
            let rampart = match outcome {
                Some(AnomalyOutcome::Allowed) => json!({"action": "allowed"}),
                Some(AnomalyOutcome::Dropped) => json!({"action": "blocked"}),
                // Monitor mode: forwarded; inline would have dropped it.
                Some(AnomalyOutcome::WouldDrop) => json!({"action": "allowed", "would": "drop"}),
                None => json!({"action": "unknown"}),
            };
            json!({"timestamp": ts, "event_type": "anomaly", "in_iface": iface, "flow_id": flow_id(&src, &dst, sport, dport, proto), "src_ip": ip(&src), "src_port": sport,
                   "dest_ip": ip(&dst), "dest_port": dport, "proto": proto_name(proto), "anomaly": anomaly, "rampart": rampart})
        }
        Some(EventKind::FlowsDumped) => json!({"timestamp": ts, "event_type": "flows_dumped", "request": rec.value}),
        None => json!({"timestamp": ts, "event_type": "unknown", "kind": rec.kind, "ring": ring}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_shm::anomaly::event_code;
    use rampart_shm::Anomaly;

    #[test]
    fn an_anomaly_record_is_an_eve_anomaly_with_what_was_done() {
        let clock = Clock { tsc_hz: 1_000_000_000, tsc0: 0, real0: 0 };
        let names = BTreeMap::from([(3u16, "guest1".to_string())]);
        let mapped = |last: u8| [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, last];
        let (src, dst) = (mapped(1), mapped(2));
        let (data, value) = FlowEventData::pack(&src, &dst, 4000, 80, 6, None);
        let rec = |code| EventRecord { kind: EventKind::Anomaly as u16, port: 3, code, value, len: 32, data, ..Default::default() };
        let j = to_json(&rec(event_code(Anomaly::TcpFlags, AnomalyOutcome::Dropped)), 0, &clock, &names, &[], &[]);
        assert_eq!((j["event_type"].as_str(), j["in_iface"].as_str(), j["src_ip"].as_str(), j["dest_port"].as_u64(), j["proto"].as_str()), (Some("anomaly"), Some("guest1"), Some("10.0.0.1"), Some(80), Some("TCP")), "{j}");
        assert_eq!(j["anomaly"], json!({"type": "decode", "event": "tcp_flags"}));
        assert_eq!(j["rampart"], json!({"action": "blocked"}));
        let j = to_json(&rec(event_code(Anomaly::TcpWindow, AnomalyOutcome::WouldDrop)), 0, &clock, &names, &[], &[]);
        assert_eq!((j["anomaly"]["type"].as_str(), j["rampart"].clone()), (Some("stream"), json!({"action": "allowed", "would": "drop"})));
        let j = to_json(&rec(event_code(Anomaly::LowTtl, AnomalyOutcome::Allowed)), 0, &clock, &names, &[], &[]);
        assert_eq!(j["rampart"], json!({"action": "allowed"}));
        // Bytes from another process: an unknown kind or outcome is named as such.
        let j = to_json(&rec(0xffff), 0, &clock, &names, &[], &[]);
        assert_eq!((j["anomaly"]["event"].as_str(), j["rampart"]["action"].as_str()), (Some("unknown"), Some("unknown")));
    }

    #[test]
    fn an_alerts_category_is_its_classtypes_description_else_its_name() {
        use rampart_signatures::{SigAction, SigProto, Signature};
        let mut s = Signature::new(SigAction::Alert, SigProto::Tcp, 7, vec![]);
        assert_eq!(SignatureInfo::of(&s).category, "");
        s.classtype = Some("trojan-activity".into());
        assert_eq!(SignatureInfo::of(&s).category, "trojan-activity");
        s.category = Some("A Network Trojan was detected".into());
        assert_eq!(SignatureInfo::of(&s).category, "A Network Trojan was detected");
    }

    #[test]
    fn a_flows_records_share_one_flow_id_either_way() {
        let (a, b) = ([1u8; 16], [2u8; 16]);
        assert_eq!(flow_id(&a, &b, 4000, 80, 6), flow_id(&b, &a, 80, 4000, 6), "request and reply");
        assert_ne!(flow_id(&a, &b, 4000, 80, 6), flow_id(&a, &b, 4001, 80, 6));
        assert_ne!(flow_id(&a, &b, 4000, 80, 6), flow_id(&a, &b, 4000, 80, 17));
        // ICMP echo: type 8 one way, 0 the other; the identifier names the flow.
        assert_eq!(flow_id(&a, &b, 0x0800, 77, 1), flow_id(&b, &a, 0x0000, 77, 1));
        assert!(flow_id(&a, &b, 4000, 80, 6) < 1 << 53);
        let clock = Clock { tsc_hz: 1, tsc0: 0, real0: 0 };
        let (data, value) = FlowEventData::pack(&a, &b, 4000, 80, 6, None);
        let rec = EventRecord { kind: EventKind::Anomaly as u16, value, len: 32, data, ..Default::default() };
        assert_eq!(to_json(&rec, 0, &clock, &BTreeMap::new(), &[], &[])["flow_id"], flow_id(&a, &b, 4000, 80, 6));
    }
}
