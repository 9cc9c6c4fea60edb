//! DPDK tier: the real dataplane on real mbufs without hugepages
//! (`--no-huge`) and with `net_pcap` ports: a crafted capture goes in, the
//! test checks exactly which frames come out and which drops were counted
//! and logged; fragmented datagrams under a rule set; a flow dump longer than one
//! page of the dump region; the guard's anti-spoofing on both packet paths.

use rampart_packet::{build, icmpv6, ipv4};
use rampart_tests::{wait_for, PortSpec, Rig};
use std::path::Path;
use std::time::Duration;

const A: [u8; 6] = [0x52, 0x54, 0, 0, 2, 0x0a];
const B: [u8; 6] = [0x52, 0x54, 0, 0, 2, 0x0b];

/// Numbered UDP 10.0.0.1:1000+`i` → 10.0.0.2:53 from A to B, padded to 60 bytes.
fn udp(i: u16) -> Vec<u8> {
    let [hi, lo] = i.to_be_bytes();
    build::udp_v4([10, 0, 0, 1], 1000 + i, [10, 0, 0, 2], 53, &[hi, lo, 0xab, 0xcd]).macs(A, B).pad(60).build().unwrap()
}

fn arp() -> Vec<u8> {
    build::arp_request(A, [10, 0, 0, 1], [10, 0, 0, 2]).pad(60).build().unwrap()
}

/// IPv4 claiming more bytes than the frame has: [`udp`] with a total length of 1500 (its
/// header checksum, now stale, is not what the dataplane checks).
fn bad_total_length(i: u16) -> Vec<u8> {
    let mut f = udp(i);
    ipv4::Packet::new_unchecked(&mut f[14..]).set_total_len(1500);
    f
}

/// IPv4 with a header length below the minimum: [`udp`] with IHL 3 (12 bytes).
fn bad_ihl(i: u16) -> Vec<u8> {
    let mut f = udp(i);
    ipv4::Packet::new_unchecked(&mut f[14..]).set_header_len(12);
    f
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
        match v {
            0x0004_0002 => out.extend_from_slice(&[2, 0, 4, 0]),
            _ => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).unwrap();
}

fn read_pcap(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let len = u32::from_le_bytes(data[off + 8..off + 12].try_into().unwrap()) as usize;
        frames.push(data[off + 16..off + 16 + len].to_vec());
        off += 16 + len;
    }
    frames
}

/// One fragment of a UDP datagram 10.0.0.1:1000 → 10.0.0.2:`dport` of 24 bytes (with
/// its header; the data is `id` repeated), IP id `id`: the first (offset 0, MF, the UDP
/// header and 8 bytes) or the later one (offset 16, the last 8 bytes).
fn fragment(id: u16, dport: u16, first: bool) -> Vec<u8> {
    let datagram = build::udp_v4([10, 0, 0, 1], 1000, [10, 0, 0, 2], dport, &[id as u8; 16]).macs(A, B).ident(id.into()).pad(60);
    datagram.fragments(16).unwrap().swap_remove(if first { 0 } else { 1 })
}

/// Starts the dataplane with p0 (reads `input`) and p1 (writes out1.pcap) joined as
/// `attach`, under `rules` (TOML appended to the config), and waits until p0 has received
/// all of `input`.
fn start(name: &str, metrics: u16, default_action: &'static str, wire: bool, rules: &str, input: &[Vec<u8>]) -> Rig {
    start_with(name, metrics, default_action, wire, rules, input, "")
}

/// [`start`] with extra TOML lines for port p0 (the input port).
fn start_with(name: &str, metrics: u16, default_action: &'static str, wire: bool, rules: &str, input: &[Vec<u8>], p0_extra: &str) -> Rig {
    start_policy(name, metrics, default_action, "", wire, rules, input, p0_extra)
}

/// [`start_with`] with extra keys of the `[policy]` table.
#[allow(clippy::too_many_arguments)]
fn start_policy(name: &str, metrics: u16, default_action: &'static str, policy: &str, wire: bool, rules: &str, input: &[Vec<u8>], p0_extra: &str) -> Rig {
    let mut rig = Rig::new(name, metrics);
    rig.policy_extra = policy.into();
    rig.hugepages = false;
    rig.default_action = default_action;
    rig.extra = rules.into();
    let (inp, empty, out0, out1) = (rig.dir.join("in.pcap"), rig.dir.join("empty.pcap"), rig.dir.join("out0.pcap"), rig.dir.join("out1.pcap"));
    write_pcap(&inp, input);
    write_pcap(&empty, &[]);
    let (a0, a1) = if wire { ("wire = \"p1\"", "wire = \"p0\"") } else { ("segment = \"lan\"", "segment = \"lan\"") };
    for (p, a, dev) in [
        ("p0", a0, format!("net_pcap_{name}0,rx_pcap={},tx_pcap={}", inp.display(), out0.display())),
        ("p1", a1, format!("net_pcap_{name}1,rx_pcap={},tx_pcap={}", empty.display(), out1.display())),
    ] {
        let extra = if p == "p0" { p0_extra.to_string() } else { String::new() };
        rig.ports.push(PortSpec { name: p.into(), kind: "device", attach: a.into(), mac: None, enabled: true, device: Some(dev), extra });
    }
    rig.start();
    wait_for("the capture to be read", Duration::from_secs(20), || (rig.port("p0")["rx_packets"].as_u64() == Some(input.len() as u64)).then_some(()));
    std::thread::sleep(Duration::from_millis(300));
    rig
}

