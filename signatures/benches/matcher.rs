//! Matcher throughput: 1k and 5k random content signatures built from HTTP-like tokens
//! (request lines, header names, path segments, hex ids: partial matches frequent, full
//! matches rare) over HTTP-like payloads of 64, 512 and 1500 bytes, each packet scanned
//! with its flow's [`Stream`] (`FLOWS` flows, round robin, consecutive chunks of each
//! flow's request stream).
//!
//! Each iteration scans `BATCH` packets; criterion's `thrpt` line is payload bytes per
//! second on one core. The setup also prints Gbit/s from a plain timed loop (by wall
//! clock and by the thread's CPU time, for a loaded machine), ns per packet (CPU time),
//! the matches per packet, and the database statistics (memory for 5k patterns).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rampart_signatures::engine::{Database, Matches, Packet, Stream};
use rampart_signatures::{Content, FlowMatch, PayloadCheck, SigAction, SigProto, Signature};

/// Flows scanned round robin, each with its stream.
const FLOWS: usize = 64;
/// Packets per iteration.
const BATCH: usize = 256;
/// Bytes kept per stream.
const TAIL: usize = 64;

/// Deterministic xorshift64 generator.
struct Rng(u64);
impl Rng {
    /// The next xorshift64 value.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// One of `from`.
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }
    /// `n` lowercase hex digits.
    fn hex(&mut self, n: usize) -> String {
        (0..n).map(|_| b"0123456789abcdef"[self.below(16)] as char).collect()
    }
}

/// Request line starts.
const METHODS: &[&str] = &["GET /", "POST /", "PUT /", "HEAD /", "DELETE /"];
/// Path segments.
const SEGMENTS: &[&str] = &[
    "api",
    "v1",
    "v2",
    "admin",
    "login",
    "static",
    "images",
    "index.php",
    "wp-admin",
    "cgi-bin",
    "users",
    "search",
    "assets",
    "js",
    "css",
    "upload",
    "download",
    "account",
    "cart",
    "item",
    "config",
    "backup",
    "shell",
    "debug",
    "status",
];
/// Header names.
const HEADERS: &[&str] = &[
    "Host: ",
    "User-Agent: ",
    "Accept: ",
    "Accept-Encoding: ",
    "Accept-Language: ",
    "Cookie: ",
    "Referer: ",
    "Content-Type: ",
    "Content-Length: ",
    "X-Forwarded-For: ",
    "Authorization: Bearer ",
    "Connection: ",
];
/// User-Agent prefixes.
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) ",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) ",
    "curl/7.",
    "python-requests/2.",
    "Go-http-client/1.1",
    "okhttp/4.",
];

/// One random pattern: a token of the traffic vocabulary made specific by a path or id.
fn pattern(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => format!("{}{}/{}", rng.pick(METHODS), rng.pick(SEGMENTS), rng.hex(4)),
        1 => format!("/{}/{}/{}", rng.pick(SEGMENTS), rng.pick(SEGMENTS), rng.hex(6)),
        2 => format!("{}{}{}", rng.pick(HEADERS), rng.pick(AGENTS), rng.hex(3)),
        3 => format!("{}={}", rng.pick(SEGMENTS), rng.hex(6)),
        4 => format!("{}{}", rng.pick(HEADERS), rng.hex(8)),
        _ => format!("{}.{}?", rng.pick(SEGMENTS), rng.pick(SEGMENTS)),
    }
}

/// `n` alert signatures: one content (70%) or a content and a relative second one.
fn signatures(n: usize, rng: &mut Rng) -> Vec<Signature> {
    (0..n)
        .map(|i| {
            let first = Content {
                bytes: pattern(rng).into_bytes(),
                nocase: rng.below(3) == 0,
                ..Content::default()
            };
            let mut checks = vec![PayloadCheck::Content(first)];
            if rng.below(10) < 3 {
                checks.push(PayloadCheck::Content(Content {
                    bytes: rng.hex(2).into_bytes(),
                    distance: Some(0),
                    within: Some(16),
                    ..Content::default()
                }));
            }
            Signature {
                msg: format!("bench {i}"),
                flow: FlowMatch {
                    to_server: Some(true),
                    established: true,
                    ..FlowMatch::default()
                },
                ..Signature::new(SigAction::Alert, SigProto::Tcp, 1_000_000 + i as u32, checks)
            }
        })
        .collect()
}

