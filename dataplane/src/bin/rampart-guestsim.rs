//! `rampart-guestsim`: a simulated guest for the vhost test tier and the
//! demo. It is a DPDK `virtio_user` port (the guest side of a vhost-user
//! socket) that sends numbered UDP packets at a fixed rate and accounts for
//! every packet it receives, per sender, so tests can assert "no packet
//! lost, none duplicated" exactly. Its report is a JSON file rewritten
//! every 100 ms.

use anyhow::{Context, Result};
use clap::Parser;
use rampart_dataplane::dpdk;
use rampart_packet::{build, ipv4, udp};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Simulated guest on a virtio_user port: numbered traffic out, exact accounting in")]
struct Args {
    /// vhost-user socket path.
    #[arg(long)]
    socket: PathBuf,
    /// Create the socket and wait for the dataplane (vhost-user client mode on Rampart's side).
    #[arg(long)]
    server: bool,
    /// This guest's MAC address.
    #[arg(long)]
    mac: String,
    /// Destination MAC (send nothing without it).
    #[arg(long)]
    to: Option<String>,
    /// Packets per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Packets to send (0 = until stopped).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// UDP source port of flow 0 (flow n uses sport + n).
    #[arg(long, default_value_t = 10000)]
    sport: u16,
    /// UDP destination port.
    #[arg(long, default_value_t = 9)]
    dport: u16,
    /// Distinct UDP flows (source ports) to cycle through.
    #[arg(long, default_value_t = 1)]
    flows: u16,
    /// Seconds to run (0 = until SIGTERM).
    #[arg(long, default_value_t = 0)]
    duration: u64,
    /// Seconds to wait before sending (lets the path come up).
    #[arg(long, default_value_t = 0.0)]
    delay: f64,
    /// JSON report file, rewritten every 100 ms and at exit.
    #[arg(long)]
    report: Option<PathBuf>,
    /// CPU to run on.
    #[arg(long, default_value_t = 0)]
    cpu: u32,
    /// Queue pairs (guest multiqueue): bursts are sent round-robin over them.
    #[arg(long, default_value_t = 1)]
    queues: u16,
    /// Append raw junk frames (truncated IPv4) every N packets, to exercise malformed-drop counting.
    #[arg(long, default_value_t = 0)]
    junk_every: u64,
    /// Source and destination IPv4 addresses, "SRC,DST" (default 10.0.M4.M5 of --mac and --to).
    #[arg(long, value_parser = parse_ips)]
    ips: Option<([u8; 4], [u8; 4])>,
    /// Bytes every packet carries after its sequence header (what an inspected flow's
    /// signatures look at), e.g. an HTTP request line.
    #[arg(long, default_value = "")]
    payload: String,
    /// Wake-up latency mode: a second vhost-user socket, the other end of a wire pair.
    /// The guest sends `--probes` single packets on `--socket`, each after `--gap` s of
    /// silence, and times each one's arrival on this port; the report holds the latencies.
    #[arg(long)]
    latency_peer: Option<PathBuf>,
    /// Probes in latency mode.
    #[arg(long, default_value_t = 20)]
    probes: u32,
    /// Seconds of silence before each probe in latency mode.
    #[arg(long, default_value_t = 1.0)]
    gap: f64,
}

const MAGIC: &[u8; 4] = b"RPGS";

fn mac(s: &str) -> Result<[u8; 6]> {
    rampart_config::parse_mac(s).with_context(|| format!("bad MAC {s:?}"))
}

fn parse_ips(s: &str) -> Result<([u8; 4], [u8; 4]), String> {
    let ip = |a: &str| a.trim().parse::<std::net::Ipv4Addr>().map(|a| a.octets()).map_err(|e| format!("{a:?}: {e}"));
    let (src, dst) = s.split_once(',').ok_or("expected SRC,DST")?;
    Ok((ip(src)?, ip(dst)?))
}