/// Stops the rig's processes: the frames p1 sent and the event log.
fn stop(mut rig: Rig) -> (Vec<Vec<u8>>, String) {
    // Stopping the dataplane closes the pcap ports, which flushes their files.
    rig.control.take();
    assert_eq!(rig.dataplane.as_mut().unwrap().stop(), Some(0), "the dataplane exits cleanly on SIGTERM");
    let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap_or_default();
    // Every record the control process wrote is sealed, and the chain verifies.
    let v = rig.ctl_ok(&["verify-log"]);
    assert!(v["verified"].as_u64() == Some(eve.lines().count() as u64) && v["problems"] == serde_json::json!([]), "{v}");
    (read_pcap(&rig.dir.join("out1.pcap")), eve)
}

/// [`start`], `rampartctl stats`, [`stop`]: (frames p1 sent, the stats, the event log).
fn run(name: &str, metrics: u16, default_action: &'static str, wire: bool, rules: &str, input: &[Vec<u8>]) -> (Vec<Vec<u8>>, serde_json::Value, String) {
    let rig = start(name, metrics, default_action, wire, rules, input);
    let stats = rig.ctl_ok(&["stats"]);
    let (out, eve) = stop(rig);
    (out, stats, eve)
}

/// Allows what [`udp`] sends (10.0.0.1 → 10.0.0.2:53), tracked.
const DNS_RULE: &str = r#"
[[rules]]
id = "dns"
from = ["10.0.0.1/32"]
to = ["10.0.0.2/32"]
protocol = "udp"
ports = "53"
action = "allow"
"#;

#[test]
fn pipeline_forwards_valid_frames_and_counts_malformed_ones_by_reason() {
    let (mut input, mut expected) = (Vec::new(), Vec::new());
    for i in 0..50 {
        input.push(udp(i));
        expected.push(udp(i));
        if i % 5 == 0 {
            input.push(bad_total_length(i));
        }
        if i % 10 == 0 {
            input.push(bad_ihl(i));
            input.push(arp());
            expected.push(arp());
        }
    }
    assert_eq!(expected.len(), 55);
    let (out, stats, eve) = run("pcapwire", 19620, "forward", true, "", &input);
    assert_eq!(out, expected, "exactly the valid frames come out, unchanged and in order");
    let drops = &stats["stats"]["drops"];
    assert_eq!(drops["malformed_ipv4_bad_total_length"], 10, "{drops}");
    assert_eq!(drops["malformed_ipv4_bad_ihl"], 5, "{drops}");
    let p0 = stats["stats"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "p0").unwrap().clone();
    assert_eq!(p0["drop_packets"], 15);
    assert_eq!(eve.matches("\"reason\":\"malformed_ipv4_bad_ihl\"").count(), 5, "each malformed drop is logged");
}

#[test]
fn default_drop_policy_drops_everything_in_a_segment() {
    let input: Vec<Vec<u8>> = (0..20).map(udp).collect();
    let (out, stats, _) = run("pcapdrop", 19621, "drop", false, "", &input);
    assert!(out.is_empty(), "nothing passes a drop-all policy");
    assert_eq!(stats["stats"]["drops"]["policy_drop"], 20);
}

#[test]
fn segment_floods_unknown_unicast_to_the_other_port() {
    let input: Vec<Vec<u8>> = (0..20).map(udp).collect();
    let (out, _, _) = run("pcapseg", 19622, "forward", false, "", &input);
    assert_eq!(out, input);
}

#[test]
fn later_fragments_follow_their_first_fragment_and_nothing_else() {
    let rules = DNS_RULE;
    let input = vec![
        fragment(100, 53, true),  // allowed datagram: both fragments pass
        fragment(100, 53, false),
        fragment(101, 54, true),  // denied by the default action
        fragment(101, 54, false), // so its later fragment is dropped too
        fragment(102, 53, false), // a later fragment whose first never came
        fragment(103, 53, false), // ahead of its first fragment: no reassembly, dropped
        fragment(103, 53, true),
    ];
    let (out, stats, _) = run("pcapfrag", 19623, "drop", true, rules, &input);
    assert_eq!(out.len(), 3, "{}", stats["stats"]["drops"]);
    assert_eq!(out, vec![input[0].clone(), input[1].clone(), input[6].clone()], "exactly the allowed first fragments and the fragments that follow them");
    let drops = &stats["stats"]["drops"];
    assert_eq!(drops["fragment"], 3, "{drops}");
    assert_eq!(drops["policy_drop"], 1, "{drops}");
    let dns = stats["stats"]["rules"].as_array().unwrap().iter().find(|r| r["id"] == "dns").unwrap().clone();
    assert_eq!(dns["packets"], 3, "a later fragment counts to the rule its first fragment matched: {dns}");
}

