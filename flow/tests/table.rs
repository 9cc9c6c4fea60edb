//! Table behaviour: timeouts and incremental ageing, ICMP relation, UDP/ICMP
//! pseudo-states, table-full policies, per-guest quotas, bulk lookup, removal, paged
//! listings, config.

mod common;

use common::*;
use rampart_flow::{
    EndReason, FlowState::*, FlowTableConfig, FullPolicy, InsertError, NewFlow, Timeouts,
};
use rampart_packet::FlowKey;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];
const ROUTER: [u8; 4] = [10, 0, 0, 254];

fn tcp_established(t: &rampart_flow::FlowTable, k: &FlowKey, now: u64) {
    send(t, k, &syn(1000, 64240, None), now);
    send(t, &k.reversed(), &synack(5000, 1001, 65535, None), now);
    assert_eq!(
        send(t, k, &seg(ACK, 1001, 5001, 64240, 0), now)
            .tracked()
            .state,
        TcpEstablished
    );
}

#[test]
fn half_open_expires_on_short_timer_while_established_survives() {
    let t = table(64);
    let half_open = key4(A, 1111, B, 80, TCP);
    let syn_recv = key4(A, 2222, B, 80, TCP);
    let est = key4(A, 3333, B, 80, TCP);
    send(&t, &half_open, &syn(1, 1000, None), 0);
    send(&t, &syn_recv, &syn(1, 1000, None), 0);
    send(&t, &syn_recv.reversed(), &synack(9, 2, 1000, None), 0);
    tcp_established(&t, &est, 0);
    // SYN_RECV: 60 s.
    assert!(sweep(&t, 59 * SEC).is_empty());
    let ended = sweep(&t, 61 * SEC);
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].record.key, ended[0].record.state),
        (syn_recv.canonical().0, TcpSynRecv)
    );
    // SYN_SENT (unreplied): 120 s.
    let ended = sweep(&t, 121 * SEC);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].record.state, TcpSynSent);
    assert_eq!(ended[0].reason, EndReason::Expired);
    assert_eq!(ended[0].record.packets_from_responder(), 0);
    // ESTABLISHED: 5 days.
    assert!(sweep(&t, 4 * 86_400 * SEC).is_empty());
    assert!(record(&t, &est, 4 * 86_400 * SEC).is_some());
    assert_eq!(sweep(&t, 5 * 86_400 * SEC + SEC).len(), 1);
    assert_eq!(t.stats().expirations, 3);
    assert!(t.is_empty());
}

#[test]
fn idle_flow_behind_an_active_one_expires_on_its_own() {
    let t = table(64);
    let active = key4(A, 5000, B, 53, UDP);
    let idle = key4(A, 5001, B, 53, UDP);
    for k in [&active, &idle] {
        send(&t, k, &datagram(10), 0);
        send(&t, &k.reversed(), &datagram(10), 0);
    }
    // Ageing runs in small steps, as workers do between bursts; the active flow keeps
    // talking every 10 s.
    let mut ended = Vec::new();
    for tick in 1..=20u64 {
        let now = tick * 10 * SEC;
        assert!(send(&t, &active, &datagram(10), now)
            .tracked()
            .outcome
            .is_valid());
        for _ in 0..t.slots().div_ceil(16) {
            t.expire_step(now, 16, |e| ended.push((now, *e)));
        }
    }
    assert_eq!(ended.len(), 1, "only the idle flow ends");
    let (when, end) = ended[0];
    assert_eq!(end.record.key, idle.canonical().0);
    assert_eq!(end.record.state, UdpReplied);
    assert_eq!(when, 120 * SEC, "expired on its own 120 s timer");
    assert_eq!(end.record.last_ms, 0);
    assert!(record(&t, &active, 200 * SEC).is_some());
}

#[test]
fn expire_step_is_bounded_and_resumes() {
    let t = table(1000);
    for port in 0..500u16 {
        send(&t, &key4(A, port, B, 53, UDP), &datagram(1), 0);
    }
    let mut total = 0;
    let mut steps = 0;
    while total < 500 {
        let step = t.expire_step(31 * SEC, 64, |_| {});
        assert!(step.scanned <= 64);
        total += step.expired;
        steps += 1;
        assert!(
            steps <= t.slots().div_ceil(64),
            "one sweep finds everything"
        );
    }
    assert!(t.is_empty());
}

