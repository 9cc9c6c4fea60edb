//! The Prometheus endpoint: a collector that reads the shared-memory
//! counters at scrape time (no copies to keep in sync, nothing lost between
//! scrapes), served over HTTP on loopback by default.

use crate::daemon::Daemon;
use crate::state;
use rampart_shm::{CounterField, FlowMetric, GuardCounters, InspectCounters, PortCounters, WorkerTotals};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::Arc;

struct ShmCollector {
    daemon: Arc<Daemon>,
    descs: Vec<Desc>,
}

fn metric(labels: &[(&str, &str)]) -> Metric {
    let mut m = Metric::default();
    let pairs: Vec<LabelPair> = labels
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).into());
            l.set_value((*v).into());
            l
        })
        .collect();
    m.set_label(pairs);
    m
}

/// Builds metric families: `family(name, help, type)` then `.add(labels, value)`.
struct Families(Vec<(MetricFamily, Vec<Metric>)>);

impl Families {
    fn family(&mut self, name: &str, help: &str, kind: MetricType) -> &mut Self {
        let mut f = MetricFamily::default();
        f.set_name(name.into());
        f.set_help(help.into());
        f.set_field_type(kind);
        self.0.push((f, Vec::new()));
        self
    }

    fn add(&mut self, labels: &[(&str, &str)], v: f64) -> &mut Self {
        let (f, metrics) = self.0.last_mut().expect("family() first");
        let mut m = metric(labels);
        if f.get_field_type() == MetricType::COUNTER {
            let mut c = Counter::default();
            c.set_value(v);
            m.set_counter(c);
        } else {
            let mut g = Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        }
        metrics.push(m);
        self
    }

    /// A counter family for each field of a counter list ([`PortCounters::FIELDS`],
    /// [`WorkerTotals::FIELDS`]) exported as a metric: one metric per row, labelled
    /// `label` = `key(row)`, of the value `value(row, field)`.
    fn counter_list<Row>(&mut self, fields: &[CounterField], label: &str, rows: &[Row], key: impl Fn(&Row) -> String, value: impl Fn(&Row, &CounterField) -> u64) {
        for field in fields {
            let Some(name) = field.metric() else { continue };
            self.family(name, field.help, MetricType::COUNTER);
            for row in rows {
                self.add(&[(label, &key(row))], value(row, field) as f64);
            }
        }
    }
}

