//! Parser throughput on minimum-size frames (60 bytes + 4-byte FCS = 64 on the wire),
//! the worst case for per-packet cost; and the Internet checksum over 20, 512 and 1,480
//! bytes (what verifying a packet's checksums costs per byte: `[anomalies] bad_checksum`).

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rampart_packet::parse;

#[path = "../tests/common/mod.rs"]
mod common;

/// `n` 60-byte IPv4 frames alternating UDP and TCP, with varying addresses and ports so
/// the branch predictor cannot learn one packet.
fn mixed_frames(n: usize) -> Vec<Vec<u8>> {
    let udp = common::ipv4_udp().frame;
    let tcp = common::ipv4_tcp_syn().frame;
    (0..n)
        .map(|i| {
            let mut f = if i % 2 == 0 { udp.clone() } else { tcp.clone() };
            f.resize(60, 0);
            f[29] = i as u8; // src address low byte
            f[34..36].copy_from_slice(&(1024 + i as u16).to_be_bytes()); // src port
            f
        })
        .collect()
}

fn bench_parse(c: &mut Criterion) {
    let frames = mixed_frames(4096);
    assert!(frames.iter().all(|f| parse(f).is_ok()));

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(frames.len() as u64));
    group.bench_function("ipv4_udp_tcp_60B_x4096", |b| {
        b.iter(|| {
            let mut acc = 0u32;
            for f in &frames {
                if let Ok(m) = parse(black_box(f)) {
                    acc = acc.wrapping_add(m.src_port as u32 ^ m.l4_offset as u32);
                }
            }
            acc
        })
    });
    group.finish();

    let mut group = c.benchmark_group("parse_one");
    group.throughput(Throughput::Elements(1));
    for sample in [
        common::ipv4_udp(),
        common::vlan_ipv4_tcp(),
        common::ipv6_tcp(),
        common::ipv6_hbh_frag_udp(),
        common::arp_request(),
    ] {
        group.bench_function(sample.name, |b| {
            b.iter_batched_ref(
                || sample.frame.clone(),
                |f| parse(black_box(f)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum_sum");
    for len in [20usize, 512, 1480] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("{len}B"), |b| b.iter(|| rampart_packet::checksum::sum(black_box(&data))));
    }
    group.finish();
}

criterion_group!(benches, bench_parse, bench_checksum);
criterion_main!(benches);
