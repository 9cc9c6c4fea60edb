//! What inline inspection adds to the stateful path, per packet, without DPDK: the whole
//! worker pipeline ([`Pipeline::process`], bursts of 32 from one guest port to another
//! through a stateful UDP rule) under `allow` and under `inspect` with 1,000 `udp` content
//! signatures built from HTTP-like tokens (so the prefilter walks real partial matches and
//! nothing matches in full), over HTTP-request-like payloads, 100k flows all in the table.
//! The difference of the two is the inspect stage's cost (the budget: 150 cycles per
//! 64-byte packet); the 512 and 1,500-byte frames show how it grows with the payload.
//! Each runs with the default `[anomalies]` and with every kind ignored (`_anomalies_off`):
//! the difference is what the protocol-anomaly checks cost (the header checks on every
//! packet; on inspected flows also the IPv4 and UDP checksums, which the frames carry in full).
//!
//! `cargo bench -p rampart-pipeline --bench inspect`. Each iteration handles `BATCH`
//! packets; criterion's `thrpt` line is packets per second on one core.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rampart_acl::{Classifier, Rule};
use rampart_flow::{FlowTable, FlowTableConfig};
use rampart_packet::build;
use rampart_pipeline::inspect::Inspection;
use rampart_pipeline::runtime::Runtime;
use rampart_pipeline::firewall::BURST;
use rampart_pipeline::{Action, Checksums, Context, Frame, Pipeline};
use rampart_shm::{Attach, ConntrackImage, FirewallImage, InspectionImage, PolicyImage, PortImage, RuleAction, RuleImage, Segment};
use rampart_signatures::{Content, PayloadCheck, SigAction, SigProto, Signature};

const FLOWS: usize = 100 * 1024;
const BATCH: usize = 1024;
const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];

/// Tokens of HTTP requests; each signature is one of them plus a suffix no payload has.
const TOKENS: &[&str] = &[
    "GET /index.php?id=", "POST /wp-login.php", "User-Agent: Mozilla/5.0 (X11; Linux x86_64", "Accept-Language: en-US,en;q=",
    "Host: www.example.", "Cookie: session=", "Content-Type: application/x-www-form-urlencoded", "Referer: http://",
    "Accept-Encoding: gzip, deflate", "Connection: keep-alive", "/cgi-bin/", "Authorization: Basic ",
];

/// A runtime whose one rule allows UDP statefully, as `action` (allow or inspect), with the
/// default anomaly checks or none.
fn runtime(action: RuleAction, anomalies: bool) -> Runtime {
    let firewall = FirewallImage {
        rules: vec![RuleImage { id: "udp".into(), counter: 0, action, stateful: true, log: false }],
        acl: Classifier::compile(&[Rule { proto: Some(17), ..Default::default() }]).unwrap(),
        acl_rule: vec![0],
        conntrack: ConntrackImage { timeouts: Default::default() },
    };
    let image = PolicyImage::plain(vec![PortImage::plain(0, Attach::Segment(0), vec![A]), PortImage::plain(1, Attach::Segment(0), vec![B])], Some(firewall));
    let mut rt = Runtime::build(1, &image, Some, None, &Default::default());
    if !anomalies {
        rt.anomalies = rampart_shm::AnomalyImage::off();
        rt.checks_headers = false;
    }
    let signatures = (0..1000u32)
        .map(|i| {
            let bytes = format!("{}{}zq{i}", TOKENS[i as usize % TOKENS.len()], i % 7).into_bytes();
            Signature::new(SigAction::Alert, SigProto::Udp, 1_000_000 + i, vec![PayloadCheck::Content(Content { bytes, ..Content::default() })])
        })
        .collect();
    let ins = InspectionImage { signatures, counters: vec![u16::MAX; 1000], tail: 256, idle_timeout_ms: 60_000, drop_flow: true };
    rt.inspection = Some(Arc::new(Inspection::build(&ins).unwrap()));
    rt
}

