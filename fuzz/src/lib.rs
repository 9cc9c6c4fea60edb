//! What Rampart must survive, as checks a fuzzer (and the corpus replay in `tests/`) drive
//! with arbitrary bytes. Each check is one way bytes enter Rampart from outside:
//!
//! | check | bytes from | must hold |
//! |---|---|---|
//! | [`parse`] | a guest (frames) | no panic; every offset and length inside the frame; `validate` agrees with `parse`; the flow table's fast path gives both directions of a flow one key and one hash |
//! | [`firewall`] | a guest (bursts of frames) | the worker's burst pipeline, decisions, re-checks after a reload and the sweep never panic; only a passed first packet adds a flow; the sweep reports every flow it removes |
//! | [`config`] | the operator (TOML) | an error names its file and a line in the text; a config that validates compiles into an image the dataplane accepts as it is |
//! | [`image`] | the control process (shared memory) | an image that decodes is safe to run: the dataplane builds its runtime from it and decides packets with it |
//! | [`event`] | the dataplane (shared memory) | any record becomes one JSON log line with an `event_type`, real addresses and a bounded packet head |
//! | [`admin`] | an operator's client (the admin socket) | any request gets a JSON reply that says `ok`, and an error when not |
//! | [`rules`] | the operator (Suricata/Snort rule files) | parsing is deterministic; errors and rules name lines of the text; the signatures build a matcher or an error, and it scans |
//! | [`inspect`] | guests and the uplink (bursts of an inspected flow's packets) | the packet path with inline inspection never panics; what it blocks is alerted and counted as the `signature` drops and answers of scanned packets |
//!
//! A failed check panics; the fuzz binaries abort on it and libFuzzer saves the input.
//! `scripts/fuzz.sh` builds and runs them (stable Rust, SanitizerCoverage), `make fuzz`.

use rampart_pipeline::firewall::{Burst, Defaults, EndedFlows, Firewall, FwVerdict, RuleHistory};
use rampart_pipeline::runtime::Runtime;
use rampart_flow::{FlowTable, FlowTableConfig, FullPolicy};
use rampart_packet::build::{self, Frame};
use rampart_packet::{icmp, validate, FlowKey, TcpFlags};
use rampart_shm::{EventRecord, PolicyImage};
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

/// Frames per burst (a worker's burst).
const BURST: usize = 32;

/// The firewall check's policies: generation 1, then the reload to generation 2.
pub const FIREWALL_POLICY: &str = include_str!("../corpus/config/firewall.toml");
pub const FIREWALL_RELOAD: &str = include_str!("../corpus/config/firewall-reload.toml");

/// Any byte string: parsing never panics, an `Ok` describes bytes inside the frame,
/// `validate` gives the same verdict as `parse`, and the flow table prepares both
/// directions of the packet's flow alike.
pub fn parse(frame: &[u8]) {
    let parsed = rampart_packet::parse(frame);
    assert_eq!(validate(frame), parsed.map(|_| ()));
    let Ok(meta) = parsed else { return };
    let len = frame.len();
    assert!(meta.l3_offset() <= len);
    assert!(meta.l4_offset as usize <= len);
    let start = if meta.is_ip() { meta.l4_offset as usize + meta.l4_header_len(frame) } else { meta.l3_offset() };
    assert!(start + meta.payload_len as usize <= len);
    assert_eq!(meta.payload(frame).len(), meta.payload_len as usize);
    if let Some(inner) = meta.icmp_inner_offset() {
        assert!(inner <= len);
    }
    if let Some(key) = FlowKey::from_meta(&meta) {
        // The flow table's packed fast path agrees with the plain canonical key, and both
        // directions of a flow meet at one key and one hash.
        static TABLE: OnceLock<FlowTable> = OnceLock::new();
        let table = TABLE.get_or_init(table);
        let ((canonical, dir), (there, back_dir, back_hash)) = (key.canonical(), table.prepare(&key.reversed()));
        assert_eq!(table.prepare(&key), (canonical, dir, table.hash(&canonical)));
        assert_eq!((there, back_hash), (canonical, table.hash(&canonical)));
        if key != key.reversed() {
            assert_ne!(dir, back_dir);
        }
    }
}

/// Compiles a config the way `rampartctl check` does; panics if a config that validated
/// does not compile, unless its `[[inspection]]` rule sets do not load (signatures are
/// parsed, and rule files read, when a config is compiled, not when it is validated).
fn compile(text: &str) -> Option<PolicyImage> {
    let config = rampart_config::parse("fuzz.toml", text).ok()?;
    match rampart_control::rules::check(&config) {
        Ok((image, _warnings)) => Some(image),
        Err(_) if rampart_control::inspection::load(&config).is_err() => None,
        Err(e) => panic!("a validated config does not compile: {e}"),
    }
}

/// Any text as a config file: a rejected one names the file and a line of the text (0 when
/// no line applies); an accepted one compiles (unless its signatures do not load, see
/// [`compile`]), and the image survives the trip through shared memory unchanged and valid.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match rampart_config::parse("fuzz.toml", text) {
        Err(e) => {
            assert_eq!(e.file, "fuzz.toml");
            assert!(e.line <= text.lines().count() + 1, "line {} of a {}-line text: {e}", e.line, text.lines().count());
            assert!(!e.message.is_empty());
        }
        Ok(_) => {
            let Some(image) = compile(text) else { return };
            let decoded = PolicyImage::decode(&image.encode()).unwrap_or_else(|e| panic!("the dataplane would refuse a compiled image: {e}"));
            assert_eq!(decoded, image);
        }
    }
}

/// Frames the image check decides with every decoded image (a UDP query, its reply, TCP
/// SYN, ICMP echo, IPv6 UDP, ARP).
fn sample_frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/parse/");
        ["ipv4_udp", "ipv4_tcp_syn", "icmp_echo", "icmp_dest_unreachable", "ipv6_tcp", "arp_request"]
            .iter()
            .map(|name| std::fs::read(format!("{dir}{name}")).unwrap_or_else(|e| panic!("sample frame {name}: {e}")))
            .collect()
    })
}

fn table() -> FlowTable {
    FlowTable::new(&FlowTableConfig { capacity: 256, full_policy: FullPolicy::EvictOldest, hash_seed: Some(1), ..Default::default() }).expect("a valid table size")
}

/// Any bytes as a published policy image: decoding never panics, and an image that decodes
/// (and so validated) builds the dataplane's runtime and decides packets on every port.
pub fn image(data: &[u8]) {
    let Ok(image) = PolicyImage::decode(data) else { return };
    let history = Arc::new(RuleHistory::default());
    let rt = Runtime::build(1, &image, Some, None, &history);
    let flows = table();
    for (local, port) in rt.ports.iter().enumerate() {
        for frame in sample_frames() {
            let Ok(meta) = rampart_packet::parse(frame) else { continue };
            let _ = rt.decide(local as u8, &meta);
            if let Some(fw) = &rt.firewall {
                let _ = fw.check(&flows, &meta, frame, port.slot as u8, port.zone, 10, &mut EndedFlows::new());
            }
        }
    }
}

