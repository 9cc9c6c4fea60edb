//! `rampartctl flows`: reads the dataplane's flow table page by page through the
//! segment's dump region ([`rampart_shm::dump`]), keeps the flows the request's filters
//! match (guest, address or prefix, port, state) and, with `kill`, ends them. The
//! control process holds one page and the matching flows, never the whole table.

use crate::admin::{push_command, round_trip};
use crate::api::{Body, FlowRow, FlowsReply, FlowsRequest, Reply};
use crate::daemon::Daemon;
use rampart_shm::ring::CommandKind;
use rampart_shm::{CommandRecord, DumpRequest, DumpedFlow, Page, Segment};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long the dataplane has to answer one page (it serves commands every 10 ms).
const PAGE_TIMEOUT: Duration = Duration::from_secs(10);

/// `flows`: asks the dataplane for its flow table a page at a time, filters each page
/// by guest (owner port name), address or prefix, port and state. With `kill`, also ends
/// the flows that matched (at least one filter is required), each logged as `removed`,
/// and reports how many the dataplane ended.
pub fn flows(d: &Daemon, request: &FlowsRequest) -> Reply<Body> {
    // A bad filter is the operator's error: say so before asking the dataplane for anything.
    let filter = match FlowFilter::from_request(request) {
        Ok(f) => f,
        Err(e) => return Reply::error(e),
    };
    if request.kill && filter == FlowFilter::default() {
        return Reply::error("flows --kill needs a filter (--guest, --address, --port or --state): it will not end every flow");
    }
    let (seg, names, rules) = {
        let inner = d.inner.lock().unwrap();
        match inner.segment.clone() {
            Some(seg) => {
                let names = inner.names();
                (seg, names.ports, names.rules)
            }
            None => return Reply::error("the dataplane is not attached"),
        }
    };
    let mut out = FlowsReply::default();
    let mut kills = Vec::new();
    let dumped = dump_flows(d, &seg, |f| {
        out.total += 1;
        let guest = names.get(&f.owner).cloned().unwrap_or_default();
        if !filter.keeps(f, &guest) {
            return;
        }
        if request.kill {
            kills.push(CommandRecord::kill_flow(&f.src_addr, &f.dst_addr, f.src_port, f.dst_port, f.proto, f.zone));
        }
        out.flows.push(row(f, guest, &rules));
    });
    if let Err(e) = dumped {
        return Reply::error(e);
    }
    if !request.kill {
        return Reply::ok(Body::Flows(out));
    }
    // One batch at a time, so the dataplane's kill count moves only for this one.
    let _batch = d.commands.lock().unwrap();
    let before = seg.flows.killed.load(Ordering::Relaxed);
    for (sent, cmd) in kills.iter().enumerate() {
        if let Err(e) = push_command(&seg, *cmd) {
            return Reply::error(format!("{e}; {sent} of {} kills were sent", kills.len()));
        }
    }
    // Commands are taken in order: once the ping comes back, every kill has been done.
    if let Err(e) = round_trip(d, &seg) {
        return Reply::error(format!("{} kills were sent, but {e}", kills.len()));
    }
    // Saturating: a dataplane restarted meanwhile counts from zero in its new segment.
    out.killed = Some(seg.flows.killed.load(Ordering::Relaxed).saturating_sub(before));
    Reply::ok(Body::Flows(out))
}

/// A dumped flow as the reply shows it.
fn row(f: &DumpedFlow, guest: String, rules: &[String]) -> FlowRow {
    FlowRow {
        src_ip: f.src_ip(),
        src_port: f.src_port,
        dest_ip: f.dst_ip(),
        dest_port: f.dst_port,
        proto: crate::events::proto_name(f.proto),
        zone: f.zone,
        state: f.state_name().into(),
        owner: f.owner,
        guest,
        rule: f.rule().and_then(|r| rules.get(r as usize)).cloned(),
        pkts: f.packets,
        bytes: f.bytes,
        age_ms: f.age_ms,
        idle_ms: f.idle_ms,
    }
}

