//! Compiles a validated [`Config`] into the [`PolicyImage`] the dataplane
//! applies. Port slots (counter indexes) are stable per port name: a name
//! keeps its slot across reloads and control restarts (the previous slot map
//! is read back from the image the dataplane runs), and a freed slot is
//! reused only by a new name.

use rampart_config::{parse_mac, Attachment, Config, DefaultAction, PortKind};
use rampart_shm::image::IMAGE_FORMAT;
use rampart_shm::{Attach, PolicyImage, PortImage, SegmentImage, Verdict, MAX_PORTS};
use std::collections::BTreeMap;

/// Port name → slot.
pub type SlotMap = BTreeMap<String, u16>;

/// The slot map of an image (to keep slots stable after a control restart).
pub fn slots_of(image: &PolicyImage) -> SlotMap {
    image.ports.iter().map(|p| (p.name.clone(), p.slot)).collect()
}

/// A short stable hash for device names, so a port whose socket changes
/// gets a new DPDK device name (old and new can coexist during the swap).
fn short_hash(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

pub fn compile(config: &Config, previous: &SlotMap) -> Result<(PolicyImage, SlotMap), String> {
    let workers = config.dataplane.worker_cores.len() as u16;
    let mut slots = SlotMap::new();
    let mut used = [false; MAX_PORTS];
    for p in &config.ports {
        if let Some(&s) = previous.get(p.name.get_ref()) {
            slots.insert(p.name.get_ref().clone(), s);
            used[s as usize] = true;
        }
    }
    // Prefer slots never used by a previous port, so fresh names start with fresh counters.
    let previously_used: Vec<u16> = previous.values().copied().collect();
    for p in &config.ports {
        if slots.contains_key(p.name.get_ref()) {
            continue;
        }
        let free = (0..MAX_PORTS as u16)
            .filter(|s| !used[*s as usize])
            .min_by_key(|s| previously_used.contains(s))
            .ok_or("no free port slot")?;
        used[free as usize] = true;
        slots.insert(p.name.get_ref().clone(), free);
    }
    let segments: Vec<SegmentImage> = config.segments.iter().map(|s| SegmentImage { name: s.name.get_ref().clone() }).collect();
    let mut ports = Vec::new();
    for p in &config.ports {
        let slot = slots[p.name.get_ref()];
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
            Attachment::Wire(peer) => Attach::Wire(*slots.get(&peer).ok_or("unknown wire peer")?),
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
        });
    }
    let image = PolicyImage {
        format: IMAGE_FORMAT,
        default_action: match config.policy.default_action {
            DefaultAction::Forward => Verdict::Forward,
            DefaultAction::Drop => Verdict::Drop,
        },
        firewall: crate::rules::compile_firewall(config, &slots)?,
        segments,
        ports,
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
    fn compiles_vhost_ports_to_devargs() {
        let (img, slots) = compile(&cfg(&[("a", true), ("b", false)]), &SlotMap::new()).unwrap();
        assert_eq!(slots["a"], 0);
        assert_eq!(slots["b"], 1);
        assert!(img.ports[0].device.starts_with("net_vhost0x"));
        assert!(img.ports[0].device.ends_with(",iface=/tmp/a.sock,queues=1,client=0"));
        assert!(!img.ports[1].enabled);
        assert_eq!(img.ports[0].attach, Attach::Segment(0));
    }

    #[test]
    fn slots_are_stable_across_reloads() {
        let (_, s1) = compile(&cfg(&[("a", true), ("b", true), ("c", true)]), &SlotMap::new()).unwrap();
        // b removed, d added: a and c keep their slots; d does not inherit b's slot.
        let (img, s2) = compile(&cfg(&[("a", true), ("c", true), ("d", true)]), &s1).unwrap();
        assert_eq!((s2["a"], s2["c"]), (s1["a"], s1["c"]));
        assert_ne!(s2["d"], s1["b"]);
        assert_eq!(slots_of(&img), s2);
    }
}
