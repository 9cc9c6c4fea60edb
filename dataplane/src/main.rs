//! `rampart-dataplane --config FILE`: starts EAL from the config's
//! `[dataplane]` section, creates the shared-memory segment, launches the
//! workers and serves the control process until SIGINT/SIGTERM.

use anyhow::{bail, Context, Result};
use clap::Parser;
use rampart_dataplane::{dpdk, manager::Manager, worker::Worker, Shared};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

#[derive(Parser)]
#[command(version, about = "Rampart's DPDK dataplane (configured over shared memory by `rampartctl run`)")]
struct Args {
    /// Configuration file; only its [dataplane] section is read here.
    #[arg(long, short)]
    config: PathBuf,
}


fn hugepages_ready() -> Result<()> {
    let free: u64 = std::fs::read_to_string("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let mounted = std::fs::read_to_string("/proc/mounts").map(|m| m.lines().any(|l| l.contains("hugetlbfs"))).unwrap_or(false);
    if free == 0 || !mounted {
        bail!(
            "no free 2 MB hugepages ({free} free, hugetlbfs {}mounted).\n  Fix: `make hugepages` (or: echo 1024 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages; mkdir -p /dev/hugepages; mount -t hugetlbfs nodev /dev/hugepages),\n  or set `hugepages = false` in [dataplane] for tests",
            if mounted { "" } else { "not " }
        );
    }
    Ok(())
}

fn eal_args(dp: &rampart_config::Dataplane) -> Vec<String> {
    let mut lcores = format!("0@{}", dp.main_core);
    for (i, cpu) in dp.worker_cores.iter().enumerate() {
        lcores.push_str(&format!(",{}@{}", i + 1, cpu));
    }
    let mut args = vec!["rampart-dataplane".to_string(), "--lcores".into(), lcores, "--file-prefix".into(), dp.file_prefix.clone()];
    if dp.hugepages {
        args.extend(["-m".into(), dp.memory_mb.to_string()]);
    } else {
        args.extend(["--no-huge".into(), "-m".into(), dp.memory_mb.to_string()]);
    }
    if dp.pci_devices.is_empty() {
        args.push("--no-pci".into());
    }
    for dev in &dp.pci_devices {
        args.extend(["-a".into(), dev.clone()]);
    }
    args.extend(["--log-level".into(), "*:warning".into(), "--no-telemetry".into()]);
    args
}

fn main() -> Result<()> {
    let args = Args::parse();
    let config = rampart_config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dp = config.dataplane.clone();
    if dp.hugepages {
        hugepages_ready()?;
    }
    let eal = eal_args(&dp);
    eprintln!("rampart-dataplane: EAL {}", eal[1..].join(" "));
    dpdk::eal_init(&eal)?;
    let workers = dpdk::worker_lcores();
    if workers.len() != dp.worker_cores.len() {
        bail!("EAL started {} worker lcores, the config asks for {}", workers.len(), dp.worker_cores.len());
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing the signal handlers")?;
    }
    let shm_path = PathBuf::from(&dp.shm);
    let segment = rampart_shm::Segment::create(&shm_path, dp.file_mode, workers.len() as u32, dpdk::tsc_hz(), dpdk::rdtsc())
        .with_context(|| "creating the shared-memory segment")?;
    let pool = dpdk::Mempool::create("rampart_pool", dp.mbufs)?;
    let ct = &config.conntrack;
    let flows = rampart_flow::FlowTable::new(&rampart_flow::FlowTableConfig {
        capacity: ct.table_size,
        full_policy: match ct.table_full {
            rampart_config::rules::TableFull::Refuse => rampart_flow::FullPolicy::Refuse,
            rampart_config::rules::TableFull::EvictOldest => rampart_flow::FullPolicy::EvictOldest,
        },
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("conntrack.table_size: {e}"))?;
    let shared = Arc::new(Shared {
        flows,
        pool,
        tsc0: dpdk::rdtsc(),
        tsc_per_ms: dpdk::tsc_hz() / 1000,
        segment,
        runtime: Arc::new(rampart_dataplane::rcu::RuntimeCell::new(workers.len())),
        stop: stop.clone(),
        workers: workers.len(),
        inspect_streams: config.inspection_state.streams_per_worker as usize,
        idle: rampart_dataplane::worker::Backoff { interrupts: dp.idle_interrupts, first_us: dp.idle_sleep_us, max_us: dp.idle_sleep_max_us },
    });
    for (i, &lcore) in workers.iter().enumerate() {
        let w = Worker::new(i, shared.clone());
        dpdk::launch(lcore, move || w.run())?;
    }
    eprintln!(
        "rampart-dataplane: {} worker(s) running; shared memory at {}; waiting for `rampartctl run` to publish a policy",
        workers.len(),
        dp.shm
    );
    let mut manager = Manager::new(shared.clone(), dp.file_mode);
    manager.run();
    dpdk::wait_all_lcores();
    manager.shutdown();
    drop(manager);
    eprintln!("rampart-dataplane: stopped");
    drop(shared);
    dpdk::eal_cleanup();
    Ok(())
}
