//! `rampartctl`: the control process (`run`) and the operator's one-shot
//! commands, which talk to it over its admin socket.

use rampart_control::api::{self, BlockRequest, BlocksReply, FlowsReply, FlowsRequest, NoBody, PingReply, PortsReply, Published, ReloadReply, Reply, Request, StatsReply, StatusReply};
use rampart_control::{daemon, rules, state};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(version, about = "Rampart control process and CLI")]
struct Cli {
    /// Configuration file (shared with rampart-dataplane).
    #[arg(long, short, global = true, env = "RAMPART_CONFIG", default_value = "/etc/rampart/rampart.toml")]
    config: PathBuf,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the control process (foreground daemon).
    Run,
    /// Dataplane liveness, policy generations, event log.
    Status,
    /// Ports with their state and counters.
    Ports,
    /// Counters: ports, drops by reason, worker busy cycles per packet.
    Stats,
    /// Re-read the config file and apply it; reports the generation each worker runs.
    Reload,
    /// Round trip through the dataplane's command and event rings.
    Ping,
    /// Tracked flows, optionally filtered.
    Flows {
        /// Only flows opened by this guest (port name).
        #[arg(long)]
        guest: Option<String>,
        /// Only flows with either end inside this address or prefix (10.0.0.5, 10.0.0.0/24, fd00::/64).
        #[arg(long)]
        address: Option<String>,
        /// Only flows with this port at either end (for ICMP echo flows, the identifier;
        /// other ICMP flows have 0).
        #[arg(long)]
        port: Option<u16>,
        /// Only flows in this state (e.g. established, syn_sent, time_wait; any case).
        #[arg(long)]
        state: Option<String>,
        /// End the flows that match (needs at least one filter); each is logged with the
        /// reason `removed`, and its next packet is judged as a new flow.
        #[arg(long)]
        kill: bool,
    },
    /// Block an address or prefix: no packet from or to it is forwarded once this returns
    /// (every worker runs the policy with it); kept across restarts.
    Block {
        /// Address or prefix (10.0.0.7, 10.0.0.0/24, fd00::/64).
        target: String,
        /// For this many seconds (default: until unblocked).
        #[arg(long = "for", value_name = "SECONDS")]
        for_s: Option<u64>,
        /// Only toward and from this guest (port name).
        #[arg(long)]
        guest: Option<String>,
    },
    /// Remove a block.
    Unblock {
        target: String,
        #[arg(long)]
        guest: Option<String>,
    },
    /// The blocklist.
    Blocks,
    /// Validate a config file without applying it.
    Check { file: Option<PathBuf> },
    /// Verify event log files (the current one and rotated ones, in any order): says where a
    /// record was edited, inserted, deleted or moved, or a file cut short. Exit status 1 if so.
    VerifyLog {
        /// Log files (default: the config's event log and the files rotated beside it).
        files: Vec<PathBuf>,
        /// The key (default: the config's control.event_key).
        #[arg(long)]
        key: Option<PathBuf>,
        /// A chain head recorded elsewhere (syslog, `rampartctl status`), SEQ:HMAC: the log
        /// must reach it, so a log cut at a record boundary is seen too.
        #[arg(long)]
        head: Option<String>,
    },
    /// Print the built-in demo configuration.
    DefaultConfig,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = real_main(cli) {
        eprintln!("rampartctl: {e:#}");
        std::process::exit(1);
    }
}

fn real_main(cli: Cli) -> Result<()> {
    let request = match &cli.cmd {
        Cmd::Run => return daemon::run(&cli.config),
        Cmd::DefaultConfig => {
            print!("{}", rampart_config::DEMO_CONFIG);
            return Ok(());
        }
        Cmd::Check { file } => return check(file.as_deref().unwrap_or(&cli.config), cli.json),
        Cmd::VerifyLog { files, key, head } => return verify_log(&cli.config, files, key.as_deref(), head.as_deref(), cli.json),
        Cmd::Status => Request::Status,
        Cmd::Ports => Request::Ports,
        Cmd::Stats => Request::Stats,
        Cmd::Reload => Request::Reload,
        Cmd::Ping => Request::Ping,
        Cmd::Flows { guest, address, port, state, kill } => {
            Request::Flows(FlowsRequest { guest: guest.clone(), address: address.clone(), port: *port, state: state.clone(), kill: *kill })
        }
        Cmd::Block { target, for_s, guest } => Request::Block(BlockRequest { prefix: target.clone(), guest: guest.clone(), for_s: *for_s }),
        Cmd::Unblock { target, guest } => Request::Unblock(BlockRequest { prefix: target.clone(), guest: guest.clone(), for_s: None }),
        Cmd::Blocks => Request::Blocks,
    };
    let line = match rampart_config::control_socket(&cli.config) {
        Ok(socket) => send(Path::new(&socket), &request)?,
        Err(e) => {
            let what = if request == Request::Reload { "; nothing was reloaded: the running policy stays in force" } else { "" };
            serde_json::to_string(&Reply::error(format!("{e}{what}")))?
        }
    };
    let (raw, reply) = api::decode::<NoBody>(&line).map_err(anyhow::Error::msg)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&raw)?);
    } else if !reply.ok {
        eprintln!("error: {}", reply.error.as_deref().unwrap_or("unknown error"));
    } else {
        print_human(&request, &line)?;
    }
    if !reply.ok {
        std::process::exit(1);
    }
    Ok(())
}

