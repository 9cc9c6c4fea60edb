//! `rampartctl run`: the control process.
//!
//! One supervisor loop attaches to the dataplane's segment (waiting for it,
//! and re-attaching after a dataplane restart), publishes the compiled
//! policy, beats the control heartbeat and drains events to the log. The
//! admin API (Unix socket, line-delimited JSON) and the Prometheus endpoint
//! run on their own threads and share the state behind one mutex — nothing
//! here is on the packet path.

use crate::compile::{compile, slots_of, Slots};
use crate::events::EventLog;
use crate::state;
use anyhow::{Context, Result};
use rampart_config::Config;
use rampart_shm::{PolicyImage, PolicyOutcome, Segment, ShmError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a reload waits for the dataplane to apply or reject a generation.
const APPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// A dataplane whose heartbeat is older than this and whose pid is gone has stopped.
const STALE_HEARTBEAT: Duration = Duration::from_secs(2);

pub struct Daemon {
    pub inner: Mutex<Inner>,
    pub stop: AtomicBool,
    /// The command ring has one producer: every push holds this (a `flows --kill` for its
    /// whole batch), so admin requests served at once never push together.
    commands: Mutex<()>,
}

impl Daemon {
    /// The control process for `config` (read from `config_path`, which `reload` reads
    /// again), writing events to `log`; not attached to a dataplane yet.
    pub fn new(config_path: &Path, config: Config, log: EventLog) -> Result<Daemon, String> {
        let (image, slots) = compile(&config, &Slots::default()).map_err(|e| format!("compiling policy: {e}"))?;
        let inner = Inner { config_path: config_path.to_path_buf(), config, segment: None, image, slots, log, last_reload: String::new(), waiting_logged: false };
        Ok(Daemon { inner: Mutex::new(inner), stop: AtomicBool::new(false), commands: Mutex::new(()) })
    }
}

pub struct Inner {
    pub config_path: PathBuf,
    pub config: Config,
    pub segment: Option<Arc<Segment>>,
    /// The image last published (or adopted from the running dataplane).
    pub image: PolicyImage,
    pub slots: Slots,
    pub log: EventLog,
    pub last_reload: String,
    waiting_logged: bool,
}

impl Inner {
    fn names(&self) -> BTreeMap<u16, String> {
        self.slots.ports.iter().map(|(n, s)| (*s, n.clone())).collect()
    }

    fn rule_ids(&self) -> Vec<String> {
        self.image.firewall.iter().flat_map(|fw| fw.rules.iter().map(|r| r.id.clone())).collect()
    }

    fn drain(&mut self, seg: &Segment) {
        let (names, rules) = (self.names(), self.rule_ids());
        self.log.drain(seg, &names, &rules);
    }
}

pub fn run(config_path: &Path) -> Result<()> {
    let config = rampart_config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in rampart_config::warnings(&config) {
        eprintln!("rampartctl: warning: {}", w.0);
    }
    let log = EventLog::open(Path::new(&config.control.event_log)).with_context(|| format!("opening event log {}", config.control.event_log))?;
    let listener = bind_admin(Path::new(&config.control.socket))?;
    let metrics_addr = config.control.metrics.clone();
    let daemon = Arc::new(Daemon::new(config_path, config, log).map_err(|e| anyhow::anyhow!("{e}"))?);
    install_signal_handlers();
    let http = crate::metrics::serve(&metrics_addr, daemon.clone())?;
    eprintln!("rampartctl: metrics on http://{metrics_addr}/metrics");
    {
        let d = daemon.clone();
        std::thread::spawn(move || serve_admin(listener, d));
    }
    supervise(&daemon);
    http.unblock();
    let inner = daemon.inner.lock().unwrap();
    let _ = std::fs::remove_file(&inner.config.control.socket);
    eprintln!("rampartctl: stopped (the dataplane keeps forwarding under generation {})", inner.segment.as_ref().map(|s| s.applied_gen()).unwrap_or(0));
    Ok(())
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    // SAFETY: the handler only stores an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}

fn supervise(d: &Daemon) {
    while !d.stop.load(Ordering::Relaxed) && !SIGNALLED.load(Ordering::Relaxed) {
        {
            let mut inner = d.inner.lock().unwrap();
            tick(&mut inner);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut inner = d.inner.lock().unwrap();
    if let Some(seg) = inner.segment.clone() {
        inner.drain(&seg);
    }
}

/// One supervisor step: attach, heartbeat, drain events, detect a dataplane restart.
fn tick(inner: &mut Inner) {
    let Some(seg) = inner.segment.clone() else {
        try_attach(inner);
        return;
    };
    let h = seg.header();
    h.control_heartbeat_ns.store(rampart_shm::monotonic_ns(), Ordering::Relaxed);
    inner.drain(&seg);
    let stale = seg.dataplane_heartbeat_age_ns() > STALE_HEARTBEAT.as_nanos() as u64;
    if seg.replaced() || (stale && !seg.owner_alive()) {
        eprintln!("rampartctl: the dataplane (pid {}) went away; waiting for it to come back", h.owner_pid.load(Ordering::Relaxed));
        inner.log.write(&json!({"timestamp": crate::events::now(), "event_type": "dataplane", "dataplane": {"state": "lost"}}));
        inner.segment = None;
        inner.waiting_logged = false;
    }
}

fn try_attach(inner: &mut Inner) {
    let path = PathBuf::from(&inner.config.dataplane.shm);
    let seg = match Segment::attach(&path) {
        Ok(seg) if seg.owner_alive() => Arc::new(seg),
        Ok(_) => return, // a leftover from a dataplane that died; it will be replaced
        Err(e @ ShmError::Foreign { .. }) => {
            if !inner.waiting_logged {
                eprintln!("rampartctl: {e}");
                inner.waiting_logged = true;
            }
            return;
        }
        Err(e) => {
            if !inner.waiting_logged {
                eprintln!("rampartctl: waiting for the dataplane: {e}");
                inner.waiting_logged = true;
            }
            return;
        }
    };
    let h = seg.header();
    h.control_pid.store(std::process::id(), Ordering::Relaxed);
    h.control_heartbeat_ns.store(rampart_shm::monotonic_ns(), Ordering::Relaxed);
    eprintln!("rampartctl: attached to the dataplane (pid {}) at {}", h.owner_pid.load(Ordering::Relaxed), path.display());
    inner.log.reset_baseline();
    inner.log.write(&json!({"timestamp": crate::events::now(), "event_type": "dataplane", "dataplane": {"state": "attached", "pid": h.owner_pid.load(Ordering::Relaxed)}}));
    // A dataplane that already runs a policy (we restarted, it did not) keeps its slot numbers.
    let mut running = Vec::new();
    let running_image = seg.applied_image(&mut running).and_then(|_| PolicyImage::decode(&running).ok());
    let previous = running_image.as_ref().map(slots_of).unwrap_or_default();
    inner.segment = Some(seg.clone());
    match compile(&inner.config, &previous) {
        Ok((image, slots)) => {
            if running_image.as_ref() == Some(&image) {
                eprintln!("rampartctl: the dataplane already runs this policy (generation {}); adopted", seg.applied_gen());
                inner.image = image;
                inner.slots = slots;
            } else {
                let _ = publish(inner, &seg, image, slots);
            }
        }
        Err(e) => eprintln!("rampartctl: compiling policy: {e}"),
    }
}

/// Seals and publishes `image`; does not wait for the outcome.
fn publish(inner: &mut Inner, seg: &Segment, image: PolicyImage, slots: Slots) -> Result<u64, String> {
    let gen = seg.publish_policy(&image.encode())?;
    inner.image = image;
    inner.slots = slots;
    eprintln!("rampartctl: published policy generation {gen}");
    Ok(gen)
}

/// `reload`: re-read the config file, compile, publish, wait for the outcome.
pub fn reload(d: &Daemon) -> Value {
    let (seg, gen) = {
        let mut inner = d.inner.lock().unwrap();
        let config = match rampart_config::load(&inner.config_path) {
            Ok(c) => c,
            Err(e) => {
                inner.last_reload = format!("rejected: {e}");
                return json!({"ok": false, "error": format!("{e}; the running policy stays in force")});
            }
        };
        if config.dataplane.shm != inner.config.dataplane.shm || config.control.socket != inner.config.control.socket {
            return json!({"ok": false, "error": "dataplane.shm and control.socket cannot change on reload; restart both processes"});
        }
        let (image, slots) = match compile(&config, &inner.slots) {
            Ok(x) => x,
            Err(e) => return json!({"ok": false, "error": format!("compiling policy: {e}")}),
        };
        inner.config = config;
        let Some(seg) = inner.segment.clone() else {
            inner.image = image;
            inner.slots = slots;
            inner.last_reload = "stored; the dataplane is not attached".into();
            return json!({"ok": true, "applied": false, "message": "configuration accepted; it will be published when the dataplane attaches"});
        };
        match publish(&mut inner, &seg, image, slots) {
            Ok(gen) => (seg, gen),
            Err(e) => return json!({"ok": false, "error": e}),
        }
    };
    let deadline = Instant::now() + APPLY_TIMEOUT;
    let outcome = loop {
        match seg.policy_outcome(gen) {
            PolicyOutcome::Pending if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => break other,
        }
    };
    let workers = seg.header().workers.load(Ordering::Relaxed) as usize;
    let worker_gens: Vec<u64> = (0..workers).map(|w| seg.worker_gen(w)).collect();
    let mut inner = d.inner.lock().unwrap();
    let ports = state::ports(Some(&seg), &inner.image);
    let errors: Vec<Value> = ports.iter().filter(|p| p.state == "error").map(|p| json!({"port": p.name, "error": p.message})).collect();
    let (ok, result) = match &outcome {
        PolicyOutcome::Applied => (true, "applied".to_string()),
        PolicyOutcome::Rejected(why) => (false, format!("rejected by the dataplane: {why}")),
        PolicyOutcome::Pending => (false, format!("not applied within {} s", APPLY_TIMEOUT.as_secs())),
    };
    inner.last_reload = format!("generation {gen}: {result}");
    json!({"ok": ok, "generation": gen, "result": result, "worker_generations": worker_gens, "port_errors": errors,
           "error": if ok { Value::Null } else { Value::String(result.clone()) }})
}

pub fn status(d: &Daemon) -> state::Status {
    let inner = d.inner.lock().unwrap();
    let mut s = state::Status {
        shm: inner.config.dataplane.shm.clone(),
        control_pid: std::process::id(),
        events_logged: inner.log.written,
        config: inner.config_path.display().to_string(),
        last_reload: inner.last_reload.clone(),
        ..Default::default()
    };
    if let Some(seg) = &inner.segment {
        let h = seg.header();
        s.attached = true;
        s.dataplane_pid = h.owner_pid.load(Ordering::Relaxed);
        s.heartbeat_age_ms = seg.dataplane_heartbeat_age_ns() as f64 / 1e6;
        s.workers = h.workers.load(Ordering::Relaxed);
        s.published_generation = seg.published_gen();
        s.applied_generation = seg.applied_gen();
        s.rejected_generation = seg.policy.rejected_gen.load(Ordering::Acquire);
        if s.rejected_generation > 0 {
            s.rejected_reason = seg.rejection_reason();
        }
        s.worker_generations = (0..s.workers as usize).map(|w| seg.worker_gen(w)).collect();
        s.events_lost = state::events_lost(seg);
    }
    s
}

pub fn stats(d: &Daemon) -> state::Stats {
    let inner = d.inner.lock().unwrap();
    state::stats(inner.segment.as_deref(), &inner.image)
}

fn bind_admin(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            anyhow::bail!("{} is in use: another `rampartctl run` is serving it (stop it, or set control.socket)", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path).with_context(|| format!("binding the admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

fn serve_admin(listener: UnixListener, d: Arc<Daemon>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        let d = d.clone();
        std::thread::spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
            // One line, bounded: a client cannot make the control process buffer without end.
            let mut reader = BufReader::new((&conn).take(MAX_REQUEST));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                return;
            }
            let reply = handle(&d, line.trim());
            let mut w = &conn;
            let _ = writeln!(w, "{reply}");
        });
    }
}

/// The longest admin request read (bytes); a longer one is cut there and fails to parse.
const MAX_REQUEST: u64 = 64 << 10;

/// Admin API: one JSON request per connection (`{"cmd": "status"}`), one JSON reply.
pub fn handle(d: &Daemon, request: &str) -> Value {
    let cmd = serde_json::from_str::<Value>(request).ok().and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(String::from));
    match cmd.as_deref() {
        Some("status") => json!({"ok": true, "status": status(d)}),
        Some("ports") => json!({"ok": true, "ports": stats(d).ports}),
        Some("stats") => json!({"ok": true, "stats": stats(d)}),
        Some("reload") => reload(d),
        Some("ping") => ping(d),
        Some("flows") => flows(d, &serde_json::from_str::<Value>(request).unwrap_or_default()),
        other => json!({"ok": false, "error": format!("unknown command {other:?}; expected status, ports, stats, reload, ping or flows")}),
    }
}

/// `flows`: asks the dataplane to dump its flow table, then filters the dump by
/// guest (owner port name), address or prefix, port and state. With `kill`, also ends
/// the flows that matched (at least one filter is required), each logged as `removed`,
/// and reports how many the dataplane ended.
fn flows(d: &Daemon, request: &Value) -> Value {
    // A bad filter is the operator's error: say so before asking the dataplane for anything.
    let filter = match FlowFilter::from_request(request) {
        Ok(f) => f,
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let kill = request.get("kill").and_then(Value::as_bool).unwrap_or(false);
    if kill && filter == FlowFilter::default() {
        return json!({"ok": false, "error": "flows --kill needs a filter (--guest, --address, --port or --state): it will not end every flow"});
    }
    let (seg, shm, names, rules) = {
        let inner = d.inner.lock().unwrap();
        match inner.segment.clone() {
            Some(seg) => (seg, inner.config.dataplane.shm.clone(), inner.names(), inner.rule_ids()),
            None => return json!({"ok": false, "error": "the dataplane is not attached"}),
        }
    };
    let (total, dump) = match dump_flows(d, &seg, &shm) {
        Ok(d) => d,
        Err(e) => return json!({"ok": false, "error": e}),
    };
    let mut out = Vec::new();
    let mut kills = Vec::new();
    for mut f in dump {
        let owner = f["owner"].as_u64().and_then(|o| names.get(&(o as u16)).cloned()).unwrap_or_default();
        if !filter.keeps(&f, &owner) {
            continue;
        }
        if kill {
            kills.extend(kill_command(&f));
        }
        f["guest"] = json!(owner);
        f["rule"] = json!(f["rule"].as_u64().and_then(|r| rules.get(r as usize)));
        f["proto"] = json!(crate::events::proto_name(f["proto"].as_u64().unwrap_or(0) as u8));
        out.push(f);
    }
    if !kill {
        return json!({"ok": true, "total": total, "flows": out});
    }
    // One batch at a time, so the dataplane's kill count moves only for this one.
    let _batch = d.commands.lock().unwrap();
    let before = seg.flows.killed.load(Ordering::Relaxed);
    for (sent, cmd) in kills.iter().enumerate() {
        if let Err(e) = push_command(&seg, *cmd) {
            return json!({"ok": false, "error": format!("{e}; {sent} of {} kills were sent", kills.len())});
        }
    }
    // Commands are taken in order: once the ping comes back, every kill has been done.
    if let Err(e) = round_trip(d, &seg) {
        return json!({"ok": false, "error": format!("{} kills were sent, but {e}", kills.len())});
    }
    // Saturating: a dataplane restarted meanwhile counts from zero in its new segment.
    let killed = seg.flows.killed.load(Ordering::Relaxed).saturating_sub(before);
    json!({"ok": true, "total": total, "flows": out, "killed": killed})
}

/// Pushes `cmd` (the caller holds [`Daemon::commands`]), waiting while the ring is full:
/// the dataplane drains it every tick (10 ms).
fn push_command(seg: &Segment, cmd: rampart_shm::CommandRecord) -> Result<(), String> {
    let start = Instant::now();
    while !seg.commands.push(cmd) {
        if start.elapsed() > Duration::from_secs(5) {
            return Err("the dataplane is not taking commands (its command ring stayed full for 5 s)".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Asks the dataplane to write its flow table to the dump file and reads it back:
/// (flows in the table, one JSON object per flow).
fn dump_flows(d: &Daemon, seg: &Segment, shm: &str) -> Result<(u64, Vec<Value>), String> {
    let id = seg.flows.dump_requested.fetch_add(1, Ordering::Relaxed) + 1;
    let cmd = rampart_shm::CommandRecord { kind: rampart_shm::ring::CommandKind::DumpFlows as u32, value: id, ..Default::default() };
    {
        let _one_at_a_time = d.commands.lock().unwrap();
        push_command(seg, cmd)?;
    }
    let start = Instant::now();
    // Acquire: pairs with the dataplane's Release once the dump file is complete.
    while seg.flows.dump_done.load(Ordering::Acquire) < id {
        if start.elapsed() > Duration::from_secs(10) {
            return Err("the dataplane did not dump its flows within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let text = std::fs::read_to_string(format!("{shm}.flows")).map_err(|e| format!("reading the flow dump: {e}"))?;
    let flows = text.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()).collect();
    Ok((seg.flows.dump_count.load(Ordering::Relaxed), flows))
}

/// The command that ends a dumped flow (None if the dump line does not name a key).
fn kill_command(f: &Value) -> Option<rampart_shm::CommandRecord> {
    let addr = |k: &str| -> Option<[u8; 16]> {
        Some(match f[k].as_str()?.parse::<IpAddr>().ok()? {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        })
    };
    let num = |k: &str| f[k].as_u64().and_then(|n| u16::try_from(n).ok());
    Some(rampart_shm::CommandRecord::kill_flow(&addr("src_ip")?, &addr("dest_ip")?, num("src_port")?, num("dest_port")?, u8::try_from(num("proto")?).ok()?, num("zone")?))
}

/// What `rampartctl flows` asked for; every part given must match.
#[derive(Debug, Default, PartialEq, Eq)]
struct FlowFilter {
    guest: Option<String>,
    address: Option<Prefix>,
    port: Option<u64>,
    state: Option<String>,
}

impl FlowFilter {
    /// The filter a request names. A field of the wrong type is an error, not ignored: a
    /// `kill` must never end more than its filters say.
    fn from_request(request: &Value) -> Result<FlowFilter, String> {
        let field = |k: &str| request.get(k).filter(|v| !v.is_null());
        let text = |k: &str| match field(k) {
            None => Ok(None),
            Some(Value::String(t)) if t.trim().is_empty() => Ok(None),
            Some(Value::String(t)) => Ok(Some(t.clone())),
            Some(other) => Err(format!("flows: `{k}` must be a string, got {other}")),
        };
        let address = text("address")?.map(|a| Prefix::parse(&a)).transpose()?;
        let port = match field("port") {
            None => None,
            Some(p) => Some(p.as_u64().filter(|p| *p <= u16::MAX as u64).ok_or_else(|| format!("flows: `port` must be a number from 0 to 65535, got {p}"))?),
        };
        if let Some(kill) = field("kill").filter(|k| !k.is_boolean()) {
            return Err(format!("flows: `kill` must be true or false, got {kill}"));
        }
        Ok(FlowFilter { guest: text("guest")?, address, port, state: text("state")? })
    }

    fn keeps(&self, flow: &Value, owner: &str) -> bool {
        let inside = |prefix: &Prefix, k: &str| flow[k].as_str().and_then(|ip| ip.parse().ok()).is_some_and(|ip| prefix.contains(ip));
        self.guest.as_ref().is_none_or(|g| g == owner)
            && self.address.as_ref().is_none_or(|p| inside(p, "src_ip") || inside(p, "dest_ip"))
            && self.port.is_none_or(|p| flow["src_port"] == p || flow["dest_port"] == p)
            && self.state.as_ref().is_none_or(|s| flow["state"].as_str().unwrap_or("").eq_ignore_ascii_case(s))
    }
}

/// An address prefix for filtering, IPv4 mapped into IPv6 (as the flow table
/// stores addresses), so one comparison serves both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    network: u128,
    len: u8,
}

impl Prefix {
    /// `10.0.0.5`, `10.0.0.0/24`, `fd00::/64`, `FD00:0::1`: any textual form
    /// `std::net` accepts. Host bits after the prefix are ignored (`10.0.0.5/24`
    /// means 10.0.0.0/24): this is a lookup, not a rule.
    fn parse(text: &str) -> Result<Prefix, String> {
        let text = text.trim();
        let bad = |why: &str| format!("--address {text:?}: {why}; expected an address or a prefix like 10.0.0.5, 10.0.0.0/24, fd00::1 or fd00::/64");
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad("the prefix length is not a number"))?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let (bits, len) = match addr {
            IpAddr::V4(v4) => match len.unwrap_or(32) {
                l @ 0..=32 => (u128::from(v4.to_ipv6_mapped()), 96 + l),
                _ => return Err(bad("an IPv4 prefix length is at most 32")),
            },
            IpAddr::V6(v6) => match len.unwrap_or(128) {
                l @ 0..=128 => (u128::from(v6), l),
                _ => return Err(bad("an IPv6 prefix length is at most 128")),
            },
        };
        Ok(Prefix { network: bits & Self::mask(len), len })
    }

    fn mask(len: u8) -> u128 {
        u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let bits = match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => u128::from(v6),
        };
        bits & Self::mask(self.len) == self.network
    }
}

/// Round trip through the command ring and an event ring.
fn ping(d: &Daemon) -> Value {
    let Some(seg) = d.inner.lock().unwrap().segment.clone() else {
        return json!({"ok": false, "error": "the dataplane is not attached"});
    };
    let _one_at_a_time = d.commands.lock().unwrap();
    let start = Instant::now();
    match round_trip(d, &seg) {
        Ok(()) => json!({"ok": true, "round_trip_ms": start.elapsed().as_secs_f64() * 1e3}),
        Err(e) => json!({"ok": false, "error": e}),
    }
}

/// Sends a ping and waits for its pong (the caller holds [`Daemon::commands`]): the
/// dataplane has then taken every command sent before it.
fn round_trip(d: &Daemon, seg: &Segment) -> Result<(), String> {
    let token = rampart_shm::monotonic_ns();
    push_command(seg, rampart_shm::CommandRecord { kind: rampart_shm::ring::CommandKind::Ping as u32, value: token, ..Default::default() })?;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if d.inner.lock().unwrap().log.last_pong == token {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err("no answer from the dataplane within 5 s".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(src: &str, dst: &str) -> Value {
        json!({"src_ip": src, "src_port": 40000, "dest_ip": dst, "dest_port": 80, "proto": 6, "state": "ESTABLISHED", "owner": 0})
    }

    fn filter(address: &str) -> FlowFilter {
        FlowFilter::from_request(&json!({"cmd": "flows", "address": address})).unwrap()
    }

    #[test]
    fn address_filter_takes_addresses_and_prefixes_of_both_families() {
        let v4 = flow("10.0.0.5", "192.168.1.9");
        let v6 = flow("fd00::1", "2001:db8::80");
        for (address, keeps_v4, keeps_v6) in [
            ("10.0.0.5", true, false),
            ("192.168.1.9", true, false),
            ("10.0.0.6", false, false),
            ("10.0.0.0/24", true, false),
            ("192.168.0.0/16", true, false),
            ("10.0.1.0/24", false, false),
            ("10.0.0.4/31", true, false),
            ("10.0.0.5/24", true, false), // host bits are ignored
            ("0.0.0.0/0", true, false),
            ("::ffff:10.0.0.5", true, false), // the flow table's own mapped form
            ("fd00::1", false, true),
            ("FD00:0::1", false, true),
            ("fd00:0:0:0:0:0:0:1/128", false, true),
            ("fd00::/64", false, true),
            ("2001:db8::/32", false, true),
            ("fd00::2", false, false),
            ("fd01::/64", false, false),
            ("::/0", true, true),
            (" 10.0.0.0/8 ", true, false),
        ] {
            let f = filter(address);
            assert_eq!(f.keeps(&v4, "a"), keeps_v4, "{address} on {v4}");
            assert_eq!(f.keeps(&v6, "a"), keeps_v6, "{address} on {v6}");
        }
    }

    #[test]
    fn unparsable_address_is_an_error_not_an_empty_list() {
        for (address, why) in [
            ("banana", "not an IP address"),
            ("10.0.0", "not an IP address"),
            ("10.0.0.0/33", "at most 32"),
            ("fd00::/129", "at most 128"),
            ("10.0.0.0/x", "not a number"),
            ("10.0.0.0/", "not a number"),
            ("10.0.0.1:80", "not an IP address"),
        ] {
            let e = FlowFilter::from_request(&json!({"address": address})).unwrap_err();
            assert!(e.contains(&format!("{address:?}")) && e.contains(why) && e.contains("expected an address or a prefix"), "{address}: {e}");
        }
        assert!(FlowFilter::from_request(&json!({"address": 5})).is_err());
        // Absent, null or empty: no address filter.
        for request in [json!({}), json!({"address": null}), json!({"address": ""})] {
            assert_eq!(FlowFilter::from_request(&request).unwrap(), FlowFilter::default());
        }
    }

    #[test]
    fn flows_reports_a_bad_address_before_anything_else() {
        // No dataplane attached: the filter error still wins over "not attached".
        let reply = handle_flows_without_dataplane(r#"{"cmd":"flows","address":"10.0.0.300"}"#);
        assert_eq!(reply["ok"], false);
        assert!(reply["error"].as_str().unwrap().contains("not an IP address"), "{reply}");
    }

    #[test]
    fn a_filter_of_the_wrong_type_is_refused_not_ignored() {
        for (request, field) in [
            (r#"{"cmd":"flows","kill":true,"port":22,"guest":5}"#, "`guest` must be a string"),
            (r#"{"cmd":"flows","kill":"true","port":22}"#, "`kill` must be true or false"),
            (r#"{"cmd":"flows","port":70000}"#, "`port` must be a number from 0 to 65535"),
            (r#"{"cmd":"flows","port":"22"}"#, "`port` must be a number"),
            (r#"{"cmd":"flows","state":["established"]}"#, "`state` must be a string"),
        ] {
            let reply = handle_flows_without_dataplane(request);
            assert!(reply["error"].as_str().unwrap().contains(field), "{request}: {reply}");
        }
    }

    #[test]
    fn flows_kill_wants_a_filter_before_anything_else() {
        let reply = handle_flows_without_dataplane(r#"{"cmd":"flows","kill":true}"#);
        assert!(reply["error"].as_str().unwrap().contains("needs a filter"), "{reply}");
        let reply = handle_flows_without_dataplane(r#"{"cmd":"flows","kill":true,"port":22}"#);
        assert_eq!(reply["error"], "the dataplane is not attached", "with a filter it goes on");
    }

    #[test]
    fn a_dumped_flow_becomes_the_command_that_ends_it() {
        let line: Value = serde_json::from_str(r#"{"src_ip":"10.0.0.1","src_port":40000,"dest_ip":"fd00::2","dest_port":53,"proto":17,"zone":3,"state":"udp_unreplied"}"#).unwrap();
        let cmd = kill_command(&line).unwrap();
        let v4 = std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets();
        let v6 = "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(cmd.flow_key(), (v4, v6, 40000, 53, 17, 3));
        assert_eq!(cmd.kind, rampart_shm::ring::CommandKind::KillFlow as u32);
        for broken in [r#"{"src_ip":"10.0.0.1"}"#, r#"{"src_ip":"x","src_port":1,"dest_ip":"10.0.0.2","dest_port":2,"proto":6,"zone":0}"#, r#"{"src_ip":"10.0.0.1","src_port":70000,"dest_ip":"10.0.0.2","dest_port":2,"proto":6,"zone":0}"#] {
            assert_eq!(kill_command(&serde_json::from_str(broken).unwrap()), None, "{broken}");
        }
    }

    #[test]
    fn an_endless_admin_request_is_cut_and_answered() {
        let dir = std::env::temp_dir().join(format!("rampart-admin-{}", std::process::id()));
        let path = dir.join("control.sock");
        let listener = bind_admin(&path).unwrap();
        let config = rampart_config::parse("t.toml", "").unwrap();
        let d = Arc::new(Daemon::new(Path::new("t.toml"), config, EventLog::open(Path::new("/dev/null")).unwrap()).unwrap());
        std::thread::spawn(move || serve_admin(listener, d));
        let conn = UnixStream::connect(&path).unwrap();
        // Twice the limit, no newline: the control process stops reading at the limit.
        let writer = conn.try_clone().unwrap();
        std::thread::spawn(move || {
            let _ = (&writer).write_all(&vec![b' '; 2 * MAX_REQUEST as usize]);
        });
        let mut reply = String::new();
        BufReader::new(&conn).read_line(&mut reply).unwrap();
        let reply: Value = serde_json::from_str(&reply).unwrap();
        assert_eq!(reply["ok"], false, "{reply}");
        let _ = std::fs::remove_dir_all(dir);
    }

    fn handle_flows_without_dataplane(request: &str) -> Value {
        let config = rampart_config::parse("t.toml", "").unwrap();
        let d = Daemon::new(Path::new("t.toml"), config, EventLog::open(Path::new("/dev/null")).unwrap()).unwrap();
        handle(&d, request)
    }

    #[test]
    fn other_filters_still_apply_with_the_address() {
        let f = flow("10.0.0.5", "10.0.1.7");
        let req = |extra: Value| {
            let mut r = json!({"address": "10.0.0.0/16"});
            r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            FlowFilter::from_request(&r).unwrap()
        };
        assert!(req(json!({})).keeps(&f, "web"));
        assert!(req(json!({"guest": "web", "port": 80, "state": "established"})).keeps(&f, "web"));
        assert!(!req(json!({"guest": "db"})).keeps(&f, "web"));
        assert!(!req(json!({"port": 443})).keeps(&f, "web"));
        assert!(!req(json!({"state": "syn_sent"})).keeps(&f, "web"));
        assert!(!filter("10.1.0.0/16").keeps(&f, "web"));
        // A malformed dump line never matches an address filter.
        assert!(!filter("10.0.0.0/8").keeps(&json!({"src_ip": "junk"}), "web"));
    }
}