/// Reads every page of a new dump, calling `each` with every flow. One dump at a time
/// (the segment has one page); other commands go on meanwhile.
fn dump_flows(d: &Daemon, seg: &Segment, mut each: impl FnMut(&DumpedFlow)) -> Result<(), String> {
    let _one_dump = d.dumps.lock().unwrap();
    let id = seg.flow_dump.next_id();
    let mut page = Vec::with_capacity(rampart_shm::DUMP_PAGE_RECORDS);
    let (mut cursor, mut pages) = (Some(0), 0u64);
    while let Some(at) = cursor {
        let request = DumpRequest { id, cursor: at };
        {
            let _one_at_a_time = d.commands.lock().unwrap();
            push_command(seg, CommandRecord { kind: CommandKind::DumpFlows as u32, value: request.pack(), ..Default::default() })?;
        }
        let start = Instant::now();
        cursor = loop {
            match seg.flow_dump.read(request, &mut page) {
                Page::Ready { next } => break next,
                Page::NotYet if start.elapsed() > PAGE_TIMEOUT => {
                    return Err(format!("the dataplane did not answer page {} of the flow dump within {} s", pages + 1, PAGE_TIMEOUT.as_secs()));
                }
                Page::NotYet => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        page.iter().for_each(&mut each);
        pages += 1;
    }
    Ok(())
}

/// What `rampartctl flows` asked for; every part given must match.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FlowFilter {
    guest: Option<String>,
    address: Option<Prefix>,
    port: Option<u16>,
    state: Option<String>,
}

impl FlowFilter {
    /// The filter a request names (its address parsed).
    pub(crate) fn from_request(request: &FlowsRequest) -> Result<FlowFilter, String> {
        let address = request.address.as_deref().map(Prefix::parse).transpose()?;
        Ok(FlowFilter { guest: request.guest.clone(), address, port: request.port, state: request.state.clone() })
    }

    fn keeps(&self, flow: &DumpedFlow, owner: &str) -> bool {
        self.guest.as_ref().is_none_or(|g| g == owner)
            && self.address.as_ref().is_none_or(|p| p.contains_bits(u128::from_be_bytes(flow.src_addr)) || p.contains_bits(u128::from_be_bytes(flow.dst_addr)))
            && self.port.is_none_or(|p| flow.src_port == p || flow.dst_port == p)
            && self.state.as_ref().is_none_or(|s| flow.state_name().eq_ignore_ascii_case(s))
    }
}

/// An address prefix for filtering, IPv4 mapped into IPv6 (as the flow table
/// stores addresses), so one comparison serves both families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Prefix {
    network: u128,
    len: u8,
}

