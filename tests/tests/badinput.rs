//! Bad input at the process edges: invalid configs, taken paths, foreign
//! shared memory, rejected reloads. Each must fail clearly and lose nothing.

use rampart_tests::{bin, wait_for, PortSpec, Rig};
use std::process::Command;
use std::time::Duration;

fn quick_rig(name: &str, metrics: u16) -> Rig {
    let mut rig = Rig::new(name, metrics);
    rig.hugepages = false;
    rig.ports.push(PortSpec::guest("a", "lan", "52:54:00:00:03:0a"));
    rig.ports.push(PortSpec::guest("b", "lan", "52:54:00:00:03:0b"));
    rig
}

#[test]
fn invalid_config_names_file_line_and_field() {
    let dir = std::env::temp_dir().join(format!("rampart-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[dataplane]\nworker_cores = [1]\n\n[[ports]]\nname = \"a\"\nkind = \"vhost-server\"\nsocket = \"/tmp/x.sock\"\nsegment = \"nowhere\"\n").unwrap();
    for (binary, args) in [("rampart-dataplane", vec!["--config"]), ("rampartctl", vec!["check"])] {
        let out = Command::new(bin(binary)).args(&args).arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{binary} accepted a bad config");
        assert!(err.contains(&format!("{}:8: field `ports[0].segment`: unknown segment \"nowhere\"", cfg.display())), "{binary}: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn invalid_rule_names_file_line_field_and_rule_id() {
    let dir = std::env::temp_dir().join(format!("rampart-badrule-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    let rules = "[[rules]]\nid = \"first\"\naction = \"allow\"\n\n[[rules]]\nid = \"web-in\"\n";
    for (rule, expected) in [
        ("action = \"permit\"\n", ":7: field `rules[1].action`: rule web-in: unknown variant `permit`"),
        ("protocol = \"icmp\"\nicmp_type = 300\naction = \"allow\"\n", ":8: field `rules[1].icmp_type`: rule web-in: "),
    ] {
        std::fs::write(&cfg, format!("{rules}{rule}")).unwrap();
        let out = Command::new(bin("rampartctl")).arg("check").arg(&cfg).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "rampartctl check accepted a bad rule");
        assert!(err.contains(&format!("{}{expected}", cfg.display())), "{err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn rejected_reload_keeps_the_running_policy() {
    let mut rig = quick_rig("badreload", 19630);
    rig.start();
    std::fs::write(&rig.config, std::fs::read_to_string(&rig.config).unwrap().replace("enabled = true", "enabled = \"maybe\"")).unwrap();
    let (code, reply) = rig.ctl(&["reload"]);
    assert_ne!(code, 0);
    let msg = reply["error"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("rampart.toml:") && msg.contains("enabled") && msg.contains("stays in force"), "{reply}");
    let s = rig.ctl_ok(&["status"]);
    assert_eq!(s["status"]["applied_generation"], 1);
    assert_eq!(s["status"]["published_generation"], 1, "nothing was published");
}

#[test]
fn taken_socket_path_is_reported_and_other_ports_work() {
    let mut rig = quick_rig("taken", 19631);
    std::fs::write(rig.socket("b"), "not a socket").unwrap();
    rig.start();
    let b = rig.port("b");
    assert_eq!(b["state"], "error", "{b}");
    assert!(b["message"].as_str().unwrap().contains("not a socket"), "{b}");
    assert_eq!(rig.port("a")["state"], "up");
    // Fix it and reload: the port comes up.
    std::fs::remove_file(rig.socket("b")).unwrap();
    rig.ports[1].enabled = false; // any change makes a new generation
    rig.write_config();
    // Same device string: the dataplane retries ports that are not attached.
    let r = rig.ctl_ok(&["reload"]);
    assert_eq!(r["result"], "applied", "{r}");
    assert_eq!(rig.port("b")["state"], "up");
}

#[test]
fn second_dataplane_on_the_same_segment_is_refused() {
    let mut rig = quick_rig("twodp", 19632);
    rig.start_dataplane();
    let out = Command::new(bin("rampart-dataplane")).arg("--config").arg(&rig.config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("in use by a running dataplane") || err.contains("file prefix") || err.contains("EAL"), "{err}");
}

#[test]
fn foreign_shared_memory_is_refused_not_trusted() {
    let mut rig = quick_rig("foreign", 19633);
    rig.write_config();
    std::fs::write(rig.shm(), vec![0x5a; 1 << 20]).unwrap();
    rig.start_control();
    let c = rig.control.as_ref().unwrap();
    wait_for("the refusal", Duration::from_secs(10), || c.log_text().contains("refusing shared-memory segment").then_some(()));
    assert_eq!(rig.ctl_ok(&["status"])["status"]["attached"], false);
}
