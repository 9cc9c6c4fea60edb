//! The rule part of the policy model (DESIGN.md §4): address and service
//! sets, ordered rules with stable ids, connection-tracking settings, and
//! the small parsers for what operators write in them (CIDRs, port lists,
//! protocols, endpoints).

use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

/// Named objects rules refer to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sets {
    /// `name = ["10.0.0.0/8", "fd00::1"]`
    pub addresses: BTreeMap<String, Vec<Spanned<String>>>,
    /// `name = ["tcp/80", "tcp/8000-8080", "udp/53", "icmp"]`
    pub services: BTreeMap<String, Vec<Spanned<String>>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleAction {
    Allow,
    Deny,
    /// Deny and answer: TCP RST, or ICMP port unreachable.
    Reject,
    /// Allow and log every new flow.
    Log,
    /// Allow, and inspect the flow's payload with the `[[inspection]]` signatures.
    Inspect,
}

/// One rule, matched in file order; the first match decides a new flow.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleCfg {
    /// Stable identifier: metrics, logs and counters follow it across reloads.
    pub id: Spanned<String>,
    /// Sources: `any`, `guest:NAME`, `tag:TAG`, `set:NAME`, or a CIDR/address. Default any.
    #[serde(default)]
    pub from: Vec<Spanned<String>>,
    /// Destinations, same forms. Default any.
    #[serde(default)]
    pub to: Vec<Spanned<String>>,
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `any` or a protocol number.
    pub protocol: Option<Spanned<String>>,
    /// Destination ports: `"80"`, `"80,443,8000-8080"` (tcp/udp only).
    pub ports: Option<Spanned<String>>,
    /// Service sets (alternative to protocol + ports).
    #[serde(default)]
    pub services: Vec<Spanned<String>>,
    pub icmp_type: Option<Spanned<u8>>,
    pub icmp_code: Option<Spanned<u8>>,
    pub action: Spanned<RuleAction>,
    /// Stateful rules admit the reply direction of the flows they allow.
    #[serde(default = "yes")]
    pub stateful: bool,
    /// Log each new flow this rule decides.
    #[serde(default)]
    pub log: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TableFull {
    /// New flows are dropped (counted) until entries expire.
    Refuse,
    /// The oldest entry in the probe window is evicted (counted, logged as a flow end).
    EvictOldest,
}

/// Connection tracking: table size, what to do when full, quotas, timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Conntrack {
    pub table_size: u32,
    pub table_full: TableFull,
    /// Default per-port flow quota (a port's `max_flows` overrides it); 0 = a fair share,
    /// `table_size` ÷ the number of ports, so that no guest can fill the table and stop the
    /// others from opening flows.
    pub max_flows_per_guest: u32,
    /// `[conntrack.timeouts]`, seconds per state; defaults are Linux conntrack's
    /// (tcp_established = 432000, tcp_syn_sent = 120, udp_unreplied = 30, ...).
    pub timeouts: rampart_flow::Timeouts,
}

impl Conntrack {
    /// The flow-table quota of `port`, one of `ports` ports: flows it opens count against it.
    /// (The dataplane computes the fair share from the table it runs, which a reload does
    /// not resize; this one, from `table_size`, is for `rampartctl check`.)
    pub fn quota_of(&self, port: &crate::Port, ports: usize) -> u32 {
        port.max_flows.unwrap_or(match self.max_flows_per_guest {
            0 => self.table_size / ports.max(1) as u32,
            q => q,
        })
    }
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack { table_size: 1 << 20, table_full: TableFull::Refuse, max_flows_per_guest: 0, timeouts: Default::default() }
    }
}

/// An address prefix, IPv4 mapped into IPv6 (`::ffff:a.b.c.d`, length 96 + v4 length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    pub addr: [u8; 16],
    pub len: u8,
}

impl Cidr {
    pub const ANY: Cidr = Cidr { addr: [0; 16], len: 0 };

    /// Parses `10.0.0.0/8`, `10.0.0.1`, `fd00::/64`, `fd00::1`. Host bits must be zero.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let (addr, len) = match a.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(v4) => {
                let l = l.unwrap_or(32);
                if l > 32 {
                    return None;
                }
                (v4.to_ipv6_mapped().octets(), 96 + l)
            }
            std::net::IpAddr::V6(v6) => {
                let l = l.unwrap_or(128);
                if l > 128 {
                    return None;
                }
                (v6.octets(), l)
            }
        };
        let c = Cidr { addr, len };
        (c.masked() == c).then_some(c)
    }

    fn masked(self) -> Cidr {
        let mut addr = self.addr;
        for (i, b) in addr.iter_mut().enumerate() {
            let bits = (self.len as usize).saturating_sub(i * 8).min(8);
            *b &= if bits == 0 { 0 } else { 0xffu8 << (8 - bits) };
        }
        Cidr { addr, len: self.len }
    }
}

/// Protocol names operators write.
pub fn parse_protocol(s: &str) -> Option<Option<u8>> {
    Some(match s {
        "any" => None,
        "tcp" => Some(6),
        "udp" => Some(17),
        "icmp" => Some(1),
        "icmpv6" | "ipv6-icmp" => Some(58),
        "sctp" => Some(132),
        n => Some(n.parse().ok()?),
    })
}

