//! Drains the dataplane's event rings into the event log: one JSON object
//! per line in the spirit of Suricata's eve.json (`timestamp`,
//! `event_type`, `in_iface`, ...). Loss is never silent: ring overflows are
//! read from the segment and written to the log as `event_type: "loss"`.

use rampart_shm::ring::{AlertCode, EventKind, FlowEndCode, FlowEventData, FLOW_START_REJECTED};
use rampart_shm::{AnomalyOutcome, DropReason, EventRecord, Segment, MAX_EVENT_RINGS};
use serde_json::{json, Value};
use crate::chain::{Chain, Key, Link};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The event log file. Records are queued as they come and sealed into the chain
/// ([`crate::chain`]: a sequence number and an HMAC over the record and the one before) when
/// they are written, once per drain, whole records only: a short or failed write (a full or
/// failing disk) is cut back to the last whole record and the chain to its head, the records
/// that did not make it are counted (`unwritten`, and each failed write in `write_errors`),
/// stderr says so once per episode, and the first write that works again starts with a `loss`
/// record saying exactly how many records were not written and why — so the sequence numbers
/// stay contiguous and the loss sits where it happened.
///
/// Files rotate by size and age (`[events]`) and on [`EventLog::reopen`] (SIGHUP, after
/// logrotate moved the file); each file opens with a checkpoint that continues the chain.
pub struct EventLog {
    file: std::fs::File,
    path: PathBuf,
    /// Bytes of whole records in the file (where a short write is cut back to).
    len: u64,
    /// Queued records (open for their seal: [`crate::chain::open_record`]), and where each ends.
    buf: Vec<u8>,
    ends: Vec<usize>,
    chain: Chain,
    rotation: Rotation,
    opened_at: Instant,
    syslog: Option<SyslogHead>,
    /// Records in the file.
    pub written: u64,
    /// Records that could not be written and that no loss record has reported yet.
    pub unwritten: u64,
    /// Writes that failed (each loses the records it carried).
    pub write_errors: u64,
    /// Sequence number of the current file's opening checkpoint.
    first_seq: u64,
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

/// When the log moves to a new file (`[events]`), and how many old ones it keeps.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    /// At this size (0: never).
    pub bytes: u64,
    /// At this age, if the file holds more than its checkpoint (0: never).
    pub seconds: u64,
    /// Rotated files kept (the oldest beyond are removed; 0: all kept).
    pub keep: usize,
}

/// The chain head, sent to syslog every so often, so a log cut cleanly at a record boundary
/// can still be told from one that ends there (`rampartctl verify-log --head`).
struct SyslogHead {
    socket: PathBuf,
    every: Duration,
    last: Instant,
    sent: u64,
    failing: bool,
}

/// A buffer this large is written at once, not only at the end of a drain.
const FLUSH_BYTES: usize = 256 << 10;