impl Prefix {
    /// `10.0.0.5`, `10.0.0.0/24`, `fd00::/64`, `FD00:0::1`: any textual form
    /// `std::net` accepts. Host bits after the prefix are ignored (`10.0.0.5/24`
    /// means 10.0.0.0/24): this is a lookup, not a rule.
    fn parse(text: &str) -> Result<Prefix, String> {
        let text = text.trim();
        let bad = |why: &str| format!("--address {text:?}: {why}; expected an address or a prefix like 10.0.0.5, 10.0.0.0/24, fd00::1 or fd00::/64");
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad("the prefix length is not a number"))?)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let (bits, len) = match addr {
            IpAddr::V4(v4) => match len.unwrap_or(32) {
                l @ 0..=32 => (u128::from(v4.to_ipv6_mapped()), 96 + l),
                _ => return Err(bad("an IPv4 prefix length is at most 32")),
            },
            IpAddr::V6(v6) => match len.unwrap_or(128) {
                l @ 0..=128 => (u128::from(v6), l),
                _ => return Err(bad("an IPv6 prefix length is at most 128")),
            },
        };
        Ok(Prefix { network: bits & Self::mask(len), len })
    }

    fn mask(len: u8) -> u128 {
        u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
    }

    /// Whether an address as the flow table stores it (IPv4 mapped) is inside.
    fn contains_bits(&self, bits: u128) -> bool {
        bits & Self::mask(self.len) == self.network
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Request;

    fn flow(src: &str, dst: &str) -> DumpedFlow {
        let bits = |a: &str| match a.parse::<IpAddr>().unwrap() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        DumpedFlow { src_addr: bits(src), dst_addr: bits(dst), src_port: 40000, dst_port: 80, proto: 6, state: established(), ..Default::default() }
    }

    /// The dump's code for `established` (a TCP flow's).
    fn established() -> u8 {
        (0..=255u8).find(|&s| DumpedFlow { state: s, ..Default::default() }.state_name() == "established").unwrap()
    }

    fn request(line: &str) -> Result<FlowFilter, String> {
        match Request::parse(line)? {
            Request::Flows(r) => FlowFilter::from_request(&r),
            other => panic!("{other:?}"),
        }
    }

    fn filter(address: &str) -> FlowFilter {
        request(&serde_json::json!({"cmd": "flows", "address": address}).to_string()).unwrap()
    }

    #[test]
    fn address_filter_takes_addresses_and_prefixes_of_both_families() {
        let v4 = flow("10.0.0.5", "192.168.1.9");
        let v6 = flow("fd00::1", "2001:db8::80");
        for (address, keeps_v4, keeps_v6) in [
            ("10.0.0.5", true, false),
            ("192.168.1.9", true, false),
            ("10.0.0.6", false, false),
            ("10.0.0.0/24", true, false),
            ("192.168.0.0/16", true, false),
            ("10.0.1.0/24", false, false),
            ("10.0.0.4/31", true, false),
            ("10.0.0.5/24", true, false), // host bits are ignored
            ("0.0.0.0/0", true, false),
            ("::ffff:10.0.0.5", true, false), // the flow table's own mapped form
            ("fd00::1", false, true),
            ("FD00:0::1", false, true),
            ("fd00:0:0:0:0:0:0:1/128", false, true),
            ("fd00::/64", false, true),
            ("2001:db8::/32", false, true),
            ("fd00::2", false, false),
            ("fd01::/64", false, false),
            ("::/0", true, true),
            (" 10.0.0.0/8 ", true, false),
        ] {
            let f = filter(address);
            assert_eq!(f.keeps(&v4, "a"), keeps_v4, "{address} on {v4:?}");
            assert_eq!(f.keeps(&v6, "a"), keeps_v6, "{address} on {v6:?}");
        }
    }

    #[test]
    fn unparsable_address_is_an_error_not_an_empty_list() {
        for (address, why) in [
            ("banana", "not an IP address"),
            ("10.0.0", "not an IP address"),
            ("10.0.0.0/33", "at most 32"),
            ("fd00::/129", "at most 128"),
            ("10.0.0.0/x", "not a number"),
            ("10.0.0.0/", "not a number"),
            ("10.0.0.1:80", "not an IP address"),
        ] {
            let e = request(&serde_json::json!({"cmd": "flows", "address": address}).to_string()).unwrap_err();
            assert!(e.contains(&format!("{address:?}")) && e.contains(why) && e.contains("expected an address or a prefix"), "{address}: {e}");
        }
        assert!(request(r#"{"cmd":"flows","address":5}"#).is_err());
        // Absent, null or empty: no address filter.
        for line in [r#"{"cmd":"flows"}"#, r#"{"cmd":"flows","address":null}"#, r#"{"cmd":"flows","address":""}"#] {
            assert_eq!(request(line).unwrap(), FlowFilter::default());
        }
    }

    #[test]
    fn a_dumped_flow_becomes_the_command_that_ends_it() {
        let f = DumpedFlow { zone: 3, proto: 17, dst_port: 53, ..flow("10.0.0.1", "fd00::2") };
        let cmd = CommandRecord::kill_flow(&f.src_addr, &f.dst_addr, f.src_port, f.dst_port, f.proto, f.zone);
        let v4 = std::net::Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets();
        let v6 = "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
        assert_eq!(cmd.flow_key(), (v4, v6, 40000, 53, 17, 3));
        assert_eq!(cmd.kind, CommandKind::KillFlow as u32);
    }

    #[test]
    fn a_dumped_flow_is_shown_as_before() {
        let f = DumpedFlow { rule: 1, packets: [3, 4], bytes: [300, 400], age_ms: 5, idle_ms: 6, owner: 2, ..flow("10.0.0.1", "fd00::2") };
        let v = serde_json::to_value(row(&f, "web".into(), &["r0".into(), "r1".into()])).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"src_ip": "10.0.0.1", "src_port": 40000, "dest_ip": "fd00::2", "dest_port": 80, "proto": "TCP", "zone": 0,
                "state": "established", "owner": 2, "guest": "web", "rule": "r1", "pkts": [3, 4], "bytes": [300, 400], "age_ms": 5, "idle_ms": 6})
        );
        let none = serde_json::to_value(row(&DumpedFlow { rule: rampart_shm::dump::NO_RULE, ..f }, "web".into(), &[])).unwrap();
        assert_eq!(none["rule"], serde_json::Value::Null);
    }

    #[test]
    fn other_filters_still_apply_with_the_address() {
        let f = flow("10.0.0.5", "10.0.1.7");
        let req = |extra: serde_json::Value| {
            let mut r = serde_json::json!({"cmd": "flows", "address": "10.0.0.0/16"});
            r.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            request(&r.to_string()).unwrap()
        };
        assert!(req(serde_json::json!({})).keeps(&f, "web"));
        assert!(req(serde_json::json!({"guest": "web", "port": 80, "state": "established"})).keeps(&f, "web"));
        assert!(!req(serde_json::json!({"guest": "db"})).keeps(&f, "web"));
        assert!(!req(serde_json::json!({"port": 443})).keeps(&f, "web"));
        assert!(!req(serde_json::json!({"state": "syn_sent"})).keeps(&f, "web"));
        assert!(!filter("10.1.0.0/16").keeps(&f, "web"));
    }
}