/// Any 80 bytes as an event record from the dataplane: one JSON object with an
/// `event_type`, whatever the kind, codes, port, length and clock say.
pub fn event(data: &[u8]) {
    let word = |i: usize| data.get(i..i + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let half = |i: usize| data.get(i..i + 2).map_or(0, |b| u16::from_le_bytes(b.try_into().unwrap()));
    let mut rec = EventRecord { seq: word(0), tsc: word(8), kind: half(16), port: half(18), code: half(20), len: half(22), value: word(24), data: [0; 32] };
    for (d, s) in rec.data.iter_mut().zip(data.iter().skip(32)) {
        *d = *s;
    }
    let clock = rampart_control::events::Clock { tsc_hz: word(64), tsc0: word(72), real0: word(80) };
    let names = BTreeMap::from([(0u16, "guest-a".to_string()), (1, "uplink".to_string())]);
    let rules = ["allow-dns".to_string(), "deny-rest".to_string()];
    let line = rampart_control::events::to_json(&rec, half(88) as usize, &clock, &names, &rules, &[]);
    match line.get("event_type").and_then(|t| t.as_str()) {
        // Addresses are printed as addresses, whatever the 32 bytes held.
        Some("flow") | Some("alert") => {
            for end in ["src_ip", "dest_ip"] {
                assert!(line[end].as_str().is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok()), "{line}");
            }
        }
        // A summary of held-back drop records carries a count and no packet.
        Some("drop") if line["drop"].get("summary").is_some() => {
            assert!(line["drop"]["summary"]["held_back_total"].is_u64() && line["drop"].get("packet_head").is_none(), "{line}");
        }
        // A monitor port's would-be drop names the packet's addresses, not its bytes.
        Some("drop") if line["rampart"].get("would").is_some() => {
            for end in ["src_ip", "dest_ip"] {
                assert!(line[end].as_str().is_some_and(|a| a.parse::<std::net::IpAddr>().is_ok()) && line["drop"].get("packet_head").is_none(), "{line}");
            }
        }
        // The packet head is the record's bytes as hex, at most all 32 of them.
        Some("drop") => {
            let head = line["drop"]["packet_head"].as_str().unwrap_or_default();
            assert!(head.len() <= 64 && head.len() == 2 * (rec.len as usize).min(32), "{line}");
        }
        Some(_) => {}
        None => panic!("a log line without event_type: {line}"),
    }
}

/// Any bytes as an admin-socket request (`{"cmd": ...}`, filters and all) to a control
/// process with no dataplane attached: a JSON reply with a boolean `ok`, and a non-empty
/// `error` when it is false. (`reload` rereads a config file that is not there.)
pub fn admin(data: &[u8]) {
    use rampart_control::{admin, daemon, events::EventLog};
    static DAEMON: OnceLock<daemon::Daemon> = OnceLock::new();
    let d = DAEMON.get_or_init(|| {
        let config = rampart_config::parse("fuzz.toml", FIREWALL_POLICY).expect("the fuzz policy is valid");
        let log = EventLog::open(std::path::Path::new("/dev/null"), rampart_control::chain::Key::from_bytes(&[0; 32])).expect("/dev/null opens");
        daemon::Daemon::new(std::path::Path::new("/nonexistent/rampart-fuzz.toml"), config, log).expect("the fuzz policy compiles")
    });
    let Ok(request) = std::str::from_utf8(data) else { return };
    let reply = serde_json::to_value(admin::handle(d, request)).expect("a reply encodes as JSON");
    match reply.get("ok").and_then(|ok| ok.as_bool()) {
        Some(true) => {}
        Some(false) => assert!(reply.get("error").and_then(|e| e.as_str()).is_some_and(|e| !e.is_empty()), "{reply}"),
        None => panic!("a reply without ok: {reply}"),
    }
}

/// Any bytes as event log files (split at 0xff) for `rampartctl verify-log`: it never panics.
/// And a genuine sealed log (its records drawn from the bytes) with one byte changed, anywhere:
/// the change is always found.
pub fn event_log(data: &[u8]) {
    use rampart_control::chain::{self, Chain, Key, Link};
    let key = Key::from_bytes(&[5; 32]);
    let files = data.split(|&b| b == 0xff).take(4).enumerate().map(|(i, d)| (format!("f{i}"), d.to_vec())).collect();
    let _ = chain::verify_contents(&key, files, None);
    let [n, a, b, add, text @ ..] = data else { return };
    let mut c = Chain::new(key.clone(), Link::default());
    let mut log = Vec::new();
    c.seal_value(&chain::checkpoint("2026-12-05T00:00:00.000000+0000", "new", Link::default(), serde_json::json!({})), &mut log);
    for i in 0..n % 6 + 1 {
        c.seal_value(&serde_json::json!({"event_type": "drop", "n": i, "text": String::from_utf8_lossy(text), "rampart": {"would": "drop"}}), &mut log);
    }
    let intact = chain::verify_contents(&key, vec![("eve.json".into(), log.clone())], Some(c.head));
    assert!(intact.ok(), "{:?}", intact.problems);
    let at = u16::from_le_bytes([*a, *b]) as usize % log.len();
    log[at] = log[at].wrapping_add(1 + add % 255);
    let changed = chain::verify_contents(&key, vec![("eve.json".into(), log.clone())], Some(c.head));
    assert!(!changed.ok(), "byte {at} changed and not found: {}", String::from_utf8_lossy(&log));
}

/// The firewall of a compiled policy, as the dataplane builds it.
fn firewall_of(gen: u64, text: &str, history: &mut RuleHistory) -> (Firewall, Vec<u8>) {
    let image = compile(text).expect("the firewall check's policies are valid");
    let fw = image.firewall.clone().expect("the firewall check's policies have rules");
    history.record(gen, &fw.rules);
    let ports = image.ports.iter().map(|p| p.slot as u8).collect();
    (Firewall::new(fw, Defaults::of(&image.ports), gen, Arc::new(history.clone())), ports)
}

/// What one pass of [`firewall`] decided.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Verdicts {
    /// Passed, of which `created` opened a tracked flow.
    pub passed: u32,
    pub created: u32,
    pub dropped: u32,
    pub rejected: u32,
}

