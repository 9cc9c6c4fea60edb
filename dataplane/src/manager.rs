//! The main lcore: everything slow on the dataplane side, off the workers.
//!
//! It beats the heartbeat, fetches and validates sealed policy generations,
//! hot-plugs the ports they add and unplugs the ones they drop, builds the
//! next [`Runtime`], swaps it in ([`crate::rcu`]: the old one is freed once every
//! worker reports the new epoch), acknowledges the generation, serves the command
//! ring and reports port state — all through the shared-memory segment.

use crate::dpdk::{self, PortId};
use crate::rcu::Publisher;
use crate::Shared;
use rampart_pipeline::firewall::{end_code, Ended, RuleHistory};
use rampart_pipeline::inspect::Inspection;
use rampart_pipeline::runtime::Runtime;
use rampart_shm::ring::{CommandKind, EventKind};
use rampart_packet::FlowKey;
use rampart_shm::{CommandRecord, EventRecord, Fetched, PolicyImage, PortImage, MAIN_EVENT_RING};
use rampart_shm::layout::PortState;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the main lcore wakes up. It shares a core with a worker on small
/// machines (the bench rig), where every wake-up costs that worker a context switch.
const TICK: Duration = Duration::from_millis(10);
/// Flow ageing visits every slot of the table once per sweep, a slice per tick. A
/// sweep takes a quarter of the shortest conntrack timeout (so a flow ends at most
/// 25 % late), within these bounds: sweeping costs cache misses on a worker's core.
const SWEEP_MS: std::ops::RangeInclusive<u64> = 50..=5000;
/// After a reload, every flow is re-examined against the new policy in this many ticks
/// (about a second), a slice per tick.
const REVISIT_TICKS: usize = 100;

/// A port the dataplane has attached.
struct Attached {
    port_id: PortId,
    image: PortImage,
}

pub struct Manager {
    shared: Arc<Shared>,
    file_mode: u32,
    attached: BTreeMap<u16, Attached>,
    image: Option<PolicyImage>,
    /// The sweep re-examining flows after a reload: (cursor, slots left to visit).
    revisit: Option<(usize, usize)>,
    /// Rule ids of recent generations, to report old flows with current rule indexes
    /// (shared with each generation's firewall, for the flows its workers end).
    rules: Arc<RuleHistory>,
    /// The one handle that replaces the workers' runtime.
    runtime: Publisher,
    /// The matcher of the running policy's signatures (see [`Self::prepare_inspection`]).
    inspection: Option<Arc<Inspection>>,
    buf: Vec<u8>,
}

impl Manager {
    pub fn new(shared: Arc<Shared>, file_mode: u32) -> Manager {
        let runtime = shared.runtime.publisher().expect("one manager per dataplane");
        Manager { shared, file_mode, attached: BTreeMap::new(), image: None, revisit: None, rules: Arc::default(), runtime, inspection: None, buf: Vec::new() }
    }