impl Collector for ShmCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = crate::daemon::status(&self.daemon);
        // The rule families are written by [`RuleFamilies`], not built here.
        let stats = crate::daemon::stats_without_rules(&self.daemon);
        let mut f = Families(Vec::new());
        use MetricType::{COUNTER, GAUGE};
        f.family("rampart_dataplane_up", "1 when the control process is attached to a live dataplane", GAUGE)
            .add(&[], status.attached as u8 as f64);
        f.family("rampart_dataplane_heartbeat_age_seconds", "Age of the dataplane's last heartbeat", GAUGE)
            .add(&[], status.heartbeat_age_ms / 1e3);
        f.family("rampart_policy_generation", "Policy generation by state (published by control, applied by all workers, last rejected)", GAUGE)
            .add(&[("state", "published")], status.published_generation as f64)
            .add(&[("state", "applied")], status.applied_generation as f64)
            .add(&[("state", "rejected")], status.rejected_generation as f64);
        f.family("rampart_worker_policy_generation", "Policy generation each worker runs", GAUGE);
        for (w, g) in status.worker_generations.iter().enumerate() {
            f.add(&[("worker", &w.to_string())], *g as f64);
        }
        f.family("rampart_events_lost_total", "Events the dataplane could not queue (ring full)", COUNTER).add(&[], stats.events_lost as f64);
        f.family("rampart_events_logged_total", "Records written to the event log by this control process", COUNTER)
            .add(&[], status.events_logged as f64);
        f.family("rampart_events_write_errors_total", "Event log writes that failed (full or failing disk); their records are counted in loss records", COUNTER)
            .add(&[], status.events_write_errors as f64);
        f.family("rampart_events_sequence", "Sequence number of the newest record in the event log (its chain head)", GAUGE).add(&[], status.events_seq as f64);
        f.counter_list(PortCounters::FIELDS, "port", &stats.ports, |p| p.name.clone(), |p, c| p.counters.get(c));
        f.counter_list(GuardCounters::FIELDS, "port", &stats.ports, |p| p.name.clone(), |p, c| p.guard.get(c));
        f.family("rampart_port_up", "1 when the port is attached (state up)", GAUGE);
        for p in &stats.ports {
            f.add(&[("port", &p.name)], (p.state == "up") as u8 as f64);
        }
        f.family("rampart_port_enabled", "Admin state of the port in the applied policy", GAUGE);
        for p in &stats.ports {
            f.add(&[("port", &p.name)], p.enabled as u8 as f64);
        }
        f.family("rampart_drops_total", "Dropped packets by reason", COUNTER);
        for r in rampart_shm::DropReason::all() {
            let label = r.label();
            f.add(&[("reason", &label)], stats.drops.get(&label).copied().unwrap_or(0) as f64);
        }
        f.family("rampart_would_drop_total", "Monitor mode: packets forwarded that the policy would have dropped, by reason (reasons seen)", COUNTER);
        for (reason, n) in &stats.would_drops {
            f.add(&[("reason", reason)], *n as f64);
        }
        let ft = &stats.flow_table;
        let events = || rampart_shm::FlowStatus::FIELDS.iter().filter_map(|c| match c.metric {
            FlowMetric::Event(label) => Some((c, label)),
            FlowMetric::Gauge(_) => None,
        });
        for c in rampart_shm::FlowStatus::FIELDS {
            if let FlowMetric::Gauge(name) = c.metric {
                f.family(name, c.help, GAUGE).add(&[], ft.get(c.name) as f64);
            }
        }
        f.family("rampart_port_flows", "Live flows owned by each guest port", GAUGE);
        for (port, n) in &ft.per_port {
            f.add(&[("port", port)], *n as f64);
        }
        let labels: Vec<&str> = events().map(|(_, label)| label).collect();
        f.family("rampart_flow_events_total", &format!("Flow-table events: {}", labels.join(", ")), COUNTER);
        for (c, label) in events() {
            f.add(&[("event", label)], ft.get(c.name) as f64);
        }
        f.counter_list(WorkerTotals::FIELDS, "worker", &stats.workers, |w| w.worker.to_string(), |w, c| w.totals.get(c));
        for field in InspectCounters::FIELDS {
            if let Some(name) = field.metric() {
                f.family(name, field.help, COUNTER).add(&[], stats.inspection.get(field) as f64);
            }
        }
        f.family("rampart_anomalies_total", "Protocol anomalies detected, by kind, whatever the action ([anomalies]; drops are in rampart_drops_total as anomaly_<kind>)", COUNTER);
        for (kind, n) in &stats.anomalies {
            f.add(&[("kind", kind)], *n as f64);
        }
        f.family("rampart_signature_alerts_total", "Alerts by signature (gid, sid) and its action; signatures that never alerted are left out", COUNTER);
        for s in &stats.signatures {
            f.add(&[("gid", &s.gid.to_string()), ("sid", &s.sid.to_string()), ("action", &s.action)], s.alerts as f64);
        }
        f.family("rampart_worker_busy_cycles_per_packet", "Busy cycles per packet since the dataplane started", GAUGE);
        for w in &stats.workers {
            f.add(&[("worker", &w.worker.to_string())], w.cycles_per_packet);
        }
        f.0.into_iter()
            .map(|(mut fam, metrics)| {
                fam.set_metric(metrics);
                fam
            })
            .collect()
    }
}

/// The per-rule counter families: one metric per rule and family, so nearly all of a
/// scrape at 10,000 rules. They are written straight to the text format from label text
/// built once per policy ([`rule_labels`]), in the order and form the prometheus
/// encoder gives (families by name, metrics by label values), without building one
/// protobuf message per metric: that took ~30 ms a scrape at 10,000 rules.
const RULE_FAMILIES: [(&str, &str); 3] = [
    ("rampart_rule_packets_total", "Packets of flows each rule decided (label: the rule's stable id)"),
    ("rampart_rule_bytes_total", "Bytes of flows each rule decided"),
    ("rampart_rule_flows_total", "New flows each rule decided"),
];

/// One rule's labels as the text format writes them (`rule="id",action="deny"`,
/// escaped), and its counter slot.
#[derive(Debug)]
pub(crate) struct RuleLabels {
    text: String,
    pub(crate) counter: u16,
}

