//! The Prometheus endpoint: a collector that reads the shared-memory
//! counters at scrape time (no copies to keep in sync, nothing lost between
//! scrapes), served over HTTP on loopback by default.

use crate::daemon::Daemon;
use crate::state;
use rampart_shm::FlowMetric;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, Registry, TextEncoder};
use std::sync::Arc;

/// A counter family read off each row: (name, help, getter).
type Column<Row> = (&'static str, &'static str, fn(&Row) -> u64);

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
}

impl Collector for ShmCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let status = crate::daemon::status(&self.daemon);
        let stats = crate::daemon::stats(&self.daemon);
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
        let port_metrics: [Column<state::PortRow>; 7] = [
            ("rampart_port_rx_packets_total", "Packets received on the port", |p| p.rx_packets),
            ("rampart_port_rx_bytes_total", "Bytes received on the port", |p| p.rx_bytes),
            ("rampart_port_tx_packets_total", "Packets sent on the port", |p| p.tx_packets),
            ("rampart_port_tx_bytes_total", "Bytes sent on the port", |p| p.tx_bytes),
            ("rampart_port_drop_packets_total", "Packets received on the port and dropped (any reason)", |p| p.drop_packets),
            ("rampart_port_drop_bytes_total", "Bytes received on the port and dropped", |p| p.drop_bytes),
            ("rampart_port_tx_full_total", "Packets for the port its transmit queue refused", |p| p.tx_full),
        ];
        for (name, help, get) in port_metrics {
            f.family(name, help, COUNTER);
            for p in &stats.ports {
                f.add(&[("port", &p.name)], get(p) as f64);
            }
        }
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
        let rule_metrics: [Column<state::RuleRow>; 3] = [
            ("rampart_rule_packets_total", "Packets of flows each rule decided (label: the rule's stable id)", |r| r.packets),
            ("rampart_rule_bytes_total", "Bytes of flows each rule decided", |r| r.bytes),
            ("rampart_rule_flows_total", "New flows each rule decided", |r| r.flows),
        ];
        for (name, help, get) in rule_metrics {
            f.family(name, help, COUNTER);
            for r in &stats.rules {
                f.add(&[("rule", &r.id), ("action", &r.action)], get(r) as f64);
            }
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
        f.family("rampart_worker_busy_cycles_total", "TSC cycles workers spent on bursts that carried packets", COUNTER);
        for w in &stats.workers {
            f.add(&[("worker", &w.worker.to_string())], w.busy_cycles as f64);
        }
        f.family("rampart_worker_busy_packets_total", "Packets in those bursts", COUNTER);
        for w in &stats.workers {
            f.add(&[("worker", &w.worker.to_string())], w.busy_packets as f64);
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

/// The `/metrics` page of one control process: its collector in a registry of its own.
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    pub fn new(daemon: Arc<Daemon>) -> anyhow::Result<Exporter> {
        let registry = Registry::new();
        let desc = Desc::new("rampart_dataplane_up".into(), "shm".into(), vec![], Default::default())?;
        registry.register(Box::new(ShmCollector { daemon, descs: vec![desc] }))?;
        Ok(Exporter { registry })
    }

    /// One scrape: the text exposition format, read off the segment now.
    pub fn scrape(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut body);
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