#[test]
fn icmp_error_related_only_when_inner_tuple_matches() {
    let t = table(64);
    let flow = key4(A, 40000, B, 80, TCP);
    tcp_established(&t, &flow, 0);
    let a = flow.src_addr;
    // A router tells A that its packet A→B could not be delivered: related.
    let related = t
        .icmp_error_related(&a, &flow)
        .expect("inner tuple is tracked");
    assert_eq!(related.inner_direction, flow.canonical().1);
    assert_eq!(related.hit.verdict, 1);
    // B's error about its reply, sent back to B: related too.
    assert!(t
        .icmp_error_related(&flow.dst_addr, &flow.reversed())
        .is_some());
    // Another port, protocol or zone: not related.
    assert!(t
        .icmp_error_related(&a, &key4(A, 40001, B, 80, TCP))
        .is_none());
    assert!(t
        .icmp_error_related(&a, &key4(A, 40000, B, 80, UDP))
        .is_none());
    assert!(t
        .icmp_error_related(&a, &FlowKey { zone: 9, ..flow })
        .is_none());
    // The right inner tuple but sent to a third party (forged/misdirected): not related.
    assert!(t
        .icmp_error_related(&key4(ROUTER, 0, B, 0, TCP).src_addr, &flow)
        .is_none());
}

#[test]
fn icmp_echo_pseudo_state() {
    let t = table(64);
    // Echo request/reply share a key: the identifier in both ports.
    let request = key4(A, 77, B, 77, ICMP);
    assert_eq!(
        send(&t, &request, &datagram(56), 0).tracked().state,
        IcmpUnreplied
    );
    let reply = send(&t, &request.reversed(), &datagram(56), 5).tracked();
    assert!(reply.reply);
    assert_eq!(reply.state, IcmpReplied);
    assert!(sweep(&t, 29 * SEC).is_empty());
    assert_eq!(sweep(&t, 31 * SEC).len(), 1);
}

#[test]
fn udp_unreplied_then_replied_timeouts() {
    let t = table(64);
    let one_way = key4(A, 5353, B, 53, UDP);
    let answered = key4(A, 5354, B, 53, UDP);
    assert_eq!(
        send(&t, &one_way, &datagram(40), 0).tracked().state,
        UdpUnreplied
    );
    assert_eq!(
        send(&t, &answered, &datagram(40), 0).tracked().state,
        UdpUnreplied
    );
    assert_eq!(
        send(&t, &answered.reversed(), &datagram(100), 10)
            .tracked()
            .state,
        UdpReplied
    );
    // Unreplied: 30 s.
    assert!(sweep(&t, 29 * SEC).is_empty());
    let ended = sweep(&t, 31 * SEC);
    assert_eq!(ended.len(), 1);
    assert_eq!(
        (ended[0].record.key, ended[0].record.state),
        (one_way.canonical().0, UdpUnreplied)
    );
    // Replied: 120 s after its last packet.
    assert!(sweep(&t, 10 + 119 * SEC).is_empty());
    let ended = sweep(&t, 10 + 120 * SEC);
    assert_eq!(ended.len(), 1);
    let r = ended[0].record;
    assert_eq!(r.state, UdpReplied);
    assert_eq!(
        (r.packets_from_initiator(), r.packets_from_responder()),
        (1, 1)
    );
    assert_eq!(
        (r.bytes_from_initiator(), r.bytes_from_responder()),
        (68, 128)
    );
    assert_eq!((r.start_ms, r.last_ms), (0, 10));
}

#[test]
fn flow_records_name_the_flow_as_its_opener_sent_it() {
    let t = table(64);
    // B sorts after A, so B's flows are stored under the reversed, canonical key.
    let from_b = key4(B, 40000, A, 53, UDP);
    let from_a = key4(A, 40001, B, 53, UDP);
    for (key, at) in [(from_b, 0), (from_a, 1)] {
        send(&t, &key, &datagram(40), at);
        send(&t, &key.reversed(), &datagram(60), at + 1);
    }
    let ended = sweep(&t, 200 * SEC);
    assert_eq!(ended.len(), 2);
    for end in ended {
        let r = end.record;
        let sent = if r.key == from_b.canonical().0 { from_b } else { from_a };
        assert_eq!(r.key, sent.canonical().0);
        assert_eq!(r.opener_key(), sent, "source is the opener");
        assert_eq!((r.bytes_from_initiator(), r.bytes_from_responder()), (28 + 40, 28 + 60));
    }
    assert_ne!(from_b.canonical().0, from_b, "the case where the two orders differ is covered");
}

