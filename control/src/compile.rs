//! Compiles a validated [`Config`] into the [`PolicyImage`] the dataplane
//! applies. Port slots (counter indexes) are stable per port name: a name
//! keeps its slot across reloads and control restarts (the previous slot map
//! is read back from the image the dataplane runs), and a freed slot is
//! reused only by a new name.

use rampart_config::rules::Cidr;
use rampart_config::{parse_mac, Attachment, Config, DefaultAction, Enforce, Mode, PortKind, Serve};
use rampart_shm::image::IMAGE_FORMAT;
use rampart_shm::{Anomaly, AnomalyAction, AnomalyImage, ChecksumScope, Attach, GuardImage, LimitsImage, MonitorImage, PolicyImage, RateImage, PortImage, SegmentImage, Verdict, MAX_PORTS};
use std::collections::BTreeMap;

/// Name → slot.
pub type SlotMap = BTreeMap<String, u16>;

/// Stable counter slots: ports by name, rules by id, signatures by `gid:sid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    pub ports: SlotMap,
    pub rules: SlotMap,
    pub signatures: SlotMap,
}

/// The key a signature's counter slot is kept under.
pub fn signature_key(s: &rampart_signatures::Signature) -> String {
    format!("{}:{}", s.gid, s.sid)
}

/// The slots of an image (to keep them stable after a control restart).
pub fn slots_of(image: &PolicyImage) -> Slots {
    Slots {
        ports: image.ports.iter().map(|p| (p.name.clone(), p.slot)).collect(),
        rules: image
            .firewall
            .iter()
            .flat_map(|fw| fw.rules.iter())
            .filter(|r| r.counter != u16::MAX)
            .map(|r| (r.id.clone(), r.counter))
            .collect(),
        signatures: image
            .inspection
            .iter()
            .flat_map(|ins| ins.signatures.iter().zip(&ins.counters))
            .filter(|(_, &c)| c != u16::MAX)
            .map(|(s, &c)| (signature_key(s), c))
            .collect(),
    }
}

/// Gives each name a slot below `max`: its previous slot if it had one, else a free
/// slot, preferring ones no previous name used (so new names start with fresh
/// counters). Names beyond `max` get none.
pub fn assign<'a>(names: impl Iterator<Item = &'a str> + Clone, previous: &SlotMap, max: usize) -> SlotMap {
    let mut slots = SlotMap::new();
    let mut used = vec![false; max];
    for n in names.clone() {
        if let Some(&s) = previous.get(n).filter(|&&s| (s as usize) < max) {
            slots.insert(n.to_string(), s);
            used[s as usize] = true;
        }
    }
    let mut held_before = vec![false; max];
    for &s in previous.values().filter(|&&s| (s as usize) < max) {
        held_before[s as usize] = true;
    }
    // Slots no one held before go first, so a removed rule's counters are not reused at once.
    let mut fresh = (0..max as u16).filter(|&s| !held_before[s as usize]);
    let mut recycled = (0..max as u16).filter(|&s| held_before[s as usize]);
    for n in names {
        if slots.contains_key(n) {
            continue;
        }
        let free = fresh.by_ref().find(|s| !used[*s as usize]).or_else(|| recycled.by_ref().find(|s| !used[*s as usize]));
        if let Some(free) = free {
            used[free as usize] = true;
            slots.insert(n.to_string(), free);
        }
    }
    slots
}

/// A short stable hash for device names, so a port whose socket changes
/// gets a new DPDK device name (old and new can coexist during the swap).
fn short_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