#[test]
fn flows_lists_every_flow_of_a_dump_longer_than_a_page_once() {
    // More flows than one page of the dump region holds (8,192 records), so the control
    // process reads the real table through at least two pages.
    const FLOWS: u16 = 10_000;
    let input: Vec<Vec<u8>> = (0..FLOWS).map(udp).collect();
    let rig = start("pcapdump", 19624, "drop", true, DNS_RULE, &input);
    let live = rig.ctl_ok(&["stats"])["stats"]["flow_table"]["live"].as_u64();
    assert_eq!(live, Some(FLOWS as u64), "every datagram opened a flow of its own");
    let reply = rig.ctl_ok(&["flows"]);
    let flows = reply["flows"].as_array().unwrap();
    let mut seen = vec![0u32; FLOWS as usize];
    for f in flows {
        let i = f["src_port"].as_u64().and_then(|p| p.checked_sub(1000)).filter(|&i| i < FLOWS as u64);
        let Some(i) = i else { panic!("a flow udp() did not open: {f}") };
        seen[i as usize] += 1;
        let what = (&f["src_ip"], &f["dest_ip"], &f["dest_port"], &f["proto"], &f["guest"], &f["rule"], &f["pkts"]);
        assert_eq!(what, (&"10.0.0.1".into(), &"10.0.0.2".into(), &53.into(), &"UDP".into(), &"p0".into(), &"dns".into(), &serde_json::json!([1, 0])), "{f}");
    }
    let missing: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..seen.len()).filter(|&i| seen[i] > 1).collect();
    assert!(missing.is_empty() && twice.is_empty(), "flows of udp(i) not listed: {missing:?}; listed more than once: {twice:?}");
    assert_eq!(flows.len(), FLOWS as usize);
    assert_eq!(reply["total"], FLOWS, "the dump listed every flow of the table");
    let (out, _) = stop(rig);
    assert_eq!(out.len(), FLOWS as usize, "the rule passed every datagram");
}

/// What a guarded port p0 (MAC A, 10.0.0.1 and fd00::1) sends: (frame, the guard drop
/// reason it must get, or None for a frame it must pass).
fn guard_input() -> Vec<(Vec<u8>, Option<&'static str>)> {
    const C: [u8; 6] = [0x52, 0x54, 0, 0, 2, 0x0c];
    const ALL_NODES: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
    let v6 = |s: &str| s.parse::<std::net::Ipv6Addr>().unwrap().octets();
    let ll = v6("fe80::5054:ff:fe00:20a"); // A's EUI-64 link-local
    let from = |mac: [u8; 6], src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16| build::udp_v4(src, sport, dst, dport, b"guard").macs(mac, B).pad(60).build().unwrap();
    let icmp6 = |src: [u8; 16], repr: icmpv6::Repr| build::icmpv6(src, v6("ff02::1"), repr, &[]).macs(A, ALL_NODES).build().unwrap();
    let garp = |sender: [u8; 4]| build::arp_request(A, sender, sender).pad(60).build().unwrap();
    let na = |target: &str| icmpv6::Repr::NeighborAdvert { flags: 0x20, target: v6(target) };
    let ra = icmpv6::Repr::RouterAdvert { hop_limit: 64, flags: 0, router_lifetime: 1800, reachable_time: 0, retrans_time: 0 };
    vec![
        (from(A, [10, 0, 0, 1], 1000, [10, 0, 0, 2], 53), None),
        (from(A, [10, 0, 0, 77], 1000, [10, 0, 0, 2], 53), Some("spoof_ip")),
        (from(C, [10, 0, 0, 1], 1000, [10, 0, 0, 2], 53), Some("spoof_mac")),
        (from(B, [10, 0, 0, 1], 1000, [10, 0, 0, 2], 53), Some("spoof_mac")),
        (arp(), None),
        (garp([10, 0, 0, 1]), None),
        (garp([10, 0, 0, 2]), Some("arp_spoof")),
        (from(A, [10, 0, 0, 1], 67, [255, 255, 255, 255], 68), Some("rogue_dhcp")),
        (from(A, [0, 0, 0, 0], 68, [255, 255, 255, 255], 67), None),
        (from(A, [0, 0, 0, 0], 1000, [10, 0, 0, 2], 53), Some("spoof_ip")),
        (icmp6(ll, na("fd00::1")), None),
        (icmp6(ll, na("fd00::2")), Some("nd_spoof")),
        (icmp6(ll, ra), Some("rogue_ra")),
        (icmp6(v6("fd00::9"), icmpv6::Repr::EchoRequest { ident: 1, seq_no: 1 }), Some("spoof_ip")),
    ]
}