#[test]
fn timeouts_are_configurable() {
    let t = table_with(FlowTableConfig {
        capacity: 64,
        timeouts: Timeouts {
            udp_unreplied: 2,
            ..Timeouts::default()
        },
        ..Default::default()
    });
    send(&t, &key4(A, 1, B, 2, UDP), &datagram(1), 0);
    assert_eq!(sweep(&t, 2 * SEC).len(), 1);
    // And at run time.
    send(&t, &key4(A, 1, B, 2, UDP), &datagram(1), 0);
    t.set_timeouts(&Timeouts {
        udp_unreplied: 100,
        ..Timeouts::default()
    });
    assert!(sweep(&t, 99 * SEC).is_empty());
    // Serde: missing fields take Linux's defaults, unknown ones are errors.
    let parsed: Timeouts = toml::from_str("udp_unreplied = 5\ntcp_established = 3600").unwrap();
    assert_eq!(
        (
            parsed.udp_unreplied,
            parsed.tcp_established,
            parsed.tcp_syn_sent
        ),
        (5, 3600, 120)
    );
    assert!(toml::from_str::<Timeouts>("udp_unreplyed = 5").is_err());
    let config: FlowTableConfig =
        toml::from_str("capacity = 1000\nfull_policy = \"evict-oldest\"\n[timeouts]\nicmp = 10")
            .unwrap();
    assert_eq!(
        (
            config.full_policy,
            config.timeouts.icmp,
            config.timeouts.generic
        ),
        (FullPolicy::EvictOldest, 10, 600)
    );
    assert_eq!(Timeouts::default().for_state(TcpEstablished), 432_000);
}

#[test]
fn table_full_refuse() {
    let t = table_with(FlowTableConfig {
        capacity: 4,
        full_policy: FullPolicy::Refuse,
        ..Default::default()
    });
    for port in 0..4 {
        send(
            &t,
            &key4(A, port, B, 53, UDP),
            &datagram(1),
            port as u64 * SEC,
        )
        .tracked();
    }
    assert_eq!(
        send(&t, &key4(A, 99, B, 53, UDP), &datagram(1), 10 * SEC),
        Sent::Refused(InsertError::Full)
    );
    assert_eq!(
        send(&t, &key4(A, 98, B, 53, UDP), &datagram(1), 10 * SEC),
        Sent::Refused(InsertError::Full)
    );
    // Existing flows are untouched and still tracked.
    assert!(send(
        &t,
        &key4(A, 0, B, 53, UDP).reversed(),
        &datagram(1),
        11 * SEC
    )
    .tracked()
    .outcome
    .is_valid());
    let stats = t.stats();
    assert_eq!(
        (stats.live, stats.full_refusals, stats.evictions),
        (4, 2, 0)
    );
    // Room again once a flow expires.
    sweep(&t, 3 * SEC + 31 * SEC);
    assert!(matches!(
        send(&t, &key4(A, 99, B, 53, UDP), &datagram(1), 40 * SEC),
        Sent::Tracked { created: true, .. }
    ));
}

