//! The admin API server: the control process's Unix socket (mode 0660), one connection
//! per request, one JSON request line in and one JSON reply line out, in the typed format
//! of [`crate::api`]. It answers from the supervisor's state ([`crate::daemon`]) and the
//! segment: status and counters, `reload` (compile, publish, wait for the dataplane's
//! outcome), `ping` (a round trip through the command and event rings) and `flows`
//! ([`crate::flows`]). A request that cannot be parsed gets `{"ok": false, "error": …}`
//! naming what is wrong.

use crate::api::{BlockRequest, BlocksReply, Body, PingReply, PortError, PortsReply, Published, ReloadReply, Reply, Request, StatsReply, StatusReply};
use crate::daemon::{publish, stats, status, Daemon};
use crate::state;
use anyhow::{Context, Result};
use rampart_shm::ring::CommandKind;
use rampart_shm::{CommandRecord, PolicyOutcome, Segment};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a reload waits for the dataplane to apply or reject a generation.
const APPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest admin request read (bytes); a longer one is cut there and fails to parse.
const MAX_REQUEST: u64 = 64 << 10;

/// Binds the admin socket at `path`, replacing a stale one and refusing one in use.
pub fn bind(path: &Path) -> Result<UnixListener> {
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

/// Serves connections, each on its own thread, until the process ends.
pub fn serve(listener: UnixListener, d: Arc<Daemon>) {
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
            let reply = serde_json::to_string(&handle_from(&d, line.trim(), peer(&conn))).unwrap_or_else(|e| format!(r#"{{"ok":false,"error":"the reply could not be encoded: {e}"}}"#));
            let mut w = &conn;
            let _ = writeln!(w, "{reply}");
        });
    }
}

/// Who sent a request: the admin socket's peer credentials (SO_PEERCRED).
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    pub uid: Option<u32>,
    pub pid: Option<i32>,
}