/// Bytes as a guest's bursts: byte 0 picks the ingress port (and, bit 7, generation 1's
/// defaults: some drop, or all forward), then each frame is a length byte and that many
/// bytes (up to 32 frames). The burst is decided under generation 1
/// twice (first packets, then hits), then after a reload to generation 2 (re-checks), and
/// the sweep after that reload runs over the table: no panic, no flow added but by a
/// passed first packet, every removal reported. Returns what each pass decided.
pub fn firewall(data: &[u8]) -> [Verdicts; 3] {
    static POLICIES: OnceLock<([Firewall; 2], Firewall, Vec<u8>)> = OnceLock::new();
    let (gen1s, gen2, ports) = POLICIES.get_or_init(|| {
        let mut history = RuleHistory::default();
        let (gen1, ports) = firewall_of(1, FIREWALL_POLICY, &mut history);
        // The same rules where every default forwards (so untracked).
        let open = FIREWALL_POLICY.replace("from_uplinks = \"drop\"", "from_uplinks = \"forward\"");
        let (gen1_open, _) = firewall_of(1, &open, &mut history);
        let (gen2, _) = firewall_of(2, FIREWALL_RELOAD, &mut history);
        ([gen1, gen1_open], gen2, ports)
    });
    let mut passes = [Verdicts::default(); 3];
    let Some((&pick, mut rest)) = data.split_first() else { return passes };
    // Byte 0: the port (low bits), and with bit 7 the policy whose defaults all forward.
    let (ingress, zone) = (ports[(pick & 0x7f) as usize % ports.len()], 0);
    let gen1 = &gen1s[(pick >> 7) as usize];
    let mut frames = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let len = (len as usize).min(tail.len());
        frames.push(&tail[..len]);
        rest = &tail[len..];
        if frames.len() == BURST {
            break;
        }
    }
    let flows = table();
    for ((now, fw), seen) in [(10, gen1), (20, gen1), (30, gen2)].into_iter().zip(&mut passes) {
        let mut burst = Burst::default();
        burst.fill(&flows, zone, frames.iter().copied());
        for (i, frame) in frames.iter().enumerate() {
            let Ok(meta) = burst.meta(i) else { continue };
            let before = flows.len();
            let verdict = fw.check_looked_up(&flows, meta, frame, ingress, zone, now, burst.lookup(&flows, i), &mut EndedFlows::new());
            let created = matches!(verdict, FwVerdict::Pass { created: true, .. });
            assert!(flows.len() <= before + created as u32, "only a passed first packet adds a flow: {verdict:?}");
            match verdict {
                FwVerdict::Pass { .. } => (seen.passed, seen.created) = (seen.passed + 1, seen.created + created as u32),
                FwVerdict::Drop(..) => seen.dropped += 1,
                FwVerdict::Reject(_) => seen.rejected += 1,
            }
        }
    }
    let (mut cursor, mut removed) = (0, 0);
    let live = flows.len();
    flows.revisit_step(&mut cursor, flows.slots(), 40, |r| gen2.revisit(r), |_, _| removed += 1);
    assert!(flows.len() + removed == live, "the sweep reports every flow it removes");
    passes
}

/// Any bytes as a rule file (lossy UTF-8): parsing never panics and gives the same result
/// twice; an error names the file and the line a rule of the text starts on; every loaded
/// or skipped rule's line is a line of the text. The signatures build a matcher or an
/// error (never a panic), and a matcher scans the bytes themselves (over a stream, in two
/// segments, and alone) listing at most [`MAX_MATCHES`] of its own signatures.
///
/// [`MAX_MATCHES`]: rampart_signatures::engine::MAX_MATCHES
pub fn rules(data: &[u8]) {
    use rampart_signatures::engine::{Database, Matches, Packet, Stream, MAX_MATCHES};
    use rampart_signatures::parse::{parse_rules, Classifications, Vars};
    static VARS: OnceLock<Vars> = OnceLock::new();
    let (vars, classes) = (VARS.get_or_init(Vars::suricata_defaults), Classifications::default());
    let text = String::from_utf8_lossy(data);
    let parsed = parse_rules(&text, "fuzz.rules", vars, &classes);
    assert_eq!(parse_rules(&text, "fuzz.rules", vars, &classes), parsed, "parsing is deterministic");
    let lines = 1..=text.lines().count();
    let file = match parsed {
        Ok(file) => file,
        Err(e) => {
            assert_eq!(e.file, "fuzz.rules");
            assert!(lines.contains(&(e.line as usize)), "line {} of a {}-line text: {e}", e.line, lines.end());
            return;
        }
    };
    for sig in &file.signatures {
        assert_eq!(sig.origin.file, "fuzz.rules");
        assert!(lines.contains(&(sig.origin.line as usize)), "sid {} at line {} of a {}-line text", sig.sid, sig.origin.line, lines.end());
    }
    for skipped in &file.skipped {
        assert!(lines.contains(&(skipped.line as usize)), "skipped rule at line {} of a {}-line text", skipped.line, lines.end());
    }
    let _ = file.summary();
    let Ok(db) = Database::build(file.signatures, 256) else { return };
    // The rules' contents are in the text: the bytes make the matcher verify candidates.
    let (client, server): (std::net::IpAddr, std::net::IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
    let pkt = |proto, payload| Packet { proto, src: client, dst: server, src_port: 40000, dst_port: 80, to_server: true, established: true, payload };
    let (half, mut stream, mut out) = (data.len() / 2, Stream::new(), Matches::new());
    let scans: [(Packet, bool); 3] = [(pkt(6, &data[..half]), true), (pkt(6, &data[half..]), true), (pkt(17, data), false)];
    for (p, streamed) in scans {
        db.scan(&p, streamed.then_some(&mut stream), &mut out);
        let listed: Vec<u32> = out.iter().collect();
        assert!(listed.len() <= MAX_MATCHES && listed.iter().all(|&s| (s as usize) < db.signatures().len()), "{out:?} of {} signatures", db.signatures().len());
    }
}

/// The inspect check's policy: a guest and an uplink whose TCP and UDP flows are inspected
/// by a few signatures (`corpus/config/inspect.toml`).
pub const INSPECT_POLICY: &str = include_str!("../corpus/config/inspect.toml");

/// Frames an input to [`inspect`] sends, at most.
const INSPECT_FRAMES: usize = 256;
/// The guest's and the uplink's MACs.
const GUEST_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0x0a];
const UPLINK_MAC: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xee];
/// Server ports an [`inspect`] template frame picks from (2 bits): inspected web, SSH
/// (allowed uninspected), DNS (the UDP reject signature's), another inspected one.
const SERVER_PORTS: [u16; 4] = [80, 22, 53, 8080];
/// Record headers from this value on end a burst and advance the clock.
const INSPECT_CUT: u8 = 0xf0;

/// A template record of an [`inspect`] input: a TCP or UDP packet between the guest
/// (10.0.0.1 / fd00::1, client port 40000 + `flow`) and a server behind the uplink
/// (198.51.100.7 / 2001:db8::7, port `SERVER_PORTS[port]`). `from_uplink`: sent by the
/// server (received on the uplink). `ctl` (TCP): the flags (low 6 bits) and how the
/// sequence number is chosen (high 2 bits): 0 in order, 1 the last segment's again, 2 a gap,
/// 3 an overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Template<'a> {
    pub from_uplink: bool,
    pub udp: bool,
    pub v6: bool,
    pub flow: u8,
    pub port: u8,
    pub ctl: u8,
    pub payload: &'a [u8],
}

impl Template<'_> {
    /// The record's bytes: a header byte (bit 0 from the uplink, bit 1 UDP, bit 2 IPv6,
    /// bits 3-4 the flow, bits 5-6 the server port; bit 7 clear), `ctl`, the payload's
    /// length and the payload (at most 255 bytes of it).
    pub fn record(&self) -> Vec<u8> {
        let h = self.from_uplink as u8 | (self.udp as u8) << 1 | (self.v6 as u8) << 2 | (self.flow & 3) << 3 | (self.port & 3) << 5;
        let payload = &self.payload[..self.payload.len().min(u8::MAX as usize)];
        [&[h, self.ctl, payload.len() as u8][..], payload].concat()
    }
}