/// The guard on a port (device ports have it off by default; p0 turns it on): exactly the
/// frames the port may send come out, each other one is dropped and counted by port and
/// reason; on the switching path (no rules) and on the firewall's (a rule allows all).
#[test]
fn guard_drops_spoofed_and_rogue_frames_by_reason_on_both_paths() {
    let cases = guard_input();
    let input: Vec<Vec<u8>> = cases.iter().map(|(f, _)| f.clone()).collect();
    let passed: Vec<Vec<u8>> = cases.iter().filter(|(_, r)| r.is_none()).map(|(f, _)| f.clone()).collect();
    let p0 = "anti_spoofing = true\nmacs = [\"52:54:00:00:02:0a\"]\naddresses = [\"10.0.0.1\", \"fd00::1\"]\n";
    let allow_all = "[[rules]]\nid = \"all\"\naction = \"allow\"\n";
    for (name, metrics, rules) in [("pcapguard", 19625, ""), ("pcapguardfw", 19626, allow_all)] {
        let rig = start_with(name, metrics, "forward", false, rules, &input, p0);
        let stats = rig.ctl_ok(&["stats"]);
        let metrics_body = rig.metrics();
        if rules.is_empty() {
            // Long enough for the episodes to end (quiet for 3 s, counters read each second).
            std::thread::sleep(Duration::from_millis(5000));
        }
        let (out, eve) = stop(rig);
        if rules.is_empty() {
            // One `guard` event when each kind of attack starts and one when it ends.
            let episodes: Vec<serde_json::Value> = eve.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|r: &serde_json::Value| r["event_type"] == "guard").collect();
            for reason in ["spoof_mac", "spoof_ip", "arp_spoof", "nd_spoof", "rogue_dhcp", "rogue_ra"] {
                let n = cases.iter().filter(|(_, r)| *r == Some(reason)).count() as u64;
                let of = |state: &str| episodes.iter().filter(|e| e["guard"]["reason"] == reason && e["guard"]["episode"] == state && e["in_iface"] == "p0").cloned().collect::<Vec<_>>();
                let (start, end) = (of("start"), of("end"));
                assert_eq!((start.len(), end.len()), (1, 1), "{reason}: {episodes:?}");
                assert_eq!(end[0]["guard"]["packets"], n, "{reason}: {}", end[0]);
            }
        }
        assert_eq!(out, passed, "{name}: exactly the frames p0 may send come out, in order");
        let port = stats["stats"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "p0").unwrap().clone();
        let drops = &stats["stats"]["drops"];
        for reason in ["spoof_mac", "spoof_ip", "arp_spoof", "nd_spoof", "rogue_dhcp", "rogue_ra"] {
            let n = cases.iter().filter(|(_, r)| *r == Some(reason)).count() as u64;
            assert_eq!(drops[reason], n, "{name}: {reason}: {drops}");
            assert_eq!(port["guard"][reason], n, "{name}: {reason} of p0: {port}");
            assert!(metrics_body.contains(&format!("rampart_port_{reason}_total{{port=\"p0\"}} {n}")), "{name}: {reason}: {metrics_body}");
        }
        assert_eq!(port["drop_packets"], (input.len() - passed.len()) as u64, "{name}: {port}");
    }
}

/// A flood of random source MACs from a port stops at its cap of learned MACs: the first
/// `max_macs` are learned and switched, every later new one is dropped and counted as
/// `mac_limit` (so the flood cannot push the segment's other entries out).
#[test]
fn a_random_source_mac_flood_stops_at_the_ports_cap() {
    let mut rnd = 0x2545_f491_4f6c_dd1du64;
    let input: Vec<Vec<u8>> = (0..300u16)
        .map(|i| {
            rnd ^= rnd << 13;
            rnd ^= rnd >> 7;
            rnd ^= rnd << 17;
            let b = rnd.to_be_bytes();
            let mut f = udp(i);
            f[6..12].copy_from_slice(&[b[0] & 0xfe, b[1], b[2], b[3], b[4], b[5]]); // a unicast source
            f
        })
        .collect();
    let (out, stats) = {
        let rig = start_with("pcapmacs", 19627, "forward", false, "", &input, "max_macs = 16\n");
        let stats = rig.ctl_ok(&["stats"]);
        (stop(rig).0, stats)
    };
    assert_eq!(out, input[..16].to_vec(), "the first 16 MACs are learned and their frames switched");
    let p0 = stats["stats"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "p0").unwrap().clone();
    assert_eq!((stats["stats"]["drops"]["mac_limit"].as_u64(), p0["guard"]["mac_limit"].as_u64()), (Some(284), Some(284)), "{stats}");
}

