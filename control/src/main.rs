//! `rampartctl`: the control process (`run`) and the operator's one-shot
//! commands, which talk to it over its admin socket.

use rampart_control::{daemon, rules, state};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::Value;
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
    let mut request_body = serde_json::json!({});
    let cmd_name = match &cli.cmd {
        Cmd::Run => return daemon::run(&cli.config),
        Cmd::DefaultConfig => {
            print!("{}", rampart_config::DEMO_CONFIG);
            return Ok(());
        }
        Cmd::Check { file } => return check(file.as_deref().unwrap_or(&cli.config), cli.json),
        Cmd::Status => "status",
        Cmd::Ports => "ports",
        Cmd::Stats => "stats",
        Cmd::Reload => "reload",
        Cmd::Ping => "ping",
        Cmd::Flows { guest, address, port, state, kill } => {
            request_body = serde_json::json!({"guest": guest, "address": address, "port": port, "state": state, "kill": kill});
            "flows"
        }
    };
    let reply = match rampart_config::control_socket(&cli.config) {
        Ok(socket) => request(Path::new(&socket), cmd_name, request_body)?,
        Err(e) => {
            let what = if cmd_name == "reload" { "; nothing was reloaded: the running policy stays in force" } else { "" };
            serde_json::json!({"ok": false, "error": format!("{e}{what}")})
        }
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print_human(cmd_name, &reply);
    }
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
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

fn request(socket: &Path, cmd: &str, mut body: Value) -> Result<Value> {
    let conn = std::os::unix::net::UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the control process at {} (is `rampartctl run` running with this config?)", socket.display()))?;
    let mut w = &conn;
    body["cmd"] = Value::String(cmd.into());
    writeln!(w, "{body}")?;
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
    if line.is_empty() {
        bail!("the control process closed the connection without answering");
    }
    Ok(serde_json::from_str(&line)?)
}

fn print_human(cmd: &str, reply: &Value) {
    if reply.get("ok").and_then(Value::as_bool) != Some(true) {
        eprintln!("error: {}", reply.get("error").and_then(Value::as_str).unwrap_or("unknown error"));
        return;
    }
    match cmd {
        "status" => {
            let s: state::Status = serde_json::from_value(reply["status"].clone()).unwrap_or_default();
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
        "ports" | "stats" => {
            let ports_v = if cmd == "ports" { reply["ports"].clone() } else { reply["stats"]["ports"].clone() };
            let ports: Vec<state::PortRow> = serde_json::from_value(ports_v).unwrap_or_default();
            println!("{:<14} {:<13} {:<16} {:<8} {:<6} {:>12} {:>12} {:>12}", "PORT", "KIND", "ATTACH", "STATE", "ADMIN", "RX", "TX", "DROPPED");
            for p in &ports {
                let state = if p.state == "up" && !p.link { "up/nolink".to_string() } else { p.state.clone() };
                println!(
                    "{:<14} {:<13} {:<16} {:<8} {:<6} {:>12} {:>12} {:>12}",
                    p.name, p.kind, p.attach, state, if p.enabled { "on" } else { "off" }, p.rx_packets, p.tx_packets, p.drop_packets
                );
                if !p.message.is_empty() && p.state == "error" {
                    println!("  error: {}", p.message);
                }
            }
            if cmd == "stats" {
                let stats: state::Stats = serde_json::from_value(reply["stats"].clone()).unwrap_or_default();
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
                let ft = &stats.flow_table;
                println!(
                    "\nflow table: {} of {} live; created {}, expired {}, evicted {}, removed by reloads {}, reopened {}, invalid {}, refused (full) {}, refused (quota) {}",
                    ft.live, ft.capacity, ft.creations, ft.expirations, ft.evictions, ft.removals, ft.reopened, ft.invalid, ft.full_refusals, ft.quota_refusals
                );
            }
        }
        "reload" => {
            println!("generation {}: {} (workers run {})", reply["generation"], reply["result"].as_str().unwrap_or(""), reply["worker_generations"]);
            if let Some(errs) = reply["port_errors"].as_array() {
                for e in errs {
                    println!("  port {}: {}", e["port"].as_str().unwrap_or("?"), e["error"].as_str().unwrap_or(""));
                }
            }
        }
        "flows" => {
            let flows = reply["flows"].as_array().cloned().unwrap_or_default();
            println!("{:<10} {:<5} {:<40} {:<40} {:<12} {:>10} {:>10} {:<16}", "GUEST", "PROTO", "SOURCE", "DESTINATION", "STATE", "PKTS>", "<PKTS", "RULE");
            for f in &flows {
                println!(
                    "{:<10} {:<5} {:<40} {:<40} {:<12} {:>10} {:>10} {:<16}",
                    f["guest"].as_str().unwrap_or(""),
                    f["proto"].as_str().unwrap_or(""),
                    format!("{}:{}", f["src_ip"].as_str().unwrap_or(""), f["src_port"]),
                    format!("{}:{}", f["dest_ip"].as_str().unwrap_or(""), f["dest_port"]),
                    f["state"].as_str().unwrap_or(""),
                    f["pkts"][0],
                    f["pkts"][1],
                    f["rule"].as_str().unwrap_or("-")
                );
            }
            match reply["killed"].as_u64() {
                Some(killed) => println!("{killed} of {} matching flows ended ({} were tracked)", flows.len(), reply["total"]),
                None => println!("{} shown of {} tracked", flows.len(), reply["total"]),
            }
        }
        "ping" => println!("dataplane answered in {:.2} ms", reply["round_trip_ms"].as_f64().unwrap_or(0.0)),
        _ => println!("{reply}"),
    }
}