/// A raw record of an [`inspect`] input: `frame` (at most 255 bytes of it) received as it
/// is on the guest's port or the uplink.
pub fn raw_record(from_uplink: bool, frame: &[u8]) -> Vec<u8> {
    let frame = &frame[..frame.len().min(u8::MAX as usize)];
    [&[0x80 | from_uplink as u8, frame.len() as u8][..], frame].concat()
}

/// The record that ends a burst and advances the clock by `steps` × 250 ms (plus 1 ms;
/// `steps` up to 15).
pub fn cut_record(steps: u8) -> Vec<u8> {
    vec![INSPECT_CUT | steps.min(15)]
}

/// TCP sequence numbers of an [`inspect`] input's template flows, per direction.
struct Sequences {
    next: [[u32; 2]; 32],
    last: [[u32; 2]; 32],
}

impl Sequences {
    fn new() -> Sequences {
        Sequences { next: [[1000, 5000]; 32], last: [[1000, 5000]; 32] }
    }

    /// The frame of template `t`, its sequence numbers chosen (and the flow's advanced).
    fn frame(&mut self, t: &Template) -> Option<Vec<u8>> {
        let (dir, sport, cport) = (t.from_uplink as usize, SERVER_PORTS[t.port as usize & 3], 40000 + (t.flow & 3) as u16);
        let (src_port, dst_port) = if t.from_uplink { (sport, cport) } else { (cport, sport) };
        let (smac, dmac) = if t.from_uplink { (UPLINK_MAC, GUEST_MAC) } else { (GUEST_MAC, UPLINK_MAC) };
        let (c4, s4) = ([10, 0, 0, 1], [198, 51, 100, 7]);
        let (c6, s6) = (ip6([0xfd00, 0, 0, 0, 0, 0, 0, 1]), ip6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7]));
        let (a4, b4, a6, b6) = if t.from_uplink { (s4, c4, s6, c6) } else { (c4, s4, c6, s6) };
        let frame = if t.udp {
            match t.v6 {
                false => build::udp_v4(a4, src_port, b4, dst_port, t.payload),
                true => build::udp_v6(a6, src_port, b6, dst_port, t.payload),
            }
        } else {
            let flow = (t.v6 as usize) << 4 | (t.flow as usize & 3) << 2 | (t.port as usize & 3);
            let (next, last) = (self.next[flow][dir], self.last[flow][dir]);
            let seq = match t.ctl >> 6 {
                0 => next,
                1 => last,
                2 => next.wrapping_add(t.payload.len() as u32 + 7),
                _ => next.wrapping_sub(3),
            };
            let flags = t.ctl & 0x3f;
            let ack = if flags & TcpFlags::ACK != 0 { self.next[flow][1 - dir] } else { 0 };
            let takes = (flags & TcpFlags::SYN != 0) as u32 + (flags & TcpFlags::FIN != 0) as u32;
            (self.last[flow][dir], self.next[flow][dir]) = (seq, seq.wrapping_add(t.payload.len() as u32 + takes));
            let frame = match t.v6 {
                false => build::tcp_v4(a4, src_port, b4, dst_port, flags, t.payload),
                true => build::tcp_v6(a6, src_port, b6, dst_port, flags, t.payload),
            };
            frame.with_tcp(|tcp| (tcp.seq_number, tcp.ack_number) = (seq, ack))
        };
        frame.macs(smac, dmac).pad(60).build().ok()
    }
}

/// The first `n` bytes of `rest` (fewer if it is shorter), taken off it.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, tail) = rest.split_at(n.min(rest.len()));
    *rest = tail;
    head
}

fn ip6(words: [u16; 8]) -> [u8; 16] {
    std::net::Ipv6Addr::from(words).octets()
}

/// The bursts an [`inspect`] input sends: (from the uplink, clock in ms, frames).
fn inspect_bursts(data: &[u8]) -> Vec<(bool, u64, Vec<Vec<u8>>)> {
    let mut bursts: Vec<(bool, u64, Vec<Vec<u8>>)> = Vec::new();
    let (mut seqs, mut now_ms, mut cut, mut count) = (Sequences::new(), 1000u64, true, 0);
    let mut rest = data;
    while count < INSPECT_FRAMES {
        let Some(&h) = take(&mut rest, 1).first() else { break };
        if h >= INSPECT_CUT {
            (now_ms, cut) = (now_ms + (h & 0x0f) as u64 * 250 + 1, true);
            continue;
        }
        let from_uplink = h & 1 == 1;
        let frame = if h & 0x80 == 0 {
            let ctl = take(&mut rest, 1).first().copied().unwrap_or(0);
            let len = take(&mut rest, 1).first().copied().unwrap_or(0) as usize;
            let payload = take(&mut rest, len);
            let t = Template { from_uplink, udp: h & 2 != 0, v6: h & 4 != 0, flow: (h >> 3) & 3, port: (h >> 5) & 3, ctl, payload };
            let Some(frame) = seqs.frame(&t) else { continue };
            frame
        } else {
            let len = take(&mut rest, 1).first().copied().unwrap_or(0) as usize;
            take(&mut rest, len).to_vec()
        };
        match bursts.last_mut() {
            Some((dir, _, frames)) if !cut && *dir == from_uplink && frames.len() < BURST => frames.push(frame),
            _ => bursts.push((from_uplink, now_ms, vec![frame])),
        }
        (cut, count) = (false, count + 1);
    }
    bursts
}

/// What one input of [`inspect`] did: its actions, and the worker's inspection counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    pub frames: u32,
    pub bursts: u32,
    pub forwarded: u32,
    /// Answered in place (by a `reject` signature: the policy has no reject rule).
    pub replied: u32,
    /// Dropped as `signature`: by a signature, or (`unscanned`) a packet of an inspected
    /// flow that inspection cannot look up (an ICMP error about it): never let through.
    pub signature_drops: u32,
    pub unscanned: u32,
    /// Dropped as `signature_flow`: later packets of a flow a signature blocked.
    pub flow_drops: u32,
    /// Alert records in the event ring.
    pub alert_events: u64,
    pub counters: rampart_shm::InspectCounterValues,
}

