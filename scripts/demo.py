#!/usr/bin/env python3
"""`make demo`: Rampart with its built-in config and four simulated guests.

guest-a sends to guest-b (allowed, switched in segment "lan"), with a malformed
frame now and then (dropped, counted by reason, logged); guest-c is disabled by
policy, so everything it sends is dropped and counted. guest-b is a real
dpdk-testpmd (rxonly) on a virtio_user port; guest-a and guest-c are
rampart-guestsim, which can send at a set rate; guest-d (rampart-guestsim too) floods
from guest-a's address: its limit throttles most of it, the guard drops the rest as
spoof_ip, and guest-a keeps its rate; guest-e's requests carry a signature (dropped,
alerted), guest-f's too on a monitor port (forwarded, would-drop); guest-g sends land packets
(a protocol anomaly: dropped, counted, logged). Prints a live per-guest summary
until Ctrl-C, or for DURATION seconds, then stops everything it started.
"""
import json, os, signal, subprocess, sys, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
RUN = "/run/rampart-demo"
CFG = os.path.join(RUN, "rampart.toml")
procs = []


def start(name, argv):
    log = open(os.path.join(RUN, name + ".log"), "w")
    # stdin is a pipe we never close: testpmd exits at end of input.
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    procs.append((name, p))
    return p


def stop_all():
    for name, p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.time() + 10
    for name, p in reversed(procs):
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def ctl(*args):
    out = subprocess.run([os.path.join(BIN, "rampartctl"), "--config", CFG, "--json", *args], capture_output=True, text=True)
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {"ok": False, "error": out.stderr.strip()}


def wait(what, cond, timeout=30):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        for name, p in procs:
            if p.poll() is not None:
                sys.exit(f"demo: {name} exited; see {RUN}/{name}.log:\n" + open(f"{RUN}/{name}.log").read()[-2000:])
        time.sleep(0.1)
    sys.exit(f"demo: timed out waiting for {what}")


