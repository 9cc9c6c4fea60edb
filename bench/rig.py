#!/usr/bin/env python3
"""Rampart throughput rig (DESIGN.md §8): `python3 bench/rig.py`, stdlib only.

Two CPUs: a dpdk-testpmd flowgen generator with two virtio_user ports on the
generator CPU, the device under test (DUT) with two vhost-user server ports on
the DUT CPU. Every DUT is measured BENCH_RUNS times per flow count, alternating
(A B A B ...), and reported as the median Mpps the generator received back,
the ratio to testpmd io (the limit of the rig) and the DUT's busy cycles per
packet. See bench/README.md.

Environment:
  BENCH_DUTS     DUTs in order (default "testpmd-io rampart rampart:stateful ovs-ct",
                 ovs-ct left out when OVS-DPDK is not installed); "rampart" is
                 "rampart:pass-through", "rampart:NAME" uses bench/configs/NAME.toml,
                 "ovs-ct" is OVS-DPDK with conntrack (DESIGN.md §8)
  BENCH_FLOWS    flow counts (default "1000 100000 1000000": the foundation's 1k and 100k
                 cases and the stateful profile's 100k and 1M)
  BENCH_RULES / BENCH_ALLOW_AT  rules generated for the stateful profile (10000) and the
                 position of the rule that allows the bench traffic (9990)
  BENCH_RUNS     runs per DUT and flow count (default 3)
  BENCH_SECONDS  measurement window, s (default 10)
  BENCH_WARMUP   warm-up before the window, s (default 3); longer if needed until every
                 flow was sent twice, up to BENCH_WARMUP_MAX s (default 120)
  BENCH_GEN_CPU / BENCH_DUT_CPU   CPUs (default 0 / 1)
  BENCH_WORKDIR  sockets, configs and logs (default /tmp/rampart-bench)
  BENCH_BUILD    missing (default) | always | never: cargo build of the rampart binaries
  BENCH_NICE     niceness of the processes started (default 0; -10 shields them from builds)
  BENCH_QUEUE_SIZE / BENCH_BURST  generator virtio ring size (1024) and burst (32)
  BENCH_VIRTIO_ARGS  extra net_virtio_user devargs for the generator
  BENCH_MAX_OTHER  % of the CPUs other processes may use in a window before it counts as noisy (10)
  BENCH_QUIET_WAIT  s to wait for idle CPUs before each measurement (20; 0 = don't)
  BENCH_RETRIES  repeats of a noisy measurement, keeping the quietest (1)
  BENCH_IDLE_SECONDS  idle window of each DUT's idle/wake-up phase, s (default 30; 0 = skip the phase)
  BENCH_PROBES / BENCH_PROBE_GAP  wake-up probes per DUT (20) and the silence before each, s (1)
  BENCH_OVS_MAXSLEEP  pmd-maxsleep of the second OVS idle/wake-up phase, µs (default 800, Rampart's
                 idle_sleep_max_us; 0 = only OVS's default)

Costs the throughput figures hide (issue 15): every window also records the CPU time of the
DUT's threads other than its forwarding thread (control process, main lcore/thread, OVS's
handlers and ovsdb-server: `dut_cpu_other=`, % of a core, from /proc/PID/task/*/schedstat)
and, for Rampart, the worker's idle sleeps (`sleeps=`, 0 under load). After the throughput
runs, each DUT is started once more with no traffic: `idle_cpu=` is what all its threads
use over BENCH_IDLE_SECONDS, `wake_latency_us=` the p99 of BENCH_PROBES single packets, each
sent after BENCH_PROBE_GAP s of silence, from one vhost-user port to the other
(rampart-guestsim --latency-peer). The run starts with the CPU model and a tlb_reach summary.
"""

import fcntl
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "bench")
TESTPMD = shutil.which("dpdk-testpmd") or "/usr/bin/dpdk-testpmd"
DATAPLANE = os.path.join(REPO, "target", "release", "rampart-dataplane")
RAMPARTCTL = os.path.join(REPO, "target", "release", "rampartctl")
GUESTSIM = os.path.join(REPO, "target", "release", "rampart-guestsim")
TLB_REACH = os.path.join(REPO, "target", "release", "examples", "tlb_reach")

HUGEPAGES_NR = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
HUGEPAGES_FREE = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
HUGEDIR = "/dev/hugepages"
DPDK_RUNDIR = "/var/run/dpdk"

GEN_PREFIX = "bench-gen"
DUT_PREFIX = "bench-dut"
GEN_MEM_MB = 256
TESTPMD_DUT_MEM_MB = 256
MBUFS = 16384  # per testpmd; Rampart's default pool is 16383

# OVS-DPDK (Debian openvswitch-switch-dpdk), started by hand with its own run directory.
OVS_VSWITCHD = next((p for p in ("/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk",
                                 "/usr/sbin/ovs-vswitchd-dpdk") if os.access(p, os.X_OK)), None)
OVSDB_SERVER = shutil.which("ovsdb-server") or "/usr/sbin/ovsdb-server"
OVSDB_TOOL = shutil.which("ovsdb-tool") or "/usr/bin/ovsdb-tool"
OVS_VSCTL = shutil.which("ovs-vsctl") or "/usr/bin/ovs-vsctl"
OVS_OFCTL = shutil.which("ovs-ofctl") or "/usr/bin/ovs-ofctl"
OVS_APPCTL = shutil.which("ovs-appctl") or "/usr/bin/ovs-appctl"
OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
OVS_PREFIX = "ovsbench"
OVS_MEM_MB = 1024  # dpdk-socket-mem and dpdk-socket-limit: its shared mempool (262144 mbufs) and both vhost ports
# DESIGN.md §8: ct() on every IP packet, commit new flows, forward new and established
# ones port 1 <-> port 2, drop the rest.
OVS_FLOWS = """\
table=0,priority=10,ip,actions=ct(table=1)
table=0,priority=1,actions=drop
table=1,ip,in_port=1,ct_state=+trk+new,actions=ct(commit),output:2
table=1,ip,in_port=1,ct_state=+trk+est,actions=output:2
table=1,ip,in_port=2,ct_state=+trk+new,actions=ct(commit),output:1
table=1,ip,in_port=2,ct_state=+trk+est,actions=output:1
"""
NICE = 0  # BENCH_NICE: scheduling niceness of every process the rig starts


