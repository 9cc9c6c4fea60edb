//! Every seed, committed or generated, and every input a fuzzer once failed on
//! (`regressions/<target>/`) passes its check: the fuzz targets' invariants as ordinary
//! tests, without the fuzzer.

use rampart_fuzz::{check, committed_seeds, generated_seeds, TARGETS};

#[test]
fn every_committed_seed_and_regression_passes() {
    for target in TARGETS {
        let seeds = committed_seeds(target);
        let regressions = std::fs::read_dir(format!("{}/regressions/{target}", env!("CARGO_MANIFEST_DIR"))).into_iter().flatten().flatten();
        for (name, data) in seeds.into_iter().chain(regressions.map(|e| (e.path().display().to_string(), std::fs::read(e.path()).unwrap()))) {
            eprintln!("{target}: {name}");
            check(target, &data);
        }
    }
}

#[test]
fn every_generated_seed_passes_and_each_target_has_seeds() {
    let seeds = generated_seeds();
    for target in TARGETS {
        assert!(seeds.iter().any(|s| s.0 == target) || !committed_seeds(target).is_empty(), "{target} has no seeds");
    }
    for (target, name, data) in seeds {
        eprintln!("{target}: {name}");
        check(target, &data);
    }
}

#[test]
fn the_generated_images_are_the_ones_the_dataplane_accepts() {
    let images: Vec<_> = generated_seeds().into_iter().filter(|s| s.0 == "image").collect();
    assert!(images.len() >= 3, "the demo config and both firewall policies compile");
    for (_, name, data) in images {
        assert!(rampart_shm::PolicyImage::decode(&data).is_ok(), "{name}");
    }
}

/// The firewall seeds reach past the parser: the policy's rules decide them, flows are
/// opened and hit, and the reload re-checks them.
#[test]
fn the_firewall_seeds_open_hit_reject_and_cut_flows() {
    use rampart_fuzz::{firewall, Verdicts};
    let seed = |name: &str| generated_seeds().into_iter().find(|s| s.0 == "firewall" && s.1 == name).unwrap_or_else(|| panic!("no seed {name}")).2;
    let v = |passed, created, dropped, rejected| Verdicts { passed, created, dropped, rejected };
    // Guest a (slot 0): its DNS query opens a flow, the reply and the retry hit it. After
    // the reload DNS is stateless: the query untracks the flow and passes on its own; the
    // reply (sent from a's port too, in this burst) then meets no rule, and the guests'
    // default forward opens a tracked flow for it (tracked: the uplink's default drops).
    assert_eq!(firewall(&seed("dns-from-0")), [v(3, 1, 0, 0), v(3, 0, 0, 0), v(3, 1, 0, 0)]);
    // SSH to b is rejected; the web SYN opens a flow (a `log` rule) and the SYN-ACK hits it;
    // the reload denies SSH and drops the web rule (default: forward, tracked), so the
    // web flow is re-checked and kept.
    assert_eq!(firewall(&seed("tcp-from-0"))[0], v(2, 1, 0, 1));
    assert_eq!(firewall(&seed("tcp-from-0"))[2].dropped, 1, "ssh is denied after the reload");
    // A ping opens a flow and its reply hits it; after the reload pings are denied: cut.
    assert_eq!(firewall(&seed("ping-from-0")), [v(2, 1, 0, 0), v(2, 0, 0, 0), v(0, 0, 2, 0)]);
    // On the uplink (slot 2, default drop) nothing but the rules' traffic enters.
    assert_eq!(firewall(&seed("ping-from-2"))[0].created, 1, "the ping rule allows it from anywhere");
    // ICMP errors about no flow: dropped where defaults track; where all forward, they pass
    // untracked (no rule matches them).
    assert_eq!(firewall(&seed("errors-from-0"))[0], v(0, 0, 2, 0));
    assert_eq!(firewall(&seed("errors-from-128"))[0], v(2, 0, 0, 0));
}