fn check(file: &Path, json: bool) -> Result<()> {
    let config = rampart_config::load(file).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, warnings) = rules::check(&config).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let inspection = rampart_control::inspection::load(&config).map_err(anyhow::Error::msg)?;
    if json {
        let w: Vec<&str> = warnings.iter().map(|w| w.0.as_str()).collect();
        let files: Vec<_> = inspection.iter().flat_map(|l| &l.files).map(|(f, r)| {
            let skipped: serde_json::Map<String, serde_json::Value> = r.skipped_keywords().into_iter().map(|(k, n)| (k, n.into())).collect();
            serde_json::json!({"file": f, "loaded": r.signatures.len(), "skipped": r.skipped.len(), "skipped_keywords": skipped, "commented_out": r.disabled})
        }).collect();
        let stats = inspection.as_ref().map(|l| l.stats).unwrap_or_default();
        println!("{}", serde_json::json!({"ok": true, "file": file.display().to_string(), "warnings": w,
            "inspection": {"files": files, "per_packet_only": stats.per_packet_only, "pcres": stats.pcres,
                "pcre_memory_bytes": stats.pcre_memory_bytes, "flowbit_signatures": stats.flowbit_signatures,
                "flowbit_names": stats.flowbit_names, "matcher_memory_bytes": stats.memory_bytes}}));
    } else {
        for w in &warnings {
            println!("warning: {}", w.0);
        }
        for line in inspection.iter().flat_map(|l| l.report()) {
            println!("{line}");
        }
        println!("{}: OK ({} ports, {} segments, {} rules)", file.display(), config.ports.len(), config.segments.len(), config.rules.len());
    }
    Ok(())
}

fn verify_log(config: &Path, files: &[PathBuf], key: Option<&Path>, head: Option<&str>, json: bool) -> Result<()> {
    use rampart_control::chain;
    let head = head.map(|h| chain::Link::parse(h).with_context(|| format!("--head {h}: expected SEQ:HMAC (64 hex digits), as syslog and `rampartctl status` give it"))).transpose()?;
    let cfg = if key.is_none() || files.is_empty() { Some(rampart_config::load(config).map_err(|e| anyhow::anyhow!("{e} (or give --key and the files)"))?) } else { None };
    let key_path = key.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(&cfg.as_ref().expect("loaded above").control.event_key));
    let key = chain::Key::load(&key_path).map_err(anyhow::Error::msg)?;
    let files = if files.is_empty() { rampart_control::events::log_files(Path::new(&cfg.as_ref().expect("loaded above").control.event_log)) } else { files.to_vec() };
    let report = chain::verify(&key, &files, head).map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for n in &report.notes {
            println!("note: {n}");
        }
        for p in &report.problems {
            println!("{}:{}: {}", p.file, p.line, p.what);
        }
        let span = if report.verified > 0 { format!("records {} to {}", report.first_seq, report.last_seq) } else { "no records".into() };
        let tail = if head.is_some() { "" } else { " (without --head, a cut after the last record cannot be seen)" };
        match report.problems.len() {
            0 => println!("OK: {} records verified, {span}, in {} file(s){tail}", report.verified, report.files.len()),
            n => println!("FAILED: {n} problem(s); {} records verified, {span}, in {} file(s)", report.verified, report.files.len()),
        }
    }
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}

/// Sends one request, returns the reply line.
fn send(socket: &Path, request: &Request) -> Result<String> {
    let conn = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the control process at {} (is `rampartctl run` running with this config?)", socket.display()))?;
    let mut w = &conn;
    writeln!(w, "{}", serde_json::to_string(request)?)?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    if line.is_empty() {
        bail!("the control process closed the connection without answering");
    }
    Ok(line)
}

