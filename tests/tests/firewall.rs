//! Stateful firewall on the real dataplane with simulated guests: rules by
//! guest, reply traffic admitted by state while its direction is denied by
//! rule, deny and reject (the sender receives an ICMP port unreachable), per-rule
//! counters (kept across reloads, from zero for a new rule), `rampartctl flows`,
//! a reload that cuts exactly the flows the new policy denies, flows evicted
//! from a full table, default per-guest quotas that keep one guest from filling
//! the table, flow-end events that name the deciding rule after a reorder, and
//! `rampartctl flows --kill`.

use rampart_tests::{wait_for, GuestSim, PortSpec, Rig};
use std::time::Duration;

const A: &str = "52:54:00:00:05:0a"; // 10.0.5.10
const B: &str = "52:54:00:00:05:0b"; // 10.0.5.11
const C: &str = "52:54:00:00:05:0c"; // 10.0.5.12

const RULES: &str = r#"
[policy]
default_action = "drop"

[[rules]]
id = "a-to-b-udp9"
from = ["guest:a"]
to = ["guest:b"]
protocol = "udp"
ports = "9"
action = "allow"
log = true

[[rules]]
id = "c-to-b"
from = ["guest:c"]
to = ["guest:b"]
action = "deny"

[[rules]]
id = "c-to-a"
from = ["guest:c"]
to = ["guest:a"]
protocol = "udp"
action = "reject"
"#;

fn rig(name: &str, metrics: u16, rules: &str) -> Rig {
    let mut rig = Rig::new(name, metrics);
    rig.default_action = "drop";
    for (p, mac) in [("a", A), ("b", B), ("c", C)] {
        rig.ports.push(PortSpec::addressed(p, "lan", mac));
    }
    // The rig writes [policy] itself; the rules carry their own default.
    rig.extra = rules.replace("[policy]\ndefault_action = \"drop\"\n", "");
    rig
}

/// A started rig with `rules`, guests a, b and c, and b connected and listening.
fn started(name: &str, metrics: u16, rules: &str) -> (Rig, GuestSim, GuestSim, GuestSim) {
    let mut rig = rig(name, metrics, rules);
    rig.start();
    let (a, mut b, c) = (rig.guest("a", A), rig.guest("b", B), rig.guest("c", C));
    b.start(None, 0, 0, &[]);
    rig.wait_link("b");
    (rig, a, b, c)
}

/// Removes rule `id` from the rig's config (written from `extra`, also when the rig
/// starts the control process again); the caller reloads.
fn withdraw_rule(rig: &mut Rig, id: &str) {
    let start = rig.extra.find(&format!("[[rules]]\nid = \"{id}\"")).unwrap_or_else(|| panic!("no rule {id}"));
    let end = rig.extra[start..].find("\n\n").map_or(rig.extra.len(), |n| start + n + 2);
    rig.extra.replace_range(start..end, "");
    rig.write_config();
}

fn rule(rig: &Rig, id: &str) -> serde_json::Value {
    let s = rig.ctl_ok(&["stats"]);
    s["stats"]["rules"].as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap_or_else(|| panic!("no rule {id}: {s}"))
}

