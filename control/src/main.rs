//! `rampartctl`: the control process (`run`) and the operator's one-shot
//! commands, which talk to it over its admin socket.

use rampart_control::api::{self, FlowsReply, FlowsRequest, NoBody, PingReply, PortsReply, ReloadReply, Reply, Request, StatsReply, StatusReply};
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
    /// Validate a config file without applying it.
    Check { file: Option<PathBuf> },
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
        Cmd::Status => Request::Status,
        Cmd::Ports => Request::Ports,
        Cmd::Stats => Request::Stats,
        Cmd::Reload => Request::Reload,
        Cmd::Ping => Request::Ping,
        Cmd::Flows { guest, address, port, state, kill } => {
            Request::Flows(FlowsRequest { guest: guest.clone(), address: address.clone(), port: *port, state: state.clone(), kill: *kill })
        }
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
    if json {
        let w: Vec<&str> = warnings.iter().map(|w| w.0.as_str()).collect();
        println!("{}", serde_json::json!({"ok": true, "file": file.display().to_string(), "warnings": w}));
    } else {
        for w in &warnings {
            println!("warning: {}", w.0);
        }
        println!("{}: OK ({} ports, {} segments, {} rules)", file.display(), config.ports.len(), config.segments.len(), config.rules.len());
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
            println!("config         {}", s.config);
            if !s.last_reload.is_empty() {
                println!("last reload    {}", s.last_reload);
            }
        }
        Request::Ports => print_ports(&body::<PortsReply>(line)?.ports),
        Request::Stats => print_stats(&body::<StatsReply>(line)?.stats),
        Request::Reload => {
            let r = body::<ReloadReply>(line)?;
            match (r.generation, r.message) {
                (Some(gen), _) => println!("generation {gen}: {} (workers run {:?})", r.result.unwrap_or_default(), r.worker_generations.unwrap_or_default()),
                (None, message) => println!("{}", message.unwrap_or_default()),
            }
            for e in r.port_errors.unwrap_or_default() {
                println!("  port {}: {}", e.port, e.error);
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

fn print_ports(ports: &[state::PortRow]) {
    println!("{:<14} {:<13} {:<16} {:<8} {:<6} {:>12} {:>12} {:>12}", "PORT", "KIND", "ATTACH", "STATE", "ADMIN", "RX", "TX", "DROPPED");
    for p in ports {
        let state = if p.state == "up" && !p.link { "up/nolink".to_string() } else { p.state.clone() };
        println!(
            "{:<14} {:<13} {:<16} {:<8} {:<6} {:>12} {:>12} {:>12}",
            p.name, p.kind, p.attach, state, if p.enabled { "on" } else { "off" }, p.rx_packets, p.tx_packets, p.drop_packets
        );
        if !p.message.is_empty() && p.state == "error" {
            println!("  error: {}", p.message);
        }
    }
}

fn print_stats(stats: &state::Stats) {
    print_ports(&stats.ports);
    println!("\ndrops by reason:");
    if stats.drops.is_empty() {
        println!("  (none)");
    }
    for (r, n) in &stats.drops {
        println!("  {r:<32} {n}");
    }
    println!("\nworkers:");
    for w in &stats.workers {
        println!("  worker {}: {:.1} busy cycles/packet over {} packets", w.worker, w.cycles_per_packet, w.busy_packets);
    }
    println!("events lost: {}", stats.events_lost);
    if !stats.rules.is_empty() {
        println!("\nrules:");
        for r in &stats.rules {
            println!("  {:<24} {:<7} {:>12} packets {:>14} bytes {:>10} flows", r.id, r.action, r.packets, r.bytes, r.flows);
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
    println!("\nflow table: {} of {} live; {}", ft.get("live"), ft.get("capacity"), events.join(", "));
}
