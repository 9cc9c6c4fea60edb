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
