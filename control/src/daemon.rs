//! `rampartctl run`: the control process's supervisor.
//!
//! One loop attaches to the dataplane's segment (waiting for it, and re-attaching
//! after a dataplane restart), publishes the compiled policy, beats the control
//! heartbeat and drains the event rings to the log, every 10 ms. The admin API
//! ([`crate::admin`]) and the Prometheus endpoint ([`crate::metrics`]) run on their
//! own threads and share its state behind one mutex — nothing here is on the packet
//! path.

use crate::blocks::Blocklist;
use crate::compile::{compile, slots_of, Slots};
use crate::events::EventLog;
use crate::state;
use anyhow::{Context, Result};
use rampart_config::Config;
use rampart_shm::{PolicyImage, Segment, ShmError};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A dataplane whose heartbeat is older than this and whose pid is gone has stopped.
const STALE_HEARTBEAT: Duration = Duration::from_secs(2);

pub struct Daemon {
    pub inner: Mutex<Inner>,
    pub stop: AtomicBool,
    /// The command ring has one producer: every push holds this (a `flows --kill` for its
    /// whole batch), so admin requests served at once never push together.
    pub(crate) commands: Mutex<()>,
    /// The segment has one flow-dump page: one `flows` reads it at a time.
    pub(crate) dumps: Mutex<()>,
}

impl Daemon {
    /// The control process for `config` (read from `config_path`, which `reload` reads
    /// again), writing events to `log`; not attached to a dataplane yet.
    pub fn new(config_path: &Path, config: Config, log: EventLog) -> Result<Daemon, String> {
        let blocks = Blocklist::load(Path::new(&config.control.blocklist))?;
        let (image, slots) = compile(&blocks.applied_to(&config), &Slots::default()).map_err(|e| format!("compiling policy: {e}"))?;
        let names = Names::of(&image, &slots);
        let inner = Inner {
            config_path: config_path.to_path_buf(),
            config,
            segment: None,
            image,
            slots,
            names,
            log,
            last_reload: String::new(),
            waiting_logged: false,
            episodes: Default::default(),
            blocks,
            last_expiry: std::time::Instant::now(),
        };
        Ok(Daemon { inner: Mutex::new(inner), stop: AtomicBool::new(false), commands: Mutex::new(()), dumps: Mutex::new(()) })
    }
}

pub struct Inner {
    pub config_path: PathBuf,
    pub config: Config,
    pub segment: Option<Arc<Segment>>,
    /// The image last published (or adopted from the running dataplane); set with
    /// [`Inner::set_policy`], which keeps `names` in step.
    image: PolicyImage,
    slots: Slots,
    names: Names,
    pub log: EventLog,
    pub last_reload: String,
    waiting_logged: bool,
    episodes: crate::episodes::Episodes,
    /// The dynamic blocklist, applied in front of the config's rules.
    pub blocks: Blocklist,
    last_expiry: std::time::Instant,
}

/// What events and flow dumps are named by, for one policy: built once when the policy
/// changes, not per use. The supervisor drains events every 10 ms; rebuilding the rule
/// ids there made an idle control process cost ~15 % of a core at 10,000 rules (issue 15).
/// Shared (`Arc`), so a `flows` request takes them without copying.
#[derive(Debug, Clone, Default)]
pub(crate) struct Names {
    /// Port slot → port (guest) name.
    pub ports: Arc<BTreeMap<u16, String>>,
    /// Rule ids by rule index.
    pub rules: Arc<[String]>,
    /// The rules' metric labels, in exposition order.
    pub rule_labels: Arc<[crate::metrics::RuleLabels]>,
    /// The signatures by index (alert records name them so).
    pub signatures: Arc<[crate::events::SignatureInfo]>,
}

impl Names {
    fn of(image: &PolicyImage, slots: &Slots) -> Names {
        Names {
            ports: Arc::new(slots.ports.iter().map(|(n, s)| (*s, n.clone())).collect()),
            rules: image.firewall.iter().flat_map(|fw| fw.rules.iter().map(|r| r.id.clone())).collect(),
            rule_labels: crate::metrics::rule_labels(image),
            signatures: image.inspection.iter().flat_map(|i| i.signatures.iter().map(crate::events::SignatureInfo::of)).collect(),
        }
    }
}

