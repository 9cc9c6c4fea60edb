//! Flow-table microbenchmarks in a table for 1M flows (~130 MB), holding 1M flows
//! (`flow_table_1M`) or 102,400 (`flow_table_100k_of_1M`, the bench rig's 100k case), keys
//! in random order so lookups miss the caches: single lookups, bulk lookups of 32 with
//! prefetch, lookup + track (the per-packet cost of a hit), key preparation (canonical
//! form and hash) and, in the full table, the insert rate.
//!
//! Each iteration handles `BATCH` keys; divide the reported time by `BATCH` (criterion's
//! `thrpt` line gives the rate directly).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rampart_flow::{FlowHit, FlowTable, FlowTableConfig, NewFlow, PacketInfo};
use rampart_packet::{ipv4_mapped, Direction, FlowKey};

const CAPACITY: usize = 1 << 20;
const BATCH: usize = 1024;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` distinct random UDP/TCP keys in packet order.
fn random_keys(n: usize, rng: &mut Rng) -> Vec<FlowKey> {
    let mut seen = std::collections::HashSet::with_capacity(n);
    let mut keys = Vec::with_capacity(n);
    while keys.len() < n {
        let r = rng.next();
        let k = FlowKey {
            src_addr: ipv4_mapped([10, (r >> 8) as u8, (r >> 16) as u8, (r >> 24) as u8]),
            dst_addr: ipv4_mapped([172, 16, (r >> 32) as u8, (r >> 40) as u8]),
            src_port: (r >> 48) as u16,
            dst_port: [53, 80, 443, 8080][(r & 3) as usize],
            proto: if r & 4 == 0 { 17 } else { 6 },
            zone: 0,
        };
        if seen.insert(k) {
            keys.push(k);
        }
    }
    keys
}

struct Prepared {
    keys: Vec<FlowKey>,
    dirs: Vec<Direction>,
    hashes: Vec<u64>,
}

fn prepare(table: &FlowTable, keys: &[FlowKey]) -> Prepared {
    let mut p = Prepared {
        keys: Vec::new(),
        dirs: Vec::new(),
        hashes: Vec::new(),
    };
    for k in keys {
        let (key, dir, hash) = table.prepare(k);
        p.keys.push(key);
        p.dirs.push(dir);
        p.hashes.push(hash);
    }
    p
}

fn udp_packet() -> PacketInfo {
    PacketInfo {
        bytes: 64,
        ..Default::default()
    }
}

fn syn_or_udp(key: &FlowKey) -> PacketInfo {
    let mut p = udp_packet();
    if key.proto == 6 {
        p.tcp.flags = rampart_packet::TcpFlags(rampart_packet::TcpFlags::SYN);
        p.tcp.seq = 1;
        p.tcp.window = 65535;
    }
    p
}

fn bench_table(c: &mut Criterion, name: &str, flows: usize) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let table = FlowTable::new(&FlowTableConfig {
        capacity: CAPACITY as u32,
        ..Default::default()
    })
    .unwrap();
    let all = random_keys(flows + 64 * BATCH, &mut rng);
    let (live, fresh) = all.split_at(flows);
    let live = prepare(&table, live);
    let mut refused = 0;
    for i in 0..flows {
        let new = NewFlow {
            verdict: i as u32,
            owner: (i % 64) as u8,
        };
        let pkt = syn_or_udp(&live.keys[i]);
        refused += table
            .insert(&live.keys[i], live.hashes[i], live.dirs[i], new, &pkt, 0)
            .is_err() as usize;
    }
    eprintln!(
        "filled to {} of {flows} flows ({refused} refused)",
        table.len()
    );
    assert!(refused < flows / 1000);
    // Look keys up in an order unrelated to insertion and memory layout.
    let mut order: Vec<usize> = (0..flows).collect();
    for i in (1..flows).rev() {
        order.swap(i, rng.next() as usize % (i + 1));
    }
    let shuffled = Prepared {
        keys: order.iter().map(|&i| live.keys[i]).collect(),
        dirs: order.iter().map(|&i| live.dirs[i]).collect(),
        hashes: order.iter().map(|&i| live.hashes[i]).collect(),
    };
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(BATCH as u64));

    let mut at = 0;
    let mut next_batch = move || {
        let start = at;
        at = (at + BATCH) % flows;
        start..start + BATCH
    };

    group.bench_function("lookup_hit_random", |b| {
        b.iter(|| {
            let range = next_batch();
            let mut acc = 0u32;
            for i in range {
                let hit = table.lookup(&shuffled.keys[i], shuffled.hashes[i]);
                acc = acc.wrapping_add(hit.map_or(0, |h| h.verdict));
            }
            black_box(acc)
        })
    });

    let mut out = vec![None::<FlowHit>; BATCH];
    group.bench_function("lookup_bulk32_prefetch_random", |b| {
        b.iter(|| {
            let range = next_batch();
            let mut hits = 0;
            for (chunk, out) in range.clone().step_by(32).zip(out.chunks_mut(32)) {
                hits += table.lookup_bulk(
                    &shuffled.keys[chunk..chunk + 32],
                    &shuffled.hashes[chunk..chunk + 32],
                    out,
                );
            }
            black_box(hits)
        })
    });

    let pkt = udp_packet();
    let mut now = 1u64;
    group.bench_function("bulk32_lookup_and_track_udp_random", |b| {
        b.iter(|| {
            let range = next_batch();
            now += 1;
            let mut valid = 0;
            for (chunk, out) in range.clone().step_by(32).zip(out.chunks_mut(32)) {
                table.lookup_bulk(
                    &shuffled.keys[chunk..chunk + 32],
                    &shuffled.hashes[chunk..chunk + 32],
                    out,
                );
                for (j, hit) in out.iter().enumerate() {
                    if let Some(hit) = hit {
                        if shuffled.keys[chunk + j].proto == 17 {
                            valid += table
                                .track(hit, shuffled.dirs[chunk + j], &pkt, now)
                                .is_ok() as usize;
                        }
                    }
                }
            }
            black_box(valid)
        })
    });

    group.bench_function("prepare_canonical_hash", |b| {
        b.iter(|| {
            let range = next_batch();
            let mut acc = 0u64;
            for i in range {
                acc ^= table.prepare(black_box(&shuffled.keys[i])).2;
            }
            acc
        })
    });

    if flows < CAPACITY {
        return group.finish();
    }
    // Insert rate into the 1M table, kept at half occupancy: remove half the flows first,
    // then each iteration times the inserts of BATCH new flows (miss check under the
    // bucket locks, quota and capacity accounting, slot claim, publish) and removes them
    // again untimed.
    for i in (0..flows).step_by(2) {
        table.remove(&live.keys[i], live.hashes[i], 0);
    }
    let fresh = prepare(&table, fresh);
    let mut round = 0;
    group.bench_function("insert_at_half_full", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let range = (round * BATCH) % fresh.keys.len()..;
                let range = range.start..range.start + BATCH;
                round += 1;
                let started = Instant::now();
                for i in range.clone() {
                    let new = NewFlow {
                        verdict: i as u32,
                        owner: (i % 64) as u8,
                    };
                    let ins = table.insert(
                        &fresh.keys[i],
                        fresh.hashes[i],
                        fresh.dirs[i],
                        new,
                        &syn_or_udp(&fresh.keys[i]),
                        5,
                    );
                    black_box(ins.is_ok());
                }
                total += started.elapsed();
                for i in range {
                    table.remove(&fresh.keys[i], fresh.hashes[i], 5);
                }
            }
            total
        })
    });
    group.finish();
}

fn tables(c: &mut Criterion) {
    bench_table(c, "flow_table_1M", CAPACITY);
    bench_table(c, "flow_table_100k_of_1M", 100 * BATCH);
}

criterion_group!(benches, tables);
criterion_main!(benches);