#[test]
fn table_full_evict_oldest() {
    let t = table_with(FlowTableConfig {
        capacity: 4,
        full_policy: FullPolicy::EvictOldest,
        ..Default::default()
    });
    // Three answered flows and one unanswered, the unanswered one the newest.
    for port in 0..3u16 {
        let k = key4(A, port, B, 53, UDP);
        send(&t, &k, &datagram(1), port as u64 * SEC);
        send(&t, &k.reversed(), &datagram(1), port as u64 * SEC);
    }
    send(&t, &key4(A, 3, B, 53, UDP), &datagram(1), 3 * SEC);
    // The never-answered flow goes first, though it is the youngest.
    let (ckey, dir, hash) = t.prepare(&key4(A, 10, B, 53, UDP));
    let ins = t
        .insert(
            &ckey,
            hash,
            dir,
            NewFlow {
                verdict: 1,
                owner: 0,
            },
            &datagram(1),
            4 * SEC,
        )
        .unwrap();
    let victim = ins.ended.expect("a flow was evicted");
    assert_eq!(
        (victim.reason, victim.record.key.src_port),
        (EndReason::Evicted, 3)
    );
    // Then the oldest idle one.
    let (ckey, dir, hash) = t.prepare(&key4(A, 11, B, 53, UDP));
    let ins = t
        .insert(
            &ckey,
            hash,
            dir,
            NewFlow {
                verdict: 1,
                owner: 0,
            },
            &datagram(1),
            5 * SEC,
        )
        .unwrap();
    let victim = ins.ended.unwrap();
    assert_eq!(
        victim.record.key.src_port, 10,
        "unreplied flows before assured ones"
    );
    let (ckey, dir, hash) = t.prepare(&key4(A, 12, B, 53, UDP));
    send(
        &t,
        &key4(A, 11, B, 53, UDP).reversed(),
        &datagram(1),
        5 * SEC,
    );
    let ins = t
        .insert(
            &ckey,
            hash,
            dir,
            NewFlow {
                verdict: 1,
                owner: 0,
            },
            &datagram(1),
            6 * SEC,
        )
        .unwrap();
    assert_eq!(ins.ended.unwrap().record.key.src_port, 0, "then the oldest");
    let stats = t.stats();
    assert_eq!(
        (
            stats.live,
            stats.evictions,
            stats.full_refusals,
            stats.creations
        ),
        (4, 3, 0, 7)
    );
    assert_eq!(t.guest_occupancy(0), 4);
}

#[test]
fn quota_isolation_between_guests() {
    let t = table_with(FlowTableConfig {
        capacity: 64,
        guest_quota: 3,
        ..Default::default()
    });
    let as_guest = |g: u8| NewFlow {
        verdict: g as u32,
        owner: g,
    };
    for port in 0..3 {
        send_as(&t, &key4(A, port, B, 53, UDP), &datagram(1), 0, as_guest(1)).tracked();
    }
    assert_eq!(
        send_as(&t, &key4(A, 9, B, 53, UDP), &datagram(1), 0, as_guest(1)),
        Sent::Refused(InsertError::QuotaExceeded(1))
    );
    // Guest 1 at its quota does not stop guest 2.
    for port in 10..13 {
        send_as(&t, &key4(B, port, A, 53, UDP), &datagram(1), 0, as_guest(2)).tracked();
    }
    assert_eq!(
        (
            t.guest_occupancy(1),
            t.guest_occupancy(2),
            t.guest_occupancy(3)
        ),
        (3, 3, 0)
    );
    // Guest 1's existing flows still work; only new ones are refused.
    assert!(send_as(
        &t,
        &key4(A, 0, B, 53, UDP).reversed(),
        &datagram(1),
        1,
        as_guest(1)
    )
    .tracked()
    .outcome
    .is_valid());
    // A per-guest override, at run time.
    t.set_guest_quota(2, 10);
    send_as(&t, &key4(B, 13, A, 53, UDP), &datagram(1), 0, as_guest(2)).tracked();
    assert_eq!(t.stats().quota_refusals, 1);
    // Flows ending give the quota back.
    sweep(&t, 31 * SEC);
    assert_eq!(t.guest_occupancy(1), 1, "the replied flow is still there");
    send_as(
        &t,
        &key4(A, 9, B, 53, UDP),
        &datagram(1),
        31 * SEC,
        as_guest(1),
    )
    .tracked();
}