impl Inner {
    /// The image last published (or adopted, or stored while detached).
    pub fn image(&self) -> &PolicyImage {
        &self.image
    }

    /// The counter slots of [`Inner::image`].
    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    /// Makes `image` (with its `slots`) the current policy.
    pub(crate) fn set_policy(&mut self, image: PolicyImage, slots: Slots) {
        self.names = Names::of(&image, &slots);
        self.image = image;
        self.slots = slots;
    }

    /// Port and rule names of the current policy.
    pub(crate) fn names(&self) -> Names {
        self.names.clone()
    }

    /// Compiles `config` with the blocklist in front of its rules.
    pub(crate) fn compile(&self, config: &Config, previous: &Slots) -> Result<(PolicyImage, Slots), String> {
        compile(&self.blocks.applied_to(config), previous)
    }

    /// Removes the blocks whose time is up (checked once a second) and publishes the
    /// policy without them; each is logged as `expired`.
    fn expire_blocks(&mut self) {
        if self.last_expiry.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_expiry = std::time::Instant::now();
        let gone = self.blocks.expire(crate::blocks::unix_now());
        if gone.is_empty() {
            return;
        }
        for b in &gone {
            self.log.write(&crate::admin::block_event("expired", b, None));
        }
        self.publish_blocks();
    }

    /// Automatic blocks: each source the dataplane reported over its new flows/s limit is
    /// blocked for `throttle.block_for` seconds (when set), logged with the limit.
    fn block_over_limit(&mut self) {
        let reported = std::mem::take(&mut self.log.over_limit);
        let block_for = self.config.throttle.block_for;
        if reported.is_empty() || block_for == 0 {
            return;
        }
        let since = crate::blocks::unix_now();
        let mut added = false;
        for (addr, rate) in reported {
            let prefix = format!("{addr}/{}", if addr.is_ipv4() { 32 } else { 128 });
            if self.blocks.entries.iter().any(|b| b.prefix == prefix && b.guest.is_none()) {
                continue;
            }
            let b = crate::blocks::Block { prefix, guest: None, since, until: Some(since + block_for), by_uid: None };
            let mut event = crate::admin::block_event("added", &b, None);
            event["block"]["reason"] = json!("new_flow_rate");
            event["block"]["new_flows_per_s"] = json!(rate);
            self.log.write(&event);
            self.blocks.add(b);
            added = true;
        }
        if added {
            self.publish_blocks();
        }
    }

    /// Keeps the blocklist in its file and publishes the policy with it (no wait).
    fn publish_blocks(&mut self) {
        if let Err(e) = self.blocks.save() {
            eprintln!("rampartctl: {e}");
        }
        let config = self.config.clone();
        match (self.compile(&config, &self.slots.clone()), self.segment.clone()) {
            (Ok((image, slots)), Some(seg)) => {
                let _ = publish(self, &seg, image, slots);
            }
            (Ok((image, slots)), None) => self.set_policy(image, slots),
            (Err(e), _) => eprintln!("rampartctl: compiling policy with the blocklist: {e}"),
        }
    }

    fn drain(&mut self, seg: &Segment) {
        self.log.drain(seg, &self.names.ports, &self.names.rules, &self.names.signatures);
    }
}

pub fn run(config_path: &Path) -> Result<()> {
    let config = rampart_config::load(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in rampart_config::warnings(&config) {
        eprintln!("rampartctl: warning: {}", w.0);
    }
    let key = crate::chain::Key::load_or_create(Path::new(&config.control.event_key), Path::new(&config.control.event_log)).map_err(anyhow::Error::msg)?;
    let mut log = EventLog::open(Path::new(&config.control.event_log), key).with_context(|| format!("opening event log {}", config.control.event_log))?;
    log.configure(&config.events);
    let listener = crate::admin::bind(Path::new(&config.control.socket))?;
    let metrics_addr = config.control.metrics.clone();
    let daemon = Arc::new(Daemon::new(config_path, config, log).map_err(|e| anyhow::anyhow!("{e}"))?);
    install_signal_handlers();
    let http = crate::metrics::serve(&metrics_addr, daemon.clone())?;
    eprintln!("rampartctl: metrics on http://{metrics_addr}/metrics");
    {
        let d = daemon.clone();
        std::thread::spawn(move || crate::admin::serve(listener, d));
    }
    supervise(&daemon);
    http.unblock();
    let inner = daemon.inner.lock().unwrap();
    let _ = std::fs::remove_file(&inner.config.control.socket);
    eprintln!("rampartctl: stopped (the dataplane keeps forwarding under generation {})", inner.segment.as_ref().map(|s| s.applied_gen()).unwrap_or(0));
    Ok(())
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// SIGHUP: reopen the event log (logrotate moved it away).
static HANGUP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALLED.store(true, Ordering::Relaxed);
}

extern "C" fn on_hangup(_: libc::c_int) {
    HANGUP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    // SAFETY: the handlers only store an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        libc::signal(libc::SIGHUP, on_hangup as extern "C" fn(libc::c_int) as libc::sighandler_t);
    }
}