/// An HTTP-request-like payload of `len` bytes.
fn payload(len: usize) -> Vec<u8> {
    let text = "GET /index.php?id=4711&page=2 HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
                Gecko/20100101 Firefox/120.0\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n\
                Cookie: session=8f14e45fceea167a5a36dedd4bea2543\r\nConnection: keep-alive\r\nReferer: http://www.example.org/\r\n\r\n";
    text.bytes().cycle().take(len).collect()
}

/// The frame of flow `i` (source port and address vary), `size` bytes on the wire.
fn frame(i: usize, size: usize) -> Vec<u8> {
    let src = [10, 0, (i >> 16) as u8, (i >> 8) as u8];
    let udp = build::udp_v4(src, 1024 + (i % 50_000) as u16, [10, 1, 0, 1], 8080, &payload(size - 42));
    udp.macs(A, B).checksums(build::Checksums::Full).build().unwrap()
}

fn bench_size(c: &mut Criterion, size: usize) {
    let dir = std::env::temp_dir().join(format!("rampart-bench-inspect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let segment = Segment::create(&dir.join("shm"), 0o600, 1, 1_000_000_000, 0).unwrap();
    let frames: Vec<Vec<u8>> = (0..FLOWS).map(|i| frame(i, size)).collect();
    let mut group = c.benchmark_group(format!("pipeline_{size}B_100k_flows"));
    group.throughput(Throughput::Elements(BATCH as u64));
    let variants = [
        ("stateful", RuleAction::Allow, true),
        ("stateful_anomalies_off", RuleAction::Allow, false),
        ("inspected", RuleAction::Inspect, true),
        ("inspected_anomalies_off", RuleAction::Inspect, false),
    ];
    for (label, action, anomalies) in variants {
        let rt = runtime(action, anomalies);
        let flows = FlowTable::new(&FlowTableConfig { capacity: 1 << 21, ..Default::default() }).unwrap();
        let mut pipeline = Pipeline::new(1 << 18);
        let mut bufs = vec![vec![0u8; size + 128]; BURST];
        let mut now_ms = 1;
        let mut run = |pipeline: &mut Pipeline, first: usize, now_ms: u64| -> usize {
            let cx = Context { flows: &flows, counters: &segment.workers[0], events: &segment.events[0], now_ms, now_ns: now_ms * 1_000_000 };
            let mut forwarded = 0;
            for start in (first..first + BATCH).step_by(BURST) {
                let mut burst: Vec<Frame> = bufs
                    .iter_mut()
                    .enumerate()
                    .map(|(k, buf)| {
                        let f = &frames[(start + k) % FLOWS];
                        buf[..f.len()].copy_from_slice(f);
                        Frame::new(buf, f.len(), f.len() as u32, 1, Checksums::Complete)
                    })
                    .collect();
                forwarded += pipeline.process(&rt, &cx, 0, &mut burst).iter().filter(|a| matches!(a, Action::Forward(_))).count();
            }
            forwarded
        };
        // First round: every flow created (and, inspected, given its streams).
        for first in (0..FLOWS).step_by(BATCH) {
            run(&mut pipeline, first, now_ms);
        }
        while segment.events[0].pop().is_some() {}
        let mut at = 0;
        group.bench_function(label, |b| {
            b.iter(|| {
                at = (at + BATCH) % FLOWS;
                now_ms += 1;
                let forwarded = run(&mut pipeline, at, now_ms);
                assert_eq!(forwarded, BATCH, "every packet of a tracked flow is forwarded (none matches a signature)");
                black_box(forwarded)
            })
        });
        let c = segment.workers[0].inspect.read();
        assert!(action == RuleAction::Allow || (c.packets > 0 && c.alerts == 0), "inspected, never alerted: {c:?}");
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn benches(c: &mut Criterion) {
    for size in [64, 512, 1500] {
        bench_size(c, size);
    }
}

criterion_group!(inspect, benches);
criterion_main!(inspect);