def cpu_ns(pid):
    """On-CPU ns of every thread of a process (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(open(f"/proc/{pid}/task/{task}/schedstat").read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def show_idle(secs=5.0):
    """The guests stop sending: the worker gives its core back (it waits for a guest's
    kick), and both processes together use about 1 % of a core."""
    for name, p in procs:
        if name.startswith(("guest-a", "guest-c", "guest-d", "guest-e", "guest-f")):
            p.send_signal(signal.SIGTERM)
            p.wait(10)
    time.sleep(1.0)
    ours = [p.pid for name, p in procs if name in ("dataplane", "control")]
    sleeps = lambda: sum(w["sleeps"] for w in ctl("stats").get("stats", {}).get("workers", []))
    z0, c0, t0 = sleeps(), sum(cpu_ns(pid) for pid in ours), time.time()
    time.sleep(secs)
    z1, c1, t1 = sleeps(), sum(cpu_ns(pid) for pid in ours), time.time()
    print(f"idle for {secs:.0f} s (senders stopped): the worker gave its core back {z1 - z0} times; dataplane + "
          f"control process used {(c1 - c0) / (t1 - t0) / 1e7:.2f} % of a core (idle_interrupts, idle_sleep_max_us)")


def main():
    duration = float(os.environ.get("DURATION", "0"))
    os.makedirs(RUN, mode=0o750, exist_ok=True)
    config = subprocess.run([os.path.join(BIN, "rampartctl"), "default-config"], capture_output=True, text=True, check=True).stdout
    open(CFG, "w").write(config)
    # The event log is appended to across runs: this run's records start here.
    eve_path = os.path.join(RUN, "log", "eve.json")
    eve_start = os.path.getsize(eve_path) if os.path.exists(eve_path) else 0
    metrics = "127.0.0.1:9477"
    start("dataplane", [os.path.join(BIN, "rampart-dataplane"), "--config", CFG])
    wait("the dataplane", lambda: os.path.exists("/dev/shm/rampart-demo"))
    start("control", [os.path.join(BIN, "rampartctl"), "--config", CFG, "run"])
    wait("the policy to be applied", lambda: ctl("status").get("status", {}).get("applied_generation", 0) >= 1)
    sock = lambda g: os.path.join(RUN, g + ".sock")
    start("guest-b", ["dpdk-testpmd", "--lcores", "0@0,1@0", "--no-pci", "--single-file-segments", "--in-memory",
                      "--file-prefix", "demo-guest-b", "-m", "128",
                      "--vdev", f"net_virtio_user0,path={sock('guest-b')},mac=52:54:00:00:00:0b",
                      "--log-level", "*:error", "--", "--forward-mode=rxonly", "--auto-start", "--stats-period", "0"])
    guestsim = os.path.join(BIN, "rampart-guestsim")
    start("guest-a", [guestsim, "--socket", sock("guest-a"), "--mac", "52:54:00:00:00:0a", "--to", "52:54:00:00:00:0b",
                      "--rate", "20000", "--flows", "64", "--junk-every", "5000", "--delay", "1"])
    start("guest-c", [guestsim, "--socket", sock("guest-c"), "--mac", "52:54:00:00:00:0c", "--to", "52:54:00:00:00:0b",
                      "--rate", "5000", "--delay", "1"])
    start("guest-d", [guestsim, "--socket", sock("guest-d"), "--mac", "52:54:00:00:00:0d", "--to", "52:54:00:00:00:0b",
                      "--ips", "10.0.0.10,10.0.0.11", "--rate", "5000", "--delay", "1"])
    start("guest-e", [guestsim, "--socket", sock("guest-e"), "--mac", "52:54:00:00:00:0e", "--to", "52:54:00:00:00:0b",
                      "--dport", "8080", "--payload", "GET /Admin/../../etc/passwd HTTP/1.0", "--rate", "100", "--delay", "1"])
    start("guest-f", [guestsim, "--socket", sock("guest-f"), "--mac", "52:54:00:00:00:0f", "--to", "52:54:00:00:00:0b",
                      "--dport", "8080", "--payload", "GET /etc/passwd HTTP/1.0", "--rate", "50", "--delay", "1"])
    start("guest-g", [guestsim, "--socket", sock("guest-g"), "--mac", "52:54:00:00:00:10", "--to", "52:54:00:00:00:0b",
                      "--ips", "10.0.0.16,10.0.0.16", "--rate", "200", "--delay", "1"])
    print(f"Rampart demo: dataplane + control process up; metrics at http://{metrics}/metrics; "
          f"event log {eve_path}; Ctrl-C to stop\n")
    began, last, prev = time.time(), None, {}
    try:
        while not duration or time.time() - began < duration:
            time.sleep(2)
            stats = ctl("stats").get("stats")
            if not stats:
                continue
            now = time.time()
            print(f"{'guest':<9} {'admin':<6} {'state':<6} {'from guest':>11} {'allowed':>11} {'dropped':>11} {'to guest':>11}  {'from pps':>9} {'to pps':>9}")
            for p in stats["ports"]:
                rx, tx, dr = p["rx_packets"], p["tx_packets"], p["drop_packets"]
                o = prev.get(p["name"], (rx, tx, now - 2))
                dt = max(now - o[2], 1e-3)
                print(f"{p['name']:<9} {'on' if p['enabled'] else 'off':<6} {p['state'] if p['link'] else 'nolink':<6} {rx:>11} {rx - dr:>11} {dr:>11} {tx:>11}  {(rx - o[0]) / dt:>9.0f} {(tx - o[1]) / dt:>9.0f}")
                prev[p["name"]] = (rx, tx, now)
            reasons = ", ".join(f"{k}={v}" for k, v in sorted(stats["drops"].items())) or "none"
            cpp = ", ".join(f"worker {w['worker']}: {w['cycles_per_packet']:.0f}" for w in stats["workers"])
            logged = ctl("status").get("status", {}).get("events_logged", 0)
            rules = ", ".join(f"{r['id']} ({r['action']}): {r['packets']} pkts/{r['flows']} flows" for r in stats.get("rules", []))
            ft = stats.get("flow_table", {})
            print(f"drops by reason: {reasons}\nrules: {rules}\nflow table: {ft.get('live', 0)} live of {ft.get('capacity', 0)}, "
                  f"{ft.get('creations', 0)} created\nbusy cycles/packet: {cpp}; events logged: {logged}, lost: {stats['events_lost']}\n")
            last = stats
    except KeyboardInterrupt:
        pass
    try:
        body = urllib.request.urlopen(f"http://{metrics}/metrics", timeout=2).read().decode()
        shown = [l for l in body.splitlines() if l.startswith(("rampart_port_rx_packets_total", "rampart_drops_total{reason=\"port_disabled\"",
                                                             "rampart_port_spoof_ip_total{port=\"guest-d\"", "rampart_port_throttled_total{port=\"guest-d\"",
                                                             "rampart_policy_generation", "rampart_signature_alerts_total",
                                                             "rampart_inspect_packets_total", "rampart_drops_total{reason=\"signature",
                                                             "rampart_anomalies_total{kind=\"land\"", "rampart_drops_total{reason=\"anomaly_land"))]
        print("from the Prometheus endpoint:\n  " + "\n  ".join(shown))
    except OSError as e:
        print(f"metrics endpoint unreachable: {e}")
    with open(eve_path) as f:
        f.seek(eve_start)
        eve = f.readlines()
    drops = [l for l in eve if '"event_type":"drop"' in l]
    if drops:
        print(f"event log: {len(drops)} drop events, latest:\n  {drops[-1].strip()}")
    episodes = [l for l in eve if '"event_type":"guard"' in l]
    if episodes:
        print(f"attack episodes (one event as each starts and ends, not one per packet):\n  " + "\n  ".join(l.strip() for l in episodes))
    alerts = [l for l in eve if '"event_type":"alert"' in l]
    if alerts:
        sids = sorted({json.loads(l)["alert"].get("signature_id") for l in alerts})
        print(f"inspection: {len(alerts)} alerts (sids {sids}), latest:\n  {alerts[-1].strip()}")
    firsts = [l for l in alerts if json.loads(l)["alert"].get("signature_id") == 9000004]
    if firsts:
        print(f"flowbits: sid 9000004 alerted {len(firsts)} times, once per flow requesting /etc/passwd "
              f"(its match sets the flow's bit `passwd.seen`; later requests fail `isnotset`)")
    would = [l for l in alerts if '"would":"drop"' in l]
    would_alerts = len(would)
    if would:
        print(f"monitor mode: {len(would)} alerts of packets forwarded that inline mode would have dropped, latest:\n  {would[-1].strip()}")
    anomalies = [l for l in eve if '"event_type":"anomaly"' in l]
    if anomalies:
        print(f"protocol anomalies: {len(anomalies)} records (within the drop-record budget), latest:\n  {anomalies[-1].strip()}")
    show_idle()
    stop_all()
    # Every record is sealed into a chain (sequence numbers, HMAC-SHA-256 keyed outside the log).
    out = subprocess.run([os.path.join(BIN, "rampartctl"), "--config", CFG, "--json", "verify-log"], capture_output=True, text=True)
    try:
        v = json.loads(out.stdout)
        verified = out.returncode == 0 and v["verified"] > 0
        print(f"rampartctl verify-log: {'OK' if verified else 'FAILED'}, {v['verified']} records verified "
              f"(records {v['first_seq']} to {v['last_seq']} in {len(v['files'])} file(s))"
              + "".join(f"\n  {p['file']}:{p['line']}: {p['what']}" for p in v["problems"][:5]))
    except (ValueError, KeyError):
        verified = False
        print(f"rampartctl verify-log failed: {out.stderr.strip()}")
    if last:
        ports = {p["name"]: p for p in last["ports"]}
        d, e, f, g = ports["guest-d"], ports["guest-e"], ports["guest-f"], ports["guest-g"]
        ins = last.get("inspection", {})
        ok = (ports["guest-b"]["tx_packets"] > 0 and ports["guest-c"]["drop_packets"] > 0 and ports["guest-c"]["tx_packets"] == 0
              and d["rx_packets"] > 0 and d["guard"]["throttled"] > 0 and d["guard"]["spoof_ip"] > 0
              and d["guard"]["spoof_ip"] + d["guard"]["throttled"] == d["rx_packets"] == d["drop_packets"]
              # (counters read while packets flow: a burst may be counted in one and not yet the other)
              and e["rx_packets"] > 0 and last["drops"].get("signature", 0) > 0
              and abs(e["rx_packets"] - last["drops"].get("signature", 0) - last["drops"].get("signature_flow", 0)) <= 32
              and ins.get("packets", 0) > 0 and len(alerts) > 0
              and f["rx_packets"] > 0 and f["drop_packets"] == 0 and f["would_drop"] > 0 and would_alerts > 0
              # one alert per flow (guest-e's and guest-f's), not per request
              and 1 <= len(firsts) <= 4 and f["rx_packets"] > 2 * len(firsts)
              and g["rx_packets"] > 0 and abs(g["rx_packets"] - g["drop_packets"]) <= 32 and abs(g["drop_packets"] - last["drops"].get("anomaly_land", 0)) <= 32
              and last.get("anomalies", {}).get("land", 0) > 0 and len(anomalies) > 0 and verified)
        print(f"\nsummary: allowed {ports['guest-a']['rx_packets'] - ports['guest-a']['drop_packets']} packets guest-a → guest-b; "
              f"blocked {ports['guest-c']['drop_packets']} from guest-c (port disabled); "
              f"guest-d's flood from guest-a's address: {d['guard']['throttled']} throttled (over 1,000/s), "
              f"{d['guard']['spoof_ip']} dropped as spoof_ip, none forwarded; "
              f"guest-e's requests for /etc/passwd: {e['rx_packets']} received, {last['drops'].get('signature', 0)} dropped by sid 9000001 "
              f"and the {last['drops'].get('signature_flow', 0)} after it as the rest of the blocked flow (signature_flow, uninspected); "
              f"guest-f's (monitor mode): {f['rx_packets']} forwarded, {f['would_drop']} would have been dropped, "
              f"{would_alerts} alerted (sid 9000001's threshold: 10 a minute per source; {ins.get('suppressed', 0)} held back), "
              f"sid 9000004 (flowbits) once per flow: {len(firsts)} alerts; "
              f"guest-g's land packets: {g['rx_packets']} received, {last['drops'].get('anomaly_land', 0)} dropped as anomaly_land; all counted."
              + ("" if ok else "  UNEXPECTED: see the logs in " + RUN))
        sys.exit(0 if ok else 1)
    sys.exit("demo: no statistics were read")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        main()
    finally:
        stop_all()
