//! Classifier throughput and compile time on the synthetic "mixed" rule sets
//! (see `rampart_acl::synth`): 1k and 10k rules, keys 75 % built inside a
//! random rule (many hit deep in the list) and 25 % random (mostly misses).
//!
//! `cargo bench -p rampart-acl -- --warm-up-time 1 --measurement-time 3`
//! Alternatives measured for the choice of algorithm: `alt/` benchmarks.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rampart_acl::{reference, synth, Classifier, CompileOptions, Key, Rule};

const KEYS: usize = 1 << 14;

fn data(n: usize) -> (Vec<Rule>, Vec<Key>) {
    let rules = synth::mixed_rules(n, 0x5eed_0000 + n as u64);
    let keys = synth::keys(&rules, KEYS, 75, 0xbeef);
    (rules, keys)
}

fn describe(name: &str, rules: &[Rule], keys: &[Key], c: &Classifier) {
    let bytes = postcard::to_stdvec(c).expect("encode").len();
    let mut hits: Vec<u32> = keys.iter().filter_map(|k| c.lookup(k)).collect();
    hits.sort_unstable();
    let median = hits.get(hits.len() / 2).copied().unwrap_or(0);
    let p90 = hits.get(hits.len() * 9 / 10).copied().unwrap_or(0);
    eprintln!(
        "{name}: {} rules -> {} trees, {} pointers, {} leaf candidates, {} KiB in memory, {} KiB postcard; \
         keys: {:.0}% hit, median hit rule {median}, p90 {p90}",
        rules.len(),
        c.tree_count(),
        c.node_count(),
        c.check_count(),
        c.memory_bytes() / 1024,
        bytes / 1024,
        100.0 * hits.len() as f64 / keys.len() as f64,
    );
}

fn bench_lookup(cr: &mut Criterion, group: &str, n: usize, options: &CompileOptions) {
    let (rules, keys) = data(n);
    let c = Classifier::compile_with(&rules, options).expect("compile");
    describe(&format!("{group}/{n}"), &rules, &keys, &c);
    let mut g = cr.benchmark_group(group);
    g.throughput(Throughput::Elements(keys.len() as u64));
    g.bench_function(BenchmarkId::new("single", n), |b| {
        b.iter(|| {
            let mut found = 0u32;
            for k in &keys {
                found = found.wrapping_add(c.lookup(black_box(k)).unwrap_or(0));
            }
            found
        })
    });
    let mut out = vec![None; 32];
    g.bench_function(BenchmarkId::new("bulk32", n), |b| {
        b.iter(|| {
            for burst in keys.chunks(32) {
                c.lookup_bulk(black_box(burst), &mut out);
                black_box(&out);
            }
        })
    });
    g.finish();
}

fn lookups(cr: &mut Criterion) {
    for n in [1_000, 10_000] {
        bench_lookup(cr, "lookup", n, &CompileOptions::default());
    }
}

fn compile(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("compile");
    g.sample_size(10);
    for n in [1_000, 10_000] {
        let (rules, _) = data(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| Classifier::compile(black_box(&rules)).expect("compile"))
        });
    }
    g.finish();
}

/// The alternatives the default was chosen against (the hash-based
/// tuple-space designs measured earlier are described in `acl/DESIGN.md`).
fn alternatives(cr: &mut Criterion) {
    let n = 10_000;
    let d = CompileOptions::default();
    bench_lookup(cr, "alt-leaf8", n, &CompileOptions { leaf_size: 8, ..d.clone() });
    bench_lookup(cr, "alt-leaf32", n, &CompileOptions { leaf_size: 32, ..d.clone() });
    bench_lookup(cr, "alt-space8", n, &CompileOptions { space_factor: 8, ..d.clone() });
    let (rules, keys) = data(1_000);
    let mut g = cr.benchmark_group("alt-linear-scan");
    g.throughput(Throughput::Elements(1024));
    g.bench_function(BenchmarkId::new("single", 1_000), |b| {
        b.iter(|| keys[..1024].iter().filter_map(|k| reference::first_match(&rules, black_box(k))).count())
    });
    g.finish();
}

criterion_group!(benches, lookups, compile, alternatives);
criterion_main!(benches);