impl EventLog {
    /// Opens (or creates, 0640) the log at `path` and continues its chain under `key`: from
    /// the file's last sealed record, else from the newest rotated file beside it, else from
    /// the start. A record the previous writer tore (it died mid-write) is cut off, and the
    /// checkpoint written now says so.
    pub fn open(path: &Path, key: Key) -> std::io::Result<EventLog> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = open_append(path)?;
        let regular = file.metadata()?.is_file();
        let mut len = file.metadata()?.len();
        let found = if regular { crate::chain::last_link(path)? } else { None };
        let mut extra = serde_json::Map::new();
        if found.is_none() && len > 0 {
            // A log written before records were sealed (or not a log at all): moved aside,
            // so the sealed one starts clean and verifies.
            let aside = path.with_file_name(format!("{}.unsealed-{}", file_name(path), stamp()));
            std::fs::rename(path, &aside)?;
            eprintln!("rampartctl: event log {}: it holds no sealed record; moved aside to {}", path.display(), aside.display());
            extra.insert("unsealed_moved_to".into(), file_name(&aside).into());
            file = open_append(path)?;
            len = 0;
        }
        let (head, opened) = match found {
            Some((head, torn)) => {
                if torn > 0 {
                    file.set_len(len - torn)?;
                    len -= torn;
                    extra.insert("cut_torn_bytes".into(), torn.into());
                }
                (head, "resumed")
            }
            None => match regular.then(|| newest_rotated(path)).flatten() {
                Some((name, head)) => {
                    extra.insert("previous".into(), name.into());
                    (head, "resumed")
                }
                None => (Link::default(), "new"),
            },
        };
        let mut log = EventLog {
            file,
            path: path.to_path_buf(),
            len,
            buf: Vec::new(),
            ends: Vec::new(),
            chain: Chain::new(key, head),
            rotation: Rotation::default(),
            opened_at: Instant::now(),
            syslog: None,
            written: 0,
            unwritten: 0,
            write_errors: 0,
            first_seq: head.seq + 1,
            failing: None,
            torn: false,
            last_pong: 0,
            over_limit: Vec::new(),
            reported_loss: [0; MAX_EVENT_RINGS],
        };
        log.write(&crate::chain::checkpoint(&now(), opened, head, extra.into()));
        log.flush();
        Ok(log)
    }

    /// Rotation, and the chain head's trips to syslog, as `[events]` says.
    pub fn configure(&mut self, events: &rampart_config::Events) {
        self.rotation = Rotation { bytes: events.rotate_bytes, seconds: events.rotate_seconds, keep: events.keep_files as usize };
        self.syslog = (!events.syslog.is_empty() && events.syslog_head_seconds > 0).then(|| SyslogHead {
            socket: PathBuf::from(&events.syslog),
            every: Duration::from_secs(events.syslog_head_seconds),
            last: Instant::now(),
            sent: 0,
            failing: false,
        });
    }

    /// The chain head: the newest record written.
    pub fn head(&self) -> Link {
        self.chain.head
    }

    /// Called after (re)attaching: loss counted before now belongs to the new segment's baseline.
    pub fn reset_baseline(&mut self) {
        self.reported_loss = [0; MAX_EVENT_RINGS];
    }

    /// Queues one record; it reaches the file at the next [`Self::flush`].
    pub fn write(&mut self, v: &Value) {
        crate::chain::open_record(v, &mut self.buf);
        self.ends.push(self.buf.len());
        if self.buf.len() >= FLUSH_BYTES {
            self.flush();
        }
    }

    /// Seals and writes the queued records (after a loss record for what earlier failed
    /// writes lost); then rotates if the file reached its size.
    pub fn flush(&mut self) {
        if self.ends.is_empty() && self.unwritten == 0 {
            return;
        }
        let before = self.chain.head;
        // The end of a torn record that could not be cut back, then the loss record, then the rest.
        let mut out = if self.torn { b"\n".to_vec() } else { Vec::new() };
        let pre = out.len();
        let mut ends = Vec::with_capacity(self.ends.len() + 1);
        let mut links = Vec::with_capacity(self.ends.len() + 1);
        let has_loss = self.unwritten > 0;
        if has_loss {
            let cause = format!("event log write failed: {}", self.failing.as_deref().unwrap_or("unknown error"));
            let rec = json!({"timestamp": now(), "event_type": "loss", "loss": {"records": self.unwritten, "cause": cause}});
            self.chain.seal_value(&rec, &mut out);
            ends.push(out.len());
            links.push(self.chain.head);
        }
        let (buf, queued) = (std::mem::take(&mut self.buf), std::mem::take(&mut self.ends));
        let mut start = 0;
        for &end in &queued {
            self.chain.seal(&buf[start..end], &mut out);
            ends.push(out.len());
            links.push(self.chain.head);
            start = end;
        }
        let (done, error) = match write_all(&mut self.file, &out) {
            Ok(()) => (out.len(), None),
            Err((done, e)) => (done, Some(e)),
        };
        // What made it whole, and where the chain stands after it.
        let whole_n = ends.iter().take_while(|&&e| e <= done).count();
        let whole = if whole_n > 0 { ends[whole_n - 1] } else if done >= pre { pre } else { 0 };
        self.chain.head = if whole_n > 0 { links[whole_n - 1] } else { before };
        if done >= pre {
            self.torn = false;
        }
        if done > whole {
            // A torn record: cut it back off, or else end its line before the next write.
            if self.file.set_len(self.len + whole as u64).is_err() {
                self.torn = true;
            }
        }
        self.len += if self.torn { done as u64 } else { whole as u64 };
        let loss = has_loss && whole_n > 0;
        let records = whole_n - loss as usize;
        self.written += whole_n as u64;
        if loss {
            self.unwritten = 0;
        }
        match error {
            Some(e) => {
                self.write_errors += 1;
                self.unwritten += (queued.len() - records) as u64;
                if self.failing.is_none() {
                    eprintln!(
                        "rampartctl: event log {}: write failed ({e}); records are counted as lost until writes work again",
                        self.path.display()
                    );
                }
                self.failing = Some(e.to_string());
            }
            None => {
                if self.failing.take().is_some() {
                    eprintln!("rampartctl: event log {}: writes work again; a loss record says how many records were not written", self.path.display());
                }
                if self.rotation.bytes > 0 && self.len >= self.rotation.bytes {
                    self.rotate("size");
                }
            }
        }
    }

    /// Time-driven work, from the supervisor's tick: rotation by age, the chain head to syslog.
    pub fn tick(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.opened_at);
        if self.rotation.seconds > 0 && age >= Duration::from_secs(self.rotation.seconds) {
            // A file that holds only its checkpoint is not worth a new one.
            if self.chain.head.seq > self.first_seq {
                self.rotate("age");
            } else {
                self.opened_at = now;
            }
        }
        let head = self.chain.head;
        let log = self.path.display().to_string();
        if let Some(s) = self.syslog.as_mut().filter(|s| now.saturating_duration_since(s.last) >= s.every) {
            s.last = now;
            if s.sent != head.seq {
                s.sent = head.seq;
                s.send(&log, head);
            }
        }
    }

    /// Moves the current file aside (`eve.json.20261205T133000`), opens a new one that
    /// continues the chain, and removes the oldest rotated files beyond `keep_files`.
    pub fn rotate(&mut self, why: &str) {
        self.flush();
        if !self.file.metadata().is_ok_and(|m| m.is_file()) {
            return;
        }
        let stamp = stamp();
        let base = file_name(&self.path);
        // Files rotated in the same second are told apart by a number above any used so far.
        let used = rotated_files(&self.path, &base)
            .iter()
            .filter_map(|(name, _)| name[base.len() + 1..].strip_prefix(&stamp).map(|rest| rest.strip_prefix('-').map_or(0, |n| n.parse::<u64>().unwrap_or(0) + 1)))
            .max();
        let aside = match used {
            None => self.path.with_file_name(format!("{base}.{stamp}")),
            Some(n) => self.path.with_file_name(format!("{base}.{stamp}-{}", n.max(1))),
        };
        if let Err(e) = std::fs::rename(&self.path, &aside) {
            eprintln!("rampartctl: event log {}: cannot rotate ({e}); writing on", self.path.display());
            self.opened_at = Instant::now();
            return;
        }
        let name = file_name(&aside);
        if self.switch("rotated", json!({"previous": name, "reason": why})).is_err() {
            let _ = std::fs::rename(&aside, &self.path);
            return;
        }
        self.prune(&base);
    }

    /// Reopens the file at the log's path (SIGHUP: logrotate has moved it away); a new file
    /// opens with a checkpoint that continues the chain.
    pub fn reopen(&mut self) {
        self.flush();
        use std::os::unix::fs::MetadataExt;
        let same = match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            let _ = self.switch("reopened", json!({}));
        }
    }

    /// Writes on in a fresh file at the log's path, opened with a checkpoint.
    fn switch(&mut self, opened: &str, extra: Value) -> std::io::Result<()> {
        let file = open_append(&self.path).inspect_err(|e| eprintln!("rampartctl: event log {}: cannot open a new file ({e}); writing on", self.path.display()))?;
        self.len = file.metadata()?.len();
        self.file = file;
        self.torn = false;
        self.opened_at = Instant::now();
        let head = self.chain.head;
        self.first_seq = head.seq + 1;
        self.write(&crate::chain::checkpoint(&now(), opened, head, extra));
        self.flush();
        Ok(())
    }

    /// Removes the oldest of the files this log rotated (`BASE.YYYYmmddTHHMMSS[-N]`) beyond `keep`.
    fn prune(&self, base: &str) {
        if self.rotation.keep == 0 {
            return;
        }
        let mut rotated = rotated_files(&self.path, base);
        rotated.retain(|(name, _)| is_stamp(&name[base.len() + 1..]));
        // By time, then by the number that tells apart files rotated in the same second.
        rotated.sort_by_key(|(name, _)| {
            let (stamp, n) = name[base.len() + 1..].split_once('-').unwrap_or((&name[base.len() + 1..], "0"));
            (stamp.to_string(), n.parse::<u64>().unwrap_or(0))
        });
        let excess = rotated.len().saturating_sub(self.rotation.keep);
        for (_, path) in rotated.into_iter().take(excess) {
            if let Err(e) = std::fs::remove_file(&path) {
                eprintln!("rampartctl: event log: cannot remove the rotated file {} ({e})", path.display());
            }
        }
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

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)
}