/// The body of a successful reply to `request`, for people.
/// "generation N: applied (workers run [N])", or what happened instead.
fn print_published(p: Published) {
    match (p.generation, p.result) {
        (Some(gen), result) => println!("generation {gen}: {} (workers run {:?})", result.unwrap_or_default(), p.worker_generations.unwrap_or_default()),
        (None, Some(result)) => println!("{result}"),
        (None, None) => {}
    }
}

fn print_human(request: &Request, line: &str) -> Result<()> {
    fn body<T: serde::de::DeserializeOwned>(line: &str) -> Result<T> {
        Ok(api::decode::<T>(line).map_err(anyhow::Error::msg)?.1.body)
    }
    match request {
        Request::Status => {
            let s = body::<StatusReply>(line)?.status;
            if s.attached {
                println!("dataplane      up (pid {}, heartbeat {:.1} ms ago, {} worker(s))", s.dataplane_pid, s.heartbeat_age_ms, s.workers);
            } else {
                println!("dataplane      NOT ATTACHED (waiting for it at {})", s.shm);
            }
            println!("policy         published {} · applied {} · workers {:?}", s.published_generation, s.applied_generation, s.worker_generations);
            if s.rejected_generation > 0 {
                println!("last rejected  generation {}: {}", s.rejected_generation, s.rejected_reason);
            }
            println!("events         {} logged · {} lost", s.events_logged, s.events_lost);
            println!("event chain    head {} (rampartctl verify-log --head)", s.events_head);
            if s.events_write_errors > 0 {
                println!("event log      {} failed writes · {} records not written yet (see the loss records)", s.events_write_errors, s.events_unwritten);
            }
            println!("config         {}", s.config);
            if !s.last_reload.is_empty() {
                println!("last reload    {}", s.last_reload);
            }
        }
        Request::Ports => print_ports(&body::<PortsReply>(line)?.ports),
        Request::Stats => print_stats(&body::<StatsReply>(line)?.stats),
        Request::Reload => {
            let r = body::<ReloadReply>(line)?;
            match r.published.generation {
                Some(_) => print_published(r.published),
                None => println!("{}", r.message.unwrap_or_default()),
            }
            for e in r.port_errors.unwrap_or_default() {
                println!("  port {}: {}", e.port, e.error);
            }
        }
        Request::Block(_) | Request::Unblock(_) | Request::Blocks => {
            let r = body::<BlocksReply>(line)?;
            print_published(r.published);
            let now = rampart_control::blocks::unix_now();
            println!("{:<44} {:<16} {:>12}", "BLOCKED", "GUEST", "EXPIRES IN");
            for b in &r.blocks {
                let left = b.until.map_or("never".to_string(), |u| format!("{} s", u.saturating_sub(now)));
                println!("{:<44} {:<16} {:>12}", b.prefix, b.guest.as_deref().unwrap_or("(all)"), left);
            }
        }
        Request::Flows(_) => {
            let r = body::<FlowsReply>(line)?;
            println!("{:<10} {:<5} {:<40} {:<40} {:<12} {:>10} {:>10} {:<16}", "GUEST", "PROTO", "SOURCE", "DESTINATION", "STATE", "PKTS>", "<PKTS", "RULE");
            for f in &r.flows {
                println!(
                    "{:<10} {:<5} {:<40} {:<40} {:<12} {:>10} {:>10} {:<16}",
                    f.guest,
                    f.proto,
                    format!("{}:{}", f.src_ip, f.src_port),
                    format!("{}:{}", f.dest_ip, f.dest_port),
                    f.state,
                    f.pkts[0],
                    f.pkts[1],
                    f.rule.as_deref().unwrap_or("-")
                );
            }
            match r.killed {
                Some(killed) => println!("{killed} of {} matching flows ended ({} were tracked)", r.flows.len(), r.total),
                None => println!("{} shown of {} tracked", r.flows.len(), r.total),
            }
        }
        Request::Ping => println!("dataplane answered in {:.2} ms", body::<PingReply>(line)?.round_trip_ms),
    }
    Ok(())
}

