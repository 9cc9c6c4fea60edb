//! The configuration's shape: what an operator writes, with its defaults.

use serde::Deserialize;
use toml::Spanned;

/// A whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub dataplane: Dataplane,
    #[serde(default)]
    pub control: Control,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub segments: Vec<Segment>,
    #[serde(default)]
    pub ports: Vec<Port>,
    #[serde(default)]
    pub sets: crate::rules::Sets,
    #[serde(default)]
    pub rules: Vec<crate::rules::RuleCfg>,
    #[serde(default)]
    pub conntrack: crate::rules::Conntrack,
    #[serde(default)]
    pub guard: Guard,
    #[serde(default)]
    pub events: Events,
    #[serde(default)]
    pub throttle: Throttle,
    /// Signature rule sets that `inspect` rules run.
    #[serde(default)]
    pub inspection: Vec<Inspection>,
    #[serde(default)]
    pub inspection_state: InspectionState,
    #[serde(default)]
    pub anomalies: Anomalies,
    /// Where this configuration came from (for error messages on reload).
    #[serde(skip)]
    pub source: ConfigSource,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub file: String,
    pub text: String,
}

/// Default bound of the idle back-off, µs (see [`Dataplane::idle_sleep_max_us`]): on the
/// machines measured a wake-up costs the worker 10-15 µs, so 800 µs keeps an idle worker
/// under 2 % of a core while the first packet after a silence waits under 1 ms.
pub const IDLE_SLEEP_MAX_US: u32 = 800;

/// EAL and process settings of the dataplane; users never type EAL flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Dataplane {
    /// CPU of the main lcore, which applies policy and attaches ports; it sleeps between polls.
    pub main_core: u32,
    /// One worker lcore per listed CPU; workers poll ports run-to-completion.
    pub worker_cores: Vec<u32>,
    /// Memory for packet buffers, in MiB.
    pub memory_mb: u32,
    /// DPDK file prefix; distinct per dataplane running on one host.
    pub file_prefix: String,
    /// Use hugepages (production); `false` runs EAL with `--no-huge` (tests).
    pub hugepages: bool,
    /// Path of the shared-memory segment shared with the control process.
    pub shm: String,
    /// Packet buffers in the pool.
    pub mbufs: u32,
    /// Idle back-off: once a worker has seen no traffic for 2 ms it waits for the guests'
    /// rx interrupts (vhost-user kicks), if every port it polls has them and this is true;
    /// the first packet after a silence then waits for one wake-up, and an idle worker
    /// costs ten wake-ups a second.
    pub idle_interrupts: bool,
    /// Idle back-off without interrupts (a device port without them, or
    /// `idle_interrupts = false`): sleeps between empty polls, first this many
    /// microseconds, doubling after each empty wake-up up to `idle_sleep_max_us`; one
    /// packet brings it back to polling. 0 = never sleep nor wait (the worker keeps its
    /// core busy; lowest latency).
    pub idle_sleep_us: u32,
    /// The longest idle sleep, µs: what an idle worker costs (one wake-up each) against the
    /// latency of the first packet after a silence (at most about this much).
    pub idle_sleep_max_us: u32,
    /// Octal file mode of the shared-memory segment and vhost-user sockets.
    pub file_mode: u32,
    /// PCI devices (e.g. "0000:00:04.0") the dataplane may use for uplinks; none by default,
    /// so it never touches the host's own NICs.
    pub pci_devices: Vec<String>,
}

impl Default for Dataplane {
    fn default() -> Self {
        Dataplane {
            main_core: 0,
            worker_cores: vec![1],
            memory_mb: 512,
            file_prefix: "rampart".into(),
            hugepages: true,
            shm: "/dev/shm/rampart".into(),
            mbufs: 16383,
            idle_interrupts: true,
            idle_sleep_us: 50,
            idle_sleep_max_us: IDLE_SLEEP_MAX_US,
            file_mode: 0o600,
            pci_devices: Vec::new(),
        }
    }
}