/// Bytes as bursts through a worker's packet path ([`rampart_pipeline::Pipeline`], one per
/// input, 16 streams) under [`INSPECT_POLICY`], its signatures built as the dataplane
/// builds them. The input is a sequence of records: a template packet of one of the
/// policy's flows ([`Template::record`]: the sequence numbers follow the flow unless told
/// otherwise), a raw frame ([`raw_record`]), or a cut ([`cut_record`]: the next frame starts
/// a burst, the clock moves on). Consecutive frames from the same port make one burst (at
/// most 32), up to 256 frames.
///
/// No panic; no frame is forwarded back to its port or beyond the runtime's ports, no
/// answer is longer than its buffer; inspection scans at most the frames sent, logs an
/// alert for each packet it blocks (drop or reject), and the packets it blocks are the
/// `signature` drops and answers of packets it could look up; `signature_flow` drops (the
/// rest of a blocked flow) only once something was blocked; one alert record per alert
/// counted (when the event ring lost none).
pub fn inspect(data: &[u8]) -> Inspected {
    use rampart_pipeline::{inspect::Inspection, Action, Checksums, Context, Frame, Pipeline};
    use rampart_shm::DropReason;
    use std::sync::Mutex;
    struct Shared {
        segment: rampart_shm::Segment,
        image: PolicyImage,
        inspection: Arc<Inspection>,
        history: Arc<RuleHistory>,
    }
    // One worker's counters and event ring, shared by every input (tests run in threads).
    static SHARED: OnceLock<Mutex<Shared>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| {
        let image = compile(INSPECT_POLICY).expect("the inspect check's policy is valid");
        let inspection = Inspection::build(image.inspection.as_ref().expect("the inspect policy has signatures")).expect("its signatures build");
        let mut history = RuleHistory::default();
        history.record(1, &image.firewall.as_ref().expect("the inspect policy has rules").rules);
        // The mapping outlives its file: nothing is left behind, even when a check aborts.
        let dir = std::env::temp_dir().join(format!("rampart-fuzz-inspect-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let segment = rampart_shm::Segment::create(&dir.join("shm"), 0o600, 1, 1_000_000_000, 0).expect("a shared-memory segment");
        let _ = std::fs::remove_dir_all(&dir);
        Mutex::new(Shared { segment, image, inspection: Arc::new(inspection), history: Arc::new(history) })
    });
    let shared = shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let (counters, events) = (&shared.segment.workers[0], &shared.segment.events[0]);
    let mut rt = Runtime::build(1, &shared.image, Some, None, &shared.history);
    rt.inspection = Some(shared.inspection.clone());
    assert_eq!(rt.ports.len(), 2, "the guest and the uplink");
    let signatures = shared.inspection.db.signatures().len();
    while events.pop().is_some() {}
    counters.inspect.reset();
    // Each input starts from nothing: its own flows and streams, no threshold counts.
    shared.inspection.clear_counts();
    let lost = counters.totals.events_lost.get();
    let detected = |kind: rampart_shm::Anomaly| counters.anomalies[kind.index()].get();
    let detected0: Vec<u64> = rampart_shm::Anomaly::ALL.iter().map(|&k| detected(k)).collect();
    let mut anomaly_drops = [0u64; rampart_shm::anomaly::MAX_ANOMALIES];
    let (flows, mut pipeline, mut seen) = (table(), Pipeline::new(16), Inspected::default());
    for (from_uplink, now_ms, frames) in inspect_bursts(data) {
        let ingress = from_uplink as u8;
        let zone = rt.ports[ingress as usize].zone;
        // Whether inspection can look up the packet's flow (as the burst will).
        let keyed: Vec<bool> = frames.iter().map(|f| rampart_packet::parse(f).is_ok_and(|m| Firewall::lookup_key(&flows, &m, zone).is_some())).collect();
        // Room for an answer after every other frame of the burst (a reject answer that
        // does not fit is a drop).
        let mut bufs: Vec<Vec<u8>> = frames.iter().enumerate().map(|(i, f)| [&f[..], &[0; 128][..128 * (i % 2)]].concat()).collect();
        let mut burst: Vec<Frame> = bufs.iter_mut().zip(&frames).map(|(b, f)| Frame::new(b, f.len(), f.len() as u32, 1, Checksums::Complete)).collect();
        let cx = Context { flows: &flows, counters, events, now_ms, now_ns: now_ms * 1_000_000 };
        let actions = pipeline.process(&rt, &cx, ingress, &mut burst).to_vec();
        pipeline.flush_events(&cx);
        assert_eq!(actions.len(), frames.len());
        for (i, action) in actions.iter().enumerate() {
            match *action {
                Action::Forward(ports) => {
                    assert!(ports.iter().all(|p| p != ingress && (p as usize) < rt.ports.len()), "frame {i} forwarded from {ingress} to {ports:?}");
                    seen.forwarded += 1;
                }
                Action::Reply { len } => {
                    assert!(len as usize <= bufs[i].len(), "an answer of {len} bytes in a {}-byte buffer", bufs[i].len());
                    seen.replied += 1;
                }
                Action::Drop(DropReason::Signature) if keyed[i] => seen.signature_drops += 1,
                Action::Drop(DropReason::Signature) => seen.unscanned += 1,
                Action::Drop(DropReason::SignatureFlow) => seen.flow_drops += 1,
                Action::Drop(r) => {
                    if let Some(k) = rampart_shm::Anomaly::ALL.iter().find(|k| k.reason() == r) {
                        anomaly_drops[k.index()] += 1;
                    }
                }
            }
        }
        (seen.frames, seen.bursts) = (seen.frames + frames.len() as u32, seen.bursts + 1);
        let c = counters.inspect.read();
        assert!(c.packets <= seen.frames as u64, "{} packets inspected of {} frames", c.packets, seen.frames);
        assert!(c.alerts + c.suppressed >= c.blocked, "every blocked packet is alerted (or its alert held back by a threshold): {c:?}");
        assert_eq!(c.blocked, (seen.signature_drops + seen.replied) as u64, "blocked packets are the signature drops and answers: {c:?} {seen:?}");
        assert!(seen.flow_drops == 0 || c.blocked > 0, "a flow is blocked only after a signature blocked one of its packets: {c:?} {seen:?}");
    }
    // Every anomaly drop was a detection (an overlap's drop also drops the rest of its
    // datagram, detected once).
    for &k in rampart_shm::Anomaly::ALL.iter().filter(|&&k| k != rampart_shm::Anomaly::FragmentOverlap) {
        assert!(anomaly_drops[k.index()] <= detected(k) - detected0[k.index()], "{k:?}: {} drops, {} detected", anomaly_drops[k.index()], detected(k) - detected0[k.index()]);
    }
    seen.counters = counters.inspect.read();
    while let Some((rec, _)) = events.pop() {
        if rec.kind == rampart_shm::ring::EventKind::Anomaly as u16 {
            let (kind, outcome) = rampart_shm::anomaly::parse_event_code(rec.code);
            assert!(kind.is_some() && outcome.is_some(), "anomaly record {rec:?}");
        }
        if rec.kind == rampart_shm::ring::EventKind::Alert as u16 {
            let sig = rampart_shm::ring::FlowEventData::unpack(&rec).5;
            assert!(sig.is_some_and(|s| (s as usize) < signatures) && rec.code <= 2, "alert record {rec:?}");
            seen.alert_events += 1;
        }
    }
    if counters.totals.events_lost.get() == lost {
        assert_eq!(seen.alert_events, seen.counters.alerts, "one alert record per alert");
    }
    seen
}

/// The committed seeds of `target` (`corpus/<target>/`), by file name.
pub fn committed_seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, std::fs::read(e.path()).ok()?)))
        .collect();
    seeds.sort();
    seeds
}