/// `rampartctl ports` (and the head of `rampartctl stats`) as text.
fn ports_text(ports: &[state::PortRow]) -> String {
    let mut out = format!("{:<14} {:<13} {:<16} {:<8} {:<6} {:>12} {:>12} {:>12}\n", "PORT", "KIND", "ATTACH", "STATE", "ADMIN", "RX", "TX", "DROPPED");
    for p in ports {
        let state = if p.state == "up" && !p.link { "up/nolink".to_string() } else { p.state.clone() };
        out += &format!(
            "{:<14} {:<13} {:<16} {:<8} {:<6} {:>12} {:>12} {:>12}\n",
            p.name, p.kind, p.attach, state, if p.enabled { "on" } else { "off" }, p.counters.rx_packets, p.counters.tx_packets, p.counters.drop_packets
        );
        if !p.message.is_empty() && p.state == "error" {
            out += &format!("  error: {}\n", p.message);
        }
    }
    out
}

fn print_ports(ports: &[state::PortRow]) {
    print!("{}", ports_text(ports));
}

fn print_stats(stats: &state::Stats) {
    print!("{}", stats_text(stats));
}

/// `rampartctl stats` as text.
fn stats_text(stats: &state::Stats) -> String {
    let mut out = ports_text(&stats.ports);
    out += "\ndrops by reason:\n";
    if stats.drops.is_empty() {
        out += "  (none)\n";
    }
    for (r, n) in &stats.drops {
        out += &format!("  {r:<32} {n}\n");
    }
    out += "\nworkers:\n";
    for w in &stats.workers {
        out += &format!("  worker {}: {:.1} busy cycles/packet over {} packets\n", w.worker, w.cycles_per_packet, w.totals.busy_packets);
    }
    out += &format!("events lost: {}\n", stats.events_lost);
    if !stats.rules.is_empty() {
        out += "\nrules:\n";
        for r in &stats.rules {
            out += &format!("  {:<24} {:<7} {:>12} packets {:>14} bytes {:>10} flows\n", r.id, r.action, r.packets, r.bytes, r.flows);
        }
    }
    // Every counter of the list but the two the line starts with.
    let ft = &stats.flow_table;
    let events: Vec<String> = rampart_shm::FlowStatus::FIELDS
        .iter()
        .filter_map(|c| match c.metric {
            rampart_shm::FlowMetric::Event(label) => Some(format!("{} {}", label.replace('_', " "), ft.get(c.name))),
            rampart_shm::FlowMetric::Gauge(_) => None,
        })
        .collect();
    out += &format!("\nflow table: {} of {} live; {}\n", ft.get("live"), ft.get("capacity"), events.join(", "));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rampartctl stats` prints what it printed before its counters came from lists.
    #[test]
    fn stats_text_keeps_its_form() {
        let json = serde_json::json!({
            "ports": [
                {"name": "a", "slot": 0, "kind": "device", "attach": "segment lan", "enabled": true, "state": "up", "link": true, "message": "",
                 "rx_packets": 101, "rx_bytes": 202, "tx_packets": 303, "tx_bytes": 404, "drop_packets": 505, "drop_bytes": 606, "tx_full": 707},
                {"name": "b", "slot": 1, "kind": "vhost-server", "attach": "wire a", "enabled": false, "state": "error", "link": false, "message": "no such device",
                 "rx_packets": 0, "rx_bytes": 0, "tx_packets": 0, "tx_bytes": 0, "drop_packets": 0, "drop_bytes": 0, "tx_full": 0}
            ],
            "rules": [{"id": "dns", "action": "allow", "packets": 3, "bytes": 300, "flows": 1}],
            "flow_table": {"live": 2, "capacity": 1024, "creations": 5, "killed": 1, "per_port": {"a": 2}},
            "drops": {"policy_drop": 9},
            "workers": [{"worker": 0, "busy_cycles": 1000, "busy_packets": 8, "cycles_per_packet": 125.0, "idle_polls": 3, "sleeps": 4}],
            "events_lost": 6
        });
        let stats: state::Stats = serde_json::from_value(json).unwrap();
        let want = "\
PORT           KIND          ATTACH           STATE    ADMIN            RX           TX      DROPPED
a              device        segment lan      up       on              101          303          505
b              vhost-server  wire a           error    off               0            0            0
  error: no such device

drops by reason:
  policy_drop                      9

workers:
  worker 0: 125.0 busy cycles/packet over 8 packets
events lost: 6

rules:
  dns                      allow              3 packets            300 bytes          1 flows

flow table: 2 of 1024 live; created 5, expired 0, evicted 0, removed 0, reopened 0, invalid 0, refused full 0, refused quota 0, killed 1
";
        assert_eq!(stats_text(&stats), want);
    }
}