fn peer(conn: &UnixStream) -> Peer {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred of that size, for
    // the connected socket we own.
    let rc = unsafe { libc::getsockopt(conn.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    if rc == 0 {
        Peer { uid: Some(cred.uid), pid: Some(cred.pid) }
    } else {
        Peer::default()
    }
}

/// One request line → its reply (a caller whose identity is not known).
pub fn handle(d: &Daemon, line: &str) -> Reply<Body> {
    handle_from(d, line, Peer::default())
}

/// One request line from `peer` → its reply.
pub fn handle_from(d: &Daemon, line: &str, peer: Peer) -> Reply<Body> {
    match Request::parse(line) {
        Err(why) => Reply::error(why),
        Ok(Request::Status) => Reply::ok(Body::Status(StatusReply { status: status(d) })),
        Ok(Request::Ports) => Reply::ok(Body::Ports(PortsReply { ports: stats(d).ports })),
        Ok(Request::Stats) => Reply::ok(Body::Stats(StatsReply { stats: stats(d) })),
        Ok(Request::Reload) => reload(d, peer),
        Ok(Request::Ping) => ping(d),
        Ok(Request::Flows(request)) => crate::flows::flows(d, &request),
        Ok(Request::Block(request)) => block(d, &request, peer, true),
        Ok(Request::Unblock(request)) => block(d, &request, peer, false),
        Ok(Request::Blocks) => Reply::ok(Body::Blocks(BlocksReply { blocks: d.inner.lock().unwrap().blocks.entries.clone(), ..Default::default() })),
    }
}

/// A `block` event for the log: `added`, `removed` or `expired`.
pub(crate) fn block_event(action: &str, b: &crate::blocks::Block, peer: Option<Peer>) -> serde_json::Value {
    let mut block = serde_json::json!({"action": action, "prefix": b.prefix, "guest": b.guest, "until": b.until});
    if let Some(p) = peer {
        block["by"] = serde_json::json!({"uid": p.uid, "pid": p.pid});
    }
    serde_json::json!({"timestamp": crate::events::now(), "event_type": "block", "block": block})
}

/// `block` (`add`) / `unblock`: change the blocklist, keep it in its file, publish the
/// policy with it and wait until every worker runs it. Nothing changes on an error.
fn block(d: &Daemon, request: &BlockRequest, peer: Peer, add: bool) -> Reply<Body> {
    let (seg, gen) = {
        let mut inner = d.inner.lock().unwrap();
        let prefix = match crate::blocks::canonical(&request.prefix) {
            Ok(p) => p,
            Err(e) => return Reply::error(e),
        };
        if let Some(g) = &request.guest {
            if !inner.config.ports.iter().any(|p| p.name.get_ref() == g) {
                return Reply::error(format!("no guest (port) named {g:?} in the config"));
            }
        }
        let before = inner.blocks.entries.clone();
        let entry = if add {
            let since = crate::blocks::unix_now();
            let b = crate::blocks::Block { prefix, guest: request.guest.clone(), since, until: request.for_s.map(|s| since.saturating_add(s)), by_uid: peer.uid };
            inner.blocks.add(b.clone());
            b
        } else {
            if request.for_s.is_some() {
                return Reply::error("unblock takes no `for`");
            }
            match inner.blocks.remove(&prefix, &request.guest) {
                Some(b) => b,
                None => return Reply::error(format!("{prefix} is not blocked{}", request.guest.as_ref().map(|g| format!(" for {g}")).unwrap_or_default())),
            }
        };
        let config = inner.config.clone();
        let compiled = inner.compile(&config, &inner.slots().clone());
        let (image, slots) = match compiled.and_then(|x| inner.blocks.save().map(|()| x)) {
            Ok(x) => x,
            Err(e) => {
                inner.blocks.entries = before;
                return Reply::error(format!("{e}; the blocklist is unchanged"));
            }
        };
        inner.log.write(&block_event(if add { "added" } else { "removed" }, &entry, Some(peer)));
        // In the file before the command returns: whoever asked can read it at once.
        inner.log.flush();
        let Some(seg) = inner.segment.clone() else {
            inner.set_policy(image, slots);
            let published = Published { result: Some("stored; it applies when the dataplane attaches".into()), ..Default::default() };
            let body = BlocksReply { blocks: inner.blocks.entries.clone(), published };
            return Reply::ok(Body::Blocks(body));
        };
        match publish(&mut inner, &seg, image, slots) {
            Ok(gen) => (seg, gen),
            Err(e) => return Reply::error(e),
        }
    };
    let (ok, result, worker_gens) = wait_applied(&seg, gen);
    let blocks = d.inner.lock().unwrap().blocks.entries.clone();
    let body = BlocksReply { blocks, published: Published { generation: Some(gen), result: Some(result.clone()), worker_generations: Some(worker_gens) } };
    Reply { ok, error: (!ok).then_some(result), body: Body::Blocks(body) }
}

/// Waits until generation `gen` is applied by every worker, rejected, or the timeout
/// passes: (applied, what happened, the generation each worker runs).
fn wait_applied(seg: &rampart_shm::Segment, gen: u64) -> (bool, String, Vec<u64>) {
    let deadline = Instant::now() + APPLY_TIMEOUT;
    let outcome = loop {
        match seg.policy_outcome(gen) {
            PolicyOutcome::Pending if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            other => break other,
        }
    };
    let workers = seg.header().workers.load(Ordering::Relaxed) as usize;
    let worker_gens: Vec<u64> = (0..workers).map(|w| seg.worker_gen(w)).collect();
    let (ok, result) = match &outcome {
        PolicyOutcome::Applied => (true, "applied".to_string()),
        PolicyOutcome::Rejected(why) => (false, format!("rejected by the dataplane: {why}")),
        PolicyOutcome::Pending => (false, format!("not applied within {} s", APPLY_TIMEOUT.as_secs())),
    };
    (ok, result, worker_gens)
}

/// `reload`: re-read the config file, compile, publish, wait for the outcome. Every
/// reload that compiles is a `policy` event in the log: generation, outcome, who asked
/// (`by`: the peer's uid and pid) and which rules were added, removed or changed.
pub fn reload(d: &Daemon, peer: Peer) -> Reply<Body> {
    let (seg, gen, change) = {
        let mut inner = d.inner.lock().unwrap();
        let config = match rampart_config::load(&inner.config_path) {
            Ok(c) => c,
            Err(e) => {
                inner.last_reload = format!("rejected: {e}");
                return Reply::error(format!("{e}; the running policy stays in force"));
            }
        };
        if config.dataplane.shm != inner.config.dataplane.shm || config.control.socket != inner.config.control.socket {
            return Reply::error("dataplane.shm and control.socket cannot change on reload; restart both processes");
        }
        let (image, slots) = match inner.compile(&config, inner.slots()) {
            Ok(x) => x,
            Err(e) => return Reply::error(format!("compiling policy: {e}")),
        };
        let change = RuleChange::between(&inner.config.rules, &config.rules);
        inner.config = config;
        let Some(seg) = inner.segment.clone() else {
            inner.set_policy(image, slots);
            inner.last_reload = "stored; the dataplane is not attached".into();
            inner.log.write(&change.event(None, "stored (the dataplane is not attached)", peer));
            // In the file before the command returns: whoever asked can read it at once.
            inner.log.flush();
            let message = "configuration accepted; it will be published when the dataplane attaches".to_string();
            return Reply::ok(Body::Reload(ReloadReply { applied: Some(false), message: Some(message), ..Default::default() }));
        };
        match publish(&mut inner, &seg, image, slots) {
            Ok(gen) => (seg, gen, change),
            Err(e) => return Reply::error(e),
        }
    };
    let (ok, result, worker_gens) = wait_applied(&seg, gen);
    let mut inner = d.inner.lock().unwrap();
    let ports = state::ports(Some(&seg), inner.image());
    let errors = ports.iter().filter(|p| p.state == "error").map(|p| PortError { port: p.name.clone(), error: p.message.clone() }).collect();
    inner.last_reload = format!("generation {gen}: {result}");
    inner.log.write(&change.event(Some(gen), &result, peer));
    // In the file before the command returns: whoever asked can read it at once.
    inner.log.flush();
    let published = Published { generation: Some(gen), result: Some(result.clone()), worker_generations: Some(worker_gens) };
    let body = ReloadReply { published, port_errors: Some(errors), ..Default::default() };
    Reply { ok, error: (!ok).then_some(result), body: Body::Reload(body) }
}

/// How a reload changes the rules, by id: added, removed, or changed in any field.
struct RuleChange {
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<String>,
    before: usize,
    after: usize,
}

/// Ids listed per kind in a policy event; the counts are always complete.
const LISTED: usize = 50;

impl RuleChange {
    fn between(old: &[rampart_config::rules::RuleCfg], new: &[rampart_config::rules::RuleCfg]) -> RuleChange {
        // A rule's content without its position in the file (spans differ after any edit above it).
        let text = |r: &rampart_config::rules::RuleCfg| {
            let v = |x: &[toml::Spanned<String>]| x.iter().map(|s| s.get_ref().clone()).collect::<Vec<_>>();
            format!(
                "{:?}",
                (v(&r.from), v(&r.to), r.protocol.as_ref().map(|s| s.get_ref()), r.ports.as_ref().map(|s| s.get_ref()), v(&r.services),
                 r.icmp_type.as_ref().map(|s| *s.get_ref()), r.icmp_code.as_ref().map(|s| *s.get_ref()), r.action.get_ref(), r.stateful, r.log)
            )
        };
        let map = |rules: &[rampart_config::rules::RuleCfg]| rules.iter().map(|r| (r.id.get_ref().clone(), text(r))).collect::<BTreeMap<_, _>>();
        let (a, b) = (map(old), map(new));
        RuleChange {
            added: b.keys().filter(|k| !a.contains_key(*k)).cloned().collect(),
            removed: a.keys().filter(|k| !b.contains_key(*k)).cloned().collect(),
            changed: b.iter().filter(|(k, t)| a.get(*k).is_some_and(|o| o != *t)).map(|(k, _)| k.clone()).collect(),
            before: old.len(),
            after: new.len(),
        }
    }

    fn event(&self, generation: Option<u64>, result: &str, peer: Peer) -> serde_json::Value {
        let list = |ids: &[String]| ids.iter().take(LISTED).cloned().collect::<Vec<_>>();
        serde_json::json!({
            "timestamp": crate::events::now(), "event_type": "policy",
            "policy": {
                "change": "reload", "generation": generation, "result": result,
                "by": {"uid": peer.uid, "pid": peer.pid},
                "rules": {"before": self.before, "after": self.after,
                          "added": self.added.len(), "removed": self.removed.len(), "changed": self.changed.len(),
                          "added_ids": list(&self.added), "removed_ids": list(&self.removed), "changed_ids": list(&self.changed)}
            }
        })
    }
}

/// Pushes `cmd` (the caller holds [`Daemon::commands`]), waiting while the ring is full:
/// the dataplane drains it every tick (10 ms).
pub(crate) fn push_command(seg: &Segment, cmd: CommandRecord) -> Result<(), String> {
    let start = Instant::now();
    while !seg.commands.push(cmd) {
        if start.elapsed() > Duration::from_secs(5) {
            return Err("the dataplane is not taking commands (its command ring stayed full for 5 s)".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// Round trip through the command ring and an event ring.
fn ping(d: &Daemon) -> Reply<Body> {
    let Some(seg) = d.inner.lock().unwrap().segment.clone() else {
        return Reply::error("the dataplane is not attached");
    };
    let _one_at_a_time = d.commands.lock().unwrap();
    let start = Instant::now();
    match round_trip(d, &seg) {
        Ok(()) => Reply::ok(Body::Ping(PingReply { round_trip_ms: start.elapsed().as_secs_f64() * 1e3 })),
        Err(e) => Reply::error(e),
    }
}

/// Sends a ping and waits for its pong (the caller holds [`Daemon::commands`]): the
/// dataplane has then taken every command sent before it.
pub(crate) fn round_trip(d: &Daemon, seg: &Segment) -> Result<(), String> {
    let token = rampart_shm::monotonic_ns();
    push_command(seg, CommandRecord { kind: CommandKind::Ping as u32, value: token, ..Default::default() })?;
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
    use crate::events::EventLog;
    use serde_json::Value;

    #[test]
    fn a_reload_event_names_the_rules_added_removed_and_changed_and_who_asked() {
        let rules = |text: &str| rampart_config::parse("t.toml", text).unwrap().rules;
        let old = rules("[[rules]]\nid = \"a\"\nto = [\"10.0.0.1\"]\naction = \"allow\"\n[[rules]]\nid = \"b\"\naction = \"deny\"\n[[rules]]\nid = \"c\"\naction = \"deny\"\n");
        // "a" moves down a line (same content: unchanged), "b" changes action, "c" goes, "d" comes.
        let new = rules("\n[[rules]]\nid = \"d\"\naction = \"log\"\n[[rules]]\nid = \"a\"\nto = [\"10.0.0.1\"]\naction = \"allow\"\n[[rules]]\nid = \"b\"\naction = \"reject\"\n");
        let ev = RuleChange::between(&old, &new).event(Some(7), "applied", Peer { uid: Some(1000), pid: Some(42) });
        let p = &ev["policy"];
        assert_eq!(ev["event_type"], "policy");
        assert_eq!((p["generation"].as_u64(), p["result"].as_str(), p["by"]["uid"].as_u64(), p["by"]["pid"].as_i64()), (Some(7), Some("applied"), Some(1000), Some(42)));
        let r = &p["rules"];
        assert_eq!((r["before"].as_u64(), r["after"].as_u64()), (Some(3), Some(3)));
        assert_eq!((r["added_ids"].clone(), r["removed_ids"].clone(), r["changed_ids"].clone()), (serde_json::json!(["d"]), serde_json::json!(["c"]), serde_json::json!(["b"])));
        assert_eq!((r["added"].as_u64(), r["removed"].as_u64(), r["changed"].as_u64()), (Some(1), Some(1), Some(1)));
    }

    #[test]
    fn the_admin_socket_knows_its_peer() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = peer(&a);
        // SAFETY: getuid has no preconditions.
        assert_eq!((p.uid, p.pid), (Some(unsafe { libc::getuid() }), Some(std::process::id() as i32)));
    }

    fn without_dataplane(request: &str) -> Value {
        let config = rampart_config::parse("t.toml", "").unwrap();
        let d = Daemon::new(Path::new("t.toml"), config, EventLog::open(Path::new("/dev/null"), crate::chain::Key::random().unwrap()).unwrap()).unwrap();
        serde_json::to_value(handle(&d, request)).unwrap()
    }

    #[test]
    fn flows_reports_a_bad_address_before_anything_else() {
        // No dataplane attached: the filter error still wins over "not attached".
        let reply = without_dataplane(r#"{"cmd":"flows","address":"10.0.0.300"}"#);
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
            let reply = without_dataplane(request);
            assert!(reply["error"].as_str().unwrap().contains(field), "{request}: {reply}");
        }
    }

    #[test]
    fn flows_kill_wants_a_filter_before_anything_else() {
        let reply = without_dataplane(r#"{"cmd":"flows","kill":true}"#);
        assert!(reply["error"].as_str().unwrap().contains("needs a filter"), "{reply}");
        let reply = without_dataplane(r#"{"cmd":"flows","kill":true,"port":22}"#);
        assert_eq!(reply["error"], "the dataplane is not attached", "with a filter it goes on");
    }

    #[test]
    fn every_reply_says_ok_and_an_error_when_not() {
        for request in [r#"{"cmd":"status"}"#, r#"{"cmd":"stats"}"#, r#"{"cmd":"ping"}"#, r#"{"cmd":"frobnicate"}"#, "not json", r#"{"cmd":"reload"}"#] {
            let reply = without_dataplane(request);
            match reply["ok"].as_bool() {
                Some(true) => assert!(reply.get("error").is_none(), "{reply}"),
                Some(false) => assert!(reply["error"].as_str().is_some_and(|e| !e.is_empty()), "{reply}"),
                None => panic!("{request}: {reply}"),
            }
        }
        assert_eq!(without_dataplane(r#"{"cmd":"status"}"#)["status"]["attached"], false);
        assert!(without_dataplane(r#"{"cmd":"frobnicate"}"#)["error"].as_str().unwrap().contains("unknown command"));
    }

    #[test]
    fn an_endless_admin_request_is_cut_and_answered() {
        let dir = std::env::temp_dir().join(format!("rampart-admin-{}", std::process::id()));
        let path = dir.join("control.sock");
        let listener = bind(&path).unwrap();
        let config = rampart_config::parse("t.toml", "").unwrap();
        let d = Arc::new(Daemon::new(Path::new("t.toml"), config, EventLog::open(Path::new("/dev/null"), crate::chain::Key::random().unwrap()).unwrap()).unwrap());
        std::thread::spawn(move || serve(listener, d));
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
}
