//! What the control process costs while it runs: one supervisor tick (every 10 ms: the
//! heartbeat and the event drain, here with a fixed handful of events to drain) and one
//! `/metrics` scrape, at 10 and 10,000 rules. The tick should not follow the rule count
//! (`tests/tick_cost.rs` checks that by counting its allocations); the scrape does, and
//! should stay well under 50 ms at 10,000 rules.

#[path = "../tests/fixture/mod.rs"]
mod fixture;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use fixture::Fixture;
use rampart_control::metrics::Exporter;

fn control(c: &mut Criterion) {
    let mut ticks = c.benchmark_group("tick");
    for rules in [10, 10_000] {
        let f = Fixture::new("bench-tick", rules);
        ticks.bench_with_input(BenchmarkId::from_parameter(rules), &rules, |b, _| {
            b.iter(|| {
                f.push_events();
                f.tick();
            })
        });
    }
    ticks.finish();
    let mut scrapes = c.benchmark_group("scrape");
    scrapes.sample_size(20);
    for rules in [10, 10_000] {
        let f = Fixture::new("bench-scrape", rules);
        let exporter = Exporter::new(f.daemon.clone()).unwrap();
        scrapes.bench_with_input(BenchmarkId::from_parameter(rules), &rules, |b, _| b.iter(|| exporter.scrape().len()));
    }
    scrapes.finish();
}

criterion_group!(benches, control);
criterion_main!(benches);
