//! vhost tier: the real dataplane and control process with simulated guests
//! (`rampart-guestsim`, DPDK virtio_user) on vhost-user sockets. Every test
//! counts packets exactly: sent by one guest, received (unique, no
//! duplicates) by another. Needs hugepages (`make hugepages`).

use rampart_tests::{wait_for, PortSpec, Rig};
use std::time::Duration;

const A: &str = "52:54:00:00:01:0a";
const B: &str = "52:54:00:00:01:0b";
const C: &str = "52:54:00:00:01:0c";
const D: &str = "52:54:00:00:01:0d";

fn rig(name: &str, metrics: u16, ports: &[(&str, &str)]) -> Rig {
    let mut rig = Rig::new(name, metrics);
    for (p, mac) in ports {
        rig.ports.push(PortSpec::guest(p, "lan", mac));
    }
    rig
}

/// Waits until `rx` has everything `tx` sent (or times out), then returns (count, unique, dups).
fn settle(rx: &rampart_tests::GuestSim, tx: &rampart_tests::GuestSim, expected: u64, secs: u64) -> (u64, u64, u64) {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while rx.received_from(&tx.mac).1 < expected && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let got = rx.received_from(&tx.mac);
    if got.1 != expected || got.2 != 0 {
        eprintln!("delivery short: sender {} report {}\nreceiver report {}", tx.mac, tx.report(), rx.report());
    }
    got
}

/// Like [`settle`], but on a shortfall also prints the dataplane's counters.
fn delivered(rig: &Rig, rx: &rampart_tests::GuestSim, tx: &rampart_tests::GuestSim, expected: u64, secs: u64) -> (u64, u64, u64) {
    let got = settle(rx, tx, expected, secs);
    if got != (expected, expected, 0) {
        eprintln!("rampart stats: {}", rig.ctl(&["stats"]).1);
    }
    got
}