/// A port flooding malformed frames costs the event log `events.drops_per_second`
/// detailed records a second per reason, not one per frame; the rest are counted in
/// summary records, and detailed records plus the last summary's total equal the drop
/// counter exactly.
#[test]
fn a_malformed_flood_is_logged_within_its_budget_and_every_drop_is_accounted() {
    const FLOOD: u16 = 5000;
    let input: Vec<Vec<u8>> = (0..FLOOD).map(bad_ihl).collect();
    let rig = start("pcapstorm", 19628, "forward", true, "[events]\ndrops_per_second = 10\n", &input);
    // Summaries are written once a second.
    std::thread::sleep(Duration::from_millis(1500));
    let stats = rig.ctl_ok(&["stats"]);
    let (_, eve) = stop(rig);
    let drops = stats["stats"]["drops"]["malformed_ipv4_bad_ihl"].as_u64().unwrap();
    assert_eq!(drops, FLOOD as u64);
    let records: Vec<serde_json::Value> = eve.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|r: &serde_json::Value| r["drop"]["reason"] == "malformed_ipv4_bad_ihl").collect();
    let detailed = records.iter().filter(|r| r["drop"]["summary"].is_null()).count() as u64;
    let held = records.iter().filter_map(|r| r["drop"]["summary"]["held_back_total"].as_u64()).max().expect("a summary record");
    assert!((10..=30).contains(&detailed), "the budget: 10 at once, 10 a second after: {detailed} detailed records");
    assert_eq!(detailed + held, drops, "every drop accounted: {detailed} detailed + {held} in summaries");
    assert!(records.iter().all(|r| r["in_iface"] == "p0"), "attributed to the port");
}

/// A port's token buckets: its packets/s limit admits the burst and then the rate, its
/// flood limit (storm control) does the same for broadcasts; every frame over a limit is
/// dropped and counted to the port (`throttled`, `storm`), and what passes keeps its order.
#[test]
fn a_ports_packet_and_flood_limits_drop_and_count_what_is_over_them() {
    const N: u16 = 2000;
    let subsequence = |out: &[Vec<u8>], input: &[Vec<u8>]| {
        let mut it = input.iter();
        out.iter().all(|f| it.any(|g| g == f))
    };
    let unicast: Vec<Vec<u8>> = (0..N).map(udp).collect();
    let bcast: Vec<Vec<u8>> = (0..N).map(|i| {
        let mut f = udp(i);
        f[..6].copy_from_slice(&[0xff; 6]);
        f
    }).collect();
    for (name, metrics, wire, input, extra, reason, burst) in [
        ("pcapthrottle", 19629, true, &unicast, "max_packets_per_s = 100\n", "throttled", 32),
        ("pcapstormctl", 19634, false, &bcast, "max_floods_per_s = 1000\n", "storm", 50),
    ] {
        let rig = start_with(name, metrics, "forward", wire, "", input, extra);
        let stats = rig.ctl_ok(&["stats"]);
        let (out, _) = stop(rig);
        let p0 = stats["stats"]["ports"].as_array().unwrap().iter().find(|p| p["name"] == "p0").unwrap().clone();
        let dropped = p0["guard"][reason].as_u64().unwrap();
        assert_eq!(out.len() as u64 + dropped, N as u64, "{name}: every frame passed or counted as {reason}: {p0}");
        assert_eq!(stats["stats"]["drops"][reason].as_u64(), Some(dropped));
        // The capture is read in well under a second: the burst, and little of the rate.
        assert!(out.len() >= burst && out.len() < N as usize / 2, "{name}: {} passed", out.len());
        assert!(subsequence(&out, input), "{name}: what passes keeps its order, unchanged");
    }
}

/// A source opening new flows faster than `throttle.max_new_flows_per_source` gets its
/// burst, then its new flows are dropped as `source_rate`; it is reported once, and with
/// `throttle.block_for` the control process blocks it for that long (a blocklist entry
/// that lifts itself), logged with the limit that tripped.
#[test]
fn a_source_over_its_new_flow_rate_is_limited_reported_and_blocked() {
    const FLOWS: u16 = 2000;
    let input: Vec<Vec<u8>> = (0..FLOWS).map(udp).collect();
    let rules = format!("{DNS_RULE}\n[throttle]\nmax_new_flows_per_source = 100\nblock_for = 30\n");
    let rig = start("pcapsrcrate", 19635, "drop", true, &rules, &input);
    let blocks = wait_for("the automatic block", Duration::from_secs(10), || {
        let b = rig.ctl_ok(&["blocks"]);
        (b["blocks"].as_array().map(Vec::len) == Some(1)).then_some(b)
    });
    let stats = rig.ctl_ok(&["stats"]);
    let (out, eve) = stop(rig);
    let b = &blocks["blocks"][0];
    assert_eq!((b["prefix"].as_str(), b["guest"].is_null()), (Some("10.0.0.1/32"), true), "{blocks}");
    assert_eq!(b["until"].as_u64().unwrap() - b["since"].as_u64().unwrap(), 30);
    let drops = &stats["stats"]["drops"];
    let limited = drops["source_rate"].as_u64().unwrap();
    let other = ["rule_deny", "policy_cut"].iter().map(|r| drops[r].as_u64().unwrap_or(0)).sum::<u64>();
    assert!(limited > 1000 && out.len() < 500, "{} passed, {limited} limited: {drops}", out.len());
    assert_eq!(out.len() as u64 + limited + other, FLOWS as u64, "every packet passed or counted: {drops}");
    let records: Vec<serde_json::Value> = eve.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let reports: Vec<_> = records.iter().filter(|r| r["event_type"] == "throttle").collect();
    assert_eq!(reports.len(), 1, "reported once, not per packet: {reports:?}");
    assert_eq!((reports[0]["throttle"]["src_ip"].as_str(), reports[0]["throttle"]["new_flows_per_s"].as_u64()), (Some("10.0.0.1"), Some(100)));
    let added = records.iter().find(|r| r["event_type"] == "block").expect("the block event");
    assert_eq!((added["block"]["action"].as_str(), added["block"]["reason"].as_str()), (Some("added"), Some("new_flow_rate")), "{added}");
}