/// The rules' labels of `image`, sorted as the exposition sorts them (by rule id, which
/// is unique, so by label values). Built when the policy changes.
pub(crate) fn rule_labels(image: &rampart_shm::PolicyImage) -> Arc<[RuleLabels]> {
    let Some(fw) = &image.firewall else { return Arc::new([]) };
    let mut rules: Vec<(&str, RuleLabels)> = fw
        .rules
        .iter()
        .map(|r| {
            let text = format!("rule=\"{}\",action=\"{}\"", escape_label(&r.id), escape_label(&state::action_label(r.action)));
            (r.id.as_str(), RuleLabels { text, counter: r.counter })
        })
        .collect();
    rules.sort_by(|a, b| a.0.cmp(b.0));
    rules.into_iter().map(|(_, l)| l).collect()
}

/// A label value escaped as the text format wants it (`\`, `"` and newlines).
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n").replace('"', "\\\"")
}

/// Appends the [`RULE_FAMILIES`] family `family` of `rules` (with their counters) to `out`.
fn write_rule_family(out: &mut Vec<u8>, family: usize, rules: &[RuleLabels], counters: &[[u64; 3]]) {
    use std::io::Write;
    if rules.is_empty() {
        return; // as the registry prunes an empty family
    }
    let (name, help) = RULE_FAMILIES[family];
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n");
    for (r, c) in rules.iter().zip(counters) {
        // `as f64` and Display: the value exactly as the encoder prints a counter.
        let _ = writeln!(out, "{name}{{{}}} {}", r.text, c[family] as f64);
    }
}

/// The `/metrics` page of one control process: its collector in a registry of its own,
/// and the rule families beside it.
pub struct Exporter {
    registry: Registry,
    daemon: Arc<Daemon>,
}

impl Exporter {
    pub fn new(daemon: Arc<Daemon>) -> anyhow::Result<Exporter> {
        let registry = Registry::new();
        let desc = Desc::new("rampart_dataplane_up".into(), "shm".into(), vec![], Default::default())?;
        registry.register(Box::new(ShmCollector { daemon: daemon.clone(), descs: vec![desc] }))?;
        Ok(Exporter { registry, daemon })
    }

    /// One scrape: the text exposition format, read off the segment now.
    pub fn scrape(&self) -> Vec<u8> {
        let (rules, counters) = crate::daemon::rule_counters(&self.daemon);
        let families = self.registry.gather();
        let encoder = TextEncoder::new();
        let mut body = Vec::with_capacity(families.len() * 256 + rules.len() * RULE_FAMILIES.len() * 80);
        // Both lists in name order, merged: the families of the registry, the rule ones.
        let mut rule_families: Vec<usize> = (0..RULE_FAMILIES.len()).collect();
        rule_families.sort_by_key(|&f| RULE_FAMILIES[f].0);
        let mut next_rule = rule_families.iter().peekable();
        for family in &families {
            while let Some(&&f) = next_rule.peek().filter(|&&&f| RULE_FAMILIES[f].0 < family.get_name()) {
                write_rule_family(&mut body, f, &rules, &counters);
                next_rule.next();
            }
            let _ = encoder.encode(std::slice::from_ref(family), &mut body);
        }
        for &f in next_rule {
            write_rule_family(&mut body, f, &rules, &counters);
        }
        body
    }
}