#[test]
fn segment_switches_floods_learns_and_enforces_admin_state() {
    let mut rig = rig("seg", 19601, &[("a", A), ("b", B), ("c", C), ("d", D)]);
    rig.ports[1].mac = None; // b is learned, not configured
    rig.ports[2].enabled = false; // c is disabled by policy
    rig.start();
    let (mut a, mut b, mut c, mut d) = (rig.guest("a", A), rig.guest("b", B), rig.guest("c", C), rig.guest("d", D));
    b.start(None, 0, 0, &[]);
    d.start(None, 0, 0, &[]);
    rig.wait_link("b");
    rig.wait_link("d");
    // b is unknown: a's frames to it are flooded to b and d.
    a.start(Some(B), 2000, 400, &["--junk-every", "100"]);
    assert_eq!(settle(&b, &a, 400, 20), (400, 400, 0), "b gets every flooded frame once");
    assert_eq!(d.received_from(A), (400, 400, 0), "unknown unicast is flooded inside the segment");
    a.stop();
    // b speaks; now it is learned and a's frames go to b alone.
    b.stop();
    b.start(Some(A), 1000, 5, &[]);
    wait_for("a to hear b", Duration::from_secs(10), || (rig.port("b")["rx_packets"].as_u64() >= Some(5)).then_some(()));
    a.start(Some(B), 2000, 600, &[]);
    assert_eq!(settle(&b, &a, 600, 20), (600, 600, 0));
    assert_eq!(d.received_from(A), (400, 400, 0), "after learning, d sees none of a's frames to b");
    // c is disabled: what it sends is dropped and counted; nothing reaches it.
    c.start(Some(B), 2000, 300, &[]);
    wait_for("c's drops", Duration::from_secs(20), || (rig.drops("port_disabled") >= 300).then_some(()));
    assert_eq!(b.received_from(C).0, 0);
    let malformed: u64 = rig.ctl_ok(&["stats"])["stats"]["drops"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("malformed_"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert!(malformed >= 4, "junk frames from a are dropped as malformed ({malformed})");
    let pa = rig.port("a");
    assert!(pa["rx_packets"].as_u64().unwrap() >= 1000 && pa["drop_packets"].as_u64().unwrap() >= 4, "{pa}");
    let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
    assert!(eve.contains("\"event_type\":\"drop\"") && eve.contains("malformed_"), "malformed drops are logged");
}

#[test]
fn wire_pair_delivers_both_ways() {
    let mut rig = Rig::new("wire", 19602);
    rig.ports.push(PortSpec { attach: "wire = \"w2\"".into(), mac: None, ..PortSpec::guest("w1", "", A) });
    rig.ports.push(PortSpec { attach: "wire = \"w1\"".into(), mac: None, ..PortSpec::guest("w2", "", B) });
    rig.start();
    let (mut w1, mut w2) = (rig.guest("w1", A), rig.guest("w2", B));
    w2.start(Some("02:00:00:00:00:99"), 1000, 500, &["--delay", "1"]);
    w1.start(Some("ff:ff:ff:ff:ff:ff"), 2000, 1500, &[]);
    assert_eq!(settle(&w2, &w1, 1500, 20), (1500, 1500, 0), "everything w1 sends, whatever its MAC, reaches w2");
    assert_eq!(settle(&w1, &w2, 500, 20), (500, 500, 0));
}

/// An idle worker gives its core back (waits for a guest's kick, or sleeps on a timer
/// with `idle_interrupts = false`), and the first packet after each silence still gets
/// through: probes across a wire pair after 0.5 s of silence each (function only; the
/// latency is measured by `make bench`).
#[test]
fn an_idle_worker_sleeps_and_wakes_for_the_first_packet() {
    for (name, metrics, extra) in [("idleint", 19609, ""), ("idlesleep", 19610, "idle_interrupts = false\n")] {
        let mut rig = Rig::new(name, metrics);
        rig.dataplane_extra = extra.into();
        rig.ports.push(PortSpec { attach: "wire = \"w2\"".into(), mac: None, ..PortSpec::guest("w1", "", A) });
        rig.ports.push(PortSpec { attach: "wire = \"w1\"".into(), mac: None, ..PortSpec::guest("w2", "", B) });
        rig.start();
        let sleeps = |rig: &Rig| rig.ctl_ok(&["stats"])["stats"]["workers"][0]["sleeps"].as_u64().expect("worker sleeps");
        let before = sleeps(&rig);
        let report = rig.dir.join("latency.json");
        let mut cmd = std::process::Command::new(rampart_tests::bin("rampart-guestsim"));
        cmd.arg("--socket").arg(rig.socket("w1")).arg("--latency-peer").arg(rig.socket("w2")).arg("--report").arg(&report);
        cmd.args(["--mac", A, "--to", B, "--probes", "4", "--gap", "0.5", "--cpu", "0"]);
        let mut g = rampart_tests::Proc::spawn("guestsim latency", &mut cmd, rig.dir.join("latency.log"));
        wait_for("the probes", Duration::from_secs(60), || (!g.alive()).then_some(()));
        assert_eq!(g.stop(), Some(0), "guestsim --latency-peer failed:\n{}", g.log_text());
        let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        assert_eq!((r["probes"].as_u64(), r["lost"].as_u64()), (Some(4), Some(0)), "{name}: every probe after a silence arrives: {r}");
        assert_eq!(r["latency_us"].as_array().map(Vec::len), Some(4), "{r}");
        let slept = sleeps(&rig) - before;
        assert!(slept >= 4, "{name}: the worker gave its core back between probes ({slept} sleeps)");
    }
}

#[test]
fn guests_added_and_removed_at_runtime_without_disturbing_others() {
    let mut rig = rig("hotplug", 19603, &[("a", A), ("b", B)]);
    rig.start();
    let (mut a, mut b) = (rig.guest("a", A), rig.guest("b", B));
    b.start(None, 0, 0, &[]);
    rig.wait_link("b");
    a.start(Some(B), 2000, 14000, &[]);
    std::thread::sleep(Duration::from_secs(1));
    // Add c.
    rig.ports.push(PortSpec::guest("c", "lan", C));
    rig.write_config();
    let r = rig.ctl_ok(&["reload"]);
    assert_eq!(r["result"], "applied", "{r}");
    assert!(rig.socket("c").exists(), "c's vhost socket was created");
    let mut c = rig.guest("c", C);
    c.start(Some(A), 1000, 300, &[]);
    assert_eq!(settle(&a, &c, 300, 20).1, 300, "the new guest reaches a");
    c.stop();
    // Remove c.
    rig.ports.pop();
    rig.write_config();
    assert_eq!(rig.ctl_ok(&["reload"])["result"], "applied");
    assert!(!rig.socket("c").exists(), "c's socket is gone");
    let ports = rig.ctl_ok(&["ports"]);
    assert!(ports["ports"].as_array().unwrap().iter().all(|p| p["name"] != "c"), "{ports}");
    assert_eq!(delivered(&rig, &b, &a, 14000, 30), (14000, 14000, 0), "a→b lost nothing while c came and went");
    let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
    assert!(eve.contains("\"state\":\"down\""), "port removal is logged");
}

#[test]
fn guests_restart_and_reconnect_in_server_and_client_mode() {
    let mut rig = rig("reconnect", 19604, &[("a", A), ("b", B), ("s", C)]);
    rig.ports[2].mac = None;
    rig.ports.push(PortSpec { kind: "vhost-client", mac: None, ..PortSpec::guest("k", "lan", D) });
    rig.start();
    let (mut a, mut b) = (rig.guest("a", A), rig.guest("b", B));
    b.start(None, 0, 0, &[]);
    rig.wait_link("b");
    a.start(Some(B), 2000, 16000, &[]);
    // Server mode (Rampart owns the socket): the guest restarts and connects again.
    for (i, mac) in ["02:00:00:00:0c:01", "02:00:00:00:0c:02"].iter().enumerate() {
        let mut s = rig.guest("s", mac);
        s.start(Some(B), 1000, 200, &[]);
        let got = settle(&b, &s, 200, 20);
        assert_eq!(got.1, 200, "server-mode guest incarnation {i} reaches b");
        s.stop();
    }
    // Client mode (the guest owns the socket): Rampart reconnects after the guest restarts.
    for (i, mac) in ["02:00:00:00:0d:01", "02:00:00:00:0d:02"].iter().enumerate() {
        let mut k = rig.guest("k", mac);
        k.server = true;
        k.start(Some(B), 1000, 200, &["--delay", "2"]);
        let got = settle(&b, &k, 200, 30);
        assert_eq!(got.1, 200, "client-mode guest incarnation {i} reaches b");
        k.stop();
    }
    assert_eq!(delivered(&rig, &b, &a, 16000, 30), (16000, 16000, 0), "a→b lost nothing while other guests restarted");
}

#[test]
fn policy_updates_under_traffic_lose_nothing() {
    let mut rig = rig("swap", 19605, &[("a", A), ("b", B), ("c", C)]);
    rig.start();
    let (mut a, mut b) = (rig.guest("a", A), rig.guest("b", B));
    b.start(None, 0, 0, &[]);
    rig.wait_link("b");
    a.start(Some(B), 2000, 12000, &[]);
    let mut gen = 1;
    for i in 0..10 {
        // Alternate an admin-state change and a port hot-plug.
        if i % 2 == 0 {
            rig.ports[2].enabled = !rig.ports[2].enabled;
        } else if rig.ports.len() == 3 {
            rig.ports.push(PortSpec::guest("d", "lan", D));
        } else {
            rig.ports.pop();
        }
        rig.write_config();
        let r = rig.ctl_ok(&["reload"]);
        gen += 1;
        assert_eq!(r["result"], "applied", "{r}");
        assert_eq!(r["generation"], gen);
        assert!(r["worker_generations"].as_array().unwrap().iter().all(|g| g == gen), "every worker runs {gen}: {r}");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(delivered(&rig, &b, &a, 12000, 30), (12000, 12000, 0), "no packet lost or duplicated across 10 swaps");
}

#[test]
fn control_restart_under_traffic_loses_nothing() {
    let mut rig = rig("ctlrestart", 19606, &[("a", A), ("b", B)]);
    rig.start();
    let (mut a, mut b) = (rig.guest("a", A), rig.guest("b", B));
    b.start(None, 0, 0, &[]);
    rig.wait_link("b");
    a.start(Some(B), 2000, 10000, &[]);
    std::thread::sleep(Duration::from_secs(1));
    rig.control.as_mut().unwrap().kill9();
    std::thread::sleep(Duration::from_secs(1));
    rig.start_control();
    let s = rig.wait_applied(1);
    assert_eq!(s["status"]["published_generation"], 1, "the restarted control process adopts the running policy: {s}");
    assert_eq!(delivered(&rig, &b, &a, 10000, 30), (10000, 10000, 0));
}

#[test]
fn dataplane_restart_and_control_reattaches() {
    let mut rig = rig("dprestart", 19607, &[("a", A), ("b", B)]);
    rig.start();
    let old_pid = rig.dataplane.as_ref().unwrap().pid();
    rig.dataplane.as_mut().unwrap().stop();
    wait_for("control to notice", Duration::from_secs(10), || (rig.ctl_ok(&["status"])["status"]["attached"] == false).then_some(()));
    rig.start_dataplane();
    let s = rig.wait_applied(1);
    assert_ne!(s["status"]["dataplane_pid"], old_pid);
    let (mut a, mut b) = (rig.guest("a", A), rig.guest("b", B));
    b.start(None, 0, 0, &[]);
    rig.wait_link("b");
    a.start(Some(B), 2000, 1000, &[]);
    assert_eq!(settle(&b, &a, 1000, 20), (1000, 1000, 0), "traffic flows through the restarted dataplane");
    assert_eq!(rig.ctl_ok(&["ping"])["ok"], true, "command ring → event ring round trip");
}

#[test]
fn multiqueue_guests_on_two_workers() {
    let mut rig = rig("mq", 19608, &[("a", A), ("b", B)]);
    rig.worker_cores = vec![0, 1]; // two workers; each polls one queue of every port
    rig.start();
    let s = rig.ctl_ok(&["status"]);
    assert_eq!(s["status"]["worker_generations"], serde_json::json!([1, 1]), "both workers run the policy: {s}");
    let (mut a, mut b) = (rig.guest("a", A), rig.guest("b", B));
    b.start(None, 0, 0, &["--queues", "2"]);
    rig.wait_link("b");
    a.start(Some(B), 2000, 4000, &["--queues", "2"]);
    assert_eq!(delivered(&rig, &b, &a, 4000, 30), (4000, 4000, 0), "every packet, whichever queue and worker carried it");
    let stats = rig.ctl_ok(&["stats"]);
    let workers = stats["stats"]["workers"].as_array().unwrap();
    assert!(workers.iter().all(|w| w["busy_packets"].as_u64().unwrap() > 0), "both workers carried traffic: {stats}");
}