/// The addresses of what `src` sends to `dst`: `--ips`, or 10.0.`mac[4]`.`mac[5]` of each.
fn addresses(ips: Option<([u8; 4], [u8; 4])>, src: [u8; 6], dst: [u8; 6]) -> ([u8; 4], [u8; 4]) {
    ips.unwrap_or(([10, 0, src[4], src[5]], [10, 0, dst[4], dst[5]]))
}

/// An Ethernet/IPv4/UDP frame carrying MAGIC, the sender id and a sequence number (at
/// bytes 42..60, where `receive_queue` reads them) and then `extra`, DF set, without a
/// UDP checksum.
fn frame(src: [u8; 6], dst: [u8; 6], (src_ip, dst_ip): ([u8; 4], [u8; 4]), (sport, dport): (u16, u16), seq: u64, extra: &[u8]) -> Vec<u8> {
    let payload = [&MAGIC[..], &src, &seq.to_be_bytes(), extra].concat();
    let udp = build::udp_v4(src_ip, sport, dst_ip, dport, &payload).macs(src, dst).with_ipv4(|ip| ip.dont_frag = true);
    let mut f = udp.pad(60).build().expect("a 60-byte frame");
    // 0: no checksum (RFC 768), as the guest has always sent.
    udp::Packet::new_unchecked(&mut f[34..]).set_checksum(0);
    f
}

#[derive(Default)]
struct FromSender {
    count: u64,
    unique: u64,
    dups: u64,
    max_seq: u64,
    seen: Vec<u64>,
}

impl FromSender {
    fn record(&mut self, seq: u64) {
        self.count += 1;
        self.max_seq = self.max_seq.max(seq);
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.seen.len() {
            if w > 1 << 24 {
                return; // absurd sequence number: count it, don't allocate for it
            }
            self.seen.resize(w + 1, 0);
        }
        if self.seen[w] & (1 << b) != 0 {
            self.dups += 1;
        } else {
            self.seen[w] |= 1 << b;
            self.unique += 1;
        }
    }
}

/// Receives one burst and accounts for it; returns the number of packets.
fn receive(port: dpdk::PortId, queues: u16, rx: &mut dpdk::MbufBurst<32>, from: &mut BTreeMap<String, FromSender>, other: &mut u64) -> usize {
    (0..queues).map(|q| receive_queue(port, q, rx, from, other)).sum()
}

fn receive_queue(port: dpdk::PortId, queue: u16, rx: &mut dpdk::MbufBurst<32>, from: &mut BTreeMap<String, FromSender>, other: &mut u64) -> usize {
    let n = dpdk::rx_burst(port, queue, rx);
    for m in rx.iter() {
        match m.data().get(42..60) {
            Some(p) if &p[..4] == MAGIC => {
                let sender = p[4..10].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                let seq = u64::from_be_bytes(p[10..18].try_into().expect("8 bytes"));
                from.entry(sender).or_default().record(seq);
            }
            _ => *other += 1,
        }
    }
    dpdk::free_bulk(rx);
    n
}