/// The inspect seeds reach the signatures through the packet path: a drop split across
/// segments, answers of reject signatures, pass silencing a drop, uninspected SSH, more
/// flows than streams, an idle stream taken over.
#[test]
fn the_inspect_seeds_drop_reject_alert_and_run_out_of_streams() {
    use rampart_fuzz::inspect;
    let seed = |name: &str| generated_seeds().into_iter().find(|s| s.0 == "inspect" && s.1 == name).unwrap_or_else(|| panic!("no seed {name}")).2;
    for ip in ["v4", "v6"] {
        // The handshake, "evil-pa" + "yload" (dropped, and with it the rest of the flow):
        // the server's "WatchMe" and an out-of-sequence "evil-payload" are dropped uninspected.
        let c = inspect(&seed(&format!("split-drop-{ip}")));
        assert_eq!((c.frames, c.signature_drops, c.flow_drops, c.unscanned), (7, 1, 2, 0), "{ip}");
        assert_eq!((c.counters.packets, c.counters.alerts, c.counters.blocked, c.counters.out_of_order), (5, 1, 1, 0), "{ip}");
        // The first "RSTME" segment is answered with a RST (it fits in the frame's own
        // buffer), and blocks its flow: the second is dropped.
        let c = inspect(&seed(&format!("reject-{ip}")));
        assert_eq!((c.replied, c.counters.blocked, c.flow_drops), (1, 1, 1), "{ip}");
        // UDP: the admin request alerts, "exploit" drops (and its flow: "exploit, but safe"
        // is dropped with it), both "dead beef" datagrams (two flows) are rejected (answered
        // where the buffer has room).
        let c = inspect(&seed(&format!("udp-{ip}")));
        assert_eq!((c.signature_drops + c.replied, c.replied, c.counters.alerts, c.flow_drops), (3, 1, 4, 1), "{ip}");
    }
    // "trusted: ok" passes a packet that also holds "evil-payload"; "the END" alerts,
    // "ENDless" does not; the server's 3 bytes alert; "evil-payload" after the FINs drops.
    let c = inspect(&seed("pass-and-end"));
    assert_eq!((c.counters.blocked, c.counters.alerts, c.flow_drops), (1, 3, 0));
    assert_eq!(inspect(&seed("ssh-uninspected")).counters.packets, 0, "an allow rule's flow is not inspected");
    // A retransmitted segment is inspected on its own; "evil-payload" completes and blocks
    // the flow, so the overlapping segment and the RST after it are dropped uninspected.
    let c = inspect(&seed("out-of-order"));
    assert_eq!((c.counters.out_of_order, c.counters.blocked, c.flow_drops), (1, 1, 2));
    // pcre drops a login, byte_jump rejects a jump to EXEC, byte_test alerts on a long record.
    let c = inspect(&seed("numbers-and-pcre"));
    assert_eq!((c.counters.blocked, c.counters.alerts, c.forwarded, c.frames), (2, 3, 8, 10), "{c:?}");
    // The third THIRD drops (and blocks its flow: the fourth is dropped uninspected); one
    // LIMITED alert of three.
    let c = inspect(&seed("thresholds"));
    assert_eq!((c.counters.blocked, c.flow_drops, c.counters.filtered, c.counters.alerts, c.counters.suppressed), (1, 1, 2, 2, 2), "{c:?}");
    let c = inspect(&seed("many-flows"));
    assert!(c.counters.streams_refused > 0 && c.counters.packets == 64, "{c:?}");
    // Other flows take the idle stream: the rest of its "evil-payload" is not found.
    let c = inspect(&seed("idle"));
    assert_eq!((c.counters.blocked, c.forwarded, c.frames), (0, 21, 21));
}

/// The rule seeds load, skip and fail as written.
#[test]
fn the_rule_seeds_load_skip_and_fail() {
    use rampart_signatures::parse::{parse_rules, Classifications, Vars};
    let parse = |name: &str| {
        let text = generated_seeds().into_iter().find(|s| s.0 == "rules" && s.1 == name).unwrap_or_else(|| panic!("no seed {name}")).2;
        parse_rules(&String::from_utf8(text).unwrap(), "fuzz.rules", &Vars::suricata_defaults(), &Classifications::default())
    };
    let et = parse("et-style.rules").unwrap();
    assert_eq!((et.signatures.len(), et.skipped.len(), et.disabled), (10, 5, 1), "{}", et.summary());
    let skipped: Vec<String> = et.skipped_keywords().into_iter().map(|(k, _)| k).collect();
    for keyword in ["pcre:unsupported", "pcre/U", "byte_test:dce"] {
        assert!(skipped.iter().any(|k| k == keyword), "{keyword}: {}", et.summary());
    }
    assert_eq!(parse("inspect.rules").unwrap().signatures.len(), 15);
    assert_eq!(parse("pcre-error.rules").unwrap_err().keyword, "pcre");
    assert_eq!(parse("continued.rules").unwrap().signatures.iter().map(|s| s.origin.line).collect::<Vec<_>>(), [1, 5]);
    assert_eq!(parse("sids.rules").unwrap_err().line, 3, "the second sid 1 of gid 1");
    assert_eq!(parse("errors.rules").unwrap_err().keyword, "content");
}