/// An HTTP request with random path, ids and headers.
fn request(rng: &mut Rng) -> String {
    let mut r = format!(
        "{}{}/{}/{}?id={}&q={} HTTP/1.1\r\n",
        rng.pick(METHODS),
        rng.pick(SEGMENTS),
        rng.pick(SEGMENTS),
        rng.hex(8),
        rng.hex(6),
        rng.pick(SEGMENTS)
    );
    r += &format!("Host: www.{}.example.com\r\n", rng.pick(SEGMENTS));
    r += &format!("User-Agent: {}{}\r\n", rng.pick(AGENTS), rng.hex(4));
    r += "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n";
    r += "Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.5\r\n";
    r += &format!(
        "Referer: https://www.{}.example.com/{}/{}.html\r\n",
        rng.pick(SEGMENTS),
        rng.pick(SEGMENTS),
        rng.pick(SEGMENTS)
    );
    r += &format!("Cookie: session={}; prefs={}; track={}\r\n", rng.hex(32), rng.hex(16), rng.hex(24));
    if rng.below(2) == 0 {
        r += &format!("Authorization: Bearer {}\r\n", rng.hex(40));
    }
    r += "Connection: keep-alive\r\n\r\n";
    r
}

/// `FLOWS` flows of packets of `size` bytes: consecutive chunks of each flow's requests.
fn flows(size: usize, per_flow: usize, rng: &mut Rng) -> Vec<Vec<Vec<u8>>> {
    (0..FLOWS)
        .map(|_| {
            let mut text = Vec::new();
            while text.len() < size * per_flow {
                text.extend_from_slice(request(rng).as_bytes());
            }
            text.chunks(size).take(per_flow).map(|c| c.to_vec()).collect()
        })
        .collect()
}

/// A packet of the benchmark's flow.
fn packet(payload: &[u8]) -> Packet<'_> {
    Packet {
        proto: 6,
        src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        src_port: 40000,
        dst_port: 80,
        to_server: true,
        established: true,
        payload,
    }
}

/// Scans `BATCH` packets starting at round `round`, round robin over the flows; returns
/// the matches found.
fn scan_batch(db: &Database, traffic: &[Vec<Vec<u8>>], streams: &mut [Stream], out: &mut Matches, round: &mut usize) -> usize {
    let per_flow = traffic[0].len();
    let mut found = 0;
    for k in 0..BATCH {
        let flow = k % FLOWS;
        let n = (*round + k / FLOWS) % per_flow;
        if n == 0 {
            streams[flow].reset();
        }
        db.scan(&packet(&traffic[flow][n]), Some(&mut streams[flow]), out);
        found += out.iter().count() + out.more() as usize;
    }
    *round += BATCH / FLOWS;
    found
}

/// This thread's time on the CPU so far, in nanoseconds (Linux).
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The benchmark groups, one per database size.
fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for &n in &[1000usize, 5000] {
        let sigs = signatures(n, &mut rng);
        let started = Instant::now();
        let db = Database::build(sigs, TAIL).expect("build");
        eprintln!("{n} signatures: built in {:.2?}, {:?}", started.elapsed(), db.stats());
        let mut group = c.benchmark_group(format!("matcher_{n}"));
        for &size in &[64usize, 512, 1500] {
            let per_flow = (64 * 1024 / size).max(8);
            let traffic = flows(size, per_flow, &mut rng);
            let mut streams = vec![Stream::new(); FLOWS];
            let mut out = Matches::new();
            let mut round = 0;
            let bytes: usize = (0..BATCH).map(|k| traffic[k % FLOWS][0].len()).sum();

            // A plain timed loop, for Gbit/s and the match rate; also by this thread's
            // time on the CPU, which other load on the machine does not dilute.
            let (mut found, mut batches) = (0usize, 0usize);
            let cpu0 = cpu_ns();
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(500) {
                found += scan_batch(&db, &traffic, &mut streams, &mut out, &mut round);
                batches += 1;
            }
            let secs = t.elapsed().as_secs_f64();
            let cpu_secs = match (cpu0, cpu_ns()) {
                (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
                _ => secs,
            };
            let bits = (bytes * batches) as f64 * 8.0;
            eprintln!(
                "{n} signatures, {size} B payloads: {:.2} Gbit/s ({:.2} Gbit/s of CPU time), {:.1} ns/packet, {:.3} matches/packet",
                bits / secs / 1e9,
                bits / cpu_secs / 1e9,
                cpu_secs * 1e9 / (batches * BATCH) as f64,
                found as f64 / (batches * BATCH) as f64
            );

            group.throughput(Throughput::Bytes(bytes as u64));
            group.bench_function(format!("{size}B"), |b| {
                b.iter(|| black_box(scan_batch(&db, &traffic, &mut streams, &mut out, &mut round)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