fn supervise(d: &Daemon) {
    while !d.stop.load(Ordering::Relaxed) && !SIGNALLED.load(Ordering::Relaxed) {
        {
            let mut inner = d.inner.lock().unwrap();
            if HANGUP.swap(false, Ordering::Relaxed) {
                inner.log.reopen();
            }
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
/// Its cost follows the events drained, not the policy's size (`tests/tick_cost.rs`).
pub fn tick(inner: &mut Inner) {
    inner.expire_blocks();
    inner.log.tick(std::time::Instant::now());
    let Some(seg) = inner.segment.clone() else {
        try_attach(inner);
        return;
    };
    let h = seg.header();
    h.control_heartbeat_ns.store(rampart_shm::monotonic_ns(), Ordering::Relaxed);
    inner.drain(&seg);
    inner.block_over_limit();
    let workers = (h.workers.load(Ordering::Relaxed) as usize).min(seg.workers.len());
    for event in inner.episodes.check(&seg, &inner.image, workers, std::time::Instant::now()) {
        inner.log.write(&event);
    }
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
    let config = inner.config.clone();
    match inner.compile(&config, &previous) {
        Ok((image, slots)) => {
            if running_image.as_ref() == Some(&image) {
                eprintln!("rampartctl: the dataplane already runs this policy (generation {}); adopted", seg.applied_gen());
                inner.set_policy(image, slots);
            } else {
                let _ = publish(inner, &seg, image, slots);
            }
        }
        Err(e) => eprintln!("rampartctl: compiling policy: {e}"),
    }
}

/// Seals and publishes `image`; does not wait for the outcome.
pub(crate) fn publish(inner: &mut Inner, seg: &Segment, image: PolicyImage, slots: Slots) -> Result<u64, String> {
    let gen = seg.publish_policy(&image.encode())?;
    inner.set_policy(image, slots);
    eprintln!("rampartctl: published policy generation {gen}");
    Ok(gen)
}

pub fn status(d: &Daemon) -> state::Status {
    let inner = d.inner.lock().unwrap();
    let mut s = state::Status {
        shm: inner.config.dataplane.shm.clone(),
        control_pid: std::process::id(),
        events_logged: inner.log.written,
        events_write_errors: inner.log.write_errors,
        events_unwritten: inner.log.unwritten,
        events_head: inner.log.head().to_string(),
        events_seq: inner.log.head().seq,
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

/// [`stats`] without the per-rule rows.
pub fn stats_without_rules(d: &Daemon) -> state::Stats {
    let inner = d.inner.lock().unwrap();
    state::stats_without_rules(inner.segment.as_deref(), &inner.image)
}

/// The rules' metric labels (in exposition order) and their (packets, bytes, flows)
/// counters, read without holding the supervisor's lock; none while detached.
pub(crate) fn rule_counters(d: &Daemon) -> (Arc<[crate::metrics::RuleLabels]>, Vec<[u64; 3]>) {
    let (labels, seg) = {
        let inner = d.inner.lock().unwrap();
        (inner.names.rule_labels.clone(), inner.segment.clone())
    };
    // Detached, there are no counters to show (and so no rule metrics), as in `stats`.
    let Some(seg) = seg else { return (Arc::new([]), Vec::new()) };
    let workers = seg.header().workers.load(Ordering::Relaxed) as usize;
    let counters = labels.iter().map(|r| state::rule_counters(&seg, workers, r.counter)).collect();
    (labels, counters)
}

pub fn stats(d: &Daemon) -> state::Stats {
    let inner = d.inner.lock().unwrap();
    state::stats(inner.segment.as_deref(), &inner.image)
}

