//! The compiled policy image: what the control process publishes and the
//! dataplane applies. Encoded with postcard (compact, bounds-checked
//! decoding); the dataplane validates every cross-reference before use, so a
//! corrupt or hostile image is rejected with a reason, never trusted.

use crate::layout::{MAX_PORTS, MAX_WORKERS};
use serde::{Deserialize, Serialize};

/// Bumped when the image's meaning changes.
pub const IMAGE_FORMAT: u32 = 11;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Forward,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentImage {
    pub name: String,
}

/// How a port forwards what it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attach {
    /// L2 switching inside segment `n` (index into `segments`).
    Segment(u16),
    /// Bump in the wire: everything goes to the port in this slot.
    Wire(u16),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortImage {
    /// Counter slot, stable for the port's name while the dataplane runs.
    pub slot: u16,
    pub name: String,
    /// DPDK device string to hot-plug (vhost ports are compiled to `net_vhost...`).
    pub device: String,
    /// vhost-user socket path, empty for other devices. In server mode the
    /// dataplane clears a stale socket there and sets the socket's mode.
    pub socket: String,
    /// vhost-user client mode (the guest's QEMU owns the socket).
    pub client: bool,
    pub queues: u16,
    pub attach: Attach,
    /// Admin state: a disabled port drops all it receives.
    pub enabled: bool,
    /// Static MAC bindings.
    pub macs: Vec<[u8; 6]>,
    /// Flow-table quota of this port: at most this many live flows opened here (None: a
    /// fair share, the running table's capacity ÷ the number of ports).
    pub max_flows: Option<u32>,
    /// Action for IP traffic entering here that no rule matches (for all of it when there
    /// are no rules): the policy's default for this port's direction.
    pub default_action: Verdict,
    /// Anti-spoofing and L2 hygiene of what the port receives; None: off (uplinks by
    /// default, or `anti_spoofing = false`).
    pub guard: Option<GuardImage>,
    /// Cap on the MACs the segment learns behind this port (0: no cap).
    pub max_macs: u32,
    /// Token-bucket limits of what the port sends.
    pub limits: LimitsImage,
    /// Monitor mode: what the firewall and the signatures would drop is forwarded, and
    /// counted and logged as `would_drop` (None: inline, enforced).
    pub monitor: Option<MonitorImage>,
}

/// What a port in monitor mode still enforces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorImage {
    /// The guard's drops (anti-spoofing, L2 hygiene).
    pub guard: bool,
    /// The token buckets' drops (packets/s, bytes/s, storm control).
    pub throttle: bool,
    /// The protocol anomalies' drops.
    pub anomalies: bool,
}

/// A rate (units per second) and a burst (units).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateImage {
    pub rate: u64,
    pub burst: u64,
}

/// A port's limits; None: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitsImage {
    pub packets: Option<RateImage>,
    pub bytes: Option<RateImage>,
    /// Broadcast, multicast and unknown-unicast frames (storm control).
    pub floods: Option<RateImage>,
    /// New flows the port opens.
    pub new_flows: Option<RateImage>,
}

/// What a guarded port may send (see rampart-pipeline's `guard`): source MACs are its
/// `macs`, source addresses its `addresses`, either learned from the first used where
/// the list is empty and `learn` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardImage {
    /// Prefixes the guest owns: 16-byte address (IPv4 mapped) and length in bits (96 +
    /// the IPv4 length for IPv4).
    pub addresses: Vec<([u8; 16], u8)>,
    /// Learn the MAC / addresses it has no bindings for from the first it uses.
    pub learn: bool,
    /// A learned MAC or address unused this long is forgotten, seconds.
    pub learn_timeout_s: u32,
    /// The port may send DHCP / DHCPv6 server messages.
    pub serves_dhcp: bool,
    /// The port may send IPv6 Router Advertisements and Redirects.
    pub serves_ra: bool,
}

