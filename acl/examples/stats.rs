//! Prints how the classifier lays out the synthetic mixed sets (tuning aid).
use rampart_acl::{synth, Classifier, CompileOptions};
fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rules = synth::mixed_rules(n, 0x5eed_0000 + n as u64);
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let options = CompileOptions { max_bucket: env("BUCKET", 8), merge: env("MERGE", 1) == 1, max_port_copies: env("COPIES", 4) as u32 };
    let t0 = std::time::Instant::now();
    let c = Classifier::compile_with(&rules, &options).unwrap();
    println!("compile {:?}, {} tables", t0.elapsed(), c.table_count());
    for (m, min, used, largest, probe) in c.table_stats() {
        let len = |hi: u64, lo: u64| hi.count_ones() + lo.count_ones();
        println!("src/{:3} dst/{:3} misc {:012x} min {:5} buckets {:5} largest {:4} probe {}", len(m[0], m[1]), len(m[2], m[3]), m[4], min, used, largest, probe);
    }
    let keys = synth::keys(&rules, 1 << 14, 75, 0xbeef);
    let (mut t, mut sl, mut ch) = (0u64, 0u64, 0u64);
    for k in &keys {
        let (a, b, c2) = c.lookup_cost(k);
        t += u64::from(a);
        sl += u64::from(b);
        ch += u64::from(c2);
    }
    let n = keys.len() as f64;
    println!("per lookup: {:.1} tables, {:.1} slots, {:.1} checks", t as f64 / n, sl as f64 / n, ch as f64 / n);
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let t = std::time::Instant::now();
    let mut sum = 0u64;
    for _ in 0..rounds {
        for k in &keys {
            sum = sum.wrapping_add(u64::from(c.lookup(std::hint::black_box(k)).unwrap_or(0)));
        }
    }
    let per = t.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64;
    let mut out = vec![None; keys.len()];
    let t = std::time::Instant::now();
    for _ in 0..rounds {
        c.lookup_bulk(std::hint::black_box(&keys), &mut out);
    }
    let bulk = t.elapsed().as_nanos() as f64 / (rounds * keys.len()) as f64;
    println!("single {per:.1} ns/lookup ({:.2} M/s), bulk {bulk:.1} ns ({:.2} M/s) [{sum}]", 1e3 / per, 1e3 / bulk);
}

#[allow(dead_code)]
fn unused() {}