#[test]
fn rules_state_deny_reject_and_counters() {
    let mut rig = rig("fw", 19640, RULES);
    rig.start();
    let (mut a, mut b, mut c) = (rig.guest("a", A), rig.guest("b", B), rig.guest("c", C));
    // b answers a's flow (sport 9 → dport 10000): no rule allows b → a, state does.
    b.start(Some(A), 500, 300, &["--sport", "9", "--dport", "10000", "--delay", "2"]);
    c.start(Some(B), 1000, 200, &["--delay", "1"]);
    rig.wait_link("b");
    rig.wait_link("c");
    a.start(Some(B), 1000, 500, &[]);
    wait_for("a's packets at b", Duration::from_secs(20), || (b.received_from(A).1 == 500).then_some(()));
    wait_for("b's replies at a", Duration::from_secs(20), || (a.received_from(B).1 == 300).then_some(()));
    assert_eq!(b.received_from(A), (500, 500, 0), "allowed by rule a-to-b-udp9");
    assert_eq!(a.received_from(B), (300, 300, 0), "replies pass by state, though no rule allows b → a");
    wait_for("c's drops", Duration::from_secs(20), || (rig.drops("rule_deny") >= 200).then_some(()));
    assert_eq!(b.received_from(C).0, 0, "denied");
    let r = rule(&rig, "a-to-b-udp9");
    assert!(r["packets"].as_u64().unwrap() >= 800 && r["flows"] == 1, "the rule's counters cover both directions of one flow: {r}");
    assert_eq!(rule(&rig, "c-to-b")["packets"], 200);
    // b → a on another port is a new flow no rule allows: default drop.
    let mut b2 = rig.guest("b", B);
    b.stop();
    b2.start(Some(A), 1000, 50, &["--sport", "7000", "--dport", "7001"]);
    wait_for("default drops", Duration::from_secs(20), || (rig.drops("policy_drop") >= 50).then_some(()));
    assert_eq!(a.received_from(B).1, 300, "nothing new from b");
    b2.stop();
    // Reject: c → a is answered with an ICMP port unreachable.
    c.stop();
    let mut c2 = rig.guest("c", C);
    c2.start(Some(A), 1000, 20, &[]);
    wait_for("rejections", Duration::from_secs(20), || (rig.drops("rule_reject") >= 20).then_some(()));
    wait_for("ICMP answers at c", Duration::from_secs(10), || (c2.report()["other"].as_u64() >= Some(20)).then_some(()));
    assert_eq!(a.received_from(C).0, 0);
    // The flow table shows a's flow; the log has its start.
    let flows = rig.ctl_ok(&["flows", "--guest", "a"]);
    let list = flows["flows"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{flows}");
    assert_eq!((list[0]["src_ip"].as_str(), list[0]["dest_port"].as_u64()), (Some("10.0.5.10"), Some(9)));
    let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
    assert!(eve.contains("\"event_type\":\"flow\"") && eve.contains("\"rule\":\"a-to-b-udp9\""), "new flows of a logging rule are logged");
    assert!(eve.contains("\"action\":\"rejected\""), "rejections are logged");
}

#[test]
fn reload_cuts_exactly_the_flows_the_new_policy_denies() {
    // Two flows run through one reload: a → b:9 (its rule now names another source: cut)
    // and b → c (still allowed: kept).
    let rules = format!(
        "{RULES}\n[[rules]]\nid = \"b-to-c\"\nfrom = [\"guest:b\"]\nto = [\"guest:c\"]\nprotocol = \"udp\"\naction = \"allow\"\n"
    );
    let mut rig = rig("fwcut", 19641, &rules);
    rig.start();
    let (mut a, mut b, mut c) = (rig.guest("a", A), rig.guest("b", B), rig.guest("c", C));
    c.start(None, 0, 0, &[]);
    rig.wait_link("c");
    b.start(Some(C), 1000, 0, &["--sport", "20000", "--dport", "21"]);
    rig.wait_link("b");
    a.start(Some(B), 1000, 0, &[]);
    wait_for("a → b flowing", Duration::from_secs(20), || (b.received_from(A).1 > 200).then_some(()));
    wait_for("b → c flowing", Duration::from_secs(20), || (c.received_from(B).1 > 200).then_some(()));
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let cut = text.replace("id = \"a-to-b-udp9\"", "id = \"a-to-b-udp9\"\nfrom = [\"guest:c\"]").replacen("from = [\"guest:a\"]\nto = [\"guest:b\"]", "to = [\"guest:b\"]", 1);
    assert_ne!(cut, text);
    std::fs::write(&rig.config, cut).unwrap();
    let r = rig.ctl_ok(&["reload"]);
    assert_eq!(r["result"], "applied", "{r}");
    // Cut by its next packet or by the dataplane's sweep after the reload, whichever comes first.
    let removed = || rig.ctl_ok(&["stats"])["stats"]["flow_table"]["removals"].as_u64();
    wait_for("the cut", Duration::from_secs(10), || (removed() == Some(1)).then_some(()));
    std::thread::sleep(Duration::from_millis(500));
    let (cut_before, kept_before) = (b.received_from(A).1, c.received_from(B).1);
    wait_for("the allowed flow to keep flowing after the reload", Duration::from_secs(10), || {
        (c.received_from(B).1 > kept_before + 500).then_some(())
    });
    assert_eq!(b.received_from(A).1, cut_before, "nothing of the cut flow passes any more");
    assert_eq!(removed(), Some(1), "only the flow the new policy denies was cut");
    assert!(rig.drops("policy_drop") > 0, "the cut flow's later packets meet the default action");
    let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
    let cuts: Vec<&str> = eve.lines().filter(|l| l.contains("\"reason\":\"policy\"")).collect();
    assert_eq!(cuts.len(), 1, "one cut logged: {cuts:?}");
    assert!(
        cuts[0].contains("\"src_ip\":\"10.0.5.10\"") && cuts[0].contains("\"src_port\":10000") && cuts[0].contains("\"dest_port\":9"),
        "the cut names a's flow as a sent it: {}",
        cuts[0]
    );
}

#[test]
fn an_idle_flow_the_new_policy_denies_is_cut_without_another_packet() {
    let (mut rig, mut a, b, _c) = started("fwidle", 19646, RULES);
    a.start(Some(B), 1000, 20, &[]);
    wait_for("a's packets at b", Duration::from_secs(20), || (b.received_from(A).1 == 20).then_some(()));
    assert_eq!(rig.ctl_ok(&["flows", "--guest", "a"])["flows"].as_array().map(Vec::len), Some(1));
    // a sends nothing more; the reload withdraws the rule that allowed its flow.
    withdraw_rule(&mut rig, "a-to-b-udp9");
    assert_eq!(rig.ctl_ok(&["reload"])["result"], "applied");
    let cut = wait_for("the idle flow's cut in the log", Duration::from_secs(10), || {
        let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
        eve.lines().find(|l| l.contains("\"reason\":\"policy\"")).map(str::to_string)
    });
    assert!(cut.contains("\"src_ip\":\"10.0.5.10\"") && cut.contains("\"dest_port\":9"), "{cut}");
    // The reload itself is logged: who asked and what changed.
    let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
    let change: serde_json::Value = eve
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event_type"] == "policy" && v["policy"]["change"] == "reload")
        .unwrap_or_else(|| panic!("no policy change record in the log:\n{eve}"));
    let p = &change["policy"];
    // SAFETY: getuid has no preconditions.
    assert_eq!(p["by"]["uid"].as_u64(), Some(unsafe { libc::getuid() } as u64), "{change}");
    assert_eq!((p["result"].as_str(), p["rules"]["removed_ids"].clone()), (Some("applied"), serde_json::json!(["a-to-b-udp9"])), "{change}");
    assert_eq!(rig.ctl_ok(&["flows", "--guest", "a"])["flows"].as_array().map(Vec::len), Some(0), "no longer listed");
    wait_for("the flow table's counters (refreshed every 100 ms)", Duration::from_secs(5), || {
        let t = rig.ctl_ok(&["stats"])["stats"]["flow_table"].clone();
        (t["removals"] == 1 && t["live"] == 0).then_some(())
    });
    assert_eq!(rig.drops("policy_cut"), 0, "no packet of it came");
}

#[test]
fn flows_evicted_from_a_full_table_are_counted_and_logged() {
    // A 1024-flow table that evicts, and a may fill it: a opens 1500 flows to b:9, each one packet.
    let rules = format!("{RULES}\n[conntrack]\ntable_size = 1024\ntable_full = \"evict-oldest\"\nmax_flows_per_guest = 4096\n");
    let (rig, mut a, b, _c) = started("fwevict", 19643, &rules);
    a.start(Some(B), 2000, 1500, &["--flows", "1500"]);
    wait_for("a's packets at b", Duration::from_secs(30), || (b.received_from(A).1 == 1500).then_some(()));
    let table = wait_for("the flow table's counters", Duration::from_secs(10), || {
        let t = rig.ctl_ok(&["stats"])["stats"]["flow_table"].clone();
        (t["creations"].as_u64() == Some(1500)).then_some(t)
    });
    let evictions = table["evictions"].as_u64().unwrap();
    assert!(evictions >= 1500 - 1024, "at least one eviction per flow beyond the table's size: {table}");
    assert_eq!(rig.drops("flow_table_full"), 0, "evict-oldest makes room instead of refusing: {table}");
    let evicted = wait_for("one flow-end record per eviction", Duration::from_secs(10), || {
        let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
        let lines: Vec<String> = eve.lines().filter(|l| l.contains("\"reason\":\"evicted\"")).map(str::to_string).collect();
        (lines.len() as u64 == evictions).then_some(lines)
    });
    for l in &evicted {
        assert!(
            l.contains("\"src_ip\":\"10.0.5.10\"") && l.contains("\"dest_port\":9") && l.contains("\"rule\":\"a-to-b-udp9\""),
            "each names its flow and the rule that decided it: {l}"
        );
    }
    assert_eq!(rig.ctl_ok(&["stats"])["stats"]["events_lost"], 0);
}

#[test]
fn by_default_one_guest_cannot_fill_the_table_for_the_others() {
    // No quota configured: each of the 3 ports may open a third of the 1024-flow table.
    let rules = "[conntrack]\ntable_size = 1024\n\n\
        [[rules]]\nid = \"a-out\"\nfrom = [\"guest:a\"]\nprotocol = \"udp\"\naction = \"allow\"\n\n\
        [[rules]]\nid = \"c-out\"\nfrom = [\"guest:c\"]\nprotocol = \"udp\"\naction = \"allow\"\n";
    let (rig, mut a, b, mut c) = started("fwquota", 19644, rules);
    // a tries 1000 flows (more than the whole table would take after c's 100).
    a.start(Some(B), 2000, 1000, &["--flows", "1000"]);
    wait_for("a's flows refused beyond its quota", Duration::from_secs(30), || (rig.drops("flow_quota") == 1000 - 341).then_some(()));
    assert_eq!(b.received_from(A).1, 341, "a opened 1024 / 3 flows");
    c.start(Some(B), 2000, 100, &["--flows", "100"]);
    wait_for("all of c's flows at b", Duration::from_secs(30), || (b.received_from(C).1 == 100).then_some(()));
    assert_eq!(rig.drops("flow_quota"), 1000 - 341, "c was refused nothing");
    assert_eq!(rig.drops("flow_table_full"), 0);
}

#[test]
fn rule_counters_survive_reloads_and_a_new_rule_starts_from_zero() {
    let (mut rig, mut a, _b, mut c) = started("fwcount", 19645, RULES);
    a.start(Some(B), 1000, 50, &[]);
    c.start(Some(B), 1000, 20, &[]);
    wait_for("both rules counted", Duration::from_secs(20), || {
        (rule(&rig, "a-to-b-udp9")["packets"] == 50 && rule(&rig, "c-to-b")["packets"] == 20).then_some(())
    });
    // Generation 2 drops a-to-b-udp9; then the control process restarts and knows only
    // the running generation's counter slots; generation 3 adds a rule, which may take
    // the freed slot.
    withdraw_rule(&mut rig, "a-to-b-udp9");
    assert_eq!(rig.ctl_ok(&["reload"])["result"], "applied");
    rig.control.as_mut().unwrap().stop();
    rig.start_control();
    rig.wait_applied(2);
    rig.extra += "\n[[rules]]\nid = \"fresh\"\nfrom = [\"guest:b\"]\nto = [\"guest:a\"]\nprotocol = \"udp\"\naction = \"allow\"\n";
    rig.write_config();
    assert_eq!(rig.ctl_ok(&["reload"])["result"], "applied");
    let r = rule(&rig, "fresh");
    assert_eq!((r["packets"].as_u64(), r["flows"].as_u64()), (Some(0), Some(0)), "a new rule starts from zero: {r}");
    assert_eq!(rule(&rig, "c-to-b")["packets"], 20, "a rule that stays keeps its counts across reloads and a control restart");
}

#[test]
fn a_flow_ending_after_a_reorder_is_logged_with_the_rule_that_decided_it() {
    // a → b:9 opens a flow under generation 1, where a-to-b-udp9 is rule #0; a reload then
    // puts another rule first, and the flow, idle since, times out under generation 2.
    let rules = format!("{RULES}\n[conntrack.timeouts]\nudp_unreplied = 2\n");
    let (rig, mut a, b, _c) = started("fwlabel", 19642, &rules);
    a.start(Some(B), 1000, 20, &[]);
    wait_for("a's packets at b", Duration::from_secs(20), || (b.received_from(A).1 == 20).then_some(()));
    let text = std::fs::read_to_string(&rig.config).unwrap();
    let first = "[[rules]]\nid = \"first\"\nfrom = [\"guest:c\"]\nto = [\"guest:a\"]\nprotocol = \"tcp\"\naction = \"deny\"\n\n";
    std::fs::write(&rig.config, text.replacen("[[rules]]", &format!("{first}[[rules]]"), 1)).unwrap();
    assert_eq!(rig.ctl_ok(&["reload"])["result"], "applied");
    let end = wait_for("the flow's timeout in the log", Duration::from_secs(15), || {
        let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
        eve.lines().find(|l| l.contains("\"reason\":\"timeout\"") && l.contains("\"dest_port\":9")).map(str::to_string)
    });
    assert!(end.contains("\"rule\":\"a-to-b-udp9\""), "labelled with the rule that decided the flow, not today's rule #0: {end}");
}

#[test]
fn flows_kill_ends_the_flows_that_match_and_logs_them() {
    let (rig, mut a, b, _c) = started("fwkill", 19639, RULES);
    // a streams to b:9 for 30 s (one flow); the kill lands in the middle.
    a.start(Some(B), 100, 3000, &[]);
    wait_for("a's flow at b", Duration::from_secs(20), || (b.received_from(A).1 >= 50).then_some(()));
    let (code, refused) = rig.ctl(&["flows", "--kill"]);
    assert!(code != 0 && refused["error"].as_str().is_some_and(|e| e.contains("needs a filter")), "no filter, no kill: {refused}");
    assert_eq!(rig.ctl_ok(&["flows", "--kill", "--port", "10"])["killed"], 0, "nothing matches port 10");
    let killed = rig.ctl_ok(&["flows", "--kill", "--guest", "a", "--port", "9"]);
    assert_eq!((killed["killed"].as_u64(), killed["flows"].as_array().map(Vec::len)), (Some(1), Some(1)), "{killed}");
    let before = killed["flows"][0]["pkts"][0].as_u64().unwrap();
    // a's next packets are judged as a new flow (its rule still allows it): as soon as it is
    // listed again, it holds a few packets, fewer than the killed flow had.
    let again = wait_for("a's flow again", Duration::from_secs(10), || {
        let list = rig.ctl_ok(&["flows", "--guest", "a"]);
        (list["flows"].as_array().map(Vec::len) == Some(1)).then_some(list)
    });
    let pkts = again["flows"][0]["pkts"][0].as_u64().unwrap();
    assert!(pkts < before, "a new flow ({pkts} packets), not the killed one ({before} at the kill): {again}");
    let end = wait_for("the kill in the log", Duration::from_secs(5), || {
        let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
        eve.lines().find(|l| l.contains("\"reason\":\"removed\"")).map(str::to_string)
    });
    assert!(end.contains("\"src_ip\":\"10.0.5.10\"") && end.contains("\"dest_port\":9") && end.contains("\"rule\":\"a-to-b-udp9\""), "{end}");
    let received = b.received_from(A).1;
    wait_for("a's packets at b again", Duration::from_secs(10), || (b.received_from(A).1 >= received + 20).then_some(()));
    assert_eq!(rig.drops("policy_cut"), 0, "a kill cuts no packet");
}

/// `rampartctl block`: once it returns (every worker runs the policy with the block), not
/// one more packet of the address is forwarded; the block outlives a control-process
/// restart and a dataplane restart, `unblock` lifts it, and a block `--for` a while lifts itself. Each change is
/// logged.
#[test]
fn a_block_cuts_an_address_at_once_survives_restarts_and_ends() {
    let (mut rig, mut a, b, _c) = started("fwblock", 19647, RULES);
    a.start(Some(B), 1000, 120_000, &[]);
    wait_for("a's packets at b", Duration::from_secs(20), || (b.received_from(A).1 >= 100).then_some(()));
    let tx_b = |rig: &Rig| rig.port("b")["tx_packets"].as_u64().unwrap();
    let (code, bad) = rig.ctl(&["block", "10.0.5.1/24"]);
    assert!(code != 0 && bad["error"].as_str().is_some_and(|e| e.contains("host bits zero")), "{bad}");
    let (code, bad) = rig.ctl(&["block", "10.0.5.10", "--guest", "nobody"]);
    assert!(code != 0 && bad["error"].as_str().is_some_and(|e| e.contains("no guest")), "{bad}");
    // a's address (10.0.5.10), from and to every guest.
    let reply = rig.ctl_ok(&["block", "10.0.5.10"]);
    assert_eq!(reply["result"], "applied", "{reply}");
    let at_block = tx_b(&rig);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(tx_b(&rig), at_block, "not one packet of a blocked address forwarded after `block` returned");
    assert_eq!(rig.ctl_ok(&["blocks"])["blocks"][0]["prefix"], "10.0.5.10/32");
    // A new control process reads the blocklist back and keeps the policy with it.
    rig.control.as_mut().unwrap().kill9();
    rig.start_control();
    rig.wait_applied(2);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(tx_b(&rig), at_block, "still blocked under the restarted control process");
    assert_eq!(rig.ctl_ok(&["blocks"])["blocks"].as_array().map(Vec::len), Some(1));
    // A restarted dataplane gets the block with the policy: fresh guests, a sends, b gets nothing.
    a.stop();
    drop(b);
    rig.dataplane.as_mut().unwrap().stop();
    wait_for("control to notice", Duration::from_secs(10), || (rig.ctl_ok(&["status"])["status"]["attached"] == false).then_some(()));
    rig.start_dataplane();
    rig.wait_applied(1);
    let mut b = rig.guest("b", B);
    b.start(None, 0, 0, &[]);
    rig.wait_link("b");
    let mut a = rig.guest("a", A);
    a.start(Some(B), 1000, 120_000, &[]);
    wait_for("a's packets at the restarted dataplane", Duration::from_secs(20), || (rig.port("a")["rx_packets"].as_u64() > Some(200)).then_some(()));
    assert_eq!(tx_b(&rig), 0, "still blocked under the restarted dataplane: {}", rig.port("a"));
    let at_block = 0;
    // Unblocked: a's packets come through again (as new flows).
    rig.ctl_ok(&["unblock", "10.0.5.10"]);
    wait_for("a's packets at b after unblock", Duration::from_secs(10), || (tx_b(&rig) > at_block + 100).then_some(()));
    // For two seconds: blocked, then free again on its own.
    rig.ctl_ok(&["block", "10.0.5.0/24", "--for", "2"]);
    let at_timed = tx_b(&rig);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(tx_b(&rig), at_timed, "blocked for its time");
    wait_for("the timed block to end", Duration::from_secs(10), || (tx_b(&rig) > at_timed + 100).then_some(()));
    assert_eq!(rig.ctl_ok(&["blocks"])["blocks"].as_array().map(Vec::len), Some(0));
    let eve = std::fs::read_to_string(rig.dir.join("log/eve.json")).unwrap();
    let actions: Vec<String> = eve.lines().filter(|l| l.contains("\"event_type\":\"block\"")).map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["block"]["action"].as_str().unwrap().to_string()).collect();
    assert_eq!(actions, ["added", "removed", "added", "expired"], "{eve}");
    a.stop();
}