/// What a policy rule does with the new flows it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleAction {
    Allow,
    Deny,
    /// Deny and answer with a TCP RST or an ICMP port unreachable.
    Reject,
    /// Allow and log every new flow.
    Log,
    /// Allow, and inspect the flow's payload with the image's signatures.
    Inspect,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleImage {
    /// Stable id from the config (metrics label, log field).
    pub id: String,
    /// Counter slot, stable for the id while the dataplane runs; `u16::MAX` = no counters.
    pub counter: u16,
    pub action: RuleAction,
    /// Track the flows it allows (replies admitted by state).
    pub stateful: bool,
    pub log: bool,
}

/// Connection-tracking settings that apply on reload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConntrackImage {
    pub timeouts: rampart_flow::Timeouts,
}

/// The stateful firewall: rules, their compiled classifier, conntrack settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallImage {
    pub rules: Vec<RuleImage>,
    /// Compiled first-match classifier over the expanded ACL rules.
    pub acl: rampart_acl::Classifier,
    /// ACL rule index → index in `rules` (one policy rule may expand to several ACL rules).
    pub acl_rule: Vec<u32>,
    pub conntrack: ConntrackImage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyImage {
    pub format: u32,
    pub segments: Vec<SegmentImage>,
    pub ports: Vec<PortImage>,
    /// None: no rules, traffic is switched under each port's `default_action` alone.
    pub firewall: Option<FirewallImage>,
    /// Detailed drop records each worker logs per second per port and reason; the rest
    /// are counted in summary records.
    pub drop_events_per_s: u32,
    /// New flows/s per source address and per destination address (any port).
    pub new_flows_per_source: Option<RateImage>,
    pub new_flows_per_destination: Option<RateImage>,
    /// Signatures run on the flows `Inspect` rules allow (None: no inspection).
    pub inspection: Option<InspectionImage>,
    /// What is done about each kind of protocol anomaly.
    pub anomalies: crate::anomaly::AnomalyImage,
}

/// Inline inspection: the signatures (parsed by the control process, variables resolved)
/// and the per-flow state they run with. The dataplane builds its matcher from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectionImage {
    pub signatures: Vec<rampart_signatures::Signature>,
    /// Each signature's alert counter slot (below [`crate::MAX_SIGNATURE_COUNTERS`], or
    /// `u16::MAX`: none), stable per gid:sid across reloads.
    pub counters: Vec<u16>,
    /// Bytes of a flow's previous segment kept per direction (1..=256).
    pub tail: u16,
    /// After this long unused, a flow's stream may be taken by another flow.
    pub idle_timeout_ms: u64,
    /// A `drop`/`reject` match blocks the rest of its flow (inline ports).
    pub drop_flow: bool,
}

impl PortImage {
    /// Port `p{slot}` on `attach` with `macs`: enabled, forwarding by default, nothing else
    /// configured (tests, benches and tools that build images by hand).
    pub fn plain(slot: u16, attach: Attach, macs: Vec<[u8; 6]>) -> PortImage {
        PortImage {
            slot,
            name: format!("p{slot}"),
            device: format!("net_null{slot}"),
            socket: String::new(),
            client: false,
            queues: 1,
            attach,
            enabled: true,
            macs,
            max_flows: None,
            default_action: Verdict::Forward,
            guard: None,
            max_macs: 0,
            limits: Default::default(),
            monitor: None,
        }
    }
}