/// The bytes [`event`] reads as `rec` (with a 1 GHz clock).
fn event_seed(rec: &EventRecord) -> Vec<u8> {
    let mut b = Vec::with_capacity(90);
    b.extend_from_slice(&rec.seq.to_le_bytes());
    b.extend_from_slice(&rec.tsc.to_le_bytes());
    for half in [rec.kind, rec.port, rec.code, rec.len] {
        b.extend_from_slice(&half.to_le_bytes());
    }
    b.extend_from_slice(&rec.value.to_le_bytes());
    b.extend_from_slice(&rec.data);
    for word in [1_000_000_000u64, 0, 1_700_000_000_000_000_000] {
        b.extend_from_slice(&word.to_le_bytes());
    }
    b.extend_from_slice(&0u16.to_le_bytes());
    b
}

/// An ET-style rule file for the `rules` seeds: loaded rules using every supported keyword,
/// a commented-out one, continued lines, and rules that need sticky buffers, `flowbits`,
/// `track by_flow`, `dce` or a pcre outside the DFA subset (skipped), and a bad pcre flag.
const RULES_SEED: &str = r#"# Emerging Threats-shaped rules (not real signatures)
# alert tcp any any -> any any (msg:"commented out"; sid:100;)

alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (msg:"ET POLICY curl User-Agent"; flow:established,to_server; content:"User-Agent|3a 20|curl/"; nocase; fast_pattern; classtype:policy-violation; sid:2013028; rev:4; metadata:created_at 2011_06_14, updated_at 2019_09_28;)
drop udp $EXTERNAL_NET any <> $HOME_NET 53 (msg:"odd \"dns\"\; query"; flow:to_server; dsize:>10; content:"|01 00|"; offset:2; depth:2; content:"abc"; distance:4; within:10; nocase; isdataat:!1,relative; reference:url,example.com/a; sid:2000001; rev:5; gid:3; priority:2; target:dest_ip;)
reject tcp [10.0.0.0/8,!10.1.0.0/16] [1024:,!8080] -> any ![22,23] (msg:"negations"; content:!"safe"; content:"evil"; startswith; content:"END"; endswith; sid:5;)
alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"ET sticky buffers"; flow:established,to_server; \
    http.uri; content:"/upload?id="; startswith; \
    http.host; content:".top"; endswith; sid:2000003; rev:6;)
alert tls any any -> any 443 (msg:"sni"; tls.sni; content:"bad.example"; pcre:"/bad\.example$/"; flowbits:set,x; sid:6;)
pass ip any any -> any any (msg:"threshold"; sid:7; threshold:type limit, track by_src, count 1, seconds 60;)
alert icmp any any -> any any (msg:"small icmp"; dsize:<64; sid:8;)
alert tcp any any -> any any (msg:"rawbytes"; content:"x"; rawbytes; isdataat:10; sid:9;)
alert tcp any any -> any any (msg:"pcre flags"; content:"GET"; pcre:"/^GET\s+\/[a-z0-9_\-]{4,32}\.php\?id=\d+/ismxGRBO"; sid:10;)
drop udp any any -> any any (msg:"negated pcre, byte_test"; content:"|00 01|"; pcre:!"/\x00\x01\xff/"; byte_test:2,!&,0x8000,0,relative,little,bitmask 0xff00; sid:11;)
alert tcp any any -> any any (msg:"byte_jump"; content:"LEN"; byte_jump:4,0,relative,string,hex,multiplier 2,align,post_offset -2; content:"!"; within:1; sid:12;)
alert tcp any any -> any any (msg:"from the end"; byte_jump:1,0,from_end,post_offset -8; isdataat:!8,relative; sid:13;)
alert tcp any any -> any any (msg:"backreference"; content:"a"; pcre:"/(a)\1/"; sid:14;)
alert tcp any any -> any any (msg:"uri pcre"; content:"a"; pcre:"/a/U"; sid:15;)
alert tcp any any -> any any (msg:"dce"; content:"a"; byte_test:4,=,1,0,dce; sid:16;)
"#;

