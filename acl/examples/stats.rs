//! Tuning aid: how the classifier lays out the synthetic mixed set and what a
//! lookup costs. `cargo run --release -p rampart-acl --example stats -- 10000`
//! (env LEAF, SPACE, SEPARATE override the compile options; LAYOUT=1 shows
//! where the bytes and levels go; BURSTS=1 also times `lookup_bulk` in
//! bursts of 32).
use rampart_acl::{synth, Classifier, CompileOptions};

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let d = CompileOptions::default();
    let options = CompileOptions {
        leaf_size: env("LEAF", d.leaf_size),
        space_factor: env("SPACE", d.space_factor),
        separate: env("SEPARATE", d.separate as usize) == 1,
    };
    let rules = synth::mixed_rules(n, 0x5eed_0000 + n as u64);
    if let Ok(list) = std::env::var("SHOW") {
        for i in list.split(',') {
            let i: usize = i.parse().unwrap();
            println!("rule {i}: {:?}", rules[i]);
        }
        return;
    }
    let t0 = std::time::Instant::now();
    let c = Classifier::compile_with(&rules, &options).unwrap();
    let compile = t0.elapsed();
    let bytes = postcard::to_stdvec(&c).unwrap().len();
    println!(
        "{n} rules: compile {compile:?}, {} trees, {} pointers, {} leaf candidates, {} KiB memory, {} KiB postcard",
        c.tree_count(),
        c.node_count(),
        c.check_count(),
        c.memory_bytes() / 1024,
        bytes / 1024
    );
    if std::env::var("LAYOUT").is_ok() {
        println!("{}", c.layout_report());
    }
    let keys = synth::keys(&rules, 1 << 14, 75, 0xbeef);
    let (mut t, mut l, mut ch) = (0u64, 0u64, 0u64);
    let mut hist = [0u32; 16];
    for k in &keys {
        let (a, b, c2) = c.lookup_cost(k);
        hist[(b as usize).min(15)] += 1;
        t += u64::from(a);
        l += u64::from(b);
        ch += u64::from(c2);
    }
    let nk = keys.len() as f64;
    println!("per lookup: {:.2} trees, {:.2} levels, {:.2} candidates checked", t as f64 / nk, l as f64 / nk, ch as f64 / nk);
    if std::env::var("LAYOUT").is_ok() {
        println!("levels histogram {hist:?}");
    }
    // Best of 5: the machine is shared and noisy.
    let mut sum = 0u64;
    let (mut single, mut bulk, mut bulk32) = (f64::MAX, f64::MAX, f64::MAX);
    let mut out = vec![None; keys.len()];
    // BURSTS=1: also bulk in bursts of 32, as the dataplane calls it.
    let bursts = std::env::var("BURSTS").is_ok();
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        for _ in 0..rounds {
            for k in &keys {
                sum = sum.wrapping_add(u64::from(c.lookup(std::hint::black_box(k)).unwrap_or(0)));
            }
        }
        single = single.min(t0.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64);
        let t0 = std::time::Instant::now();
        for _ in 0..rounds {
            c.lookup_bulk(std::hint::black_box(&keys), &mut out);
        }
        bulk = bulk.min(t0.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64);
        if !bursts {
            continue;
        }
        let t0 = std::time::Instant::now();
        for _ in 0..rounds {
            for burst in keys.chunks(32).zip(out.chunks_mut(32)) {
                c.lookup_bulk(std::hint::black_box(burst.0), burst.1);
            }
        }
        bulk32 = bulk32.min(t0.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64);
    }
    if bursts {
        println!("bulk in bursts of 32: {bulk32:.1} ns");
    }
    println!("single {single:.1} ns ({:.2} M/s), bulk {bulk:.1} ns ({:.2} M/s) [{sum}]", 1e3 / single, 1e3 / bulk);
}
#[allow(dead_code)]
fn show() {}