def env_int(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        die(f"{name} must be an integer, got {os.environ[name]!r}")


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        die(f"{name} must be a number, got {os.environ[name]!r}")


class Fail(Exception):
    """A failure with a message meant for the operator."""


def die(msg):
    print(f"bench: error: {msg}", file=sys.stderr)
    sys.exit(2)


def log(msg):
    print(f"bench: {msg}", flush=True)


def tail(path, n=25):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError as e:
        return f"    (no log: {e})"
    return "\n".join("    | " + l for l in lines[-n:]) or "    (log is empty)"


# --------------------------------------------------------------------------
# Processes: everything started is recorded, and stopped by pid in cleanup().


# Errors, not backtraces, in the DUT logs the rig quotes.
CHILD_ENV = dict(os.environ, RUST_BACKTRACE="0", RUST_LIB_BACKTRACE="0")


def _child_setup(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    if NICE:
        os.nice(NICE)


class Proc:
    def __init__(self, name, cmd, logpath, cpu, env=None):
        self.name, self.cmd, self.logpath = name, cmd, logpath
        logf = open(logpath, "wb")
        # Own session: a Ctrl-C on the terminal reaches only this script, which
        # then stops the children in order (generator first).
        self.p = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,  # testpmd without -i exits when stdin gives it a line or EOF
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env or CHILD_ENV,
            preexec_fn=lambda: _child_setup(cpu),
        )
        logf.close()
        self.pid = self.p.pid
        RIG.procs.append(self)
        RIG.record_pids()

    def alive(self):
        return self.p.poll() is None

    def cpu_jiffies(self):
        """utime+stime of the process (all its threads), in clock ticks."""
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            return 0

    def thread_cpu(self):
        """{tid: (thread name, ns on a CPU)} of every thread, from /proc/PID/task/*/schedstat."""
        out = {}
        for task in glob.glob(f"/proc/{self.pid}/task/*"):
            try:
                with open(os.path.join(task, "comm")) as f:
                    name = f.read().strip()
                with open(os.path.join(task, "schedstat")) as f:
                    ns = int(f.read().split()[0])
            except (OSError, IndexError, ValueError):
                continue  # the thread ended meanwhile
            out[int(os.path.basename(task))] = (name, ns)
        return out

    def check(self):
        if not self.alive():
            raise Fail(f"{self.name} (pid {self.pid}) exited with status {self.p.returncode}; "
                       f"tail of {self.logpath}:\n{tail(self.logpath)}")

    def stop(self, grace=8.0):
        """Ask nicely (Enter on stdin for testpmd, then SIGINT), then SIGTERM, then SIGKILL."""
        if self.alive():
            try:
                self.p.stdin.write(b"\n")
                self.p.stdin.flush()
            except (OSError, ValueError):
                pass
            for sig, wait in ((None, 1.0), (signal.SIGINT, grace), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
                if sig is not None and self.alive():
                    try:
                        os.kill(self.pid, sig)
                    except ProcessLookupError:
                        pass
                try:
                    self.p.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        try:
            self.p.stdin.close()
        except (OSError, ValueError):
            pass
        if self in RIG.procs:
            RIG.procs.remove(self)
            RIG.record_pids()


class Rig:
    def __init__(self):
        self.procs = []
        self.workdir = None
        self.cleanup_paths = set()
        self.cleanup_dirs = set()  # removed whole: OVS's private run directory
        self.prefixes = {GEN_PREFIX, DUT_PREFIX}

    def record_pids(self):
        """Pids we started, so that a later run can stop orphans of a killed run."""
        if not self.workdir:
            return
        with open(os.path.join(self.workdir, "pids.json"), "w") as f:
            json.dump([{"pid": p.pid, "cmd": p.cmd} for p in self.procs], f)

    def reap_orphans(self):
        path = os.path.join(self.workdir, "pids.json")
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError):
            return
        for entry in old:
            pid, cmd = entry["pid"], entry["cmd"]
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    live = f.read().split(b"\0")[:-1]
            except OSError:
                continue
            if [a.decode() for a in live] == cmd:
                log(f"stopping pid {pid} left running by an earlier interrupted run: {' '.join(cmd[:3])} ...")
                for sig in (signal.SIGINT, signal.SIGKILL):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        break
                    for _ in range(30):
                        if not os.path.exists(f"/proc/{pid}"):
                            break
                        time.sleep(0.1)
        os.unlink(path)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            p.stop()
        self.clean_files()

    def clean_files(self):
        for d in list(self.cleanup_dirs):
            shutil.rmtree(d, ignore_errors=True)
        for path in list(self.cleanup_paths):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as e:
                log(f"warning: could not remove {path}: {e}")
        for prefix in self.prefixes:
            # Hugepage files and EAL runtime dirs of our own DPDK file prefixes only.
            for f in glob.glob(os.path.join(HUGEDIR, f"{prefix}map_*")):
                try:
                    os.unlink(f)
                except OSError:
                    pass
            shutil.rmtree(os.path.join(DPDK_RUNDIR, prefix), ignore_errors=True)


RIG = Rig()


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------
# Environment checks


def ensure_hugepages(need_pages):
    with open(HUGEPAGES_NR) as f:
        nr = int(f.read())
    if nr < 1024:
        with open(HUGEPAGES_NR, "w") as f:
            f.write("1024")
        with open(HUGEPAGES_NR) as f:
            nr = int(f.read())
        log(f"hugepages: nr_hugepages set to {nr}")
    os.makedirs(HUGEDIR, exist_ok=True)
    if not os.path.ismount(HUGEDIR):
        r = subprocess.run(["mount", "-t", "hugetlbfs", "nodev", HUGEDIR], capture_output=True, text=True)
        if r.returncode != 0:
            raise Fail(f"mounting hugetlbfs on {HUGEDIR} failed: {r.stderr.strip()}")
        log(f"hugepages: mounted hugetlbfs on {HUGEDIR}")
    with open(HUGEPAGES_FREE) as f:
        free = int(f.read())
    if free < need_pages:
        raise Fail(f"{free} free 2 MB hugepages, the rig needs {need_pages} "
                   f"(nr_hugepages={nr}; files in {HUGEDIR}: {sorted(os.listdir(HUGEDIR))[:10]})")


def build_rampart(mode):
    if not os.access(TLB_REACH, os.X_OK) and mode != "never":
        subprocess.run(["cargo", "build", "--release", "-p", "rampart-flow", "--example", "tlb_reach"],
                       cwd=REPO, timeout=3600)
    missing = [b for b in (DATAPLANE, RAMPARTCTL, GUESTSIM) if not os.access(b, os.X_OK)]
    if mode == "never" or (mode == "missing" and not missing):
        if missing:
            raise Fail(f"missing {', '.join(missing)} and BENCH_BUILD=never")
        return
    log("building: cargo build --release -p rampart-dataplane -p rampart-control")
    r = subprocess.run(["cargo", "build", "--release", "-p", "rampart-dataplane", "-p", "rampart-control"],
                       cwd=REPO, timeout=3600)
    if r.returncode != 0:
        raise Fail("cargo build --release -p rampart-dataplane -p rampart-control failed")
    missing = [b for b in (DATAPLANE, RAMPARTCTL, GUESTSIM) if not os.access(b, os.X_OK)]
    if missing:
        raise Fail(f"build succeeded but {', '.join(missing)} is missing")


# --------------------------------------------------------------------------
# DPDK telemetry (generator port counters): /var/run/dpdk/<prefix>/dpdk_telemetry.v2


def telemetry(prefix, cmds, timeout=3.0):
    path = os.path.join(DPDK_RUNDIR, prefix, "dpdk_telemetry.v2")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(timeout)
    try:
        s.connect(path)
        hello = json.loads(s.recv(65536))
        maxlen = max(int(hello.get("max_output_len", 16384)), 16384)
        out = []
        for c in cmds:
            s.send(c.encode())
            out.append(json.loads(s.recv(maxlen + 1024)))
        return out
    finally:
        s.close()


def port_stats(prefix, nports=2, attempts=3):
    """[(ipackets, opackets, imissed+ierrors+oerrors)] per port, and the time they were read."""
    for attempt in range(attempts):
        t0 = time.monotonic()
        try:
            res = telemetry(prefix, [f"/ethdev/stats,{i}" for i in range(nports)], timeout=5.0)
            break
        except (OSError, ValueError) as e:  # socket.timeout is an OSError
            if attempt == attempts - 1:
                raise Fail(f"reading the generator's port counters over DPDK telemetry failed "
                           f"{attempts} times ({e.__class__.__name__}: {e})")
    t1 = time.monotonic()
    if t1 - t0 > 0.5:
        log(f"warning: reading the generator's counters took {t1 - t0:.1f} s (busy machine?)")
    out = []
    for r in res:
        st = r.get("/ethdev/stats")
        if not isinstance(st, dict):
            raise Fail(f"unexpected telemetry answer: {r}")
        out.append((st["ipackets"], st["opackets"], st["imissed"] + st["ierrors"] + st["oerrors"]))
    return out, (t0 + t1) / 2


def cpu_snapshot():
    """(busy, total) jiffies of all CPUs, and steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    steal = v[7] if len(v) > 7 else 0
    total = sum(v[:8])
    return total - idle - steal, total, steal


# Forwarding threads: DPDK's worker lcores (testpmd's, Rampart's) and OVS's PMD threads.
FORWARDING_THREAD = re.compile(r"^(lcore-worker|rte-worker|pmd)")


def threads_snapshot(procs):
    """{(pid, tid): (name, ns)} over every thread of `procs`."""
    return {(p.pid, tid): v for p in procs for tid, v in p.thread_cpu().items()}


def threads_cpu(a, b, secs):
    """(% of a core used by forwarding threads, by all other threads) between two snapshots;
    a thread that started in between counts from zero, one that ended is not seen."""
    fwd = other = 0
    for key, (name, ns) in b.items():
        d = ns - a.get(key, (name, 0))[1]
        if FORWARDING_THREAD.match(name):
            fwd += d
        else:
            other += d
    return fwd / secs / 1e7, other / secs / 1e7


def process_cpu(proc, a, b, secs):
    """% of a core used by all threads of `proc` (a Proc, or None: None) between two snapshots."""
    if not isinstance(proc, Proc):
        return None
    keys = {k for k in b if k[0] == proc.pid}
    return sum(threads_cpu({k: a[k] for k in keys if k in a}, {k: b[k] for k in keys}, secs))


def machine_summary(cfg):
    """The CPU model (lscpu) and how far its TLB reaches (flow/examples/tlb_reach.rs): the
    machine the ratios come from. Pinned to the DUT CPU before anything runs there."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = re.search(r"^Model name:\s*(.+)$", out, re.M).group(1).strip()
    except (OSError, AttributeError, subprocess.TimeoutExpired):
        model = "unknown (lscpu failed)"
    log(f"CPU model: {model}; {os.cpu_count()} CPUs")
    if not os.access(TLB_REACH, os.X_OK):
        log(f"tlb_reach: {TLB_REACH} missing (cargo build --release -p rampart-flow --example tlb_reach)")
        return
    res = {}
    for regions, per in ((512, 16), (16, 512)):
        for mode in ("thp", "small"):
            try:
                r = subprocess.run(["taskset", "-c", str(cfg.dut_cpu), TLB_REACH, str(regions), str(per), mode],
                                   capture_output=True, text=True, timeout=120)
                m = re.search(r"([0-9.]+) ns per access", r.stdout)
                res[(regions, mode)] = m.group(1) if m else "na"
            except (OSError, subprocess.TimeoutExpired):
                res[(regions, mode)] = "na"
    log(f"tlb_reach (8,192 lines, ns per access): over 512 x 2 MB regions thp {res[(512, 'thp')]} / 4 KiB "
        f"{res[(512, 'small')]}; over 16 regions thp {res[(16, 'thp')]} / 4 KiB {res[(16, 'small')]}")


# --------------------------------------------------------------------------
# DUTs


def wait_quiet(cfg):
    """Before a measurement, wait up to BENCH_QUIET_WAIT s for the CPUs to be (nearly) idle."""
    if cfg.quiet_wait <= 0:
        return
    deadline = time.monotonic() + cfg.quiet_wait
    while True:
        a = cpu_snapshot()
        time.sleep(1.0)
        b = cpu_snapshot()
        busy = (b[0] - a[0]) / max(1, b[1] - a[1]) * 100
        if busy <= cfg.max_other:
            return
        if time.monotonic() >= deadline:
            log(f"warning: the CPUs stayed {busy:.0f}% busy with other work for {cfg.quiet_wait:g} s; measuring anyway")
            return


def wait_for(what, cond, timeout, procs, step=0.1):
    deadline = time.monotonic() + timeout
    while True:
        for p in procs:
            p.check()
        if cond():
            return
        if time.monotonic() > deadline:
            raise Fail(f"timed out after {timeout:.0f} s waiting for {what}; " + "; ".join(
                f"tail of {p.name} log {p.logpath}:\n{tail(p.logpath)}" for p in procs))
        time.sleep(step)


class TestpmdIo:
    profile = "io"

    def __init__(self, cfg):
        self.cfg = cfg
        self.name = "testpmd-io"
        self.socks = [os.path.join(cfg.workdir, f"dut{i}.sock") for i in (0, 1)]
        self.mem_pages = TESTPMD_DUT_MEM_MB // 2
        self.proc = None
        RIG.cleanup_paths.update(self.socks)

    def start(self, tag, flows):
        RIG.clean_files()  # a stale socket would look like a ready DUT
        cpu = self.cfg.dut_cpu
        cmd = [TESTPMD, "--lcores", f"0@{cpu},1@{cpu}", "--no-pci", "-m", str(TESTPMD_DUT_MEM_MB),
               "--file-prefix", DUT_PREFIX, "--log-level", "*:notice",
               "--vdev", f"net_vhost0,iface={self.socks[0]}", "--vdev", f"net_vhost1,iface={self.socks[1]}",
               "--", "--forward-mode=io", "--auto-start", "--nb-cores=1",
               f"--total-num-mbufs={MBUFS}", "--record-core-cycles"]
        self.proc = Proc("testpmd-io DUT", cmd, os.path.join(self.cfg.logdir, f"{tag}-dut.log"), cpu)
        wait_for("the DUT's vhost-user sockets", lambda: all(os.path.exists(s) for s in self.socks), 30, [self.proc])
        return [self.proc]

    def busy(self):
        return None

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def cycles_from_log(self, logpath):
        try:
            with open(logpath, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return None
        m = re.findall(r"CPU cycles/packet=([0-9.]+)", text)
        return float(m[-1]) if m else None


def _ip(base, offset):
    """Dotted quad of the IPv4 address `base` (a dotted quad) + offset."""
    a = [int(x) for x in base.split(".")]
    v = ((a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3]) + offset
    return f"{v >> 24 & 255}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"


def gen_rules(n=10000, allow_at=9990):
    """Address sets and `n` [[rules]] (TOML) for the stateful profile.

    The generator's traffic, UDP 10.254.0.0:1000 -> 10.253.0.0+i:1001 (i < flows; up to
    11.12.66.63 for 1M flows), is allowed by rule number `allow_at` (1-based, id
    "bench-allow") and matches no other rule. The others have mixed shapes: host pairs,
    prefixes of /16 to /32, prefix lists, address sets, `any` on one side, tcp/udp/icmp/
    other protocol numbers, single ports, lists and ranges, every action; 1/8 of them are
    near misses (the bench addresses with another protocol or other ports). Each rule's
    addresses are distinct, so that no rule shadows another (`rampartctl check` warns of
    shadowed rules). Deterministic: the same n and allow_at give the same file."""
    if not 1 <= allow_at <= n:
        raise Fail(f"BENCH_ALLOW_AT must be between 1 and BENCH_RULES ({n}), got {allow_at}")
    rnd = random.Random(20261127)
    nsets = 40
    out = ["# Generated by bench/rig.py gen_rules(): do not edit.", "[sets.addresses]"]
    for s in range(nsets):
        cidrs = [f'"{_ip("172.28.0.0", (s * 64 + j * 16) * 256)}/{rnd.choice((24, 25, 26, 28))}"' for j in range(4)]
        cidrs.append(f'"{_ip("192.168.0.0", s * 1024 + 512 + rnd.randrange(1, 255))}"')
        out.append(f"grp{s:02d} = [{', '.join(cidrs)}]")
    out.append("")

    def ports():
        return rnd.choice(("22", "80,443", "8000-8100", "53,123,161-162", "1000-1100", "3306,5432",
                           "20-21,25,110,143", "5000-6000", "1001", "30000-32767"))

    counters = [0] * 8
    k = 0
    for i in range(1, n + 1):
        r = ["[[rules]]"]
        if i == allow_at:
            r += ['id = "bench-allow"', 'from = ["10.254.0.0/16", "10.253.0.0/16"]',
                  'to = ["10.253.0.0/16", "10.254.0.0/15", "11.0.0.0/12"]',
                  'protocol = "udp"', 'ports = "1001"', 'action = "allow"', ""]
            out += r
            continue
        shape = k % 8
        c = counters[shape]  # this rule's number among its shape: its addresses follow from it
        counters[shape] += 1
        k += 1
        r.append(f'id = "r{i:05d}"')
        if shape == 0:  # host pair, tcp ports
            r += [f'from = ["{_ip("172.16.0.1", c * 3)}"]', f'to = ["{_ip("172.20.0.1", rnd.randrange(1 << 18))}"]',
                  'protocol = "tcp"', f'ports = "{ports()}"']
        elif shape == 1:  # /24 -> host, udp ports; other /16s of 10/8 than the bench's
            r += [f'from = ["{_ip("192.168.0.0", (c % 256) * 256)}/24"]',
                  f'to = ["{_ip("10.0.0.1", c * 13 * 256 + rnd.randrange(250))}"]',
                  'protocol = "udp"', f'ports = "{ports()}"']
        elif shape == 2:  # icmp from a /24 (or /16) to anywhere
            if c % 10 == 9:
                r += [f'from = ["{_ip("10.0.0.0", (c // 10) * 65536)}/16"]']
            else:
                r += [f'from = ["{_ip("10.128.0.0", c * 256)}/24"]']
            r += ['to = ["any"]', 'protocol = "icmp"']
        elif shape == 3:  # anyone to a server, tcp services
            r += ['from = ["any"]', f'to = ["{_ip("198.18.0.1", c * 5)}"]', 'protocol = "tcp"', f'ports = "{ports()}"']
        elif shape == 4:  # /22 -> /20../28, any protocol or a number
            plen = rnd.choice((20, 23, 26, 28))
            dst = _ip("100.64.0.0", rnd.randrange(1 << 22) >> (32 - plen) << (32 - plen))
            r += [f'from = ["{_ip("100.64.0.0", c * 1024)}/22"]', f'to = ["{dst}/{plen}"]',
                  f'protocol = "{rnd.choice(("any", "47", "50", "132", "tcp"))}"']
        elif shape == 5:  # prefix lists, a udp port range that includes the bench's port
            r += [f'from = ["{_ip("172.24.0.0", c * 128)}/25", "{_ip("172.24.0.0", (1 << 17) + c * 64)}/26"]',
                  f'to = ["{_ip("10.0.0.0", rnd.randrange(200) * 65536 + rnd.randrange(256) * 256)}/24", '
                  f'"{_ip("192.0.2.0", rnd.randrange(256))}"]',
                  'protocol = "udp"', 'ports = "1000-1100"']
        elif shape == 6:  # address sets
            a, b = divmod(c % (nsets * nsets), nsets)
            r += [f'from = ["set:grp{a:02d}"]', f'to = ["set:grp{b:02d}"]', 'protocol = "tcp"',
                  f'ports = "{8000 + c // (nsets * nsets)}"']
        else:  # near misses: the bench addresses, another protocol or other ports
            dst = f'{_ip("10.253.0.0", c * 256)}/24'
            kind = c % 4
            r += ['from = ["10.254.0.0/16"]', f'to = ["{dst}"]']
            if kind == 0:
                r += ['protocol = "tcp"', f'ports = "{ports()}"']
            elif kind == 1:
                r += ['protocol = "udp"', f'ports = "{rnd.choice(("53", "2000-2999", "1002-1100", "67-68", "4789", "1-1000"))}"']
            elif kind == 2:
                r += ['protocol = "icmp"']
            else:
                r += ['protocol = "47"']
        r += [f'action = "{rnd.choice(("deny", "deny", "deny", "reject", "allow", "allow", "log"))}"', ""]
        out += r
    return "\n".join(out) + "\n"


class Rampart:
    def __init__(self, cfg, profile):
        self.cfg = cfg
        self.profile = profile
        self.name = "rampart"
        template = os.path.join(BENCH, "configs", f"{profile}.toml")
        if not os.path.exists(template):
            raise Fail(f"no Rampart profile {profile!r}: {template} does not exist")
        with open(template) as f:
            text = f.read()
        text = (text.replace("@DUT_CPU@", str(cfg.dut_cpu)).replace("@WORKDIR@", cfg.workdir)
                .replace("@LOGDIR@", cfg.logdir))
        # A profile may ask for the generated rule set (the stateful profile does).
        self.rules = None
        if re.search(r"^@RULES@\s*$", text, re.M):
            text = re.sub(r"^@RULES@\s*$", lambda _m: gen_rules(cfg.rules, cfg.allow_at), text, count=1, flags=re.M)
            self.rules = cfg.rules
        self.config = os.path.join(cfg.workdir, f"rampart-{profile}.toml")
        with open(self.config, "w") as f:
            f.write(text)
        # What the harness needs from the config: the two vhost sockets (in order), shm, prefix, memory.
        socks = re.findall(r'^\s*socket\s*=\s*"([^"]+\.sock)"', text, re.M)
        self.control_sock = re.search(r'^\[control\][^\[]*?^\s*socket\s*=\s*"([^"]+)"', text, re.M | re.S)
        self.control_sock = self.control_sock.group(1) if self.control_sock else None
        self.socks = [s for s in socks if s != self.control_sock]
        if len(self.socks) != 2:
            raise Fail(f"{template}: expected two vhost-server port sockets, found {self.socks}")
        self.shm = re.search(r'^\s*shm\s*=\s*"([^"]+)"', text, re.M).group(1)
        prefix = re.search(r'^\s*file_prefix\s*=\s*"([^"]+)"', text, re.M).group(1)
        RIG.prefixes.add(prefix)
        mem = re.search(r'^\s*memory_mb\s*=\s*(\d+)', text, re.M)
        self.mem_pages = (int(mem.group(1)) if mem else 512) // 2
        self.dp = self.ctl = None
        self.stats_warned = False
        self.last_stats = None
        self.sleeps = None  # Σ worker idle sleeps at the last busy()
        RIG.cleanup_paths.update(self.socks + [self.shm] + ([self.control_sock] if self.control_sock else []))

    def start(self, tag, flows):
        RIG.clean_files()  # stale sockets / shm would confuse the DUT
        cpu = self.cfg.dut_cpu
        self.dp = Proc("rampart-dataplane", [DATAPLANE, "--config", self.config],
                       os.path.join(self.cfg.logdir, f"{tag}-dataplane.log"), cpu)
        wait_for(f"the shared-memory segment {self.shm}", lambda: os.path.exists(self.shm), 30, [self.dp])
        self.ctl = Proc("rampartctl run", [RAMPARTCTL, "run", "--config", self.config],
                        os.path.join(self.cfg.logdir, f"{tag}-control.log"), cpu)
        # Compiling 10k rules takes a while on one shared CPU; a policy the dataplane
        # rejects never brings the ports up: fail at once, with the reason.
        def ready():
            if all(os.path.exists(s) for s in self.socks):
                return True
            try:
                with open(self.dp.logpath, "rb") as f:
                    bad = re.search(rb"policy generation \d+ rejected.*", f.read())
            except OSError:
                bad = None
            if bad:
                raise Fail(f"rampart:{self.profile}: the dataplane rejected the policy "
                           f"({self.config}): {bad.group(0).decode('utf-8', 'replace')}")
            return False

        wait_for("the vhost-user sockets (policy published, ports attached)", ready,
                 30 if self.rules is None else 180, [self.dp, self.ctl], 0.25)
        return [self.dp, self.ctl]

    def busy(self):
        """(Σ busy_cycles, Σ busy_packets) over the workers, from `rampartctl stats --json`."""
        try:
            r = subprocess.run([RAMPARTCTL, "--config", self.config, "stats", "--json"],
                               capture_output=True, text=True, timeout=10)
            if r.returncode != 0:
                raise ValueError(f"exit {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
            j = json.loads(r.stdout)
            # Shape: {"workers":[...]} or the admin reply {"stats":{"workers":[...]}, ...}.
            self.last_stats = j.get("stats", j)
            ws = j["workers"] if "workers" in j else j["stats"]["workers"]
            if not ws:
                raise ValueError("no workers in the stats reply")
            self.sleeps = sum(int(w["sleeps"]) for w in ws)
            return sum(int(w["busy_cycles"]) for w in ws), sum(int(w["busy_packets"]) for w in ws)
        except (ValueError, KeyError, TypeError, subprocess.TimeoutExpired, OSError) as e:
            if not self.stats_warned:
                log(f"warning: no busy cycles from `rampartctl stats --json`: {e}")
                self.stats_warned = True
            return None

    def end_window(self, flows):
        """Sanity check of a stateful profile after the window: every flow tracked, none refused."""
        st = self.last_stats
        if self.rules is None or not isinstance(st, dict):
            return
        ft = st.get("flow_table", {})
        drops = {k: v for k, v in st.get("drops", {}).items() if v and k != "tx_full"}
        live = ft.get("live")
        if live is None or live < flows or drops:
            log(f"warning: {self.name}:{self.profile}: {live} flows tracked for {flows} generated, "
                f"drops {drops or 'none'} (expected every flow allowed by rule bench-allow)")

    def stop(self):
        for p in (self.ctl, self.dp):
            if p is not None:
                p.stop()
        self.dp = self.ctl = None
        RIG.clean_files()


def system_ovs_vswitchd():
    """Pid of a running system-wide ovs-vswitchd (the Debian service's pidfile), or None."""
    try:
        with open("/run/openvswitch/ovs-vswitchd.pid") as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


class OvsCt:
    """OVS-DPDK with conntrack (DESIGN.md §8): ovsdb-server and ovs-vswitchd-dpdk started by
    hand with their own run directory, database and pidfiles under $BENCH_WORKDIR/ovs (the
    OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR/OVS_SYSCONFDIR of every OVS command the rig runs), so a
    system-wide OVS, if any, is never touched. Fresh database for every measurement."""

    profile = "ct"

    def __init__(self, cfg, maxsleep=None):
        """`maxsleep`: other_config:pmd-maxsleep (µs), OVS's idle back-off; None leaves OVS's default (0: none)."""
        self.maxsleep = maxsleep
        if OVS_VSWITCHD is None:
            raise Fail("DUT ovs-ct needs OVS-DPDK: scripts/deps.sh bench (as root; `make bench` runs it) "
                       "installs openvswitch-switch-dpdk (/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk)")
        for b in (OVSDB_SERVER, OVSDB_TOOL, OVS_VSCTL, OVS_OFCTL, OVS_APPCTL, OVS_SCHEMA):
            if not os.path.exists(b):
                raise Fail(f"DUT ovs-ct: {b} is missing (package openvswitch-switch; scripts/deps.sh bench)")
        system_vswitchd = system_ovs_vswitchd()
        if system_vswitchd:
            # The rig never touches a system OVS (see the class comment), but it shares the machine.
            log(f"warning: a system ovs-vswitchd (pid {system_vswitchd}) is running; the rig's own OVS does "
                "not use it, but it takes CPU (and, with DPDK enabled in its database, hugepages and "
                "PMD cores): `service openvswitch-switch stop` for clean numbers")
        self.cfg = cfg
        self.name = "ovs-ct"
        self.dir = os.path.join(cfg.workdir, "ovs")
        self.db = os.path.join(self.dir, "conf.db")
        self.dbsock = os.path.join(self.dir, "db.sock")
        self.ctl = os.path.join(self.dir, "ovs-vswitchd.ctl")
        # dpdkvhostuser ports are vhost-user servers whose sockets OVS creates in its
        # vhost-sock-dir, by default its run directory, named after the port.
        self.ports = ["vhu0", "vhu1"]
        self.socks = [os.path.join(self.dir, p) for p in self.ports]
        self.mem_pages = OVS_MEM_MB // 2
        self.env = dict(CHILD_ENV, OVS_RUNDIR=self.dir, OVS_DBDIR=self.dir, OVS_LOGDIR=self.dir,
                        OVS_SYSCONFDIR=self.dir)
        self.db_proc = self.vsd = None
        self.stats_warned = False
        RIG.prefixes.add(OVS_PREFIX)
        RIG.cleanup_dirs.add(self.dir)

    def _run(self, cmd, what, timeout=60):
        # Pinned to the DUT CPU like the daemons, so that setting up never disturbs the generator.
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env,
                               preexec_fn=lambda: _child_setup(self.cfg.dut_cpu))
        except subprocess.TimeoutExpired:
            raise Fail(f"ovs-ct: {what} timed out after {timeout} s: {' '.join(cmd)}")
        if r.returncode != 0:
            raise Fail(f"ovs-ct: {what} failed ({' '.join(cmd)}): {(r.stderr or r.stdout).strip()[-500:]}"
                       + (f"; tail of {self.vsd.logpath}:\n{tail(self.vsd.logpath)}" if self.vsd else ""))
        return r.stdout

    def vsctl(self, *args, what="ovs-vsctl", timeout=60):
        return self._run([OVS_VSCTL, f"--db=unix:{self.dbsock}", f"--timeout={timeout}", *args], what, timeout + 5)

    def appctl(self, *args, timeout=10):
        return self._run([OVS_APPCTL, "-t", self.ctl, f"--timeout={timeout}", *args],
                         f"ovs-appctl {args[0]}", timeout + 5)

    def start(self, tag, flows):
        RIG.clean_files()
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        cpu = self.cfg.dut_cpu
        log_file = lambda n: os.path.join(self.cfg.logdir, f"{tag}-{n}.log")
        self._run([OVSDB_TOOL, "create", self.db, OVS_SCHEMA], "ovsdb-tool create")
        self.db_proc = Proc("ovsdb-server", [OVSDB_SERVER, self.db, f"--remote=punix:{self.dbsock}",
                                             f"--pidfile={self.dir}/ovsdb-server.pid",
                                             f"--unixctl={self.dir}/ovsdb-server.ctl", "--no-chdir",
                                             f"--log-file={log_file('ovsdb')}", "-vconsole:off", "-vsyslog:off"],
                            log_file("ovsdb-console"), cpu, env=self.env)
        wait_for("ovsdb-server's socket", lambda: os.path.exists(self.dbsock), 30, [self.db_proc])
        mask = hex(1 << cpu)
        self.vsctl("--no-wait", "init", what="ovs-vsctl init")
        self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                   "other_config:dpdk-init=true",
                   f"other_config:dpdk-lcore-mask={mask}",
                   f"other_config:pmd-cpu-mask={mask}",
                   f"other_config:dpdk-socket-mem={OVS_MEM_MB}",
                   f"other_config:dpdk-socket-limit={OVS_MEM_MB}",
                   f'other_config:dpdk-extra="--single-file-segments --no-pci --file-prefix {OVS_PREFIX}"',
                   *([f"other_config:pmd-maxsleep={self.maxsleep}"] if self.maxsleep else []),
                   what="ovs-vsctl set other_config")
        self.vsd = Proc("ovs-vswitchd-dpdk", [OVS_VSWITCHD, f"unix:{self.dbsock}",
                                              f"--pidfile={self.dir}/ovs-vswitchd.pid",
                                              f"--unixctl={self.ctl}", "--no-chdir",
                                              f"--log-file={log_file('dut')}", "-vconsole:off", "-vsyslog:off",
                                              "-vfile:info"],
                        log_file("vswitchd-console"), cpu, env=self.env)
        procs = [self.db_proc, self.vsd]

        def dpdk_up():
            if not os.path.exists(self.ctl):
                return False
            r = subprocess.run([OVS_VSCTL, f"--db=unix:{self.dbsock}", "--timeout=5", "get", "Open_vSwitch", ".",
                                "dpdk_initialized"], capture_output=True, text=True, env=self.env)
            return r.stdout.strip() == "true"

        wait_for("ovs-vswitchd-dpdk to initialise DPDK (dpdk_initialized=true)", dpdk_up, 60, procs, 0.25)
        self.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev",
                   "fail_mode=secure", what="ovs-vsctl add-br")
        for i, p in enumerate(self.ports):
            self.vsctl("add-port", "br0", p, "--", "set", "Interface", p, "type=dpdkvhostuser",
                       f"ofport_request={i + 1}", what=f"ovs-vsctl add-port {p}")
        ofports = [self.vsctl("get", "Interface", p, "ofport").strip() for p in self.ports]
        if ofports != ["1", "2"]:
            raise Fail(f"ovs-ct: ports {self.ports} got ofports {ofports}, expected 1 and 2")
        flows_file = os.path.join(self.dir, "flows.txt")
        with open(flows_file, "w") as f:
            f.write(OVS_FLOWS)
        self._run([OVS_OFCTL, "del-flows", "br0"], "ovs-ofctl del-flows")
        self._run([OVS_OFCTL, "add-flows", "br0", flows_file], "ovs-ofctl add-flows")
        # Conntrack must hold every flow (the default limit is 3M in OVS 3.1; set it anyway).
        maxconns = max(2 * flows, 1000000)
        self.appctl("dpctl/ct-set-maxconns", str(maxconns))
        wait_for("OVS's dpdkvhostuser sockets", lambda: all(os.path.exists(s) for s in self.socks), 30, procs)
        return procs

    def begin_window(self):
        try:
            self.appctl("dpif-netdev/pmd-stats-clear")
        except Fail as e:
            log(f"warning: {e}")

    def busy(self):
        """(Σ processing cycles, Σ packets received) over the PMD threads, from pmd-stats-show."""
        try:
            text = self.appctl("dpif-netdev/pmd-stats-show")
            cycles = packets = 0
            seen = False
            for section in re.split(r"^(?=\S)", text, flags=re.M):
                if not section.startswith("pmd thread"):
                    continue  # the main thread's stats are not the datapath's
                pk = re.search(r"^\s*packets received:\s*(\d+)", section, re.M)
                cy = re.search(r"^\s*processing cycles:\s*(\d+)", section, re.M)
                if not (pk and cy):
                    raise ValueError(f"unexpected pmd-stats-show output: {section[:300]!r}")
                packets += int(pk.group(1))
                cycles += int(cy.group(1))
                seen = True
            if not seen:
                raise ValueError("no pmd thread in pmd-stats-show")
            return cycles, packets
        except (Fail, ValueError) as e:
            if not self.stats_warned:
                log(f"warning: no busy cycles from ovs-appctl dpif-netdev/pmd-stats-show: {e}")
                self.stats_warned = True
            return None

    def end_window(self, flows):
        """Sanity check after the window: conntrack holds every flow."""
        try:
            n = int(self.appctl("dpctl/ct-get-nconns").strip())
        except (Fail, ValueError) as e:
            log(f"warning: ovs-ct: dpctl/ct-get-nconns failed: {e}")
            return
        if n < flows:
            log(f"warning: ovs-ct: conntrack holds {n} connections for {flows} generated flows")

    def stop(self):
        for p in (self.vsd, self.db_proc):
            if p is not None:
                p.stop()
        self.vsd = self.db_proc = None
        RIG.clean_files()


