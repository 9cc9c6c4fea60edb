//! Read-only views of the dataplane through the shared-memory segment:
//! status, ports and statistics, as serialisable snapshots shared by the
//! admin API, the CLI and the Prometheus endpoint.

use crate::compile::SlotMap;
use rampart_shm::layout::PortState;
use rampart_shm::{DropReason, GuardCounterValues, InspectCounterValues, PolicyImage, PortCounterValues, Segment, WorkerTotalValues, MAX_EVENT_RINGS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// Whether the control process is attached to a live dataplane.
    pub attached: bool,
    pub shm: String,
    pub dataplane_pid: u32,
    pub control_pid: u32,
    pub heartbeat_age_ms: f64,
    pub workers: u32,
    pub published_generation: u64,
    pub applied_generation: u64,
    pub rejected_generation: u64,
    pub rejected_reason: String,
    /// Generation each worker runs.
    pub worker_generations: Vec<u64>,
    pub events_logged: u64,
    pub events_lost: u64,
    /// Event log writes that failed (a full or failing disk), and the records they lost
    /// that no loss record has reported yet.
    #[serde(default)]
    pub events_write_errors: u64,
    #[serde(default)]
    pub events_unwritten: u64,
    /// The event log's chain head, `SEQ:HMAC` (`rampartctl verify-log --head`).
    #[serde(default)]
    pub events_head: String,
    /// Its sequence number: the newest record's.
    #[serde(default)]
    pub events_seq: u64,
    pub config: String,
    pub last_reload: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PortRow {
    pub name: String,
    pub slot: u16,
    pub kind: String,
    pub attach: String,
    pub enabled: bool,
    /// `up`, `error` or `absent` as the dataplane reports it.
    pub state: String,
    pub link: bool,
    pub message: String,
    /// The port's counters summed over workers: one key per field of the
    /// [`rampart_shm::PortCounters`] list (`rx_packets`, `tx_full`, …).
    #[serde(flatten)]
    pub counters: PortCounterValues,
    /// What the guard dropped, by reason (the [`rampart_shm::GuardCounters`] list).
    #[serde(default)]
    pub guard: GuardCounterValues,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WorkerRow {
    pub worker: usize,
    /// The worker's totals: one key per field of the [`rampart_shm::WorkerTotals`] list
    /// that `rampartctl stats` shows (`busy_cycles`, `sleeps`, …).
    #[serde(flatten)]
    pub totals: WorkerTotalValues,
    /// Busy cycles per packet since the dataplane started.
    pub cycles_per_packet: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleRow {
    pub id: String,
    pub action: String,
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
}

/// The flow table's counters: one key per [`rampart_shm::FlowStatus::FIELDS`] entry
/// (`live`, `capacity`, `creations`, …), and live flows per port (guest) name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FlowTableRow {
    #[serde(flatten)]
    pub counters: BTreeMap<String, u64>,
    pub per_port: BTreeMap<String, u64>,
}

impl FlowTableRow {
    /// A counter by its name in the list (0 if this reply lacks it).
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    pub ports: Vec<PortRow>,
    /// Per-rule counters, in rule order (counters follow the rule id across reloads).
    pub rules: Vec<RuleRow>,
    pub flow_table: FlowTableRow,
    /// Drops by reason (only reasons seen).
    pub drops: BTreeMap<String, u64>,
    /// Monitor mode: packets forwarded that would have been dropped, by reason (only
    /// reasons seen).
    #[serde(default)]
    pub would_drops: BTreeMap<String, u64>,
    pub workers: Vec<WorkerRow>,
    pub events_lost: u64,
    /// Inline inspection, summed over workers (the [`rampart_shm::InspectCounters`] list).
    #[serde(default)]
    pub inspection: InspectCounterValues,
    /// Alerts per signature that has alerted (the others are left out).
    #[serde(default)]
    pub signatures: Vec<SignatureRow>,
    /// Protocol anomalies detected, by kind (every kind, whatever its action).
    #[serde(default)]
    pub anomalies: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SignatureRow {
    pub gid: u32,
    pub sid: u32,
    pub action: String,
    pub alerts: u64,
}

/// Events dropped by the dataplane because a ring was full, over all rings.
pub fn events_lost(seg: &Segment) -> u64 {
    (0..MAX_EVENT_RINGS).map(|r| seg.events[r].overflow()).sum()
}

pub fn ports(seg: Option<&Segment>, image: &PolicyImage) -> Vec<PortRow> {
    let workers = seg.map(|s| s.header().workers.load(Ordering::Relaxed) as usize).unwrap_or(0);
    let slot_names: SlotMap = crate::compile::slots_of(image).ports;
    let mut rows: Vec<PortRow> = image
        .ports
        .iter()
        .map(|p| {
            let mut row = PortRow {
                name: p.name.clone(),
                slot: p.slot,
                kind: if p.socket.is_empty() {
                    "device".into()
                } else if p.client {
                    "vhost-client".into()
                } else {
                    "vhost-server".into()
                },
                attach: match p.attach {
                    rampart_shm::Attach::Segment(s) => format!("segment {}", image.segments.get(s as usize).map(|s| s.name.as_str()).unwrap_or("?")),
                    rampart_shm::Attach::Wire(peer) => format!(
                        "wire {}",
                        slot_names.iter().find(|(_, &s)| s == peer).map(|(n, _)| n.as_str()).unwrap_or("?")
                    ),
                },
                enabled: p.enabled,
                state: "absent".into(),
                ..Default::default()
            };
            if let Some(seg) = seg {
                let st = &seg.ports[p.slot as usize];
                let (state, _, message) = st.get();
                row.state = match state {
                    s if s == PortState::Up as u32 => "up",
                    s if s == PortState::Error as u32 => "error",
                    _ => "absent",
                }
                .into();
                row.link = st.link.load(Ordering::Relaxed) != 0;
                row.message = message;
                row.counters = seg.workers[..workers].iter().map(|w| w.ports[p.slot as usize].read()).sum();
                row.guard = seg.workers[..workers].iter().map(|w| w.guard[p.slot as usize].read()).sum();
            }
            row
        })
        .collect();
    rows.sort_by_key(|r| r.slot);
    rows
}

/// A rule action as reports and metric labels name it (`allow`, `deny`, …).
pub fn action_label(action: rampart_shm::RuleAction) -> String {
    format!("{action:?}").to_lowercase()
}

/// One rule's (packets, bytes, flows) over the first `workers` workers, by its counter
/// slot (zeros for a rule without one).
pub fn rule_counters(seg: &Segment, workers: usize, counter: u16) -> [u64; 3] {
    let c = counter as usize;
    if c >= rampart_shm::MAX_RULE_COUNTERS {
        return [0; 3];
    }
    seg.workers[..workers].iter().fold([0; 3], |[p, b, f], w| {
        let r = &w.rules[c];
        [p + r.packets.get(), b + r.bytes.get(), f + r.flows.get()]
    })
}

/// Ports, rules, flow table, drops and workers: what `rampartctl stats` shows.
pub fn stats(seg: Option<&Segment>, image: &PolicyImage) -> Stats {
    let mut s = stats_without_rules(seg, image);
    let (Some(seg), Some(fw)) = (seg, &image.firewall) else { return s };
    let workers = seg.header().workers.load(Ordering::Relaxed) as usize;
    for r in &fw.rules {
        let [packets, bytes, flows] = rule_counters(seg, workers, r.counter);
        s.rules.push(RuleRow { id: r.id.clone(), action: action_label(r.action), packets, bytes, flows });
    }
    s
}

/// Everything [`stats`] reports but the rules, whose rows follow the policy's size.
pub fn stats_without_rules(seg: Option<&Segment>, image: &PolicyImage) -> Stats {
    let mut s = Stats { ports: ports(seg, image), ..Default::default() };
    let Some(seg) = seg else { return s };
    let workers = seg.header().workers.load(Ordering::Relaxed) as usize;
    for r in DropReason::all() {
        let n: u64 = seg.workers[..workers].iter().map(|w| w.drops[r.index()].get()).sum();
        if n > 0 {
            s.drops.insert(r.label(), n);
        }
        let would: u64 = seg.workers[..workers].iter().map(|w| w.would[r.index()].get()).sum();
        if would > 0 {
            s.would_drops.insert(r.label(), would);
        }
    }
    for (i, w) in seg.workers[..workers].iter().enumerate() {
        let totals = w.totals.read();
        let (cycles, pkts) = (totals.busy_cycles, totals.busy_packets);
        let cycles_per_packet = if pkts > 0 { cycles as f64 / pkts as f64 } else { 0.0 };
        s.workers.push(WorkerRow { worker: i, totals, cycles_per_packet });
    }
    s.events_lost = events_lost(seg);
    for &a in rampart_shm::Anomaly::ALL {
        s.anomalies.insert(a.label().into(), seg.workers[..workers].iter().map(|w| w.anomalies[a.index()].get()).sum());
    }
    s.inspection = seg.workers[..workers].iter().map(|w| w.inspect.read()).sum();
    if let Some(ins) = &image.inspection {
        for (sig, &c) in ins.signatures.iter().zip(&ins.counters).filter(|(_, &c)| (c as usize) < rampart_shm::MAX_SIGNATURE_COUNTERS) {
            let alerts: u64 = seg.workers[..workers].iter().map(|w| w.signatures[c as usize].get()).sum();
            if alerts > 0 {
                let action = format!("{:?}", sig.action).to_lowercase();
                s.signatures.push(SignatureRow { gid: sig.gid, sid: sig.sid, action, alerts });
            }
        }
    }
    let f = &seg.flows;
    s.flow_table = FlowTableRow {
        counters: f.fields().map(|(field, v)| (field.name.to_string(), v)).collect(),
        per_port: image.ports.iter().map(|p| (p.name.clone(), f.per_port[p.slot as usize].load(Ordering::Relaxed))).collect(),
    };
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::daemon::Daemon;
    use crate::events::EventLog;
    use std::path::Path;
    use std::sync::Arc;

    /// A daemon with one port `a`, attached to a segment (in `dir`) of two workers whose
    /// port-`a` counters and totals hold 1, 2, 3, … in list order (worker 0) and 100 times
    /// that (worker 1), set field by field as the dataplane writes them.
    pub(crate) fn counted_daemon(dir: &Path) -> (Daemon, Arc<Segment>) {
        let _ = std::fs::remove_dir_all(dir);
        let text = "[[segments]]\nname = \"lan\"\n[[ports]]\nname = \"a\"\nkind = \"device\"\ndevice = \"net_null0\"\nsegment = \"lan\"\n";
        let config = rampart_config::parse("t.toml", text).unwrap();
        let d = Daemon::new(Path::new("t.toml"), config, EventLog::open(Path::new("/dev/null"), crate::chain::Key::random().unwrap()).unwrap()).unwrap();
        let seg = Arc::new(Segment::create(&dir.join("shm"), 0o600, 2, 1_000, 0).unwrap());
        let slot = d.inner.lock().unwrap().image().ports[0].slot as usize;
        for (w, base) in [(0, 1), (1, 100)] {
            let p = &seg.workers[w].ports[slot];
            for (i, c) in [&p.rx_packets, &p.rx_bytes, &p.tx_packets, &p.tx_bytes, &p.drop_packets, &p.drop_bytes, &p.tx_full, &p.would_drop].into_iter().enumerate() {
                c.add(base * (i as u64 + 1));
            }
            let t = &seg.workers[w].totals;
            for (i, c) in [&t.busy_cycles, &t.busy_packets, &t.idle_polls, &t.sleeps, &t.events_lost].into_iter().enumerate() {
                c.add(base * (i as u64 + 1));
            }
        }
        d.inner.lock().unwrap().segment = Some(seg.clone());
        (d, seg)
    }

    /// `rampartctl stats --json` keeps its field names for ports and workers (scripts and
    /// the bench rig read them), and the CLI reads back what the server sends.
    #[test]
    fn port_and_worker_rows_keep_their_json_fields() {
        let dir = std::env::temp_dir().join(format!("rampart-state-json-{}", std::process::id()));
        let (d, seg) = counted_daemon(&dir);
        let image = d.inner.lock().unwrap().image().clone();
        let slot = image.ports[0].slot;
        seg.workers[0].guard[slot as usize].spoof_ip.add(3);
        seg.workers[1].guard[slot as usize].spoof_ip.add(4);
        seg.workers[1].guard[slot as usize].mac_limit.add(1);
        let v = serde_json::to_value(stats(Some(&seg), &image)).unwrap();
        assert_eq!(
            v["ports"],
            serde_json::json!([{"name": "a", "slot": slot, "kind": "device", "attach": "segment lan", "enabled": true, "state": "absent", "link": false, "message": "",
                "rx_packets": 101, "rx_bytes": 202, "tx_packets": 303, "tx_bytes": 404, "drop_packets": 505, "drop_bytes": 606, "tx_full": 707, "would_drop": 808,
                "guard": {"spoof_mac": 0, "spoof_ip": 7, "arp_spoof": 0, "nd_spoof": 0, "rogue_dhcp": 0, "rogue_ra": 0, "mac_limit": 1, "throttled": 0, "storm": 0, "new_flow_rate": 0, "source_rate": 0, "destination_rate": 0}}])
        );
        assert_eq!(
            v["workers"],
            serde_json::json!([
                {"worker": 0, "busy_cycles": 1, "busy_packets": 2, "cycles_per_packet": 0.5, "idle_polls": 3, "sleeps": 4},
                {"worker": 1, "busy_cycles": 100, "busy_packets": 200, "cycles_per_packet": 0.5, "idle_polls": 300, "sleeps": 400},
            ])
        );
        let back: Stats = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), v, "what the CLI reads is what was sent");
        drop((d, seg));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