/// The `inspect` seeds: flows of the inspect policy that reach each signature (split across
/// segments, out of order, after the handshake, in both directions, IPv4 and IPv6), flows
/// SSH takes uninspected, more flows than streams, an idle stream taken over, and the
/// sample frames sent raw.
fn inspect_seeds(samples: &[(String, Vec<u8>)]) -> Vec<(String, Vec<u8>)> {
    use TcpFlags as F;
    const DATA: u8 = F::PSH | F::ACK;
    const GAP: u8 = 2 << 6;
    let t = |from_uplink, udp, v6, flow, port, ctl, payload: &[u8]| Template { from_uplink, udp, v6, flow, port, ctl, payload }.record();
    // TCP of flow `flow` to SERVER_PORTS[port]: the client's segments, the server's.
    let c = |v6, flow, port, ctl, payload: &[u8]| t(false, false, v6, flow, port, ctl, payload);
    let s = |v6, flow, port, ctl, payload: &[u8]| t(true, false, v6, flow, port, ctl, payload);
    let handshake = |v6, flow, port| [c(v6, flow, port, F::SYN, b""), s(v6, flow, port, F::SYN | F::ACK, b""), c(v6, flow, port, F::ACK, b"")].concat();
    let mut seeds = Vec::new();
    for v6 in [false, true] {
        let ip = if v6 { "v6" } else { "v4" };
        seeds.push((format!("split-drop-{ip}"), [
            handshake(v6, 0, 0),
            c(v6, 0, 0, DATA, b"GET /evil-pa"),
            c(v6, 0, 0, DATA, b"yload HTTP/1.1"),
            s(v6, 0, 0, DATA, b"WatchMe"),
            c(v6, 0, 0, DATA | GAP, b"an evil-payload"),
        ].concat()));
        seeds.push((format!("reject-{ip}"), [handshake(v6, 1, 3), c(v6, 1, 3, DATA, b"xxRSTMEyy"), c(v6, 1, 3, DATA, b"xxRSTMEy")].concat()));
        seeds.push((format!("udp-{ip}"), [
            t(false, true, v6, 0, 3, 0, b"GET /Admin/xyz"),
            t(true, true, v6, 0, 3, 0, b"HTTP/1.0 200 ok"),
            t(false, true, v6, 0, 3, 0, b"exploit"),
            t(false, true, v6, 0, 3, 0, b"exploit, but safe"),
            t(false, true, v6, 1, 2, 0, b"\xde\xad\xbe\xef"),
            t(false, true, v6, 2, 2, 0, b"\xde\xad\xbe\xef!"),
        ].concat()));
    }
    seeds.push(("pass-and-end".to_string(), [
        handshake(false, 2, 0),
        c(false, 2, 0, DATA, b"trusted: ok evil-payload"),
        c(false, 2, 0, DATA, b"the END"),
        c(false, 2, 0, DATA, b"ENDless"),
        s(false, 2, 0, DATA, b"abc"),
        c(false, 2, 0, F::FIN | F::ACK, b""),
        s(false, 2, 0, F::FIN | F::ACK, b""),
        c(false, 2, 0, F::ACK, b""),
        c(false, 2, 0, DATA, b"evil-payload after the end"),
    ].concat()));
    seeds.push(("numbers-and-pcre".to_string(), [
        t(false, true, false, 0, 3, 0, b"USER bob PASS 1234"),
        t(false, true, false, 1, 3, 0, b"user alice pass 12"),
        t(false, true, true, 2, 3, 0, b"HDR\x03xxxxxEXEC"),
        t(false, true, false, 3, 3, 0, b"HDR\xffEXEC"),
        handshake(false, 1, 0),
        c(false, 1, 0, DATA, b"REC\x01\x03 long"),
        c(false, 1, 0, DATA, b"LEN=004abcd\x00"),
        c(false, 1, 0, DATA, b"LEN=999"),
    ].concat()));
    // A drop held back twice by its detection_filter (three flows to one destination), an
    // alert limited to one per source.
    seeds.push(("thresholds".to_string(), [
        t(false, true, false, 0, 2, 0, b"THIRD"),
        t(false, true, false, 1, 2, 0, b"THIRD"),
        t(false, true, false, 2, 2, 0, b"THIRD"),
        t(false, true, false, 2, 2, 0, b"THIRD again"),
        handshake(false, 2, 0),
        c(false, 2, 0, DATA, b"LIMITED"),
        c(false, 2, 0, DATA, b"LIMITED"),
        c(false, 2, 0, DATA, b"LIMITED"),
    ].concat()));
    seeds.push(("ssh-uninspected".to_string(), [handshake(false, 0, 1), c(false, 0, 1, DATA, b"evil-payload")].concat()));
    seeds.push(("out-of-order".to_string(), [
        handshake(false, 3, 0),
        c(false, 3, 0, DATA, b"evil-"),
        c(false, 3, 0, DATA | 1 << 6, b"evil-"),
        c(false, 3, 0, DATA, b"payload"),
        c(false, 3, 0, DATA | 3 << 6, b"ad-payload"),
        s(false, 3, 0, F::RST, b""),
    ].concat()));
    // 64 stream directions for 16 streams: some packets are inspected on their own.
    let mut many = Vec::new();
    for (v6, flow, port) in (0..32u8).map(|i| (i & 16 != 0, (i >> 2) & 3, i & 3)) {
        many.extend(t(false, true, v6, flow, port, 0, b"hello watch"));
        many.extend(t(true, true, v6, flow, port, 0, b"me there"));
    }
    seeds.push(("many-flows".to_string(), many));
    // A stream left idle past the timeout is taken over; its flow's next packet starts anew.
    let mut idle = handshake(false, 0, 0);
    idle.extend(c(false, 0, 0, DATA, b"evil-pay"));
    idle.extend(cut_record(15));
    for (v6, flow, port) in (0..16u8).map(|i| (i & 8 != 0, (i >> 1) & 3, 2 + (i & 1))) {
        idle.extend(t(false, true, v6, flow, port, 0, b"exploi"));
    }
    idle.extend(c(false, 0, 0, DATA, b"load"));
    seeds.push(("idle".to_string(), idle));
    // An ICMP error about an inspected flow (a router asks the client for a smaller MTU).
    let quoted = build::tcp_v4([10, 0, 0, 1], 40000, [198, 51, 100, 7], 80, DATA, &[b'x'; 64]).ip_packet().expect("a valid packet");
    let too_big = icmp::Repr::DstUnreachable { code: 4, next_hop_mtu: 1400 };
    let error = build::icmp_v4([203, 0, 113, 1], [10, 0, 0, 1], too_big, &quoted).macs(UPLINK_MAC, GUEST_MAC).build().expect("a valid frame");
    seeds.push(("icmp-error".to_string(), [handshake(false, 0, 0), raw_record(true, &error)].concat()));
    // Protocol anomalies from the guest: flags, land, a low TTL, a datagram whose later
    // fragment comes twice, a segment of an inspected flow with a wrong checksum.
    let (guest, server) = ([10, 0, 0, 1], [198, 51, 100, 7]);
    let raw_frame = |f: Frame| raw_record(false, &f.macs(GUEST_MAC, UPLINK_MAC).pad(60).build().expect("a valid frame"));
    let pieces = build::udp_v4(guest, 40000, server, 53, &[7; 40]).macs(GUEST_MAC, UPLINK_MAC).fragments(24).expect("fragments");
    let mut bad_sum = build::tcp_v4(guest, 40000, server, 80, DATA, b"GET /").macs(GUEST_MAC, UPLINK_MAC).build().expect("a valid frame");
    *bad_sum.last_mut().expect("a payload") ^= 1;
    seeds.push(("anomalies".to_string(), [
        raw_frame(build::tcp_v4(guest, 40001, server, 80, F::SYN | F::FIN, b"")),
        raw_frame(build::udp_v4(guest, 53, guest, 53, b"land")),
        raw_frame(build::udp_v4(guest, 40002, server, 53, b"x").ttl(1)),
        raw_record(false, &pieces[0]),
        raw_record(false, &pieces[1]),
        raw_record(false, &pieces[1]),
        handshake(false, 0, 0),
        raw_record(false, &bad_sum),
    ].concat()));
    // The sample frames as they are, from both sides.
    let raw: Vec<u8> = samples.iter().flat_map(|(_, f)| [raw_record(false, f), raw_record(true, f)].concat()).collect();
    seeds.push(("raw".to_string(), [handshake(false, 0, 0), raw].concat()));
    seeds
}