# --------------------------------------------------------------------------
# One measurement


def start_generator(cfg, socks, flows, tag):
    cpu = cfg.gen_cpu
    cmd = [TESTPMD, "--lcores", f"0@{cpu},1@{cpu}", "--no-pci", "--single-file-segments",
           "-m", str(GEN_MEM_MB), "--file-prefix", GEN_PREFIX, "--log-level", "*:notice",
           "--vdev", f"net_virtio_user0,path={socks[0]},queue_size={cfg.queue_size}{cfg.virtio_args}",
           "--vdev", f"net_virtio_user1,path={socks[1]},queue_size={cfg.queue_size}{cfg.virtio_args}",
           "--", "--forward-mode=flowgen", f"--flowgen-flows={flows}", "--txpkts=64",
           f"--burst={cfg.burst}", "--nb-cores=1", f"--total-num-mbufs={MBUFS}",
           f"--rxd={cfg.queue_size}", f"--txd={cfg.queue_size}"]
    return Proc("generator", cmd, os.path.join(cfg.logdir, f"{tag}-gen.log"), cpu)


def measure(cfg, dut, flows, tag):
    ensure_hugepages(GEN_MEM_MB // 2 + dut.mem_pages)
    gen = None
    dut_procs = []
    try:
        dut_procs = dut.start(tag, flows)
        gen = start_generator(cfg, dut.socks, flows, tag)
        procs = dut_procs + [gen]
        telem = os.path.join(DPDK_RUNDIR, GEN_PREFIX, "dpdk_telemetry.v2")

        def forwarding():
            if not os.path.exists(telem):
                return False
            try:
                return all(rx > 0 for rx, _, _ in port_stats(GEN_PREFIX, attempts=1)[0])
            except (Fail, KeyError):
                return False

        wait_for("packets to come back through the DUT on both generator ports", forwarding, 30, procs, 0.25)
        # Warm-up: BENCH_WARMUP s, and at least until the generator has sent every flow twice
        # (flowgen's flow index advances per packet across both ports), so that the window
        # measures established flows, not flow creation, at 1M flows on a slow DUT.
        t_warm = time.monotonic()
        deadline = t_warm + max(cfg.warmup, cfg.warmup_max)
        while True:
            time.sleep(0.5)
            for p in procs:
                p.check()
            now = time.monotonic()
            if now - t_warm < cfg.warmup:
                continue
            sent = sum(tx for _, tx, _ in port_stats(GEN_PREFIX)[0])
            if sent >= 2 * flows:
                break
            if now >= deadline:
                log(f"warning: warm-up ended after {now - t_warm:.0f} s (BENCH_WARMUP_MAX) with only {sent} packets "
                    f"sent for {flows} flows: the window includes flow creation")
                break

        if hasattr(dut, "begin_window"):
            dut.begin_window()  # ovs-ct: pmd-stats-clear
        b0 = dut.busy()
        z0 = getattr(dut, "sleeps", None)
        th0 = threads_snapshot(dut_procs)
        c0, j0 = cpu_snapshot(), sum(p.cpu_jiffies() for p in procs)
        s0, t0 = port_stats(GEN_PREFIX)
        deadline = t0 + cfg.seconds
        while time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            for p in procs:
                p.check()
        s1, t1 = port_stats(GEN_PREFIX)
        c1, j1 = cpu_snapshot(), sum(p.cpu_jiffies() for p in procs)
        th1 = threads_snapshot(dut_procs)
        b1 = dut.busy()
        z1 = getattr(dut, "sleeps", None)
        if hasattr(dut, "end_window"):
            dut.end_window(flows)
    finally:
        if gen is not None:
            gen.stop()
        dut.stop()

    secs = t1 - t0
    rx = sum(a[0] for a in s1) - sum(a[0] for a in s0)
    tx = sum(a[1] for a in s1) - sum(a[1] for a in s0)
    if rx <= 0:
        raise Fail(f"{dut.name}: the generator received no packets during the window (sent {tx}); "
                   f"logs in {cfg.logdir}")
    cpp = None
    if b0 is not None and b1 is not None and b1[1] > b0[1]:
        cpp = (b1[0] - b0[0]) / (b1[1] - b0[1])
    if isinstance(dut, TestpmdIo):
        cpp = dut.cycles_from_log(os.path.join(cfg.logdir, f"{tag}-dut.log"))
    busy, total, steal = (c1[0] - c0[0], c1[1] - c0[1], c1[2] - c0[2])
    other = max(0.0, (busy - (j1 - j0)) / total * 100) if total > 0 else 0.0
    return {
        "mpps": rx / secs / 1e6,
        "tx_mpps": tx / secs / 1e6,
        "loss": 1.0 - rx / tx if tx > 0 else 0.0,
        "cpp": cpp,
        "other_cpu": other,
        "steal": steal / total * 100 if total > 0 else 0.0,
        "secs": secs,
        "dut_cpu_other": threads_cpu(th0, th1, t1 - t0)[1],
        "control_cpu": process_cpu(getattr(dut, "ctl", None), th0, th1, t1 - t0),
        "sleeps": z1 - z0 if z0 is not None and z1 is not None else None,
    }


# --------------------------------------------------------------------------
# Idle cost and wake-up latency (issue 15)

# The probes' addresses and ports: allowed by every profile (the stateful one's rule
# "bench-allow" is for UDP 10.254.0.0/16 -> 10.253.0.0/16 port 1001, the generator's traffic).
PROBE_ARGS = ["--mac", "02:00:00:00:fe:01", "--to", "02:00:00:00:fd:01", "--ips", "10.254.0.1,10.253.0.1",
              "--sport", "1000", "--dport", "1001"]


def idle_phase(cfg, dut, tag):
    """The DUT with no guest connected for BENCH_IDLE_SECONDS: % of a core used by its
    forwarding threads, by everything else, and by Rampart's control process alone; then
    the wake-up latency of single packets across its two ports after silences."""
    ensure_hugepages(dut.mem_pages + 64)
    try:
        procs = dut.start(tag, 1)
        time.sleep(3.0)  # past start-up: policy applied, ports attached
        for p in procs:
            p.check()
        a, ta = threads_snapshot(procs), time.monotonic()
        deadline = ta + cfg.idle_seconds
        while time.monotonic() < deadline:
            time.sleep(0.5)
            for p in procs:
                p.check()
        b, tb = threads_snapshot(procs), time.monotonic()
        fwd, other = threads_cpu(a, b, tb - ta)
        control = process_cpu(getattr(dut, "ctl", None), a, b, tb - ta)
        r = {"idle_cpu": fwd + other, "idle_worker_cpu": fwd, "idle_control_cpu": control}
        r.update(wake_latency(cfg, dut, tag, procs))
        return r
    finally:
        dut.stop()


def wake_latency(cfg, dut, tag, procs):
    """rampart-guestsim --latency-peer on the generator CPU: BENCH_PROBES probes from the
    DUT's first port to its second, each after BENCH_PROBE_GAP s of silence."""
    report = os.path.join(cfg.logdir, f"{tag}-latency.json")
    cmd = [GUESTSIM, "--socket", dut.socks[0], "--latency-peer", dut.socks[1], "--probes", str(cfg.probes),
           "--gap", str(cfg.probe_gap), "--cpu", str(cfg.gen_cpu), "--report", report] + PROBE_ARGS
    g = Proc("rampart-guestsim (latency)", cmd, os.path.join(cfg.logdir, f"{tag}-latency.log"), cfg.gen_cpu)
    try:
        timeout = 60 + cfg.probes * (cfg.probe_gap + 0.2)
        try:
            g.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Fail(f"{dut.name}: the wake-up probes did not finish within {timeout:.0f} s; {g.logpath}")
        for p in procs:
            p.check()
        if g.p.returncode != 0:
            raise Fail(f"{dut.name}: rampart-guestsim --latency-peer exited with {g.p.returncode}; "
                       f"tail of {g.logpath}:\n{tail(g.logpath)}")
        with open(report) as f:
            j = json.load(f)
    finally:
        g.stop()
    return {"wake_p99": j["p99_us"], "wake_p50": j["p50_us"], "wake_max": j["max_us"],
            "probes": j["probes"], "lost": j["lost"]}


def idle_duts(duts, cfg):
    """The DUTs of the idle phase: each Rampart profile measured, and OVS as it comes and
    with pmd-maxsleep (BENCH_OVS_MAXSLEEP); testpmd io polls by design and is left out."""
    out = []
    for d in duts:
        if isinstance(d, Rampart):
            out.append((f"{d.name} {d.profile}", d))
        elif isinstance(d, OvsCt):
            out.append(("ovs-ct default", d))
            if cfg.ovs_maxsleep:
                out.append((f"ovs-ct pmd-maxsleep-{cfg.ovs_maxsleep}us", OvsCt(cfg, cfg.ovs_maxsleep)))
    return out


# --------------------------------------------------------------------------


class Cfg:
    pass


def parse_duts(spec, cfg):
    duts = []
    for word in spec.split():
        if word == "testpmd-io":
            duts.append(TestpmdIo(cfg))
        elif word == "rampart" or word.startswith("rampart:"):
            duts.append(Rampart(cfg, word.partition(":")[2] or "pass-through"))
        elif word == "ovs-ct":
            duts.append(OvsCt(cfg))
        else:
            raise Fail(f"unknown DUT {word!r} in BENCH_DUTS (known: testpmd-io, rampart, rampart:PROFILE, ovs-ct)")
    if not duts:
        raise Fail("BENCH_DUTS is empty")
    return duts


def fmt(x, spec, na="na"):
    return na if x is None else format(x, spec)


def main():
    cfg = Cfg()
    cfg.seconds = env_float("BENCH_SECONDS", 10)
    cfg.warmup = env_float("BENCH_WARMUP", 3)
    cfg.runs = env_int("BENCH_RUNS", 3)
    cfg.gen_cpu = env_int("BENCH_GEN_CPU", 0)
    cfg.dut_cpu = env_int("BENCH_DUT_CPU", 1)
    cfg.queue_size = env_int("BENCH_QUEUE_SIZE", 1024)
    cfg.burst = env_int("BENCH_BURST", 32)
    cfg.virtio_args = os.environ.get("BENCH_VIRTIO_ARGS", "")
    cfg.max_other = env_float("BENCH_MAX_OTHER", 10)
    cfg.quiet_wait = env_float("BENCH_QUIET_WAIT", 20)
    cfg.retries = env_int("BENCH_RETRIES", 1)
    cfg.warmup_max = env_float("BENCH_WARMUP_MAX", 120)
    cfg.rules = env_int("BENCH_RULES", 10000)
    cfg.allow_at = env_int("BENCH_ALLOW_AT", min(9990, cfg.rules))
    cfg.idle_seconds = env_float("BENCH_IDLE_SECONDS", 30)
    cfg.probes = env_int("BENCH_PROBES", 20)
    cfg.probe_gap = env_float("BENCH_PROBE_GAP", 1.0)
    cfg.ovs_maxsleep = env_int("BENCH_OVS_MAXSLEEP", 800)
    if cfg.virtio_args and not cfg.virtio_args.startswith(","):
        cfg.virtio_args = "," + cfg.virtio_args
    cfg.workdir = os.path.abspath(os.environ.get("BENCH_WORKDIR", "/tmp/rampart-bench"))
    build = os.environ.get("BENCH_BUILD", "missing")
    global NICE
    NICE = env_int("BENCH_NICE", 0)
    try:
        flows_list = [int(x) for x in os.environ.get("BENCH_FLOWS", "1000 100000 1000000").split()]
    except ValueError:
        die("BENCH_FLOWS must be a list of integers")
    if os.geteuid() != 0:
        die("the rig needs root (hugepages, vhost-user, DPDK)")
    if not os.access(TESTPMD, os.X_OK):
        die("dpdk-testpmd not found (Debian package dpdk)")
    if cfg.runs < 1 or cfg.seconds <= 0 or not flows_list or any(f < 1 for f in flows_list):
        die("BENCH_RUNS >= 1, BENCH_SECONDS > 0 and flow counts >= 1 are required")
    ncpu = os.cpu_count() or 1
    if cfg.gen_cpu >= ncpu or cfg.dut_cpu >= ncpu:
        die(f"BENCH_GEN_CPU/BENCH_DUT_CPU must be < {ncpu}")

    os.makedirs(cfg.workdir, exist_ok=True)
    lock = open(os.path.join(cfg.workdir, ".lock"), "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        die(f"another bench/rig.py is running (lock {cfg.workdir}/.lock)")
    RIG.workdir = cfg.workdir
    for old in sorted(glob.glob(os.path.join(cfg.workdir, "logs", "*")))[:-9]:
        shutil.rmtree(old, ignore_errors=True)  # keep the last ten runs' logs
    cfg.logdir = os.path.join(cfg.workdir, "logs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(cfg.logdir, exist_ok=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    results = {}  # (dut name, profile, flows) -> [run dicts]
    idle = {}  # idle-phase label -> idle_phase() dict
    status = 0
    try:
        RIG.reap_orphans()
        spec = os.environ.get("BENCH_DUTS")
        if spec is None:
            spec = "testpmd-io rampart rampart:stateful"
            if OVS_VSWITCHD:
                spec += " ovs-ct"
            else:
                log("note: OVS-DPDK is not installed (scripts/deps.sh bench, which `make bench` runs, "
                    "installs it): measuring without the ovs-ct DUT")
        duts = parse_duts(spec, cfg)
        RIG.clean_files()
        if any(isinstance(d, Rampart) for d in duts):
            build_rampart(build)
        machine_summary(cfg)
        log(f"{len(duts)} DUT(s) x flows {flows_list} x {cfg.runs} run(s); window {cfg.seconds:g} s after "
            f"{cfg.warmup:g} s warm-up; generator CPU {cfg.gen_cpu}, DUT CPU {cfg.dut_cpu}; logs {cfg.logdir}")
        print(f"{'dut':<12} {'profile':<13} {'flows':>7} {'run':>3} {'rx Mpps':>8} {'tx Mpps':>8} "
              f"{'loss%':>6} {'cyc/pkt':>8} {'other%':>6}", flush=True)
        for flows in flows_list:
            for run in range(1, cfg.runs + 1):
                for dut in duts:
                    tag = f"{dut.name}-{dut.profile}-f{flows}-r{run}"
                    best = None
                    for attempt in range(cfg.retries + 1):
                        wait_quiet(cfg)
                        r = measure(cfg, dut, flows, tag + (f"-a{attempt}" if attempt else ""))
                        noisy = r["other_cpu"] > cfg.max_other
                        mark = f"  <- noisy: other processes used {r['other_cpu']:.0f}% of the CPUs" if noisy else ""
                        if noisy and attempt < cfg.retries:
                            mark += ", repeating"
                        print(f"{dut.name:<12} {dut.profile:<13} {flows:>7} {run:>3} {r['mpps']:>8.2f} "
                              f"{r['tx_mpps']:>8.2f} {r['loss'] * 100:>6.2f} {fmt(r['cpp'], '.0f'):>8} "
                              f"{r['other_cpu']:>6.1f}{mark}", flush=True)
                        if best is None or r["other_cpu"] < best["other_cpu"]:
                            best = r
                        if not noisy:
                            break
                    results.setdefault((dut.name, dut.profile, flows), []).append(best)
        if cfg.idle_seconds > 0:
            print(f"\n{'idle phase':<34} {'idle%':>6} {'worker%':>7} {'ctl%':>5} {'wake p50':>8} {'p99':>6} "
                  f"{'max':>6} {'lost':>4}  (µs; % of a core)", flush=True)
            for label, dut in idle_duts(duts, cfg):
                wait_quiet(cfg)
                r = idle_phase(cfg, dut, f"idle-{label.replace(' ', '-')}")
                idle[label] = r
                print(f"{label:<34} {r['idle_cpu']:>6.2f} {r['idle_worker_cpu']:>7.2f} "
                      f"{fmt(r['idle_control_cpu'], '.2f'):>5} {fmt(r['wake_p50'], '.0f'):>8} "
                      f"{fmt(r['wake_p99'], '.0f'):>6} {fmt(r['wake_max'], '.0f'):>6} {r['lost']:>4}", flush=True)
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping everything", file=sys.stderr)
        status = 130
    except Fail as e:
        print(f"bench: error: {e}", file=sys.stderr)
        status = 1
    except Exception:
        import traceback
        traceback.print_exc()
        print("bench: error: unexpected failure (above); everything the rig started is stopped", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let cleanup finish
        RIG.stop_all()
        try:
            os.unlink(os.path.join(cfg.workdir, "pids.json"))
        except OSError:
            pass
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    if status:
        sys.exit(status)

    # Summary: medians, ratios against testpmd io in the same case.
    print()
    print(f"{'dut':<12} {'profile':<13} {'flows':>7} {'runs (Mpps)':<24} {'median':>7} {'ratio':>6} {'cyc/pkt':>8} "
          f"{'other%':>6}")
    lines = []
    for flows in flows_list:
        ref = results.get(("testpmd-io", "io", flows))
        ref_med = statistics.median(r["mpps"] for r in ref) if ref else None
        ovs = results.get(("ovs-ct", "ct", flows))
        ovs_med = statistics.median(r["mpps"] for r in ovs) if ovs else None
        for dut in duts:
            rs = results[(dut.name, dut.profile, flows)]
            med = statistics.median(r["mpps"] for r in rs)
            cpps = [r["cpp"] for r in rs if r["cpp"] is not None]
            cpp = statistics.median(cpps) if cpps else None
            ratio = med / ref_med if ref_med else None
            runs = " ".join(f"{r['mpps']:.2f}" for r in rs)
            print(f"{dut.name:<12} {dut.profile:<13} {flows:>7} {runs:<24} {med:>7.2f} {fmt(ratio, '.3f'):>6} "
                  f"{fmt(cpp, '.0f'):>8} {statistics.median(r['other_cpu'] for r in rs):>6.1f}")
            line = (f"RESULT dut={dut.name} profile={dut.profile} flows={flows} mpps={med:.2f} "
                    f"ratio_vs_testpmd_io={fmt(ratio, '.3f')} cycles_per_packet={fmt(cpp, '.0f')}")
            if dut.name == "rampart" and dut.profile == "stateful" and ovs_med:
                line += f" ratio_vs_ovs_ct={med / ovs_med:.3f}"
            line += f" dut_cpu_other={statistics.median(r['dut_cpu_other'] for r in rs):.2f}"
            ctl = [r["control_cpu"] for r in rs if r["control_cpu"] is not None]
            if ctl:
                line += f" control_cpu={max(ctl):.2f}"
            sleeps = [r["sleeps"] for r in rs if r["sleeps"] is not None]
            if sleeps:
                line += f" sleeps={max(sleeps)}"
            lines.append(line)
    for label, r in idle.items():
        name, _, profile = label.partition(" ")
        lines.append(f"RESULT dut={name} profile={profile} idle_cpu={r['idle_cpu']:.2f} "
                     f"idle_worker_cpu={r['idle_worker_cpu']:.2f} idle_control_cpu={fmt(r['idle_control_cpu'], '.2f')} "
                     f"idle_seconds={cfg.idle_seconds:g}")
        lines.append(f"RESULT dut={name} profile={profile} wake_latency_us={fmt(r['wake_p99'], '.0f')} "
                     f"wake_p50_us={fmt(r['wake_p50'], '.0f')} wake_max_us={fmt(r['wake_max'], '.0f')} "
                     f"probes={r['probes']} lost={r['lost']} gap_s={cfg.probe_gap:g}")
    print()
    for l in lines:
        print(l)
    return 0


if __name__ == "__main__":
    sys.exit(main())