#[test]
fn bulk_lookup_matches_single_lookups() {
    let t = table(10_000);
    let mut keys = Vec::new();
    for i in 0..3000u32 {
        let k = key4(
            [10, 1, (i >> 8) as u8, i as u8],
            1000 + (i % 7) as u16,
            B,
            443,
            if i % 3 == 0 { UDP } else { TCP },
        );
        if i % 2 == 0 {
            let ins = send_as(
                &t,
                &k,
                &if k.proto == TCP {
                    syn(i, 1000, None)
                } else {
                    datagram(1)
                },
                0,
                NewFlow {
                    verdict: i,
                    owner: 0,
                },
            );
            assert!(matches!(ins, Sent::Tracked { created: true, .. }));
        }
        keys.push(k);
    }
    let prepared: Vec<_> = keys.iter().map(|k| t.prepare(k)).collect();
    let ckeys: Vec<FlowKey> = prepared.iter().map(|p| p.0).collect();
    let hashes: Vec<u64> = prepared.iter().map(|p| p.2).collect();
    let mut out = vec![None; keys.len()];
    assert_eq!(t.lookup_bulk(&ckeys, &hashes, &mut out), 1500);
    for (i, hit) in out.iter().enumerate() {
        assert_eq!(*hit, t.lookup(&ckeys[i], hashes[i]));
        assert_eq!(hit.map(|h| h.verdict), (i % 2 == 0).then_some(i as u32));
    }
    // Short output slices are respected.
    let mut short = vec![None; 5];
    assert_eq!(t.lookup_bulk(&ckeys, &hashes, &mut short), 3);
    // The packet path's prepared flows agree with `prepare` and `lookup`, both ways round.
    for (i, k) in keys.iter().enumerate() {
        for k in [*k, k.reversed()] {
            let mut flow = t.prepare_flow(&k);
            assert_eq!(t.lookup_flow(&flow), out[i], "without the prefetch stage");
            t.prefetch(flow.hash);
            t.prefetch_flow(&mut flow);
            let (canonical, dir) = k.canonical();
            assert_eq!((flow.canonical(), flow.dir, flow.hash), (canonical, dir, t.hash(&canonical)));
            assert_eq!(t.lookup_flow(&flow), out[i]);
        }
    }
}

#[test]
fn prepared_ipv6_flows_find_their_entry() {
    let t = table(64);
    let v6 = |last: u8| {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        a[15] = last;
        a
    };
    let k = FlowKey { src_addr: v6(9), dst_addr: v6(1), src_port: 5000, dst_port: 53, proto: UDP, zone: 3 };
    let mut far = v6(9);
    far[5] = 0x42;
    let other = FlowKey { src_addr: far, ..k };
    send(&t, &k, &datagram(1), 0);
    let mut flow = t.prepare_flow(&k.reversed());
    t.prefetch_flow(&mut flow);
    let (canonical, dir) = k.reversed().canonical();
    assert_eq!((flow.canonical(), flow.dir, flow.hash), (canonical, dir, t.hash(&canonical)));
    let hit = t.lookup_flow(&flow).expect("the reply finds the flow");
    assert_eq!(Some(hit), t.lookup(&flow.canonical(), flow.hash));
    let mut far_flow = t.prepare_flow(&other);
    t.prefetch_flow(&mut far_flow);
    assert!(t.lookup_flow(&far_flow).is_none(), "addresses differ only above the low 32 bits");
}

#[test]
fn remembered_lanes_are_only_a_hint() {
    let t = table(64);
    let k = key4(A, 1, B, 2, UDP);
    // Prefetched before the flow exists: no lanes remembered, the lookup still finds a flow
    // inserted in between.
    let mut early = t.prepare_flow(&k);
    t.prefetch_flow(&mut early);
    assert!(t.lookup_flow(&early).is_none());
    send(&t, &k, &datagram(1), 0);
    let hit = t.lookup_flow(&early).expect("found by the full lookup");
    // Prefetched while the flow exists, removed before the lookup: a miss, not a stale hit.
    let mut late = t.prepare_flow(&k);
    t.prefetch_flow(&mut late);
    let (ckey, _, hash) = t.prepare(&k);
    t.remove(&ckey, hash, 1).unwrap();
    assert!(t.lookup_flow(&late).is_none());
    // Reinserted (possibly in another lane): found again with the old hint.
    send(&t, &k, &datagram(1), 2);
    let again = t.lookup_flow(&late).expect("found again");
    assert_ne!(again.flow_id(), hit.flow_id(), "a new generation");
}