/// Control process settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Control {
    /// Unix socket of the admin API (`rampartctl` talks to it).
    pub socket: String,
    /// Listen address of the Prometheus endpoint; loopback unless you mean otherwise.
    pub metrics: String,
    /// Event log (JSON lines, eve.json-style).
    pub event_log: String,
    /// Where the dynamic blocklist (`rampartctl block`) is kept across restarts.
    pub blocklist: String,
    /// The secret that seals the event log (HMAC-SHA-256 chain; created on first start, 0600).
    /// Kept outside the log's directory: whoever may read or edit the log must not read it.
    pub event_key: String,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            socket: "/run/rampart/control.sock".into(),
            metrics: "127.0.0.1:9477".into(),
            event_log: "/var/log/rampart/eve.json".into(),
            blocklist: "/var/lib/rampart/blocks.json".into(),
            event_key: "/var/lib/rampart/eventlog.key".into(),
        }
    }
}

/// Global policy defaults: what happens to IP traffic no rule matches (to all traffic,
/// when there are no rules), per direction. A direction is named by where the traffic
/// enters: from a guest (vhost-user ports: what guests send, to each other or out) or from
/// an uplink (device ports: what arrives from outside).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    /// Both directions, unless one is set below.
    pub default_action: DefaultAction,
    /// Traffic entering from guest ports.
    pub from_guests: Option<DefaultAction>,
    /// Traffic entering from uplink (device) ports.
    pub from_uplinks: Option<DefaultAction>,
    /// Every port's mode unless it sets its own: `inline` enforces the policy, `monitor`
    /// forwards what the firewall or a signature would have dropped and logs and counts it
    /// as `would_drop` instead.
    pub mode: Mode,
    /// What monitor mode still enforces: `guard` (anti-spoofing and L2 hygiene) and
    /// `throttle` (the token buckets, storm control) protect the other guests, so they stay
    /// on unless removed from this list (`[]`: a purely passive monitor); `anomalies` (the
    /// `[anomalies]` drops) may be added.
    pub monitor_enforces: Vec<Enforce>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            default_action: DefaultAction::Forward,
            from_guests: None,
            from_uplinks: None,
            mode: Mode::Inline,
            monitor_enforces: vec![Enforce::Guard, Enforce::Throttle],
        }
    }
}

/// Whether a port's policy decisions are enforced or only logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Inline,
    Monitor,
}

/// A protection monitor mode may keep enforcing (`policy.monitor_enforces`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforce {
    Guard,
    Throttle,
    Anomalies,
}

impl Policy {
    /// The default action for traffic entering on a port of this kind.
    pub fn default_for(&self, kind: PortKind) -> DefaultAction {
        match kind {
            PortKind::VhostServer | PortKind::VhostClient => self.from_guests,
            PortKind::Device => self.from_uplinks,
        }
        .unwrap_or(self.default_action)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DefaultAction {
    Forward,
    Drop,
}

/// Defaults of the guard (anti-spoofing and L2 hygiene) for every port; each port may
/// override them (see [`Port::anti_spoofing`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Guard {
    /// A learned MAC or address the guest has not used for this long is forgotten (so a
    /// guest can take a new DHCP lease), seconds.
    pub learn_timeout: u32,
    /// Cap on the MACs a segment learns behind one guest port (0: none; uplinks have no
    /// cap unless they set `max_macs`): a flood of random source MACs stops there instead
    /// of pushing others' entries out of the table (after which their unicast would be
    /// flooded to every port).
    pub max_macs_per_port: u32,
}

impl Default for Guard {
    fn default() -> Self {
        Guard { learn_timeout: 300, max_macs_per_port: 64 }
    }
}

/// Default token-bucket limits of every guest (vhost) port; a port's own `max_*` fields
/// override them (0 there: no limit). Uplinks have none unless they set their own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Throttle {
    /// Packets per second a guest may send (0: no limit).
    pub max_packets_per_s: u64,
    /// Bytes per second a guest may send (0: no limit).
    pub max_bytes_per_s: u64,
    /// Broadcast, multicast and unknown-unicast frames per second a guest may send
    /// (storm control; 0: no limit).
    pub max_floods_per_s: u64,
    /// New flows per second a guest may open (0: no limit).
    pub max_new_flows_per_s: u64,
    /// New flows per second from one source address, any port (0: no limit).
    pub max_new_flows_per_source: u64,
    /// New flows per second toward one destination address, from any sources (0: no limit).
    pub max_new_flows_per_destination: u64,
    /// A source over `max_new_flows_per_source` is blocked for this many seconds (an
    /// entry in the blocklist that lifts itself; 0: not blocked, only limited).
    pub block_for: u64,
    /// Bucket depth: this many milliseconds' worth of each rate may come at once.
    pub burst_ms: u64,
    /// Limits for the ports that carry a tag (`[throttle.tags.web]`): between a port's own
    /// `max_*` and the defaults above; the first of a port's tags that sets a limit wins.
    pub tags: std::collections::BTreeMap<String, TagLimits>,
}