/// The last part of `path`, as text.
fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The time now, as rotated files are named: `YYYYmmddTHHMMSS` (UTC).
fn stamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}", t.year(), t.month() as u8, t.day(), t.hour(), t.minute(), t.second())
}

/// Files beside the log named `BASE.*` (rotated by Rampart or logrotate; not compressed ones,
/// nor a log from before records were sealed, `BASE.unsealed-…`).
fn rotated_files(path: &Path, base: &str) -> Vec<(String, PathBuf)> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let prefix = format!("{base}.");
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let skip = [".gz", ".xz", ".zst"].iter().any(|x| name.ends_with(x)) || name[prefix.len().min(name.len())..].starts_with("unsealed-");
            (name.starts_with(&prefix) && !skip).then(|| (name, e.path()))
        })
        .collect()
}

/// The log at `path` and the files rotated beside it (what `rampartctl verify-log` reads).
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let base = file_name(path);
    let mut files: Vec<PathBuf> = rotated_files(path, &base).into_iter().map(|(_, p)| p).collect();
    files.push(path.to_path_buf());
    files
}

/// `YYYYmmddTHHMMSS` or `YYYYmmddTHHMMSS-N`.
fn is_stamp(s: &str) -> bool {
    let (stamp, n) = s.split_once('-').unwrap_or((s, "0"));
    stamp.len() == 15 && stamp.bytes().enumerate().all(|(i, b)| if i == 8 { b == b'T' } else { b.is_ascii_digit() }) && n.bytes().all(|b| b.is_ascii_digit())
}