fn main() -> Result<()> {
    let args = Args::parse();
    let me = mac(&args.mac)?;
    let to = args.to.as_deref().map(mac).transpose()?;
    if args.server {
        // Like QEMU's `server=on`, a restarted guest replaces its own stale socket.
        let _ = std::fs::remove_file(&args.socket);
    }
    let prefix = format!("guestsim-{}", std::process::id());
    // 1024-entry rings: a guest descheduled for a while on a busy 2-core host still
    // holds what arrives meanwhile (as a real guest's deeper queues would).
    let vdev = |n: u32, socket: &std::path::Path| {
        format!(
            "net_virtio_user{n},path={},mac={},queues={},queue_size=1024{}",
            socket.display(),
            args.mac,
            args.queues.max(1),
            if args.server { ",server=1" } else { "" }
        )
    };
    let mut eal: Vec<String> = [
        "rampart-guestsim",
        "--lcores",
        &format!("0@{}", args.cpu),
        "--no-pci",
        "--single-file-segments",
        "--in-memory",
        "--file-prefix",
        &prefix,
        "-m",
        "64",
        "--vdev",
        &vdev(0, &args.socket),
        "--log-level",
        "*:error",
        "--no-telemetry",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(peer) = &args.latency_peer {
        eal.extend(["--vdev".to_string(), vdev(1, peer)]);
    }
    dpdk::eal_init(&eal)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the signal handlers")?;
    }
    let pool = dpdk::Mempool::create("guestsim", 4095)?;
    let port = dpdk::port_by_name("net_virtio_user0").context("virtio_user port missing")?;
    let queues = args.queues.max(1);
    dpdk::start_port(port, queues, queues, &pool)?;
    if args.latency_peer.is_some() {
        let peer = dpdk::port_by_name("net_virtio_user1").context("second virtio_user port missing")?;
        dpdk::start_port(peer, queues, queues, &pool)?;
        return latency(&args, me, &pool, port, peer, &stop);
    }
    let mut txq = 0u16;

    let start = Instant::now();
    let send_start = start + Duration::from_secs_f64(args.delay);
    let mut sent = 0u64;
    let mut tx_retries = 0u64;
    let mut pending = dpdk::MbufBurst::<32>::new();
    let mut junk = 0u64;
    let mut other = 0u64;
    let mut from: BTreeMap<String, FromSender> = BTreeMap::new();
    let mut last_report = Instant::now() - Duration::from_secs(1);
    let mut rx = dpdk::MbufBurst::<32>::new();
    let write_report = |sent, tx_retries, junk, other, from: &BTreeMap<String, FromSender>, done| {
        let Some(path) = &args.report else { return };
        let recv: serde_json::Map<String, serde_json::Value> = from
            .iter()
            .map(|(k, v)| (k.clone(), json!({"count": v.count, "unique": v.unique, "dups": v.dups, "max_seq": v.max_seq})))
            .collect();
        let v = json!({"mac": args.mac, "sent": sent, "tx_retries": tx_retries, "junk_sent": junk, "received": recv,
                       "other": other, "link": dpdk::link_up(port), "done": done, "elapsed": start.elapsed().as_secs_f64()});
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, v.to_string()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    };
    loop {
        let now = Instant::now();
        if stop.load(Ordering::Relaxed) || (args.duration > 0 && now.duration_since(start).as_secs() >= args.duration) {
            break;
        }
        let mut busy = false;
        if let Some(dst) = to {
            // A full transmit ring is back-pressure, as in a real guest: keep the
            // packets and retry them first, so every sequence number is sent once.
            if !pending.is_empty() {
                let n = dpdk::tx_burst(port, txq, &mut pending);
                sent += n as u64;
                tx_retries += pending.len() as u64;
                busy = true;
            }
            if pending.is_empty() && now >= send_start && (args.count == 0 || sent < args.count) {
                let due = (now.duration_since(send_start).as_secs_f64() * args.rate as f64) as u64;
                let mut due = due.saturating_sub(sent).min(32);
                if args.count > 0 {
                    due = due.min(args.count - sent);
                }
                for i in 0..due {
                    let seq = sent + i;
                    let flow = (seq % args.flows.max(1) as u64) as u16;
                    match pool.packet(&frame(me, dst, addresses(args.ips, me, dst), (args.sport.wrapping_add(flow), args.dport), seq, args.payload.as_bytes())) {
                        Some(m) => pending.push(m),
                        None => break, // pool exhausted: the rest is due next round
                    }
                }
                if !pending.is_empty() {
                    busy = true;
                    txq = (txq + 1) % queues;
                    sent += dpdk::tx_burst(port, txq, &mut pending) as u64;
                }
                if args.junk_every > 0 && sent / args.junk_every > junk {
                    // A frame claiming an IPv4 total length far beyond its bytes.
                    let mut f = frame(me, dst, addresses(args.ips, me, dst), (args.sport, args.dport), u64::MAX, args.payload.as_bytes());
                    ipv4::Packet::new_unchecked(&mut f[14..]).set_total_len(1500);
                    if let Some(m) = pool.packet(&f[..40]) {
                        // Unsent, it is freed when `one` goes out of scope.
                        let mut one = dpdk::MbufBurst::<1>::new();
                        one.push(m);
                        dpdk::tx_burst(port, txq, &mut one);
                    }
                    junk += 1;
                }
            }
        }
        let n = receive(port, queues, &mut rx, &mut from, &mut other);
        busy |= n > 0;
        if last_report.elapsed() > Duration::from_millis(100) {
            write_report(sent, tx_retries, junk, other, &from, false);
            last_report = Instant::now();
        }
        if !busy {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    // Drain what is still in flight towards us.
    let end = Instant::now() + Duration::from_millis(200);
    while Instant::now() < end {
        receive(port, queues, &mut rx, &mut from, &mut other);
        std::thread::sleep(Duration::from_micros(100));
    }
    write_report(sent, tx_retries, junk, other, &from, true);
    Ok(())
}

/// Wake-up latency (`--latency-peer`): `--probes` single packets from `port`, each after
/// `--gap` s of silence, each timed from just before its transmission to its arrival on
/// `peer` (busy-polled, so the guest side adds well under a microsecond). A probe not
/// back within 100 ms is lost. The report: every latency, their p50/p99/max, losses.
fn latency(args: &Args, me: [u8; 6], pool: &dpdk::Mempool, port: dpdk::PortId, peer: dpdk::PortId, stop: &AtomicBool) -> Result<()> {
    let dst = args.to.as_deref().map(mac).transpose()?.unwrap_or([0xff; 6]);
    let frame_of = |seq| frame(me, dst, addresses(args.ips, me, dst), (args.sport, args.dport), seq, args.payload.as_bytes());
    let mut rx = dpdk::MbufBurst::<32>::new();
    // Until the path is up: probes 100 ms apart until one comes back (not reported).
    let up = Instant::now();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) && probe(pool, &frame_of(seq), port, peer, seq, &mut rx).is_none() {
        anyhow::ensure!(up.elapsed() < Duration::from_secs(30), "no probe came back through the wire pair within 30 s");
        seq += 1;
    }
    let (mut us, mut lost) = (Vec::new(), 0u32);
    for _ in 0..args.probes {
        std::thread::sleep(Duration::from_secs_f64(args.gap));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        seq += 1;
        match probe(pool, &frame_of(seq), port, peer, seq, &mut rx) {
            Some(t) => us.push(t.as_secs_f64() * 1e6),
            None => lost += 1,
        }
    }
    let mut sorted = us.clone();
    sorted.sort_by(f64::total_cmp);
    // Nearest rank: p99 of 20 samples is the largest.
    let pct = |p: f64| sorted.get(((p * sorted.len() as f64).ceil() as usize).saturating_sub(1)).copied();
    let v = json!({"probes": us.len() as u32 + lost, "lost": lost, "gap_s": args.gap, "latency_us": us,
                   "p50_us": pct(0.50), "p99_us": pct(0.99), "max_us": sorted.last(), "done": true});
    println!("{v}");
    if let Some(path) = &args.report {
        std::fs::write(path, v.to_string()).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One probe: sent on `port`, awaited on `peer` for up to 100 ms; its latency.
fn probe(pool: &dpdk::Mempool, frame: &[u8], port: dpdk::PortId, peer: dpdk::PortId, seq: u64, rx: &mut dpdk::MbufBurst<32>) -> Option<Duration> {
    let mut one = dpdk::MbufBurst::<1>::new();
    one.push(pool.packet(frame)?);
    let t0 = Instant::now();
    if dpdk::tx_burst(port, 0, &mut one) == 0 {
        return None;
    }
    while t0.elapsed() < Duration::from_millis(100) {
        if dpdk::rx_burst(peer, 0, rx) > 0 {
            let t = t0.elapsed();
            let ours = rx.iter().any(|m| m.data().get(52..60) == Some(&seq.to_be_bytes()[..]));
            dpdk::free_bulk(rx);
            if ours {
                return Some(t);
            }
        }
    }
    None
}