/// The limits of a tag's ports (each one's own buckets); unset: the next level decides.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagLimits {
    pub max_packets_per_s: Option<u64>,
    pub max_bytes_per_s: Option<u64>,
    pub max_floods_per_s: Option<u64>,
    pub max_new_flows_per_s: Option<u64>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            max_packets_per_s: 0,
            max_bytes_per_s: 0,
            max_floods_per_s: 20_000,
            max_new_flows_per_s: 0,
            max_new_flows_per_source: 0,
            max_new_flows_per_destination: 0,
            block_for: 0,
            burst_ms: 50,
            tags: Default::default(),
        }
    }
}

/// What the event log may take.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Events {
    /// Detailed drop records per second for each port and drop reason, per worker; the
    /// rest are counted in one summary record per second (so a guest flooding malformed
    /// frames cannot fill the disk or bury other records). 0: summaries only.
    pub drops_per_second: u32,
    /// The log moves to a new file at this size in bytes (0: never)…
    pub rotate_bytes: u64,
    /// …or at this age in seconds (0: never), or on SIGHUP (after logrotate moved it).
    pub rotate_seconds: u64,
    /// Rotated files kept beside the log; older ones are removed (0: all kept). With
    /// `rotate_bytes` this caps the log's disk use at about (keep_files + 1) × rotate_bytes.
    pub keep_files: u32,
    /// Syslog socket (RFC 5424 datagrams) the log's chain head is sent to ("": none).
    pub syslog: String,
    /// How often the chain head goes to syslog, when it moved (0: never).
    pub syslog_head_seconds: u64,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            drops_per_second: 10,
            rotate_bytes: 128 << 20,
            rotate_seconds: 86_400,
            keep_files: 10,
            syslog: "/dev/log".into(),
            syslog_head_seconds: 60,
        }
    }
}

/// How a guarded port comes to own the MAC and addresses it has no bindings for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Learn {
    /// The first MAC, IPv4 address and IPv6 addresses (one link-local, one other) it sends from.
    First,
    /// Only its `macs` and `addresses`.
    Off,
}

/// Server roles a guarded port may play (its messages are dropped otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Serve {
    /// DHCP and DHCPv6 server messages (from UDP port 67 / 547).
    Dhcp,
    /// IPv6 Router Advertisements and Redirects.
    Ra,
}

/// An L2 segment: a learning switch among its ports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub name: Spanned<String>,
}

