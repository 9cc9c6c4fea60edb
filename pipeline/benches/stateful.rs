//! The stateful firewall's own cost per packet, without DPDK: the worker's burst pipeline
//! ([`Burst`]: parse, prepare and prefetch the flows of 32 packets) and the decision of
//! each packet ([`Firewall::check_looked_up`]: lookup, conntrack tracking) on one-way UDP
//! flows that are all in the table, as in the bench rig's `stateful` profile after its
//! first round (every packet a flow-table hit, the table sized for 2M flows as in
//! `bench/configs/stateful.toml`).
//!
//! Frames are written into a burst's 32 buffers just before it is processed, as the vhost
//! copy does in the dataplane: their data is in the cache, the flow table is not.
//!
//! `burst_and_decide_hits` runs without the guard, `burst_guard_and_decide_hits` with it
//! as guest ports have it by default (source MAC learned, source address within the
//! port's configured prefix): their difference is the guard's cost per packet.
//! `burst_anomalies_and_decide_hits` runs the protocol-anomaly header checks
//! ([`rampart_pipeline::anomaly::headers`], the default `[anomalies]`) before each decision
//! instead: its difference to `burst_and_decide_hits` is what they cost.
//!
//! `cargo bench -p rampart-pipeline --bench stateful`. Each iteration handles `BATCH`
//! packets; criterion's `thrpt` line is packets per second on one core. What the rig adds
//! on top is DPDK's vhost copies and the counters (README, performance section).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rampart_acl::{Classifier, Rule};
use rampart_pipeline::firewall::{Burst, Firewall, FwVerdict, BURST};
use rampart_pipeline::guard::{Owners, PortGuard};
use rampart_flow::{FlowTable, FlowTableConfig};
use rampart_packet::build::{self, Checksums};
use rampart_shm::{ConntrackImage, FirewallImage, GuardImage, RuleAction, RuleImage};

/// The rig's table size (`conntrack.table_size` in `bench/configs/stateful.toml`).
const TABLE: u32 = 1 << 21;
const BATCH: usize = 1024;
const FRAME: usize = 60;

/// A stateful allow rule for UDP, behind the default drop.
fn firewall() -> Firewall {
    let acl = Classifier::compile(&[Rule { proto: Some(17), ..Default::default() }]).unwrap();
    let image = FirewallImage {
        rules: vec![RuleImage { id: "allow-udp".into(), counter: 0, action: RuleAction::Allow, stateful: true, log: false }],
        acl,
        acl_rule: vec![0],
        conntrack: ConntrackImage { timeouts: Default::default() },
    };
    Firewall::new(image, Default::default(), 1, Default::default())
}

/// A guest port's guard as the bench rig configures it: a prefix, the MAC learned.
fn guard() -> PortGuard {
    let prefix = ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 0], 104);
    PortGuard::new(&GuardImage { addresses: vec![prefix], learn: true, learn_timeout_s: 300, serves_dhcp: false, serves_ra: false }, &[], None)
}

/// The only port: nobody else owns anything.
struct Alone;
impl Owners for Alone {
    fn address_taken(&self, _: u8, _: u128, _: u64) -> bool {
        false
    }
    fn mac_taken(&self, _: u8, _: &[u8; 6]) -> bool {
        false
    }
}

/// The 60-byte Ethernet/IPv4/UDP frame template: 10.0.0.0:0 → 172.16.0.1:53, no checksums.
fn template() -> [u8; FRAME] {
    let udp = build::udp_v4([10, 0, 0, 0], 0, [172, 16, 0, 1], 53, &[0; FRAME - 42]);
    udp.checksums(Checksums::Zero).build().unwrap().try_into().expect("a 60-byte frame")
}

/// Turns a copy of [`template`] into the frame of flow `i` (source 10.x.y.z, port
/// 1024 + i mod 50,000). Only the fields that differ are written; the IPv4 header checksum
/// is left at zero (the dataplane does not verify it).
#[inline(always)]
fn write_frame(frame: &mut [u8; FRAME], i: usize) {
    frame[27..30].copy_from_slice(&[(i >> 16) as u8, (i >> 8) as u8, i as u8]);
    frame[34..36].copy_from_slice(&(1024 + (i % 50_000) as u16).to_be_bytes());
}

