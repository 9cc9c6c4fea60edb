//! Harness for the process-level test tiers: starts the real
//! `rampart-dataplane`, `rampartctl run` and `rampart-guestsim` binaries
//! (built by `make build` into `target/release`) with a per-test config in a
//! private temp dir, and stops every process it started when dropped.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the release binaries are.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("RAMPART_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"));
    let p = dir.join(name);
    assert!(p.exists(), "{} is missing: run `make build` first", p.display());
    p
}

/// Polls `f` every 20 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process that is terminated (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err)).spawn().unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { name: name.into(), child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Stops the process and returns its exit status code (None if killed by signal).
    pub fn stop(&mut self) -> Option<i32> {
        if let Ok(Some(st)) = self.child.try_wait() {
            return st.code();
        }
        self.signal(libc::SIGTERM);
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        self.child.wait().ok().and_then(|s| s.code())
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("---- {} log ({}) ----\n{}", self.name, self.log.display(), tail(&self.log_text(), 40));
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One guest port in a test config.
#[derive(Clone)]
pub struct PortSpec {
    pub name: String,
    pub kind: &'static str,
    /// `segment = "..."` or `wire = "..."` line.
    pub attach: String,
    pub mac: Option<String>,
    pub enabled: bool,
    /// For kind = "device".
    pub device: Option<String>,
    /// Extra TOML lines for this port (addresses, tags, max_flows...).
    pub extra: String,
}

impl PortSpec {
    pub fn guest(name: &str, segment: &str, mac: &str) -> PortSpec {
        PortSpec {
            name: name.into(),
            kind: "vhost-server",
            attach: format!("segment = \"{segment}\""),
            mac: Some(mac.into()),
            enabled: true,
            device: None,
            extra: String::new(),
        }
    }

    /// A guest with the IPv4 address rampart-guestsim uses for `mac` (10.0.mac[4].mac[5]).
    pub fn addressed(name: &str, segment: &str, mac: &str) -> PortSpec {
        let b: Vec<u8> = mac.split(':').map(|x| u8::from_str_radix(x, 16).unwrap()).collect();
        PortSpec { extra: format!("addresses = [\"10.0.{}.{}\"]\n", b[4], b[5]), ..PortSpec::guest(name, segment, mac) }
    }
}

/// A test's private world: temp dir, config, processes.
pub struct Rig {
    pub name: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub metrics_port: u16,
    pub hugepages: bool,
    pub default_action: &'static str,
    /// CPUs of the worker lcores (default: CPU 1).
    pub worker_cores: Vec<u32>,
    pub ports: Vec<PortSpec>,
    /// Extra TOML (rules, sets, conntrack) appended to the config.
    pub extra: String,
    /// Extra keys of the `[dataplane]` table.
    pub dataplane_extra: String,
    /// Extra keys of the `[policy]` table.
    pub policy_extra: String,
    pub dataplane: Option<Proc>,
    pub control: Option<Proc>,
}

impl Rig {
    pub fn new(name: &str, metrics_port: u16) -> Rig {
        let dir = std::env::temp_dir().join(format!("rampart-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Rig {
            name: name.into(),
            config: dir.join("rampart.toml"),
            dir,
            metrics_port,
            hugepages: true,
            default_action: "forward",
            worker_cores: vec![1],
            ports: Vec::new(),
            extra: String::new(),
            dataplane_extra: String::new(),
            policy_extra: String::new(),
            dataplane: None,
            control: None,
        }
    }

    pub fn socket(&self, port: &str) -> PathBuf {
        self.dir.join(format!("{port}.sock"))
    }

    pub fn shm(&self) -> String {
        format!("/dev/shm/rampart-test-{}-{}", self.name, std::process::id())
    }

    /// Writes the config file from the current fields.
    pub fn write_config(&self) {
        let mut t = format!(
            "[dataplane]\nmain_core = 0\nworker_cores = {workers:?}\nmemory_mb = 256\nfile_prefix = \"rt-{name}-{pid}\"\nhugepages = {huge}\nshm = \"{shm}\"\nmbufs = 8191\n{dp}\n\
             [control]\nsocket = \"{dir}/control.sock\"\nmetrics = \"127.0.0.1:{mp}\"\nevent_log = \"{dir}/log/eve.json\"\nblocklist = \"{dir}/blocks.json\"\nevent_key = \"{dir}/eventlog.key\"\n\n\
             [policy]\ndefault_action = \"{action}\"\n{policy}\n\n",
            name = self.name,
            workers = self.worker_cores,
            huge = self.hugepages,
            shm = self.shm(),
            dir = self.dir.display(),
            mp = self.metrics_port,
            action = self.default_action,
            // The pid keeps two runs of a tier at once (two checkouts) apart in /var/run/dpdk.
            pid = std::process::id(),
            dp = self.dataplane_extra,
            policy = self.policy_extra,
        );
        let mut segments: Vec<&str> = self.ports.iter().filter_map(|p| p.attach.strip_prefix("segment = \"")).map(|s| s.trim_end_matches('"')).collect();
        segments.sort();
        segments.dedup();
        for s in segments {
            t += &format!("[[segments]]\nname = \"{s}\"\n\n");
        }
        for p in &self.ports {
            t += &format!("[[ports]]\nname = \"{}\"\nkind = \"{}\"\n{}\nenabled = {}\n", p.name, p.kind, p.attach, p.enabled);
            match &p.device {
                Some(d) => t += &format!("device = \"{d}\"\n"),
                None => t += &format!("socket = \"{}\"\n", self.socket(&p.name).display()),
            }
            if let Some(m) = &p.mac {
                t += &format!("macs = [\"{m}\"]\n");
            }
            t += &p.extra;
            t += "\n";
        }
        t += &self.extra;
        std::fs::write(&self.config, t).unwrap();
    }

    pub fn start_dataplane(&mut self) {
        self.write_config();
        let log = self.dir.join(format!("dataplane-{}.log", rand_u32()));
        let p = Proc::spawn("rampart-dataplane", Command::new(bin("rampart-dataplane")).arg("--config").arg(&self.config), log);
        self.dataplane = Some(p);
        let shm = self.shm();
        let dp = self.dataplane.as_mut().unwrap();
        wait_for("the dataplane's shared memory", Duration::from_secs(30), || {
            assert!(dp.alive(), "rampart-dataplane exited:\n{}", dp.log_text());
            Path::new(&shm).exists().then_some(())
        });
    }

    pub fn start_control(&mut self) {
        self.write_config();
        let log = self.dir.join(format!("control-{}.log", rand_u32()));
        let p = Proc::spawn("rampartctl run", Command::new(bin("rampartctl")).arg("--config").arg(&self.config).arg("run"), log);
        self.control = Some(p);
        let sock = self.dir.join("control.sock");
        let c = self.control.as_mut().unwrap();
        wait_for("the control socket", Duration::from_secs(30), || {
            assert!(c.alive(), "rampartctl run exited:\n{}", c.log_text());
            std::os::unix::net::UnixStream::connect(&sock).ok().map(|_| ())
        });
    }

    /// Starts both processes and waits until `gen` is applied.
    pub fn start(&mut self) {
        self.start_dataplane();
        self.start_control();
        self.wait_applied(1);
    }

    pub fn wait_applied(&self, gen: u64) -> Value {
        wait_for(&format!("policy generation {gen} applied"), Duration::from_secs(30), || {
            let (code, s) = self.ctl(&["status"]);
            (code == 0 && s["status"]["attached"] == true && s["status"]["applied_generation"].as_u64() >= Some(gen)).then_some(s)
        })
    }

    /// Runs `rampartctl --json ARGS` and returns (exit code, parsed JSON or the raw text).
    pub fn ctl(&self, args: &[&str]) -> (i32, Value) {
        let out = Command::new(bin("rampartctl")).arg("--config").arg(&self.config).arg("--json").args(args).output().expect("rampartctl");
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(format!("{text}{}", String::from_utf8_lossy(&out.stderr))));
        (out.status.code().unwrap_or(-1), v)
    }

    pub fn ctl_ok(&self, args: &[&str]) -> Value {
        let (code, v) = self.ctl(args);
        assert_eq!(code, 0, "rampartctl {args:?} failed: {v}");
        v
    }

    /// Port row from `rampartctl stats`.
    pub fn port(&self, name: &str) -> Value {
        let s = self.ctl_ok(&["stats"]);
        s["stats"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap_or_else(|| panic!("no port {name} in {s}"))
    }

    /// The Prometheus endpoint's page (`GET /metrics`).
    pub fn metrics(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("the metrics endpoint accepts");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).expect("a metrics page");
        assert!(body.starts_with("HTTP/1.1 200"), "{body}");
        body
    }

    pub fn drops(&self, reason: &str) -> u64 {
        self.ctl_ok(&["stats"])["stats"]["drops"][reason].as_u64().unwrap_or(0)
    }

    /// Waits until the dataplane reports a guest connected on `port`.
    pub fn wait_link(&self, port: &str) {
        wait_for(&format!("link up on {port}"), Duration::from_secs(30), || (self.port(port)["link"] == true).then_some(()));
    }

    pub fn guest(&self, name: &str, mac: &str) -> GuestSim {
        GuestSim::new(self, name, mac)
    }
}

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most 4 bytes into `b`.
    unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, 4, 0) };
    u32::from_ne_bytes(b)
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.control.take();
        self.dataplane.take();
        let _ = std::fs::remove_file(self.shm());
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A simulated guest (`rampart-guestsim`) on one of the rig's vhost ports.
pub struct GuestSim {
    pub socket: PathBuf,
    pub mac: String,
    pub report: PathBuf,
    pub server: bool,
    pub proc: Option<Proc>,
    dir: PathBuf,
    name: String,
}