/// A port's token-bucket limits: its own `max_*`, else the first of its tags' in
/// `[throttle.tags]` that sets it, else (guest ports) `[throttle]`'s.
fn limits(config: &Config, p: &rampart_config::Port) -> LimitsImage {
    use rampart_config::TagLimits;
    let t = &config.throttle;
    let guest = *p.kind.get_ref() != PortKind::Device;
    let tags: Vec<&TagLimits> = p.tags.iter().filter_map(|tag| t.tags.get(tag.get_ref())).collect();
    let limit = |own: Option<u64>, of_tag: fn(&TagLimits) -> Option<u64>, default: u64, min_burst: u64| {
        let rate = own.or_else(|| tags.iter().find_map(|l| of_tag(l))).unwrap_or(if guest { default } else { 0 });
        (rate > 0).then(|| RateImage { rate, burst: (rate.saturating_mul(t.burst_ms) / 1000).max(min_burst) })
    };
    LimitsImage {
        // At least a burst of packets (32), or of full-size frames, may always come at once.
        packets: limit(p.max_packets_per_s, |l| l.max_packets_per_s, t.max_packets_per_s, 32),
        bytes: limit(p.max_bytes_per_s, |l| l.max_bytes_per_s, t.max_bytes_per_s, 32 * 1518),
        floods: limit(p.max_floods_per_s, |l| l.max_floods_per_s, t.max_floods_per_s, 1),
        new_flows: limit(p.max_new_flows_per_s, |l| l.max_new_flows_per_s, t.max_new_flows_per_s, 1),
    }
}

/// A limit of `rate` per second (0: none), `burst_ms` deep (at least one).
/// `[anomalies]` as the dataplane reads it (tiny fragments are always dropped).
fn anomalies(cfg: &rampart_config::Anomalies) -> AnomalyImage {
    use rampart_config::AnomalyAction as A;
    let mut image = AnomalyImage::default();
    let kinds = [
        (Anomaly::TcpFlags, cfg.tcp_flags),
        (Anomaly::Land, cfg.land),
        (Anomaly::FragmentOverlap, cfg.fragment_overlap),
        (Anomaly::IpOptions, cfg.ip_options),
        (Anomaly::LowTtl, cfg.low_ttl),
        (Anomaly::BadChecksum, cfg.bad_checksum),
        (Anomaly::OversizeIcmp, cfg.oversize_icmp),
        (Anomaly::TcpWindow, cfg.tcp_window),
    ];
    for (kind, action) in kinds {
        image.actions[kind.index()] = match action {
            A::Drop => AnomalyAction::Drop,
            A::Alert => AnomalyAction::Alert,
            A::Ignore => AnomalyAction::Ignore,
        };
    }
    image.icmp_max_bytes = cfg.icmp_max_bytes.min(u16::MAX as u32) as u16;
    image.checksums = match cfg.checksums {
        rampart_config::ChecksumScope::Inspected => ChecksumScope::Inspected,
        rampart_config::ChecksumScope::All => ChecksumScope::All,
    };
    image
}

fn rate(rate: u64, burst_ms: u64) -> Option<RateImage> {
    (rate > 0).then(|| RateImage { rate, burst: (rate.saturating_mul(burst_ms) / 1000).max(1) })
}