/// Runs packets `first..first + BATCH` (flow index modulo `flows`) through the pipeline in
/// bursts of 32; returns how many passed. Runs the stages up to `stage`.
#[allow(clippy::too_many_arguments)]
fn run(fw: &Firewall, guard: &PortGuard, flows: &FlowTable, buffers: &mut [[u8; FRAME]; BURST], flow_count: usize, first: usize, now_ms: u64, stage: Stage) -> usize {
    let mut passed = 0;
    let mut burst = Burst::default();
    for start in (first..first + BATCH).step_by(BURST) {
        for (k, buf) in buffers.iter_mut().enumerate() {
            write_frame(buf, (start + k) % flow_count);
        }
        if stage == Stage::Frames {
            passed += black_box(&buffers)[0][29] as usize;
            continue;
        }
        burst.fill(flows, 0, buffers.iter().map(|b| &b[..]));
        if stage == Stage::Burst {
            passed += black_box(&burst).meta(0).is_ok() as usize;
            continue;
        }
        for (i, buf) in buffers.iter().enumerate() {
            let Ok(meta) = burst.meta(i) else { continue };
            if stage == Stage::Guarded && guard.check(&Alone, 0, meta, buf, now_ms).is_err() {
                continue;
            }
            if stage == Stage::Anomalies && rampart_pipeline::anomaly::headers(&ANOMALIES, meta, buf, rampart_pipeline::Checksums::Complete).is_some() {
                continue;
            }
            let mut ended = rampart_pipeline::firewall::EndedFlows::new();
            let verdict = fw.check_looked_up(flows, meta, buf, 1, 0, now_ms, burst.lookup(flows, i), &mut ended);
            passed += matches!(verdict, FwVerdict::Pass { .. }) as usize;
        }
    }
    passed
}

/// How far [`run`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Only write the frames (the baseline to subtract).
    Frames,
    /// ... and run the burst stage: parse, prepare, prefetch.
    Burst,
    /// ... and decide every packet.
    Decide,
    /// ... with the guard before each decision.
    Guarded,
    /// ... with the anomaly header checks before each decision.
    Anomalies,
}

/// The default `[anomalies]`.
static ANOMALIES: std::sync::LazyLock<rampart_shm::AnomalyImage> = std::sync::LazyLock::new(Default::default);

fn bench_flows(c: &mut Criterion, name: &str, flow_count: usize) {
    let fw = firewall();
    let guard = guard();
    let flows = FlowTable::new(&FlowTableConfig { capacity: TABLE, ..Default::default() }).unwrap();
    let mut buffers = [template(); BURST];
    // First round: every flow classified and inserted.
    let mut created = 0;
    for first in (0..flow_count).step_by(BATCH) {
        created += run(&fw, &guard, &flows, &mut buffers, flow_count, first, 1, Stage::Decide);
    }
    assert_eq!(flows.len() as usize, flow_count, "every flow inserted ({created} passed)");

    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut at = 0;
    let mut now_ms = 2;
    let stages = [("write_frames", Stage::Frames), ("burst_parse_prefetch", Stage::Burst), ("burst_and_decide_hits", Stage::Decide), ("burst_guard_and_decide_hits", Stage::Guarded), ("burst_anomalies_and_decide_hits", Stage::Anomalies)];
    for (label, stage) in stages {
        group.bench_function(label, |b| {
            b.iter(|| {
                at = (at + BATCH) % flow_count;
                now_ms += 1;
                let passed = run(&fw, &guard, &flows, &mut buffers, flow_count, at, now_ms, stage);
                assert!(stage == Stage::Frames || stage == Stage::Burst || passed == BATCH, "every packet of a tracked flow passes");
                passed
            })
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    bench_flows(c, "stateful_1k_flows", 1024);
    bench_flows(c, "stateful_100k_flows", 100 * BATCH);
    bench_flows(c, "stateful_1M_flows", 1 << 20);
}

criterion_group!(stateful, benches);
criterion_main!(stateful);