/// The chain head of the most recently written rotated file beside the log, and its name.
fn newest_rotated(path: &Path) -> Option<(String, Link)> {
    let base = file_name(path);
    let mut files = rotated_files(path, &base);
    files.sort_by_key(|(_, p)| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files.into_iter().rev().find_map(|(name, p)| crate::chain::last_link(&p).ok().flatten().map(|(l, _)| (name, l)))
}

/// Writes `bytes` in full, or returns how many made it and the error.
fn write_all(file: &mut std::fs::File, bytes: &[u8]) -> Result<(), (usize, std::io::Error)> {
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return Err((done, std::io::Error::from(std::io::ErrorKind::WriteZero))),
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

impl SyslogHead {
    /// One RFC 5424 message (facility log audit, severity info) on the local syslog socket.
    fn send(&mut self, log: &str, head: Link) {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
        let host = if host.is_empty() { "-".to_string() } else { host };
        let msg = format!("<110>1 {} {host} rampartctl {} chain - event log {log} chain head {head}", now(), std::process::id());
        let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.send_to(msg.as_bytes(), &self.socket));
        match sent {
            Ok(_) if self.failing => {
                self.failing = false;
                eprintln!("rampartctl: syslog {}: the chain head reaches it again", self.socket.display());
            }
            Ok(_) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                eprintln!("rampartctl: syslog {}: cannot send the event log's chain head ({e}); a log cut at a record boundary cannot be proven short without it", self.socket.display());
            }
            Err(_) => {}
        }
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

/// eve.json's form: ISO 8601 in UTC with microseconds and a numeric offset,
/// `2026-12-05T14:43:48.422749+0000` (Suricata's schema wants the offset, not `Z`).
fn rfc3339(ns: i128) -> String {
    const EVE: &[time::format_description::FormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]+0000");
    time::OffsetDateTime::from_unix_timestamp_nanos(ns).ok().and_then(|t| t.format(EVE).ok()).unwrap_or_default()
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
    use crate::chain::{self, Key};
    use rampart_shm::anomaly::event_code;
    use rampart_shm::Anomaly;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rampart-events-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn records(path: &Path) -> Vec<Value> {
        std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn fill(log: &mut EventLog, n: usize) {
        for i in 0..n {
            log.write(&json!({"timestamp": now(), "event_type": "drop", "n": i, "pad": "x".repeat(200)}));
            if i % 8 == 7 {
                log.flush();
            }
        }
        log.flush();
    }

    #[test]
    fn rotation_by_size_carries_the_chain_and_keeps_the_newest_files() {
        let d = dir("rotate");
        let path = d.join("eve.json");
        let key = Key::random().unwrap();
        let mut log = EventLog::open(&path, key.clone()).unwrap();
        log.configure(&rampart_config::Events { rotate_bytes: 8192, keep_files: 3, ..Default::default() });
        fill(&mut log, 400);
        let files = log_files(&path);
        assert_eq!(files.len(), 4, "three rotated files kept beside the current one: {files:?}");
        for f in &files {
            assert!(std::fs::metadata(f).unwrap().len() < 8192 + 8 * 400, "{} rotated near its size", f.display());
            let first = &records(f)[0];
            assert_eq!(first["event_type"], "chain", "{} opens with a checkpoint", f.display());
        }
        let r = chain::verify(&key, &files, Some(log.head())).unwrap();
        assert!(r.ok(), "{:?}", r.problems);
        assert!(r.starts_after > 0 && r.notes[0].contains("the kept part starts"), "the oldest files were pruned: {:?}", r.notes);
        assert_eq!(r.last_seq, log.head().seq);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_restarted_writer_continues_the_chain_and_cuts_a_record_torn_by_the_last() {
        let d = dir("resume");
        let path = d.join("eve.json");
        let key = Key::random().unwrap();
        let mut log = EventLog::open(&path, key.clone()).unwrap();
        fill(&mut log, 5);
        let head = log.head();
        drop(log);
        // The writer died mid-record.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"timestamp\":\"2026-").unwrap();
        drop(f);
        let mut log = EventLog::open(&path, key.clone()).unwrap();
        fill(&mut log, 3);
        let recs = records(&path);
        let cp = &recs[6];
        assert_eq!((cp["event_type"].as_str(), cp["chain"]["opened"].as_str()), (Some("chain"), Some("resumed")));
        assert_eq!(cp["chain"]["head"]["seq"], head.seq);
        assert_eq!(cp["chain"]["cut_torn_bytes"], 19);
        let r = chain::verify(&key, std::slice::from_ref(&path), Some(log.head())).unwrap();
        assert!(r.ok() && r.verified == recs.len() as u64, "{r:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_log_from_before_records_were_sealed_is_moved_aside_and_the_new_one_verifies() {
        let d = dir("unsealed");
        let path = d.join("eve.json");
        std::fs::write(&path, "{\"event_type\":\"drop\"}\n").unwrap();
        let key = Key::random().unwrap();
        let mut log = EventLog::open(&path, key.clone()).unwrap();
        fill(&mut log, 2);
        let first = &records(&path)[0];
        assert_eq!(first["chain"]["opened"], "new");
        let aside = d.join(first["chain"]["unsealed_moved_to"].as_str().unwrap());
        assert_eq!(std::fs::read_to_string(aside).unwrap(), "{\"event_type\":\"drop\"}\n", "kept as it was");
        assert_eq!(log_files(&path), vec![path.clone()], "not one of the log's files");
        assert!(chain::verify(&key, &log_files(&path), Some(log.head())).unwrap().ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn after_logrotate_moves_the_file_a_reopen_continues_the_chain_in_a_new_one() {
        let d = dir("reopen");
        let path = d.join("eve.json");
        let key = Key::random().unwrap();
        let mut log = EventLog::open(&path, key.clone()).unwrap();
        fill(&mut log, 4);
        log.reopen(); // nothing moved: same file, no checkpoint
        std::fs::rename(&path, d.join("eve.json.1")).unwrap();
        log.reopen();
        fill(&mut log, 2);
        let recs = records(&path);
        assert_eq!(recs[0]["chain"]["opened"], "reopened");
        assert_eq!(recs.len(), 3);
        assert_eq!(records(&d.join("eve.json.1")).len(), 5);
        let r = chain::verify(&key, &log_files(&path), None).unwrap();
        assert!(r.ok() && r.verified == 8 && r.notes.is_empty(), "{r:?}");
        // A writer started after the move (the current file still empty) resumes from the moved one.
        std::fs::rename(&path, d.join("eve.json.0")).unwrap();
        drop(log);
        let log = EventLog::open(&path, key.clone()).unwrap();
        assert_eq!(records(&path)[0]["chain"]["opened"], "resumed");
        let r = chain::verify(&key, &log_files(&path), Some(log.head())).unwrap();
        assert!(r.ok() && r.verified == 9, "{r:?}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_chain_head_goes_to_syslog_as_an_rfc5424_message_when_it_moved() {
        let d = dir("syslog");
        let sock = d.join("log.sock");
        let rx = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut log = EventLog::open(&d.join("eve.json"), Key::random().unwrap()).unwrap();
        log.configure(&rampart_config::Events { syslog: sock.display().to_string(), syslog_head_seconds: 1, ..Default::default() });
        fill(&mut log, 3);
        let t = Instant::now();
        log.tick(t); // not yet a second
        let mut buf = [0u8; 1024];
        assert!(rx.recv(&mut buf).is_err());
        log.tick(t + Duration::from_secs(2));
        let n = rx.recv(&mut buf).unwrap();
        let msg = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(msg.starts_with("<110>1 "), "{msg}");
        let head = msg.rsplit(' ').next().unwrap();
        assert_eq!(chain::Link::parse(head), Some(log.head()), "{msg}");
        log.tick(t + Duration::from_secs(4)); // the head did not move: nothing sent
        assert!(rx.recv(&mut buf).is_err());
        std::fs::remove_dir_all(&d).unwrap();
    }

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
    fn timestamps_are_eve_s_microseconds_with_an_offset() {
        assert_eq!(rfc3339(1_764_946_028_422_749_123), "2025-12-05T14:47:08.422749+0000");
        let pattern = |t: &str| t.len() == 31 && t.as_bytes()[10] == b'T' && t.as_bytes()[19] == b'.' && t.ends_with("+0000");
        assert!(pattern(&now()), "{}", now());
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