/// A port: a guest's vhost-user socket or any DPDK device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    pub name: Spanned<String>,
    pub kind: Spanned<PortKind>,
    /// vhost-user socket path (vhost kinds).
    pub socket: Option<Spanned<String>>,
    /// DPDK device string, e.g. `net_tap0,iface=rp0` (device kind).
    pub device: Option<Spanned<String>>,
    /// Segment this port switches in (exclusive with `wire`).
    pub segment: Option<Spanned<String>>,
    /// Peer port of a bump-in-the-wire pair (exclusive with `segment`).
    pub wire: Option<Spanned<String>>,
    /// Static MAC bindings of the guest; learned from traffic otherwise.
    #[serde(default)]
    pub macs: Vec<Spanned<String>>,
    /// Admin state; a disabled port drops everything it receives.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Queue pairs (guest multiqueue); defaults to the number of workers.
    pub queues: Option<Spanned<u16>>,
    /// Tags for rules (`tag:web`).
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    /// The guest's IP addresses/prefixes; rules naming `guest:NAME` or its tags match them.
    #[serde(default)]
    pub addresses: Vec<Spanned<String>>,
    /// Flow-table quota of this guest (overrides `conntrack.max_flows_per_guest`).
    pub max_flows: Option<u32>,
    /// The guard: what the port sends must come from a MAC and an address it owns, and
    /// ARP/ND, DHCP and RA from it are checked. Default: on for guest (vhost) ports, off
    /// for device ports (uplinks). Off also for infrastructure guests that forward
    /// others' traffic (a router VM), or list the prefixes behind them in `addresses`.
    pub anti_spoofing: Option<bool>,
    /// Where it has no `macs` / `addresses`: learn them from the first used ("first", the
    /// default) or own none ("off").
    pub learn: Option<Spanned<Learn>>,
    /// Server roles it may play: `["dhcp", "ra"]`.
    #[serde(default)]
    pub serves: Vec<Serve>,
    /// Cap on the MACs its segment learns behind it (overrides `guard.max_macs_per_port`).
    pub max_macs: Option<u32>,
    /// Token-bucket limits of what it sends (override `[throttle]`; 0: none).
    pub max_packets_per_s: Option<u64>,
    pub max_bytes_per_s: Option<u64>,
    pub max_floods_per_s: Option<u64>,
    pub max_new_flows_per_s: Option<u64>,
    /// `inline` or `monitor` (default: `policy.mode`).
    pub mode: Option<Mode>,
}

impl Port {
    /// Whether the guard checks what this port sends.
    pub fn guarded(&self) -> bool {
        self.anti_spoofing.unwrap_or(matches!(self.kind.get_ref(), PortKind::VhostServer | PortKind::VhostClient))
    }