    /// Serves until `shared.stop` is set, then detaches every port.
    pub fn run(&mut self) {
        let mut last_link = Instant::now();
        let mut last_age = Instant::now();
        let mut last_mac_tick = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.heartbeat();
            self.poll_policy();
            self.poll_commands();
            let elapsed_ms = last_age.elapsed().as_millis() as u64;
            if elapsed_ms > 0 {
                // Advance by whole milliseconds only, so the remainders are not lost.
                last_age += Duration::from_millis(elapsed_ms);
                self.age_flows(elapsed_ms);
            }
            self.revisit_flows();
            if last_link.elapsed() > Duration::from_millis(100) {
                self.report_links();
                self.report_flows();
                last_link = Instant::now();
            }
            if last_mac_tick.elapsed() >= Duration::from_secs(1) {
                if let Some(rt) = self.current() {
                    rt.tick();
                }
                last_mac_tick = Instant::now();
            }
            std::thread::sleep(TICK);
        }
    }

    /// After the workers have stopped: unplug every port.
    pub fn shutdown(&mut self) {
        self.runtime.clear();
        for (slot, a) in std::mem::take(&mut self.attached) {
            let _ = dpdk::remove_port(a.port_id, &a.image.device);
            self.shared.segment.ports[slot as usize].set(PortState::Absent, 0, 0, "dataplane stopped");
        }
    }

    fn heartbeat(&self) {
        heartbeat(&self.shared);
    }

    fn event(&self, kind: EventKind, port: u16, value: u64, text: &str) {
        let rec = EventRecord { tsc: dpdk::rdtsc(), kind: kind as u16, port, value, ..Default::default() }.with_data(text.as_bytes());
        self.shared.segment.events[MAIN_EVENT_RING].push(rec);
    }

    fn running_gen(&self) -> u64 {
        self.image.as_ref().map(|_| self.shared.segment.applied_gen()).unwrap_or(0)
    }

    fn poll_policy(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        match self.shared.segment.fetch_policy(self.running_gen(), &mut buf) {
            Fetched::Nothing | Fetched::Busy => {}
            Fetched::Corrupt(gen, why) => self.reject(gen, &why),
            Fetched::Image(gen) => match PolicyImage::decode(&buf).and_then(|image| self.prepare_inspection(&image).map(|()| image)) {
                Ok(image) => self.apply(gen, image),
                Err(why) => self.reject(gen, &why),
            },
        }
        self.buf = buf;
    }

    /// Builds the matcher of an image's signatures (here, on the main lcore, never on a
    /// worker), unless the running one was built from the same; every runtime published
    /// from now on carries it.
    fn prepare_inspection(&mut self, image: &PolicyImage) -> Result<(), String> {
        self.inspection = match (&image.inspection, self.inspection.take()) {
            (None, _) => None,
            (Some(wanted), Some(running)) if running.is_built_from(wanted) => Some(running),
            (Some(wanted), running) => Some(Arc::new(Inspection::build_after(wanted, running.as_deref())?)),
        };
        Ok(())
    }

    fn reject(&self, gen: u64, why: &str) {
        eprintln!("rampart-dataplane: policy generation {gen} rejected: {why}; generation {} stays in force", self.running_gen());
        self.shared.segment.reject_policy(gen, why);
        self.event(EventKind::PolicyRejected, u16::MAX, gen, why);
    }

    /// Applies a validated image: attach new ports, swap, then detach old ones.
    fn apply(&mut self, gen: u64, image: PolicyImage) {
        let same_device = |a: &PortImage, b: &PortImage| a.device == b.device && a.queues == b.queues;
        let keep: Vec<u16> = image
            .ports
            .iter()
            .filter(|p| self.attached.get(&p.slot).is_some_and(|a| same_device(&a.image, p)))
            .map(|p| p.slot)
            .collect();
        let leaving: Vec<u16> = self.attached.keys().copied().filter(|s| !keep.contains(s)).collect();
        // A changed device that reuses a DPDK device name must leave before its successor arrives.
        let new_names: Vec<&str> = image.ports.iter().filter(|p| !keep.contains(&p.slot)).map(|p| dpdk::device_name(&p.device)).collect();
        let clashing: Vec<u16> = leaving
            .iter()
            .copied()
            .filter(|s| new_names.contains(&dpdk::device_name(&self.attached[s].image.device)))
            .collect();
        if !clashing.is_empty() {
            if let Some(current) = self.image.clone() {
                let ids = self.port_ids(&clashing);
                self.swap(Runtime::build(self.running_gen(), &current, |s| ids.get(&s).copied(), self.current(), &self.rules));
            }
            self.detach(&clashing, gen);
        }
        for p in image.ports.iter().filter(|p| !keep.contains(&p.slot)) {
            self.attach(p, gen);
        }
        for p in &image.ports {
            if let Some(a) = self.attached.get_mut(&p.slot) {
                a.image = p.clone();
            }
        }
        if let Some(fw) = &image.firewall {
            self.configure_flows(&image, fw);
            // A whole round from where the last sweep got to: reloads faster than sweeps
            // must not leave the end of the table unvisited.
            self.revisit = Some((self.revisit.map_or(0, |(cursor, _)| cursor), self.shared.flows.slots()));
        }
        self.reset_fresh_rule_counters(&image);
        Arc::make_mut(&mut self.rules).record(gen, image.firewall.as_ref().map_or(&[][..], |f| &f.rules[..]));
        let ids = self.port_ids(&[]);
        self.swap(Runtime::build(gen, &image, |s| ids.get(&s).copied(), self.current(), &self.rules));
        let gone: Vec<u16> = leaving.into_iter().filter(|s| !clashing.contains(s)).collect();
        self.detach(&gone, gen);
        self.image = Some(image);
        self.shared.segment.set_applied(gen);
        self.event(EventKind::PolicyApplied, u16::MAX, gen, "");
    }

    /// DPDK port ids of attached slots, leaving out `except`.
    fn port_ids(&self, except: &[u16]) -> BTreeMap<u16, u16> {
        self.attached.iter().filter(|(s, _)| !except.contains(s)).map(|(s, a)| (*s, a.port_id)).collect()
    }

    fn current(&self) -> Option<&Runtime> {
        self.runtime.current()
    }

    /// Publishes `rt` to the workers; the previous runtime is freed once no worker can hold it.
    fn swap(&mut self, mut rt: Runtime) {
        rt.inspection = self.inspection.clone();
        let shared = self.shared.clone();
        if !self.runtime.publish(rt, || heartbeat(&shared)) {
            eprintln!("rampart-dataplane: a worker did not take up the new policy within 5 s; keeping the old one allocated");
        }
    }

    fn attach(&mut self, p: &PortImage, gen: u64) {
        let status = &self.shared.segment.ports[p.slot as usize];
        match self.try_attach(p) {
            Ok(port_id) => {
                status.set(PortState::Up, port_id, gen, "");
                self.event(EventKind::PortUp, p.slot, port_id as u64, &p.name);
                self.attached.insert(p.slot, Attached { port_id, image: p.clone() });
            }
            Err(msg) => {
                eprintln!("rampart-dataplane: port {}: {msg}", p.name);
                status.set(PortState::Error, 0, gen, &msg);
                self.event(EventKind::PortError, p.slot, 0, &msg);
            }
        }
    }

    fn try_attach(&self, p: &PortImage) -> Result<PortId, String> {
        if !p.socket.is_empty() && !p.client {
            prepare_server_socket(&p.socket)?;
        }
        let port = dpdk::probe(&p.device).map_err(|e| e.to_string())?;
        if let Err(e) = dpdk::start_port(port, p.queues, self.shared.workers as u16, &self.shared.pool) {
            let _ = dpdk::remove_port(port, &p.device);
            return Err(e.to_string());
        }
        if !p.socket.is_empty() && !p.client {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p.socket, std::fs::Permissions::from_mode(self.file_mode))
                .map_err(|e| format!("setting the mode of {}: {e}", p.socket))?;
        }
        Ok(port)
    }

    fn detach(&mut self, slots: &[u16], gen: u64) {
        for slot in slots {
            if let Some(a) = self.attached.remove(slot) {
                if let Err(e) = dpdk::remove_port(a.port_id, &a.image.device) {
                    eprintln!("rampart-dataplane: port {}: {e}", a.image.name);
                }
                if !a.image.socket.is_empty() && !a.image.client {
                    let _ = std::fs::remove_file(&a.image.socket);
                }
                // Counters of a freed slot restart from zero for its next port.
                for w in self.shared.segment.workers.iter() {
                    w.ports[*slot as usize].reset();
                    w.guard[*slot as usize].reset();
                }
                self.shared.segment.ports[*slot as usize].set(PortState::Absent, 0, gen, "removed by policy");
                self.event(EventKind::PortDown, *slot, a.port_id as u64, &a.image.name);
            }
        }
    }

    /// The counters of a slot a rule takes up afresh start from zero: the slot may have
    /// counted a rule removed before the control process restarted (which then knows only
    /// the running generation's slots). A rule that keeps its slot keeps its counts. The
    /// control process hands out slots the running generation does not hold, so no worker
    /// writes to a fresh slot before the swap (only once all 16,384 slots have been used
    /// could a removed rule's last packets be lost from its final count).
    fn reset_fresh_rule_counters(&self, image: &PolicyImage) {
        let rules_of = |i: &PolicyImage| i.firewall.iter().flat_map(|f| f.rules.iter()).map(|r| (r.id.clone(), r.counter)).collect::<std::collections::HashSet<_>>();
        let running = self.image.as_ref().map(rules_of).unwrap_or_default();
        for (id, slot) in rules_of(image) {
            if (slot as usize) < rampart_shm::MAX_RULE_COUNTERS && !running.contains(&(id, slot)) {
                for w in self.shared.segment.workers.iter() {
                    let c = &w.rules[slot as usize];
                    for x in [&c.packets, &c.bytes, &c.flows] {
                        x.reset();
                    }
                }
            }
        }
    }

    /// Timeouts and per-port quotas take effect with the image (table size and
    /// table-full policy are fixed at dataplane start).
    fn configure_flows(&self, image: &PolicyImage, fw: &rampart_shm::FirewallImage) {
        self.shared.flows.set_timeouts(&fw.conntrack.timeouts);
        let fair_share = self.shared.flows.capacity() / image.ports.len().max(1) as u32;
        for p in &image.ports {
            self.shared.flows.set_guest_quota(p.slot as u8, p.max_flows.unwrap_or(fair_share));
        }
    }

    /// Ages flows a slice at a time (the workers never do it, so none stalls): the
    /// slice due after `elapsed_ms` (see [`SWEEP_MS`]), whatever the tick really was.
    fn age_flows(&self, elapsed_ms: u64) {
        let now = self.shared.now_ms();
        let flows = &self.shared.flows;
        let sweep_ms = (flows.shortest_timeout_ms() as u64 / 4).clamp(*SWEEP_MS.start(), *SWEEP_MS.end());
        let budget = (flows.slots() as u64 * elapsed_ms.min(sweep_ms)).div_ceil(sweep_ms);
        self.shared.flows.expire_step(now, budget as usize, |end| {
            let ended = Ended { record: end.record, code: end_code(end.reason), rule: self.rules.current_rule(end.record.verdict) };
            self.shared.segment.events[MAIN_EVENT_RING].push(ended.event(dpdk::rdtsc()));
        });
    }

    /// After a reload, re-examines the flows earlier generations decided, a slice per
    /// tick: a flow the new policy denies is cut and logged even if it never sends again,
    /// and (ICMP queries aside, which live 30 s) no flow keeps the 12-bit generation tag
    /// of its verdict long enough for it to come round again.
    fn revisit_flows(&mut self) {
        let Some((mut cursor, left)) = self.revisit else { return };
        let budget = self.shared.flows.slots().div_ceil(REVISIT_TICKS).min(left);
        if let Some(fw) = self.current().and_then(|rt| rt.firewall.as_ref()) {
            let now = self.shared.now_ms();
            let ring = &self.shared.segment.events[MAIN_EVENT_RING];
            self.shared.flows.revisit_step(&mut cursor, budget, now, |r| fw.revisit(r), |end, (code, rule)| {
                ring.push(Ended { record: end.record, code, rule }.event(dpdk::rdtsc()));
            });
        }
        self.revisit = (left > budget).then_some((cursor, left - budget));
    }

    /// Publishes the flow table's counters and per-port occupancy to shared memory.
    fn report_flows(&self) {
        let f = &self.shared.segment.flows;
        f.publish(&self.shared.flows.stats(), self.shared.flows.capacity());
        for (slot, c) in f.per_port.iter().enumerate() {
            c.store(self.shared.flows.guest_occupancy(slot as u8) as u64, Ordering::Relaxed);
        }
    }

    /// Ends the flow a `rampartctl flows --kill` named (gone already: nothing to do), logged
    /// with the reason `removed`.
    fn kill_flow(&self, cmd: &CommandRecord) {
        let (src_addr, dst_addr, src_port, dst_port, proto, zone) = cmd.flow_key();
        let (key, _) = FlowKey { src_addr, dst_addr, src_port, dst_port, proto, zone }.canonical();
        let flows = &self.shared.flows;
        if let Some(end) = flows.remove(&key, flows.hash(&key), self.shared.now_ms()) {
            let ended = Ended { record: end.record, code: end_code(end.reason), rule: self.rules.current_rule(end.record.verdict) };
            self.shared.segment.events[MAIN_EVENT_RING].push(ended.event(dpdk::rdtsc()));
            self.shared.segment.flows.killed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Answers a page of a `rampartctl flows` dump (`request`: a packed
    /// [`rampart_shm::DumpRequest`]): up to a page of flows from the request's cursor (a
    /// slot) on, written to the segment's dump region with the cursor of the next page.
    fn dump_flows(&self, request: u64) {
        let now = self.shared.now_ms();
        let flows = &self.shared.flows;
        self.shared.segment.flow_dump.answer(request, |cursor, page| {
            // A slot holds at most one flow: visiting no more slots than the page has room
            // for never overfills it.
            let mut at = cursor as usize;
            while page.room() > 0 {
                let room = page.room();
                at = flows.for_each_flow_from(at, room, now, |r| {
                    page.push(rampart_shm::DumpedFlow::from_record(r, self.rules.current_rule(r.verdict), now));
                })?;
            }
            Some(at as u32)
        });
    }

    /// Publishes each port's link state. A guest that goes away takes what the guard
    /// learned with it: whatever connects next (a rebooted or another guest) starts afresh.
    fn report_links(&self) {
        for (slot, a) in &self.attached {
            let up = dpdk::link_up(a.port_id) as u32;
            let was = self.shared.segment.ports[*slot as usize].link.swap(up, Ordering::Relaxed);
            if was == 1 && up == 0 {
                if let Some(rt) = self.current() {
                    rt.forget_learned(*slot);
                }
            }
        }
    }

    fn poll_commands(&mut self) {
        while let Some((cmd, _)) = self.shared.segment.commands.pop() {
            match CommandKind::from_u32(cmd.kind) {
                Some(CommandKind::Ping) => self.event(EventKind::Pong, u16::MAX, cmd.value, ""),
                Some(CommandKind::FlushMacs) => {
                    if let Some(image) = self.image.clone() {
                        let ids = self.port_ids(&[]);
                        self.swap(Runtime::build(self.running_gen(), &image, |s| ids.get(&s).copied(), None, &self.rules));
                    }
                }
                Some(CommandKind::DumpFlows) => self.dump_flows(cmd.value),
                Some(CommandKind::KillFlow) => self.kill_flow(&cmd),
                None => eprintln!("rampart-dataplane: unknown command kind {} ignored", cmd.kind),
            }
        }
    }
}

/// Tells the control process the dataplane is alive.
fn heartbeat(shared: &Shared) {
    shared.segment.header().dataplane_heartbeat_ns.store(rampart_shm::monotonic_ns(), Ordering::Relaxed);
}

/// Makes `path` free for a vhost-user server socket: creates its directory,
/// removes a stale socket, and refuses a live one or a non-socket file.
fn prepare_server_socket(path: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let p = std::path::Path::new(path);
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    match std::fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if !m.file_type().is_socket() => Err(format!("socket path {path} is taken by a file that is not a socket; remove it or choose another `socket`")),
        Ok(_) => match std::os::unix::net::UnixStream::connect(p) {
            Ok(_) => Err(format!("socket path {path} is in use by another process; stop it or choose another `socket`")),
            Err(_) => std::fs::remove_file(p).map_err(|e| format!("removing stale socket {path}: {e}")),
        },
    }
}