/// Parses `"80"`, `"80,443"`, `"8000-8080"` into inclusive ranges.
pub fn parse_ports(s: &str) -> Option<Vec<(u16, u16)>> {
    s.split(',')
        .map(|p| {
            let p = p.trim();
            match p.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (a.trim().parse::<u16>().ok()?, b.trim().parse::<u16>().ok()?);
                    (a <= b).then_some((a, b))
                }
                None => p.parse::<u16>().ok().map(|x| (x, x)),
            }
        })
        .collect()
}

/// A protocol (None = any) and its destination port ranges.
pub type Service = (Option<u8>, Vec<(u16, u16)>);

/// A service: `tcp/80`, `udp/1000-2000`, `icmp`, `tcp` (all ports).
pub fn parse_service(s: &str) -> Option<Service> {
    match s.split_once('/') {
        Some((proto, ports)) => {
            let proto = parse_protocol(proto)?;
            matches!(proto, Some(6) | Some(17) | Some(132)).then_some(())?;
            Some((proto, parse_ports(ports)?))
        }
        None => Some((parse_protocol(s)?, vec![(0, 65535)])),
    }
}

/// What a `from`/`to` entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Any,
    Guest(String),
    Tag(String),
    /// Every port attached to the segment: an implicit tag.
    Segment(String),
    Set(String),
    Cidr(Cidr),
}

impl Endpoint {
    /// The ports a `guest:`, `tag:` or `segment:` endpoint names (maybe none); None for
    /// address endpoints. A rule's source matches traffic entering on those ports (from
    /// their `addresses`, if they have any); its destination, their `addresses`.
    pub fn ports<'a>(&self, config: &'a crate::Config) -> Option<Vec<&'a crate::Port>> {
        let named = |f: &dyn Fn(&crate::Port) -> bool| Some(config.ports.iter().filter(|p| f(p)).collect());
        match self {
            Endpoint::Guest(g) => named(&|p| p.name.get_ref() == g),
            Endpoint::Tag(t) => named(&|p| p.tags.iter().any(|x| x.get_ref() == t)),
            Endpoint::Segment(s) => named(&|p| p.segment.as_ref().is_some_and(|x| x.get_ref() == s)),
            Endpoint::Any | Endpoint::Set(_) | Endpoint::Cidr(_) => None,
        }
    }
}

pub fn parse_endpoint(s: &str) -> Option<Endpoint> {
    if s == "any" {
        return Some(Endpoint::Any);
    }
    if let Some(g) = s.strip_prefix("guest:") {
        return Some(Endpoint::Guest(g.into()));
    }
    if let Some(t) = s.strip_prefix("tag:") {
        return Some(Endpoint::Tag(t.into()));
    }
    if let Some(n) = s.strip_prefix("segment:") {
        return Some(Endpoint::Segment(n.into()));
    }
    if let Some(n) = s.strip_prefix("set:") {
        return Some(Endpoint::Set(n.into()));
    }
    Cidr::parse(s).map(Endpoint::Cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_default_to_a_fair_share_and_oversubscription_is_warned_about() {
        let ports = |extra: &str| {
            let mut t = format!("[[segments]]\nname = \"lan\"\n[conntrack]\ntable_size = 3000\n{extra}\n");
            for (n, q) in [("a", ""), ("b", ""), ("c", "max_flows = 2500\n")] {
                t += &format!("[[ports]]\nname = \"{n}\"\nkind = \"vhost-server\"\nsocket = \"/tmp/{n}.sock\"\nsegment = \"lan\"\n{q}");
            }
            crate::parse("t.toml", &t).unwrap()
        };
        let quotas = |c: &crate::Config| c.ports.iter().map(|p| c.conntrack.quota_of(p, c.ports.len())).collect::<Vec<_>>();
        let oversubscribed = |c: &crate::Config| crate::warnings(c).iter().any(|w| w.0.contains("add up to"));
        let fair = ports("");
        assert_eq!(quotas(&fair), [1000, 1000, 2500], "a third of the table each, unless a port says otherwise");
        assert!(oversubscribed(&fair), "4500 > 3000");
        let set = ports("max_flows_per_guest = 200");
        assert_eq!(quotas(&set), [200, 200, 2500]);
        assert!(!oversubscribed(&set), "2900 <= 3000");
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert_eq!(c.len, 112);
        assert_eq!(&c.addr[10..14], &[0xff, 0xff, 10, 1]);
        assert_eq!(Cidr::parse("10.1.0.1").unwrap().len, 128);
        assert_eq!(Cidr::parse("fd00::/8").unwrap().len, 8);
        assert!(Cidr::parse("10.1.0.1/16").is_none(), "host bits set");
        assert!(Cidr::parse("10.1.0.0/33").is_none());
        assert!(Cidr::parse("banana").is_none());
    }

    #[test]
    fn ports_protocols_services_endpoints() {
        assert_eq!(parse_ports("80, 443,8000-8080"), Some(vec![(80, 80), (443, 443), (8000, 8080)]));
        assert_eq!(parse_ports("90-80"), None);
        assert_eq!(parse_ports("70000"), None);
        assert_eq!(parse_protocol("tcp"), Some(Some(6)));
        assert_eq!(parse_protocol("any"), Some(None));
        assert_eq!(parse_protocol("47"), Some(Some(47)));
        assert_eq!(parse_service("udp/53"), Some((Some(17), vec![(53, 53)])));
        assert_eq!(parse_service("icmp/3"), None, "ports only for tcp/udp/sctp");
        assert_eq!(parse_endpoint("tag:web"), Some(Endpoint::Tag("web".into())));
        assert_eq!(parse_endpoint("10.0.0.0/8").map(|e| matches!(e, Endpoint::Cidr(_))), Some(true));
    }
}