    /// Whether the guard learns what the port has no bindings for.
    pub fn learns(&self) -> bool {
        self.learn.as_ref().is_none_or(|l| *l.get_ref() == Learn::First)
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PortKind {
    /// Rampart creates the socket; QEMU connects (and reconnects).
    VhostServer,
    /// QEMU creates the socket (`server=on`); Rampart connects and reconnects.
    VhostClient,
    /// Any DPDK device string (`net_tap`, `net_pcap`, `net_ring`, PCI address).
    Device,
}

/// A port's forwarding attachment after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    Segment(String),
    Wire(String),
}

impl Port {
    pub fn attachment(&self) -> Attachment {
        match (&self.segment, &self.wire) {
            (Some(s), _) => Attachment::Segment(s.get_ref().clone()),
            (None, Some(w)) => Attachment::Wire(w.get_ref().clone()),
            (None, None) => unreachable!("validated: every port has a segment or a wire peer"),
        }
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in out.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// One signature rule set (`[[inspection]]`): Suricata/Snort rule files and rules written
/// inline, with the variables (`$HOME_NET`, `$HTTP_PORTS`, ...) they use. The signatures
/// of every set run on the flows that `action = "inspect"` rules allow.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Inspection {
    /// Rule files, glob patterns allowed (`/etc/rampart/rules/*.rules`); relative paths are
    /// relative to the configuration file. A pattern that matches no file is an error.
    pub rules: Vec<Spanned<String>>,
    /// Rules written here, one per string, in the same language.
    pub signatures: Vec<Spanned<String>>,
    /// Variables, overriding Suricata's defaults: `HOME_NET = "[10.0.0.0/8]"`,
    /// `HTTP_PORTS = "[80,8080]"`.
    pub vars: std::collections::BTreeMap<String, Spanned<String>>,
    /// A `classification.config` (classtype names, descriptions, priorities); without
    /// one, any classtype is accepted and priorities default to 3.
    pub classification: Option<Spanned<String>>,
}

/// The dataplane's inspection state (`[inspection_state]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InspectionState {
    /// Bytes of each inspected flow's previous segment kept per direction, so that a
    /// signature split across segments is still found (at most 256).
    pub tail: u32,
    /// Streams (one per inspected flow and direction) each worker keeps; read by the
    /// dataplane at start (a reload does not resize it). A flow that finds no room is
    /// inspected packet by packet (counted as refused).
    pub streams_per_worker: u32,
    /// Seconds after which an unused stream may be taken by another flow.
    pub idle_timeout: u32,
    /// A `drop` or `reject` signature's match blocks the rest of its flow, both ways, as
    /// Suricata's inline mode does (`false`: only the matching packets are dropped).
    pub drop_flow: bool,
}

impl Default for InspectionState {
    fn default() -> Self {
        InspectionState { tail: 256, streams_per_worker: 16384, idle_timeout: 60, drop_flow: true }
    }
}

/// What is done about each kind of protocol anomaly (`[anomalies]`): `drop` (counted,
/// logged, dropped; a monitor port forwards it as a would-be drop), `alert` (counted,
/// logged, forwarded) or `ignore` (not checked). Tiny first fragments are not listed: the
/// firewall cannot judge them, so they are always dropped (and counted as `tiny_fragment`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Anomalies {
    /// SYN+FIN, SYN+RST, no flags (null scan), FIN+PSH+URG (Xmas scan).
    pub tcp_flags: AnomalyAction,
    /// Source address equal to destination address.
    pub land: AnomalyAction,
    /// A fragment overlapping bytes an earlier fragment of its datagram carried.
    pub fragment_overlap: AnomalyAction,
    /// IPv4 loose/strict source route and record route options, IPv6 type 0 routing headers.
    pub ip_options: AnomalyAction,
    /// Unicast packets with TTL or hop limit 0 or 1 (traceroute, but also eBGP between
    /// directly connected routers: an alert by default).
    pub low_ttl: AnomalyAction,
    /// Wrong IPv4 header, TCP, UDP or ICMP checksums (where the sender did not leave them
    /// to an offload), in the packets `checksums` names.
    pub bad_checksum: AnomalyAction,
    /// ICMP/ICMPv6 messages longer than `icmp_max_bytes`, or fragmented.
    pub oversize_icmp: AnomalyAction,
    /// TCP segments outside their connection's window (tracked flows).
    pub tcp_window: AnomalyAction,
    /// Longest ICMP message (header and data) that is not `oversize_icmp`.
    pub icmp_max_bytes: u32,
    /// Whose checksums are verified: `inspected` (packets of flows an `inspect` rule
    /// allows, whose payload is read anyway) or `all` (every IP packet: a sum over every
    /// byte, costs cycles per byte).
    pub checksums: ChecksumScope,
}

impl Default for Anomalies {
    fn default() -> Self {
        use AnomalyAction::{Alert, Drop};
        Anomalies {
            tcp_flags: Drop,
            land: Drop,
            fragment_overlap: Drop,
            ip_options: Drop,
            low_ttl: Alert,
            bad_checksum: Drop,
            oversize_icmp: Drop,
            tcp_window: Drop,
            icmp_max_bytes: 1480,
            checksums: ChecksumScope::Inspected,
        }
    }
}

/// What `[anomalies]` does about one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnomalyAction {
    Drop,
    Alert,
    Ignore,
}

/// Whose checksums `[anomalies] bad_checksum` verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChecksumScope {
    Inspected,
    All,
}