impl PolicyImage {
    /// `ports` on one segment, "lan", under `firewall`, with the defaults elsewhere (tests,
    /// benches and tools that build images by hand).
    pub fn plain(ports: Vec<PortImage>, firewall: Option<FirewallImage>) -> PolicyImage {
        PolicyImage {
            drop_events_per_s: 10,
            new_flows_per_source: None,
            new_flows_per_destination: None,
            inspection: None,
            anomalies: Default::default(),
            format: IMAGE_FORMAT,
            segments: vec![SegmentImage { name: "lan".into() }],
            ports,
            firewall,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serialising plain data into a Vec cannot fail")
    }

    /// Decodes and validates an image; the error says what is wrong.
    pub fn decode(bytes: &[u8]) -> Result<PolicyImage, String> {
        // The format comes first, so a control process of another version is named as such.
        if let Ok((format, _)) = postcard::take_from_bytes::<u32>(bytes) {
            if format != IMAGE_FORMAT {
                return Err(format!("policy image format {format}, this dataplane reads {IMAGE_FORMAT}: run rampartctl and rampart-dataplane of the same version"));
            }
        }
        let image: PolicyImage = postcard::from_bytes(bytes).map_err(|e| format!("undecodable policy image: {e}"))?;
        image.validate()?;
        Ok(image)
    }

    /// Checks every index and reference the dataplane will rely on.
    pub fn validate(&self) -> Result<(), String> {
        if self.format != IMAGE_FORMAT {
            return Err(format!("image format {} (this dataplane reads {IMAGE_FORMAT})", self.format));
        }
        if self.ports.len() > MAX_PORTS {
            return Err(format!("{} ports (at most {MAX_PORTS})", self.ports.len()));
        }
        let mut slots = [None::<usize>; MAX_PORTS];
        for (i, p) in self.ports.iter().enumerate() {
            let s = p.slot as usize;
            if s >= MAX_PORTS {
                return Err(format!("port {}: slot {s} out of range", p.name));
            }
            if slots[s].replace(i).is_some() {
                return Err(format!("port {}: slot {s} used twice", p.name));
            }
            if p.name.is_empty() || p.device.is_empty() {
                return Err(format!("port in slot {s}: empty name or device"));
            }
            if p.queues == 0 || p.queues as usize > MAX_WORKERS {
                return Err(format!("port {}: {} queues (1..={MAX_WORKERS})", p.name, p.queues));
            }
            if [p.limits.packets, p.limits.bytes, p.limits.floods, p.limits.new_flows].iter().flatten().any(|r| r.rate == 0 || r.burst == 0) {
                return Err(format!("port {}: a limit with a zero rate or burst", p.name));
            }
            if let Some(g) = &p.guard {
                if g.addresses.iter().any(|&(_, len)| len > 128) {
                    return Err(format!("port {}: guard prefix longer than 128 bits", p.name));
                }
            }
            if self.ports[..i].iter().any(|q| q.name == p.name || q.device == p.device) {
                return Err(format!("port {}: name or device repeated", p.name));
            }
        }
        if let Some(fw) = &self.firewall {
            fw.acl.validate().map_err(|e| format!("classifier: {e}"))?;
            if fw.acl_rule.len() != fw.acl.rule_count() {
                return Err(format!("{} ACL rules but {} rule mappings", fw.acl.rule_count(), fw.acl_rule.len()));
            }
            if let Some(bad) = fw.acl_rule.iter().find(|&&r| r as usize >= fw.rules.len()) {
                return Err(format!("ACL rule maps to policy rule {bad}, which does not exist"));
            }
            if let Some(r) = fw.rules.iter().find(|r| r.counter != u16::MAX && r.counter as usize >= crate::layout::MAX_RULE_COUNTERS) {
                return Err(format!("rule {}: counter slot {} out of range", r.id, r.counter));
            }
            if fw.rules.len() >= 1 << 24 {
                return Err("too many rules".into());
            }
        }
        if let Some(ins) = &self.inspection {
            if ins.tail == 0 || ins.tail as usize > rampart_signatures::engine::MAX_TAIL {
                return Err(format!("inspection tail of {} bytes (1..={})", ins.tail, rampart_signatures::engine::MAX_TAIL));
            }
            if ins.signatures.len() >= 1 << 24 {
                return Err("too many signatures".into());
            }
            if ins.counters.len() != ins.signatures.len() {
                return Err(format!("{} signatures but {} counter slots", ins.signatures.len(), ins.counters.len()));
            }
            if let Some(c) = ins.counters.iter().find(|&&c| c != u16::MAX && c as usize >= crate::layout::MAX_SIGNATURE_COUNTERS) {
                return Err(format!("signature counter slot {c} out of range"));
            }
        }
        for p in &self.ports {
            match p.attach {
                Attach::Segment(seg) if seg as usize >= self.segments.len() => {
                    return Err(format!("port {}: segment {seg} does not exist", p.name));
                }
                Attach::Wire(peer) => {
                    let ok = slots.get(peer as usize).copied().flatten().map(|j| &self.ports[j]).is_some_and(|q| {
                        q.slot != p.slot && q.attach == Attach::Wire(p.slot)
                    });
                    if !ok {
                        return Err(format!("port {}: wire peer slot {peer} is missing or not wired back", p.name));
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    pub(crate) fn sample() -> PolicyImage {
        PolicyImage {
            format: IMAGE_FORMAT,
            segments: vec![SegmentImage { name: "lan".into() }],
            ports: vec![
                PortImage {
                    slot: 0,
                    name: "a".into(),
                    device: "net_vhost0,iface=/tmp/a.sock".into(),
                    socket: "/tmp/a.sock".into(),
                    client: false,
                    queues: 1,
                    attach: Attach::Segment(0),
                    enabled: true,
                    macs: vec![[2, 0, 0, 0, 0, 1]],
                    max_flows: Some(100),
                    default_action: Verdict::Forward,
                    guard: Some(GuardImage { addresses: vec![([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1], 128)], learn: true, learn_timeout_s: 300, serves_dhcp: false, serves_ra: false }),
                    max_macs: 64,
                    limits: LimitsImage { packets: Some(RateImage { rate: 1000, burst: 32 }), ..Default::default() },
                    monitor: None,
                },
                PortImage {
                    slot: 3,
                    name: "b".into(),
                    device: "net_vhost3,iface=/tmp/b.sock,client=1".into(),
                    socket: "/tmp/b.sock".into(),
                    client: true,
                    queues: 1,
                    attach: Attach::Wire(4),
                    enabled: false,
                    macs: vec![],
                    max_flows: None,
                    default_action: Verdict::Drop,
                    guard: None,
                    max_macs: 0,
                    limits: LimitsImage::default(),
                    monitor: None,
                },
                PortImage {
                    slot: 4,
                    name: "c".into(),
                    device: "net_ring0".into(),
                    socket: String::new(),
                    client: false,
                    queues: 2,
                    attach: Attach::Wire(3),
                    enabled: true,
                    macs: vec![],
                    max_flows: None,
                    default_action: Verdict::Drop,
                    guard: None,
                    max_macs: 0,
                    limits: LimitsImage::default(),
                    monitor: None,
                },
            ],
            firewall: None,
            drop_events_per_s: 10,
            new_flows_per_source: None,
            new_flows_per_destination: None,
            inspection: None,
            anomalies: Default::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip() {
        let img = sample();
        assert_eq!(PolicyImage::decode(&img.encode()).unwrap(), img);
    }

    #[test]
    fn dangling_references_rejected() {
        let mut img = sample();
        img.ports[0].attach = Attach::Segment(7);
        assert!(PolicyImage::decode(&img.encode()).unwrap_err().contains("segment 7"));
        let mut img = sample();
        img.ports[2].attach = Attach::Wire(0);
        assert!(PolicyImage::decode(&img.encode()).unwrap_err().contains("wire peer"));
        let mut img = sample();
        img.ports[1].slot = 0;
        assert!(PolicyImage::decode(&img.encode()).unwrap_err().contains("used twice"));
        let mut img = sample();
        img.ports[0].slot = 64;
        assert!(PolicyImage::decode(&img.encode()).unwrap_err().contains("out of range"));
        let mut img = sample();
        img.format = 99;
        assert!(PolicyImage::decode(&img.encode()).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = PolicyImage::decode(&bytes);
        }

        #[test]
        fn truncated_or_flipped_images_are_rejected_or_valid(cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
            let bytes = sample().encode();
            let cut = cut.min(bytes.len());
            if cut < bytes.len() {
                prop_assert!(PolicyImage::decode(&bytes[..cut]).is_err());
            }
            let mut b = bytes.clone();
            let i = flip % b.len();
            b[i] ^= 1 << bit;
            if let Ok(img) = PolicyImage::decode(&b) {
                prop_assert!(img.validate().is_ok());
            }
        }
    }
}