/// Seeds built from the code, so they follow format changes: (target, name, bytes).
/// - `config`: the built-in demo config;
/// - `image`: every config seed compiled, as the control process publishes it;
/// - `event`: one record of each kind the dataplane writes;
/// - `admin`: one request of each kind, filters included;
/// - `firewall`: a burst of each sample frame, and one of them all;
/// - `rules`: the demo's and the inspect policy's signatures, ET-style rule files;
/// - `inspect`: flows that reach each of the inspect policy's signatures ([`inspect_seeds`]).
pub fn generated_seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    use rampart_shm::ring::{EventKind, FlowEndCode, FlowEventData};
    let mut seeds = vec![("config", "demo.toml".to_string(), rampart_config::DEMO_CONFIG.as_bytes().to_vec())];
    let configs = committed_seeds("config").into_iter().chain([("demo.toml".to_string(), rampart_config::DEMO_CONFIG.as_bytes().to_vec())]);
    for (name, text) in configs {
        if let Some(image) = std::str::from_utf8(&text).ok().and_then(compile) {
            seeds.push(("image", name.replace(".toml", ".image"), image.encode()));
        }
    }
    let (data, value) = FlowEventData::pack(&[0; 16], &[1; 16], 40000, 53, 17, Some(0));
    let flow = EventRecord { tsc: 5_000_000_000, port: 0, data, value, ..Default::default() };
    let records = [
        ("flow-start", EventRecord { kind: EventKind::FlowStart as u16, ..flow }),
        ("flow-end", EventRecord { kind: EventKind::FlowEnd as u16, code: FlowEndCode::Evicted as u16, ..flow }),
        ("drop", EventRecord { kind: EventKind::Malformed as u16, code: 3, value: 60, ..Default::default() }.with_data(&[0xff; 20])),
        ("port-up", EventRecord { kind: EventKind::PortUp as u16, port: 1, ..Default::default() }.with_data(b"link up")),
        ("policy", EventRecord { kind: EventKind::PolicyRejected as u16, value: 7, ..Default::default() }.with_data(b"bad image")),
        ("pong", EventRecord { kind: EventKind::Pong as u16, value: 9, ..Default::default() }),
        ("dumped", EventRecord { kind: EventKind::FlowsDumped as u16, value: 2, ..Default::default() }),
        ("anomaly", EventRecord { kind: EventKind::Anomaly as u16, code: rampart_shm::anomaly::event_code(rampart_shm::Anomaly::Land, rampart_shm::AnomalyOutcome::Dropped), ..flow }),
    ];
    seeds.extend(records.iter().map(|(name, rec)| ("event", name.to_string(), event_seed(rec))));
    let requests = [
        ("status", r#"{"cmd":"status"}"#),
        ("stats", r#"{"cmd":"stats"}"#),
        ("reload", r#"{"cmd":"reload"}"#),
        ("flows", r#"{"cmd":"flows","guest":"a","address":"10.0.0.0/24","port":53,"state":"established"}"#),
        ("flows-v6", r#"{"cmd":"flows","address":"fd00::1/64","kill":true}"#),
        ("unknown", r#"{"cmd":"frobnicate"}"#),
    ];
    seeds.extend(requests.iter().map(|(name, r)| ("admin", name.to_string(), r.as_bytes().to_vec())));
    let frames: Vec<_> = committed_seeds("parse").into_iter().filter(|(_, f)| f.len() <= u8::MAX as usize).collect();
    let burst = |pick: u8, frames: &mut dyn Iterator<Item = &Vec<u8>>| {
        let mut b = vec![pick];
        for f in frames {
            b.push(f.len() as u8);
            b.extend_from_slice(f);
        }
        b
    };
    for (i, (name, frame)) in frames.iter().enumerate() {
        seeds.push(("firewall", name.clone(), burst(i as u8, &mut [frame, frame].into_iter())));
    }
    seeds.push(("firewall", "all".to_string(), burst(0, &mut frames.iter().map(|(_, f)| f))));
    // Bursts the policy has rules for (10.0.0.1 is guest a, 10.0.0.2 guest b), each packet
    // and its reply (addresses and ports swapped).
    type End = ([u8; 4], u16);
    let (a, b) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let frame = |f: Frame| f.pad(60).build().expect("a valid frame");
    let dns = |(src, sport): End, (dst, dport): End| frame(build::udp_v4(src, sport, dst, dport, b"hello"));
    let tcp = |(src, sport): End, (dst, dport): End, flags, ack| frame(build::tcp_v4(src, sport, dst, dport, flags, b"").with_tcp(|t| (t.seq_number, t.ack_number) = (1, ack)));
    let echo = |src, dst, repr| frame(build::icmp_v4(src, dst, repr, b"ping"));
    let sample = |name: &str| frames.iter().find(|(n, _)| n == name).map(|(_, f)| f.clone()).unwrap_or_default();
    let (ssh, web) = (tcp((a, 40000), (b, 22), TcpFlags::SYN, 0), tcp((a, 40000), (b, 80), TcpFlags::SYN, 0));
    let syn_ack = tcp((b, 80), (a, 40000), TcpFlags::SYN | TcpFlags::ACK, 2); // acknowledges the SYN (sequence 1)
    let (ping, pong) = (icmp::Repr::EchoRequest { ident: 0x1234, seq_no: 1 }, icmp::Repr::EchoReply { ident: 0x1234, seq_no: 1 });
    let exchanges = [
        ("dns", vec![dns((a, 40000), (b, 53)), dns((b, 53), (a, 40000)), dns((a, 40000), (b, 53))]),
        ("tcp", vec![ssh, web, syn_ack]),
        ("ping", vec![echo(a, b, ping), echo(b, a, pong)]),
        ("errors", vec![sample("icmp_dest_unreachable"), sample("icmpv6_packet_too_big")]),
    ];
    for (name, frames) in exchanges {
        for pick in [0u8, 1, 2, 0x80, 0x82] {
            seeds.push(("firewall", format!("{name}-from-{pick}"), burst(pick, &mut frames.iter())));
        }
    }
    // Rule files: the demo's and the inspect policy's signatures, and ET-style files with
    // comments, continued lines, variables, lists and negations, sticky buffers and other
    // keywords Rampart skips, and an error or two.
    let inline = |name: &str, text: &str| {
        let config = rampart_config::parse(name, text).unwrap_or_else(|e| panic!("{name}: {e}"));
        config.inspection.iter().flat_map(|set| set.signatures.iter().map(|s| format!("{}\n", s.get_ref()))).collect::<String>()
    };
    let rule_files = [
        ("demo.rules", inline("demo.toml", rampart_config::DEMO_CONFIG)),
        ("inspect.rules", inline("inspect.toml", INSPECT_POLICY)),
        ("et-style.rules", RULES_SEED.to_string()),
        (
            "continued.rules",
            "alert tcp $HOME_NET any -> $EXTERNAL_NET $HTTP_PORTS (msg:\"split \\\n  over lines\"; content:\"ab\\\ncd\"; \\\n  sid:10; rev:2;)\r\nalert udp any any -> any any (sid:11;) \\".to_string(),
        ),
        ("sids.rules", "alert tcp any any -> any any (sid:1;)\nalert tcp any any -> any any (sid:1; gid:2;)\nalert tcp any any -> any any (sid:1;)\n".to_string()),
        ("pcre-error.rules", "alert tcp any any -> any any (msg:\"bad flag\"; content:\"a\"; pcre:\"/a/q\"; sid:17;)\n".to_string()),
        ("errors.rules", "alert tcp any any -> any any (content:\"|4|\"; sid:1;)\nalert tcp any -> any any (sid:2;)\n".to_string()),
    ];
    seeds.extend(rule_files.into_iter().map(|(name, text)| ("rules", name.to_string(), text.into_bytes())));
    seeds.extend(inspect_seeds(&frames).into_iter().map(|(name, bytes)| ("inspect", name, bytes)));
    // Event logs: a byte changed at places across a sealed log (its checkpoint, a record's
    // body, sequence number, MAC and newline).
    for (i, at) in [0u16, 40, 150, 260, 333, 400, 700, 1100].into_iter().enumerate() {
        let mut seed = vec![i as u8, at as u8, (at >> 8) as u8, 1 + i as u8];
        seed.extend_from_slice(b"GET /etc/passwd");
        seeds.push(("event_log", format!("change-at-{at}"), seed));
    }
    seeds
}

/// Runs `target`'s check on `data`.
pub fn check(target: &str, data: &[u8]) {
    match target {
        "parse" => parse(data),
        "config" => config(data),
        "image" => image(data),
        "event" => event(data),
        "event_log" => event_log(data),
        "firewall" => drop(firewall(data)),
        "admin" => admin(data),
        "rules" => rules(data),
        "inspect" => drop(inspect(data)),
        other => panic!("no fuzz target {other:?}"),
    }
}

/// The fuzz targets, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: [&str; 9] = ["parse", "firewall", "config", "image", "event", "event_log", "admin", "rules", "inspect"];