#[test]
fn remove_and_stale_hits() {
    let t = table(64);
    let k = key4(A, 1, B, 2, UDP);
    send(&t, &k, &datagram(1), 0);
    let (ckey, dir, hash) = t.prepare(&k);
    let hit = t.lookup(&ckey, hash).unwrap();
    let end = t.remove(&ckey, hash, 5).unwrap();
    assert_eq!((end.reason, end.record.key), (EndReason::Removed, ckey));
    assert!(t.remove(&ckey, hash, 5).is_none());
    // A hit read before the removal is refused, even once the slot is reused.
    assert_eq!(
        t.track(&hit, dir, &datagram(1), 6),
        Err(rampart_flow::Stale::Gone)
    );
    send(&t, &key4(A, 7, B, 8, UDP), &datagram(1), 7);
    assert_eq!(
        t.track(&hit, dir, &datagram(1), 8),
        Err(rampart_flow::Stale::Gone)
    );
    assert_eq!(t.set_verdict(&hit, 9), Err(rampart_flow::Stale::Gone));
    assert_eq!(t.stats().removals, 1);
}

#[test]
fn revisit_sets_verdicts_and_removes_flows_a_slice_at_a_time() {
    use rampart_flow::Revisit;
    let t = table(256);
    // Flows to port 1..=30: even ports get verdict 7, multiples of 3 are removed, the rest kept.
    let keys: Vec<FlowKey> = (1..=30).map(|p| key4(A, 1000 + p, B, p, UDP)).collect();
    for k in &keys {
        send(&t, k, &datagram(1), 0);
    }
    let mut ended = Vec::new();
    let mut cursor = 0;
    let mut steps = 0;
    let total = t.slots();
    while steps * 16 < total {
        t.revisit_step(
            &mut cursor,
            16,
            5,
            |r| match r.opener_key().dst_port {
                p if p % 3 == 0 => Revisit::Remove(p),
                p if p % 2 == 0 => Revisit::Verdict(7),
                _ => Revisit::Keep,
            },
            |end, port| ended.push((end.reason, end.record.opener_key().dst_port, port)),
        );
        steps += 1;
    }
    assert_eq!(cursor, 0, "one whole round");
    ended.sort_by_key(|e| e.1);
    let removed: Vec<u16> = (1..=30).filter(|p| p % 3 == 0).collect();
    assert_eq!(ended, removed.iter().map(|&p| (EndReason::Removed, p, p)).collect::<Vec<_>>(), "each reported once, with what decide attached");
    for k in &keys {
        let p = k.dst_port;
        match record(&t, k, 5) {
            None => assert_eq!(p % 3, 0, "port {p} removed"),
            Some(r) => assert_eq!(r.verdict, if p % 2 == 0 { 7 } else { 1 }, "port {p}"),
        }
    }
    assert_eq!((t.len(), t.stats().removals), (20, 10));
}

/// Walks the table with [`FlowTable::for_each_flow_from`] in pages of `max` slots from
/// `cursor`: each page's cursor and the opener source ports of the flows it listed.
fn pages_from(t: &rampart_flow::FlowTable, cursor: usize, max: usize, now: u64) -> Vec<(usize, Vec<u16>)> {
    let mut pages = Vec::new();
    let mut at = Some(cursor);
    while let Some(c) = at {
        let mut ports = Vec::new();
        at = t.for_each_flow_from(c, max, now, |r| ports.push(r.opener_key().src_port));
        assert!(ports.len() <= max, "a page lists at most one flow per slot it visits");
        if let Some(next) = at {
            assert_eq!(next, c + max, "a page that does not reach the end visits exactly `max` slots");
        }
        pages.push((c, ports));
    }
    pages
}

/// A table for 1,000 flows holding `n` UDP flows A:`first_port`+i → B:53, opened at 0.
fn udp_flows(first_port: u16, n: u16) -> rampart_flow::FlowTable {
    let t = table(1000);
    for port in first_port..first_port + n {
        send(&t, &key4(A, port, B, 53, UDP), &datagram(1), 0);
    }
    t
}

#[test]
fn for_each_flow_from_lists_every_live_flow_once_across_pages() {
    let t = udp_flows(10_000, 600);
    // 37 slots a page: pages start and end inside buckets (16 slots each).
    let pages = pages_from(&t, 0, 37, SEC);
    assert_eq!(pages.len(), t.slots().div_ceil(37), "the walk ends at the end of the table, not before");
    let mut seen: Vec<u16> = pages.iter().flat_map(|(_, ports)| ports.iter().copied()).collect();
    assert_eq!(seen.len(), 600, "no flow listed twice, none left out");
    seen.sort_unstable();
    assert_eq!(seen, (10_000..10_600).collect::<Vec<u16>>());
    // Pages as large as the table, or larger: one page, the whole table.
    for max in [t.slots(), usize::MAX] {
        let whole = pages_from(&t, 0, max, SEC);
        assert_eq!((whole.len(), whole[0].1.len()), (1, 600));
    }
}