/// UDP 10.0.0.1:`sport` → 10.0.0.2:`dport` from A to B carrying `payload`.
fn udp_with(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    build::udp_v4([10, 0, 0, 1], sport, [10, 0, 0, 2], dport, payload).macs(A, B).pad(60).build().unwrap()
}

/// Inspects UDP to port 8080 (`inspect`) under two signatures, allows DNS uninspected.
const INSPECT_RULES: &str = r#"
[[rules]]
id = "web"
from = ["10.0.0.1/32"]
to = ["10.0.0.2/32"]
protocol = "udp"
ports = "8080"
action = "inspect"

[[rules]]
id = "dns"
from = ["10.0.0.1/32"]
to = ["10.0.0.2/32"]
protocol = "udp"
ports = "53"
action = "allow"

[[inspection]]
vars = { HOME_NET = "[10.0.0.0/24]" }
signatures = [
  'drop udp any any -> $HOME_NET 8080 (msg:"evil payload"; content:"evil-payload"; classtype:trojan-activity; sid:1000001; rev:2;)',
  'alert udp $HOME_NET any -> any any (msg:"watch me"; content:"watchme"; nocase; sid:1000002;)',
]
"#;

/// The real dataplane inspects what an `inspect` rule allows: a signature split across two
/// datagrams of a flow is dropped, and the rest of that flow with it (`drop_flow`), as is one
/// whole in another flow; an alert-only signature
/// forwards; a flow of an `allow` rule is not inspected. Every match is an eve alert with
/// its sid, and the counters add up.
#[test]
fn inspection_drops_and_alerts_on_signatures_across_datagrams() {
    let input = vec![
        udp_with(1000, 8080, b"GET /evil-pa"),       // forwarded: no match yet
        udp_with(1000, 8080, b"yload HTTP/1.0"),     // "evil-payload" across two datagrams: dropped
        udp_with(1001, 8080, b"an evil-payload"),    // whole, another flow: dropped
        udp_with(1002, 8080, b"please WATCHME"),     // alert only: forwarded
        udp_with(1003, 53, b"evil-payload"),         // allowed, not inspected: forwarded
        udp_with(1000, 8080, b"fine"),               // the first flow is blocked: dropped uninspected
    ];
    let (out, stats, eve) = run("pcapinspect", 19636, "drop", true, INSPECT_RULES, &input);
    let expected: Vec<Vec<u8>> = [0, 3, 4].iter().map(|&i| input[i].clone()).collect();
    assert_eq!(out, expected, "exactly the frames no drop signature matched, of flows none blocked, in order");
    let s = &stats["stats"];
    assert_eq!((s["drops"]["signature"].as_u64(), s["drops"]["signature_flow"].as_u64()), (Some(2), Some(1)), "{}", s["drops"]);
    let ins = &s["inspection"];
    assert_eq!((ins["packets"].as_u64(), ins["alerts"].as_u64(), ins["blocked"].as_u64()), (Some(4), Some(3), Some(2)), "{ins}");
    let sigs = s["signatures"].as_array().unwrap();
    let alerts_of = |sid: u64| sigs.iter().find(|r| r["sid"] == sid).map(|r| r["alerts"].as_u64().unwrap());
    assert_eq!((alerts_of(1000001), alerts_of(1000002)), (Some(2), Some(1)), "{sigs:?}");
    let alerts: Vec<serde_json::Value> = eve.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()).filter(|r| r["event_type"] == "alert").collect();
    assert_eq!(alerts.len(), 3, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!((a["in_iface"].as_str(), a["src_ip"].as_str(), a["src_port"].as_u64(), a["dest_ip"].as_str(), a["dest_port"].as_u64(), a["proto"].as_str()),
        (Some("p0"), Some("10.0.0.1"), Some(1000), Some("10.0.0.2"), Some(8080), Some("UDP")), "{a}");
    let al = &a["alert"];
    assert_eq!((al["action"].as_str(), al["gid"].as_u64(), al["signature_id"].as_u64(), al["rev"].as_u64(), al["signature"].as_str(), al["category"].as_str()),
        (Some("blocked"), Some(1), Some(1000001), Some(2), Some("evil payload"), Some("trojan-activity")), "{a}");
    assert_eq!(alerts[1]["src_port"], 1001);
    assert_eq!((alerts[2]["alert"]["action"].as_str(), alerts[2]["alert"]["signature_id"].as_u64()), (Some("allowed"), Some(1000002)));
}