/// Starts the HTTP server on `addr`; serves `/metrics` until unblocked.
pub fn serve(addr: &str, daemon: Arc<Daemon>) -> anyhow::Result<Arc<tiny_http::Server>> {
    let server = Arc::new(tiny_http::Server::http(addr).map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr} for metrics: {e} (is another instance running? change control.metrics)")
    })?);
    let exporter = Exporter::new(daemon)?;
    let s = server.clone();
    std::thread::spawn(move || {
        for req in s.incoming_requests() {
            if req.url() != "/metrics" {
                let _ = req.respond(tiny_http::Response::from_string("see /metrics\n").with_status_code(404));
                continue;
            }
            let body = exporter.scrape();
            let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], TextEncoder::new().format_type().as_bytes()).expect("static header");
            let _ = req.respond(tiny_http::Response::from_data(body).with_header(header));
        }
    });
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventLog;
    use rampart_shm::Segment;
    use std::path::Path;

    /// The collector as it was before the rule families were written by hand: every
    /// family, the rule ones too, built as prometheus messages from `state::stats`.
    struct Reference(ShmCollector);

    impl Collector for Reference {
        fn desc(&self) -> Vec<&Desc> {
            self.0.desc()
        }

        fn collect(&self) -> Vec<MetricFamily> {
            let stats = crate::daemon::stats(&self.0.daemon);
            let mut f = Families(Vec::new());
            for (family, (name, help)) in RULE_FAMILIES.iter().enumerate() {
                f.family(name, help, MetricType::COUNTER);
                for r in &stats.rules {
                    f.add(&[("rule", &r.id), ("action", &r.action)], [r.packets, r.bytes, r.flows][family] as f64);
                }
            }
            let mut all = self.0.collect();
            all.extend(f.0.into_iter().map(|(mut fam, metrics)| {
                fam.set_metric(metrics);
                fam
            }));
            all
        }
    }

    /// The text without the heartbeat age's sample (it moves between two scrapes).
    fn without_clock(body: Vec<u8>) -> String {
        let text = String::from_utf8(body).unwrap();
        text.lines().filter(|l| !l.starts_with("rampart_dataplane_heartbeat_age_seconds ")).map(|l| format!("{l}\n")).collect()
    }

    #[test]
    fn the_scrape_is_what_the_prometheus_encoder_writes() {
        let dir = std::env::temp_dir().join(format!("rampart-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut text = String::from("[[segments]]\nname = \"lan\"\n[[ports]]\nname = \"a\"\nkind = \"device\"\ndevice = \"net_null0\"\nsegment = \"lan\"\n");
        for (i, action) in ["allow", "deny", "reject", "log", "allow"].iter().enumerate() {
            text += &format!("[[rules]]\nid = \"r{}\"\nfrom = [\"10.0.0.{i}\"]\nto = [\"any\"]\naction = \"{action}\"\n", 5 - i);
        }
        let config = rampart_config::parse("t.toml", &text).unwrap();
        let d = Arc::new(Daemon::new(Path::new("t.toml"), config, EventLog::open(Path::new("/dev/null"), crate::chain::Key::random().unwrap()).unwrap()).unwrap());
        let exporter = Exporter::new(d.clone()).unwrap();
        let reference = Registry::new();
        let desc = Desc::new("rampart_dataplane_up".into(), "shm".into(), vec![], Default::default()).unwrap();
        reference.register(Box::new(Reference(ShmCollector { daemon: d.clone(), descs: vec![desc] }))).unwrap();
        let expected = || {
            let mut body = Vec::new();
            TextEncoder::new().encode(&reference.gather(), &mut body).unwrap();
            without_clock(body)
        };
        let scraped = || without_clock(exporter.scrape());
        // Detached: no rule metrics at all.
        assert_eq!(scraped(), expected());
        assert!(!scraped().contains("rampart_rule_"));
        // Attached, with counts on two workers and ids the text format must escape.
        let seg = Arc::new(Segment::create(&dir.join("shm"), 0o600, 2, 1_000, 0).unwrap());
        {
            let mut inner = d.inner.lock().unwrap();
            let (mut image, slots) = (inner.image().clone(), inner.slots().clone());
            let fw = image.firewall.as_mut().unwrap();
            fw.rules[1].id = "quote\"back\\slash\nnewline".into();
            fw.rules[3].id = "a-first".into();
            fw.rules[4].counter = u16::MAX; // a rule without a counter slot
            inner.set_policy(image, slots);
            inner.segment = Some(seg.clone());
        }
        for (w, n) in [(0, 7), (1, 1 << 40)] {
            for c in 0..5 {
                seg.workers[w].rules[c].packets.add(n * (c as u64 + 1));
                seg.workers[w].rules[c].bytes.add(1500 * n);
                seg.workers[w].rules[c].flows.add(c as u64);
            }
        }
        let (got, want) = (scraped(), expected());
        assert!(got.contains("rampart_rule_packets_total{rule=\"quote\\\"back\\\\slash\\nnewline\",action=\"deny\"}"), "{got}");
        assert_eq!(got, want);
        drop(seg);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The port-counter and worker-total families keep their names, help texts, types and
    /// labels (dashboards depend on them), whatever list they are generated from.
    #[test]
    fn port_and_worker_families_keep_their_names() {
        let dir = std::env::temp_dir().join(format!("rampart-metrics-names-{}", std::process::id()));
        let (d, seg) = crate::state::tests::counted_daemon(&dir);
        seg.workers[1].anomalies[rampart_shm::Anomaly::Land.index()].add(3);
        let d = Arc::new(d);
        let body = String::from_utf8(Exporter::new(d).unwrap().scrape()).unwrap();
        // Every kind of anomaly, detected or not.
        assert!(body.contains("# TYPE rampart_anomalies_total counter\n"), "{body}");
        assert!(body.contains("rampart_anomalies_total{kind=\"land\"} 3\n") && body.contains("rampart_anomalies_total{kind=\"tcp_flags\"} 0\n"), "{body}");
        let ours = |l: &&str| {
            let name = l.trim_start_matches("# HELP ").trim_start_matches("# TYPE ");
            ["rampart_port_", "rampart_worker_busy_"].iter().any(|p| name.starts_with(p))
                && !name.starts_with("rampart_port_flows")
                && !GuardCounters::FIELDS.iter().any(|f| f.metric().is_some_and(|m| name.starts_with(m)))
        };
        // The guard's families: one per reason, per port.
        for f in GuardCounters::FIELDS {
            let m = f.metric().unwrap();
            assert!(body.contains(&format!("# TYPE {m} counter\n{m}{{port=\"a\"}} 0")), "{m}: {body}");
        }
        let got: Vec<&str> = body.lines().filter(ours).collect();
        let want = "\
# HELP rampart_port_drop_bytes_total Bytes received on the port and dropped
# TYPE rampart_port_drop_bytes_total counter
rampart_port_drop_bytes_total{port=\"a\"} 606
# HELP rampart_port_drop_packets_total Packets received on the port and dropped (any reason)
# TYPE rampart_port_drop_packets_total counter
rampart_port_drop_packets_total{port=\"a\"} 505
# HELP rampart_port_enabled Admin state of the port in the applied policy
# TYPE rampart_port_enabled gauge
rampart_port_enabled{port=\"a\"} 1
# HELP rampart_port_rx_bytes_total Bytes received on the port
# TYPE rampart_port_rx_bytes_total counter
rampart_port_rx_bytes_total{port=\"a\"} 202
# HELP rampart_port_rx_packets_total Packets received on the port
# TYPE rampart_port_rx_packets_total counter
rampart_port_rx_packets_total{port=\"a\"} 101
# HELP rampart_port_tx_bytes_total Bytes sent on the port
# TYPE rampart_port_tx_bytes_total counter
rampart_port_tx_bytes_total{port=\"a\"} 404
# HELP rampart_port_tx_full_total Packets for the port its transmit queue refused
# TYPE rampart_port_tx_full_total counter
rampart_port_tx_full_total{port=\"a\"} 707
# HELP rampart_port_tx_packets_total Packets sent on the port
# TYPE rampart_port_tx_packets_total counter
rampart_port_tx_packets_total{port=\"a\"} 303
# HELP rampart_port_up 1 when the port is attached (state up)
# TYPE rampart_port_up gauge
rampart_port_up{port=\"a\"} 0
# HELP rampart_port_would_drop_total Monitor mode: would-be drops of packets received on the port, which were forwarded (one per protection that would have dropped a packet)
# TYPE rampart_port_would_drop_total counter
rampart_port_would_drop_total{port=\"a\"} 808
# HELP rampart_worker_busy_cycles_per_packet Busy cycles per packet since the dataplane started
# TYPE rampart_worker_busy_cycles_per_packet gauge
rampart_worker_busy_cycles_per_packet{worker=\"0\"} 0.5
rampart_worker_busy_cycles_per_packet{worker=\"1\"} 0.5
# HELP rampart_worker_busy_cycles_total TSC cycles workers spent on bursts that carried packets
# TYPE rampart_worker_busy_cycles_total counter
rampart_worker_busy_cycles_total{worker=\"0\"} 1
rampart_worker_busy_cycles_total{worker=\"1\"} 100
# HELP rampart_worker_busy_packets_total Packets in those bursts
# TYPE rampart_worker_busy_packets_total counter
rampart_worker_busy_packets_total{worker=\"0\"} 2
rampart_worker_busy_packets_total{worker=\"1\"} 200";
        assert_eq!(got.join("\n"), want, "{body}");
        // No other family of workers' totals (idle polls, sleeps and the events-lost
        // duplicate of the rings' overflow are `rampartctl stats` only).
        assert!(!body.contains("idle_polls") && !body.contains("sleeps"), "{body}");
        drop(seg);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