pub fn compile(config: &Config, previous: &Slots) -> Result<(PolicyImage, Slots), String> {
    let workers = config.dataplane.worker_cores.len() as u16;
    let slots = Slots {
        ports: assign(config.ports.iter().map(|p| p.name.get_ref().as_str()), &previous.ports, MAX_PORTS),
        rules: assign(config.rules.iter().map(|r| r.id.get_ref().as_str()), &previous.rules, rampart_shm::MAX_RULE_COUNTERS),
        signatures: SlotMap::new(),
    };
    let mut slots = slots;
    let inspection = crate::inspection::load(config)?.map(|loaded| {
        let mut image = loaded.image;
        let keys: Vec<String> = image.signatures.iter().map(signature_key).collect();
        slots.signatures = assign(keys.iter().map(String::as_str), &previous.signatures, rampart_shm::MAX_SIGNATURE_COUNTERS);
        image.counters = keys.iter().map(|k| slots.signatures.get(k).copied().unwrap_or(u16::MAX)).collect();
        image
    });
    if slots.ports.len() < config.ports.len() {
        return Err("no free port slot".into());
    }
    let segments: Vec<SegmentImage> = config.segments.iter().map(|s| SegmentImage { name: s.name.get_ref().clone() }).collect();
    let mut ports = Vec::new();
    for p in &config.ports {
        let slot = slots.ports[p.name.get_ref()];
        let queues = p.queues.as_ref().map(|q| *q.get_ref()).unwrap_or(workers);
        let (device, socket, client) = match (p.kind.get_ref(), &p.socket, &p.device) {
            (PortKind::VhostServer | PortKind::VhostClient, Some(sock), _) => {
                let client = *p.kind.get_ref() == PortKind::VhostClient;
                let path = sock.get_ref();
                let name = format!("net_vhost{slot}x{:08x}", short_hash(&format!("{path}{client}")));
                let dev = format!("{name},iface={path},queues={},client={}", queues.max(workers), client as u8);
                (dev, path.clone(), client)
            }
            (PortKind::Device, _, Some(dev)) => (dev.get_ref().clone(), String::new(), false),
            _ => return Err(format!("port {}: kind and socket/device disagree (config not validated?)", p.name.get_ref())),
        };
        let attach = match p.attachment() {
            Attachment::Segment(s) => Attach::Segment(segments.iter().position(|x| x.name == s).ok_or("unknown segment")? as u16),
            Attachment::Wire(peer) => Attach::Wire(*slots.ports.get(&peer).ok_or("unknown wire peer")?),
        };
        ports.push(PortImage {
            slot,
            name: p.name.get_ref().clone(),
            device,
            socket,
            client,
            queues,
            attach,
            enabled: p.enabled,
            macs: p.macs.iter().filter_map(|m| parse_mac(m.get_ref())).collect(),
            // Unset: the dataplane gives a fair share of the table it runs (sized at its start).
            max_flows: p.max_flows.or((config.conntrack.max_flows_per_guest > 0).then_some(config.conntrack.max_flows_per_guest)),
            default_action: match config.policy.default_for(*p.kind.get_ref()) {
                DefaultAction::Forward => Verdict::Forward,
                DefaultAction::Drop => Verdict::Drop,
            },
            guard: p.guarded().then(|| GuardImage {
                addresses: p.addresses.iter().filter_map(|a| Cidr::parse(a.get_ref())).map(|c| (c.addr, c.len)).collect(),
                learn: p.learns(),
                learn_timeout_s: config.guard.learn_timeout,
                serves_dhcp: p.serves.contains(&Serve::Dhcp),
                serves_ra: p.serves.contains(&Serve::Ra),
            }),
            // Uplinks have whole networks behind them: no cap unless they set one.
            max_macs: p.max_macs.unwrap_or(if *p.kind.get_ref() == PortKind::Device { 0 } else { config.guard.max_macs_per_port }),
            limits: limits(config, p),
            monitor: (p.mode.unwrap_or(config.policy.mode) == Mode::Monitor).then(|| MonitorImage {
                guard: config.policy.monitor_enforces.contains(&Enforce::Guard),
                throttle: config.policy.monitor_enforces.contains(&Enforce::Throttle),
                anomalies: config.policy.monitor_enforces.contains(&Enforce::Anomalies),
            }),
        });
    }
    let image = PolicyImage {
        format: IMAGE_FORMAT,
        firewall: crate::rules::compile_firewall(config, &slots)?,
        segments,
        ports,
        drop_events_per_s: config.events.drops_per_second,
        new_flows_per_source: rate(config.throttle.max_new_flows_per_source, config.throttle.burst_ms),
        new_flows_per_destination: rate(config.throttle.max_new_flows_per_destination, config.throttle.burst_ms),
        inspection,
        anomalies: anomalies(&config.anomalies),
    };
    image.validate()?;
    Ok((image, slots))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(ports: &[(&str, bool)]) -> Config {
        let mut text = String::from("[[segments]]\nname = \"lan\"\n");
        for (name, enabled) in ports {
            text += &format!("[[ports]]\nname = \"{name}\"\nkind = \"vhost-server\"\nsocket = \"/tmp/{name}.sock\"\nsegment = \"lan\"\nenabled = {enabled}\n");
        }
        rampart_config::parse("t.toml", &text).unwrap()
    }

    #[test]
    fn guest_ports_get_the_guard_and_default_limits_uplinks_neither() {
        let text = "[throttle]\nmax_packets_per_s = 1000\n[throttle.tags.web]\nmax_floods_per_s = 10\nmax_packets_per_s = 5000\n\
            [throttle.tags.db]\nmax_floods_per_s = 20\n[[segments]]\nname = \"lan\"\n\
            [[ports]]\nname = \"g\"\nkind = \"vhost-server\"\nsocket = \"/tmp/g.sock\"\nsegment = \"lan\"\naddresses = [\"10.0.0.1\"]\n\
            [[ports]]\nname = \"h\"\nkind = \"vhost-server\"\nsocket = \"/tmp/h.sock\"\nsegment = \"lan\"\nmax_packets_per_s = 0\nmax_bytes_per_s = 1000000\nserves = [\"dhcp\"]\n\
            [[ports]]\nname = \"up\"\nkind = \"device\"\ndevice = \"net_null0\"\nsegment = \"lan\"\n\
            [[ports]]\nname = \"w\"\nkind = \"vhost-server\"\nsocket = \"/tmp/w.sock\"\nsegment = \"lan\"\ntags = [\"db\", \"web\"]\nmax_packets_per_s = 7\n";
        let (img, _) = compile(&rampart_config::parse("t.toml", text).unwrap(), &Slots::default()).unwrap();
        let (g, h, up) = (&img.ports[0], &img.ports[1], &img.ports[2]);
        let guard = g.guard.as_ref().unwrap();
        assert_eq!((guard.addresses.len(), guard.learn, guard.serves_dhcp), (1, true, false));
        assert!(h.guard.as_ref().unwrap().serves_dhcp);
        assert_eq!(g.limits.packets, Some(RateImage { rate: 1000, burst: 50 }), "the [throttle] default, 50 ms deep");
        assert_eq!(g.limits.floods, Some(RateImage { rate: 20_000, burst: 1000 }), "storm control is on for guests");
        assert_eq!((h.limits.packets, h.limits.bytes), (None, Some(RateImage { rate: 1_000_000, burst: 50_000 })), "the port's own limits win; 0 is none");
        assert_eq!((up.guard.is_none(), up.limits, up.max_macs), (true, LimitsImage::default(), 0), "uplinks: no guard, no limits, no MAC cap");
        assert_eq!(g.max_macs, 64);
        // Tags between the port's own limits and the defaults; the first tag that sets one wins.
        let w = &img.ports[3];
        assert_eq!(w.limits.packets.map(|r| r.rate), Some(7), "its own");
        assert_eq!(w.limits.floods.map(|r| r.rate), Some(20), "db before web");
        assert_eq!(w.limits.bytes, None);
    }

    #[test]
    fn compiles_vhost_ports_to_devargs() {
        let (img, slots) = compile(&cfg(&[("a", true), ("b", false)]), &Slots::default()).unwrap();
        assert_eq!(slots.ports["a"], 0);
        assert_eq!(slots.ports["b"], 1);
        assert!(img.ports[0].device.starts_with("net_vhost0x"));
        assert!(img.ports[0].device.ends_with(",iface=/tmp/a.sock,queues=1,client=0"));
        assert!(!img.ports[1].enabled);
        assert_eq!(img.ports[0].attach, Attach::Segment(0));
    }

    #[test]
    fn each_port_gets_the_default_action_of_its_direction() {
        let ports = "[[segments]]\nname = \"lan\"\n\
            [[ports]]\nname = \"guest\"\nkind = \"vhost-server\"\nsocket = \"/tmp/g.sock\"\nsegment = \"lan\"\n\
            [[ports]]\nname = \"uplink\"\nkind = \"device\"\ndevice = \"net_tap0,iface=up0\"\nsegment = \"lan\"\n";
        let defaults = |policy: &str| {
            let (img, _) = compile(&rampart_config::parse("t.toml", &format!("[policy]\n{policy}\n{ports}")).unwrap(), &Slots::default()).unwrap();
            (img.ports[0].default_action, img.ports[1].default_action)
        };
        assert_eq!(defaults("default_action = \"drop\""), (Verdict::Drop, Verdict::Drop));
        // Without rules, a firewall only where the defaults differ (to track what one forwards).
        let firewall = |policy: &str| compile(&rampart_config::parse("t.toml", &format!("[policy]\n{policy}\n{ports}")).unwrap(), &Slots::default()).unwrap().0.firewall.is_some();
        assert!(!firewall("default_action = \"drop\"") && firewall("from_uplinks = \"drop\""));
        assert_eq!(defaults("default_action = \"drop\"\nfrom_guests = \"forward\""), (Verdict::Forward, Verdict::Drop));
        assert_eq!(defaults("from_uplinks = \"drop\""), (Verdict::Forward, Verdict::Drop), "the default default forwards");
        assert_eq!(defaults("default_action = \"forward\"\nfrom_guests = \"drop\"\nfrom_uplinks = \"forward\""), (Verdict::Drop, Verdict::Forward));
        let e = rampart_config::parse("t.toml", &format!("[policy]\nfrom_guests = \"allow\"\n{ports}")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (2, "policy.from_guests"), "{e}");
    }

    #[test]
    fn slots_are_stable_across_reloads() {
        let (_, s1) = compile(&cfg(&[("a", true), ("b", true), ("c", true)]), &Slots::default()).unwrap();
        // b removed, d added: a and c keep their slots; d does not inherit b's slot.
        let (img, s2) = compile(&cfg(&[("a", true), ("c", true), ("d", true)]), &s1).unwrap();
        assert_eq!((s2.ports["a"], s2.ports["c"]), (s1.ports["a"], s1.ports["c"]));
        assert_ne!(s2.ports["d"], s1.ports["b"]);
        assert_eq!(slots_of(&img), s2);
    }

    #[test]
    fn monitor_mode_is_per_port_with_a_global_default_and_always_has_a_firewall() {
        let text = "[policy]\nmode = \"monitor\"\nmonitor_enforces = [\"guard\"]\n[[segments]]\nname = \"lan\"\n\
            [[ports]]\nname = \"a\"\nkind = \"vhost-server\"\nsocket = \"/tmp/a.sock\"\nsegment = \"lan\"\n\
            [[ports]]\nname = \"b\"\nkind = \"vhost-server\"\nsocket = \"/tmp/b.sock\"\nsegment = \"lan\"\nmode = \"inline\"\n";
        let (img, _) = compile(&rampart_config::parse("t.toml", text).unwrap(), &Slots::default()).unwrap();
        assert_eq!(img.ports[0].monitor, Some(MonitorImage { guard: true, throttle: false, anomalies: false }));
        assert_eq!(img.ports[1].monitor, None, "its own mode wins");
        assert!(img.firewall.is_some(), "the firewall finds a monitor port's would-be drops, rules or not");
        let e = rampart_config::parse("t.toml", &text.replace("[\"guard\"]", "[\"acl\"]")).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (3, "policy.monitor_enforces[0]"), "{e}");
    }

    #[test]
    fn anomalies_compile_to_the_image_and_a_bad_one_names_its_field() {
        let base = "[[segments]]\nname = \"lan\"\n";
        let image = |text: &str| compile(&rampart_config::parse("t.toml", text).unwrap(), &Slots::default()).unwrap().0;
        assert_eq!(image(base).anomalies, AnomalyImage::default(), "the config's defaults are the image's");
        let img = image(&format!("{base}[anomalies]\nland = \"alert\"\nlow_ttl = \"ignore\"\nchecksums = \"all\"\nicmp_max_bytes = 9000\n"));
        let a = img.anomalies;
        assert_eq!((a.action(Anomaly::Land), a.action(Anomaly::LowTtl), a.action(Anomaly::TcpFlags)), (AnomalyAction::Alert, AnomalyAction::Ignore, AnomalyAction::Drop));
        assert_eq!((a.checksums, a.icmp_max_bytes, a.action(Anomaly::TinyFragment)), (ChecksumScope::All, 9000, AnomalyAction::Drop));
        let err = |tail: &str| rampart_config::parse("t.toml", &format!("{base}[anomalies]\n{tail}\n")).unwrap_err();
        let e = err("land = \"block\"");
        assert_eq!((e.line, e.field.as_str()), (4, "anomalies.land"), "{e}");
        let e = err("icmp_max_bytes = 10");
        assert_eq!(e.field.as_str(), "anomalies.icmp_max_bytes", "{e}");
        let e = err("tiny_fragment = \"alert\"");
        assert!(e.to_string().contains("tiny_fragment"), "always dropped, not configurable: {e}");
        let monitor = image(&format!("[policy]\nmode = \"monitor\"\nmonitor_enforces = [\"anomalies\"]\n{base}[[ports]]\nname = \"a\"\nkind = \"vhost-server\"\nsocket = \"/tmp/a.sock\"\nsegment = \"lan\"\n"));
        assert_eq!(monitor.ports[0].monitor, Some(MonitorImage { guard: false, throttle: false, anomalies: true }));
    }
}