#[test]
fn for_each_flow_from_skips_free_slots_and_expired_flows() {
    let t = table(256);
    let keys: Vec<FlowKey> = (0..40u16).map(|p| key4(A, 20_000 + p, B, 53, UDP)).collect();
    for k in &keys {
        send(&t, k, &datagram(1), 0);
    }
    // 0..10 removed (their slots free again); 10..20 expired and swept by ageing; 20..30
    // idle past the 30 s unreplied-UDP timeout but not yet swept; 30..40 kept alive.
    for k in &keys[..10] {
        let (ckey, _, hash) = t.prepare(k);
        assert!(t.remove(&ckey, hash, SEC).is_some());
    }
    for k in &keys[20..] {
        send(&t, k, &datagram(1), 5 * SEC);
    }
    for k in &keys[30..] {
        send(&t, k, &datagram(1), 20 * SEC);
    }
    // 20..30 were last seen at 5 s: a sweep at 34 s leaves them; 10..20 (0 s) it ends.
    assert_eq!(sweep(&t, 34 * SEC).len(), 10);
    let listed = |now| {
        let mut ports: Vec<u16> = pages_from(&t, 0, 16, now).into_iter().flat_map(|(_, p)| p).collect();
        ports.sort_unstable();
        ports
    };
    assert_eq!(listed(34 * SEC), (20_020..20_040).collect::<Vec<u16>>(), "free slots are skipped");
    assert_eq!(t.len(), 20);
    // At 36 s, 20..30 are past their timeout (still in the table until the next sweep).
    assert_eq!(listed(36 * SEC), (20_030..20_040).collect::<Vec<u16>>(), "expired flows are skipped");
    assert_eq!(t.len(), 20, "listing is read-only: it ends nothing");
    assert_eq!(t.stats().expirations, 10);
}

#[test]
fn for_each_flow_from_resumes_mid_table() {
    let t = udp_flows(30_000, 500);
    let pages = pages_from(&t, 0, 100, SEC);
    assert!(pages.len() > 4);
    // Resuming at a page's cursor lists what the pages from there on listed.
    let (resume_at, _) = pages[3];
    let rest: Vec<u16> = pages[3..].iter().flat_map(|(_, p)| p.iter().copied()).collect();
    let resumed: Vec<u16> = pages_from(&t, resume_at, 100, SEC).into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(resumed, rest);
    // Pages of another size from an odd cursor list the same flows.
    let odd: Vec<u16> = pages_from(&t, resume_at, 7, SEC).into_iter().flat_map(|(_, p)| p).collect();
    assert_eq!(odd, rest);
    // At or past the end: nothing, and the end; no room: no progress.
    let mut calls = 0;
    assert_eq!(t.for_each_flow_from(t.slots(), 10, SEC, |_| calls += 1), None);
    assert_eq!(t.for_each_flow_from(usize::MAX, 10, SEC, |_| calls += 1), None);
    assert_eq!(t.for_each_flow_from(resume_at, 0, SEC, |_| calls += 1), Some(resume_at));
    assert_eq!(calls, 0);
}

#[test]
fn table_fills_to_capacity_without_spurious_full() {
    // Both candidate buckets of a key being full is what refuses a flow before the table
    // holds `capacity`; bucket placement must make that (practically) never happen.
    let capacity = 200_000u32;
    let t = table_with(FlowTableConfig {
        capacity,
        hash_seed: Some(2024),
        ..Default::default()
    });
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut created = 0;
    while created < capacity {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let k = key4(
            [10, (rng >> 8) as u8, (rng >> 16) as u8, (rng >> 24) as u8],
            (rng >> 32) as u16,
            B,
            (rng >> 48) as u16,
            UDP,
        );
        if let Sent::Tracked { created: true, .. } = send(&t, &k, &datagram(1), 0) {
            created += 1;
        }
    }
    assert_eq!(t.stats().full_refusals, 0);
    assert_eq!(t.len(), capacity);
    assert_eq!(
        send(&t, &key4(A, 1, B, 1, UDP), &datagram(1), 0),
        Sent::Refused(InsertError::Full)
    );
}