/// `pcre`, `byte_test` and `byte_jump` in the real dataplane: each drops or alerts on
/// exactly the datagrams its semantics select; a pcre outside the DFA subset skips its rule
/// (the policy still loads).
#[test]
fn pcre_byte_test_and_byte_jump_drop_and_alert_on_what_they_select() {
    let rules = INSPECT_RULES.split("[[inspection]]").next().unwrap().to_string()
        + r#"
[[inspection]]
vars = { HOME_NET = "[10.0.0.0/24]" }
signatures = [
  'drop udp any any -> $HOME_NET 8080 (msg:"login with a pin"; content:"USER "; pcre:"/^USER\s+[a-z]{1,8}\s+PASS\s+\d{4}$/i"; sid:1000101;)',
  'drop udp any any -> $HOME_NET 8080 (msg:"oversized record"; content:"|52 45 43|"; depth:3; byte_test:2,>,1000,3; sid:1000102;)',
  'alert udp any any -> $HOME_NET 8080 (msg:"exec after the header"; content:"HDR"; depth:3; byte_jump:1,3; content:"EXEC"; within:4; sid:1000103;)',
  'drop udp any any -> $HOME_NET 8080 (msg:"backreference"; content:"x"; pcre:"/(x)\1/"; sid:1000104;)',
]
"#;
    let input = vec![
        udp_with(1000, 8080, b"USER bob pass 1234"),     // 0: pcre (nocase): dropped
        udp_with(1001, 8080, b"USER bob PASS 12345"),    // 1: five digits: forwarded
        udp_with(1002, 8080, b"REC\x04\x00 data"),       // 2: length 1024 > 1000: dropped
        udp_with(1003, 8080, b"REC\x00\x10 data"),       // 3: length 16: forwarded
        udp_with(1004, 8080, b"HDR\x02zzEXEC"),          // 4: jump 2 lands on EXEC: alert, forwarded
        udp_with(1005, 8080, b"HDR\x05zzEXEC"),          // 5: jump 5 goes past it: forwarded
        udp_with(1006, 8080, b"xx"),                     // 6: the skipped rule does not act
    ];
    let (out, stats, eve) = run("pcapnumbers", 19638, "drop", true, &rules, &input);
    let expected: Vec<Vec<u8>> = [1, 3, 4, 5, 6].iter().map(|&i| input[i].clone()).collect();
    assert_eq!(out, expected, "exactly the frames no drop signature matched, in order");
    let s = &stats["stats"];
    assert_eq!(s["drops"]["signature"], 2, "{}", s["drops"]);
    let alerts: Vec<(u64, String)> = eve
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event_type"] == "alert")
        .map(|r| (r["alert"]["signature_id"].as_u64().unwrap(), r["alert"]["action"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        alerts,
        vec![(1000101, "blocked".to_string()), (1000102, "blocked".to_string()), (1000103, "allowed".to_string())],
        "{eve}"
    );
}

/// Port p0 in monitor mode, enforcing nothing (`monitor_enforces = []`), under
/// [`INSPECT_RULES`] and the guard: everything the signatures, the default action and the
/// guard would drop is forwarded, counted as `would_drops` by reason, and logged with what
/// would have happened.
#[test]
fn a_monitor_port_forwards_everything_and_logs_what_would_have_been_dropped() {
    let spoofed = build::udp_v4([10, 0, 0, 99], 1000, [10, 0, 0, 2], 53, b"x").macs(A, B).pad(60).build().unwrap();
    let input = vec![
        udp_with(1000, 8080, b"GET /evil-pa"),
        udp_with(1000, 8080, b"yload HTTP/1.0"), // a drop signature across two datagrams
        udp_with(1001, 8080, b"please WATCHME"), // an alert signature
        udp_with(1002, 9999, b"no rule"),        // the default action (drop)
        spoofed,                                 // not p0's address (the guard), and no rule
    ];
    let guard = "anti_spoofing = true\naddresses = [\"10.0.0.1\"]\nmode = \"monitor\"\n";
    let rig = start_policy("pcapmonitor", 19637, "drop", "monitor_enforces = []", true, INSPECT_RULES, &input, guard);
    let stats = rig.ctl_ok(&["stats"]);
    let (out, eve) = stop(rig);
    assert_eq!(out, input, "everything is forwarded, unchanged and in order");
    let s = &stats["stats"];
    assert!(s["drops"].as_object().unwrap().is_empty(), "nothing dropped: {}", s["drops"]);
    let would = &s["would_drops"];
    assert_eq!((would["signature"].as_u64(), would["policy_drop"].as_u64(), would["spoof_ip"].as_u64()), (Some(1), Some(2), Some(1)), "{would}");
    let p0 = s["ports"].as_array().unwrap().iter().find(|p| p["name"] == "p0").unwrap().clone();
    assert_eq!((p0["would_drop"].as_u64(), p0["drop_packets"].as_u64()), (Some(4), Some(0)), "one per protection that would have dropped: {p0}");
    assert_eq!(s["inspection"]["blocked"], 0);
    let records: Vec<serde_json::Value> = eve.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let alerts: Vec<_> = records.iter().filter(|r| r["event_type"] == "alert").collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!((alerts[0]["alert"]["action"].as_str(), alerts[0]["rampart"]["would"].as_str(), alerts[0]["alert"]["signature_id"].as_u64()),
        (Some("allowed"), Some("drop"), Some(1000001)), "{}", alerts[0]);
    assert_eq!((alerts[1]["alert"]["action"].as_str(), alerts[1]["rampart"]["would"].is_null()), (Some("allowed"), true), "an alert-only signature");
    let would_drop: Vec<_> = records.iter().filter(|r| r["event_type"] == "drop" && r["rampart"]["would"] == "drop").collect();
    assert_eq!(would_drop.len(), 2, "the firewall's would-be drops are logged: {records:?}");
    assert_eq!((would_drop[0]["drop"]["reason"].as_str(), would_drop[0]["dest_port"].as_u64()), (Some("policy_drop"), Some(9999)));
}

/// [`udp`] `i` with IPv4 `options` (a multiple of 4 bytes) in its header.
fn udp_with_options(i: u16, options: &[u8]) -> Vec<u8> {
    let mut f = build::udp_v4([10, 0, 0, 1], 1000 + i, [10, 0, 0, 2], 53, &[0xab; 8]).macs(A, B).build().unwrap();
    f.splice(34..34, options.iter().copied());
    let mut ip = ipv4::Packet::new_unchecked(&mut f[14..]);
    ip.set_header_len(20 + options.len());
    ip.set_total_len(ip.total_len() + options.len() as u16);
    ip.fill_checksum();
    f
}

/// Protocol anomalies in the real dataplane: the `drop` kinds are dropped (counted under
/// their `anomaly_*` reason), the `alert` ones forwarded, an overlapping fragment dropped;
/// every detection is counted by kind and logged as an eve `anomaly` record.
#[test]
fn protocol_anomalies_are_dropped_or_alerted_counted_and_logged() {
    use rampart_packet::TcpFlags;
    let tcp = |flags: u8| build::tcp_v4([10, 0, 0, 1], 2000, [10, 0, 0, 2], 80, flags, b"").macs(A, B).pad(60).build().unwrap();
    let land = build::udp_v4([10, 0, 0, 1], 1000, [10, 0, 0, 1], 53, b"x").macs(A, B).pad(60).build().unwrap();
    let ttl1 = build::udp_v4([10, 0, 0, 1], 1001, [10, 0, 0, 2], 53, b"x").macs(A, B).ttl(1).pad(60).build().unwrap();
    let big_ping = build::icmp_echo_v4([10, 0, 0, 1], [10, 0, 0, 2], 7, 1, &[0x55; 1473]).macs(A, B).build().unwrap();
    let input = vec![
        tcp(TcpFlags::SYN | TcpFlags::FIN),     // tcp_flags: dropped
        land,                                   // land, set to alert: forwarded
        ttl1,                                   // low_ttl (alert by default): forwarded
        udp(1),                                 // nothing wrong
        udp_with_options(2, &[131, 7, 4, 10, 0, 0, 9, 0]), // loose source route: dropped
        udp_with_options(3, &[148, 4, 0, 0]),   // router alert: fine
        big_ping,                               // 1481 bytes of ICMP: dropped
        fragment(300, 53, true),
        fragment(300, 53, false),
        fragment(300, 53, false),               // the same bytes again: an overlap, dropped
    ];
    let rules = format!("{DNS_RULE}\n[anomalies]\nland = \"alert\"\n");
    let (out, stats, eve) = run("pcapanomaly", 19648, "forward", true, &rules, &input);
    let expected: Vec<Vec<u8>> = [1, 2, 3, 5, 7, 8].iter().map(|&i| input[i].clone()).collect();
    assert_eq!(out, expected, "exactly the frames without an anomaly whose action is drop");
    let s = &stats["stats"];
    let drops = &s["drops"];
    for reason in ["anomaly_tcp_flags", "anomaly_ip_options", "anomaly_oversize_icmp", "anomaly_fragment_overlap"] {
        assert_eq!(drops[reason], 1, "{reason}: {drops}");
    }
    let found = &s["anomalies"];
    assert_eq!((found["tcp_flags"].as_u64(), found["land"].as_u64(), found["low_ttl"].as_u64(), found["bad_checksum"].as_u64()), (Some(1), Some(1), Some(1), Some(0)), "{found}");
    let records: Vec<serde_json::Value> = eve.lines().map(|l| serde_json::from_str(l).unwrap()).filter(|r: &serde_json::Value| r["event_type"] == "anomaly").collect();
    let seen: Vec<(&str, &str, &str)> = records.iter().map(|r| (r["anomaly"]["type"].as_str().unwrap(), r["anomaly"]["event"].as_str().unwrap(), r["rampart"]["action"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [
            ("decode", "tcp_flags", "blocked"),
            ("decode", "land", "allowed"),
            ("decode", "low_ttl", "allowed"),
            ("decode", "ip_options", "blocked"),
            ("decode", "oversize_icmp", "blocked"),
            ("stream", "fragment_overlap", "blocked"),
        ]
    );
    let r = &records[0];
    assert_eq!((r["in_iface"].as_str(), r["src_ip"].as_str(), r["dest_ip"].as_str(), r["dest_port"].as_u64(), r["proto"].as_str()), (Some("p0"), Some("10.0.0.1"), Some("10.0.0.2"), Some(80), Some("TCP")), "{r}");
}