impl GuestSim {
    fn new(rig: &Rig, name: &str, mac: &str) -> GuestSim {
        GuestSim {
            socket: rig.socket(name),
            mac: mac.into(),
            report: rig.dir.join(format!("{name}.report.json")),
            server: false,
            proc: None,
            dir: rig.dir.clone(),
            name: name.into(),
        }
    }

    /// Starts the guest; `to`/`rate`/`count` describe what it sends (nothing if `to` is None).
    pub fn start(&mut self, to: Option<&str>, rate: u64, count: u64, extra: &[&str]) {
        let _ = std::fs::remove_file(&self.report);
        let mut cmd = Command::new(bin("rampart-guestsim"));
        cmd.arg("--socket").arg(&self.socket).arg("--mac").arg(&self.mac).arg("--report").arg(&self.report);
        cmd.args(["--rate", &rate.to_string(), "--count", &count.to_string(), "--cpu", "0"]);
        if let Some(to) = to {
            cmd.args(["--to", to]);
        }
        if self.server {
            cmd.arg("--server");
        }
        cmd.args(extra);
        let log = self.dir.join(format!("guest-{}-{}.log", self.name, rand_u32()));
        self.proc = Some(Proc::spawn(&format!("guestsim {}", self.name), &mut cmd, log));
        let report = self.report.clone();
        let p = self.proc.as_mut().unwrap();
        wait_for(&format!("guest {} to start", self.name), Duration::from_secs(30), || {
            assert!(p.alive(), "guestsim {} exited:\n{}", p.name, p.log_text());
            report.exists().then_some(())
        });
    }

    pub fn report(&self) -> Value {
        std::fs::read_to_string(&self.report).ok().and_then(|s| serde_json::from_str(&s).ok()).unwrap_or(Value::Null)
    }

    pub fn sent(&self) -> u64 {
        self.report()["sent"].as_u64().unwrap_or(0)
    }

    /// (count, unique, dups) received from a sender MAC.
    pub fn received_from(&self, mac: &str) -> (u64, u64, u64) {
        let r = &self.report()["received"][mac];
        (r["count"].as_u64().unwrap_or(0), r["unique"].as_u64().unwrap_or(0), r["dups"].as_u64().unwrap_or(0))
    }

    /// Stops the guest and returns its final report.
    pub fn stop(&mut self) -> Value {
        if let Some(mut p) = self.proc.take() {
            p.stop();
        }
        self.report()
    }
}
