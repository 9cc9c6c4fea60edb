//! The engine against the reference matcher: random small signatures over random packet
//! sequences drawn from a tiny alphabet (so partial and full matches are frequent), per
//! packet and streamed, plus a database of 1,000+ random patterns.

use proptest::prelude::*;
use rampart_signatures::engine::{Database, Matches, Packet, Stream, MAX_MATCHES};
use rampart_signatures::reference;
use rampart_signatures::{
    AddrMatch, ByteJump, ByteOp, ByteRead, ByteTest, Cidr, Content, FlowMatch, IsDataAt, JumpFrom, PayloadCheck, Pcre, PortMatch,
    SigAction, SigProto, Signature, SizeRange,
};
use std::net::{IpAddr, Ipv4Addr};

/// Bytes of payloads and contents: few, so that matches are frequent.
const ALPHABET: &[u8] = b"abAB|\x001\n";

/// Bytes from [`ALPHABET`].
fn bytes(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(ALPHABET), len)
}

/// A content with a valid combination of modifiers: absolute (offset/depth), relative
/// (distance/within) or neither, plus the flags.
fn content() -> impl Strategy<Value = Content> {
    let absolute = (prop::option::of(0u32..6), prop::option::of(1u32..10), prop::bool::weighted(0.15))
        .prop_map(|(offset, depth, startswith)| (offset, depth, None, None, startswith));
    let relative =
        (prop::option::of(-4i32..6), prop::option::of(1u32..10), prop::bool::weighted(0.15)).prop_map(|(distance, within, startswith)| {
            // At least one of distance / within.
            let distance = if distance.is_none() && within.is_none() {
                Some(0)
            } else {
                distance
            };
            (None, None, distance, within, startswith)
        });
    let plain = Just((None, None, None, None, false));
    let position = prop_oneof![3 => plain, 2 => absolute, 3 => relative];
    (
        bytes(1..=4),
        position,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.3),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.15),
    )
        .prop_map(
            |(bytes, (offset, depth, distance, within, startswith), negated, nocase, endswith, fast_pattern)| Content {
                bytes,
                negated,
                nocase,
                offset,
                depth,
                distance,
                within,
                startswith,
                endswith,
                fast_pattern,
            },
        )
}

/// How a byte_test / byte_jump reads: 1–3 bytes (binary or as a string), near the cursor.
fn byte_read() -> impl Strategy<Value = ByteRead> {
    (
        1u8..=3,
        -3i32..6,
        any::<bool>(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec![16u8, 10, 8])),
        prop::option::weighted(0.2, prop::sample::select(vec![0x0fu64, 0xf0, 0x7e, 1 << 8])),
    )
        .prop_map(|(count, offset, relative, little_endian, string_base, bitmask)| ByteRead {
            count,
            offset,
            relative,
            little_endian,
            string_base,
            bitmask,
        })
}

/// A pcre over the alphabet, with random flags.
fn pcre() -> impl Strategy<Value = Pcre> {
    let patterns = vec!["a+b", "[ab]{2}", "^a", "b$", "a.b", "(?:ab|ba)", r"a\x00", r"\|b*", "A[^a]", "^1|b1", r"(?:^|\n)a", "b+?"];
    (prop::sample::select(patterns), prop::collection::vec(any::<bool>(), 7)).prop_map(|(pattern, f)| Pcre {
        pattern: pattern.to_string(),
        negated: f[0] && f[1],
        relative: f[2],
        nocase: f[3],
        dotall: f[4],
        multiline: f[5] && f[4],
        extended: false,
        anchored: f[6] && f[1],
        ungreedy: f[5] && !f[4],
    })
}

/// A payload check: mostly contents, sometimes `isdataat`, `byte_test`, `byte_jump` or `pcre`.
fn check() -> impl Strategy<Value = PayloadCheck> {
    let ops = prop::sample::select(vec![ByteOp::Lt, ByteOp::Gt, ByteOp::Le, ByteOp::Ge, ByteOp::Eq, ByteOp::And, ByteOp::Xor]);
    let from = prop::sample::select(vec![JumpFrom::Read, JumpFrom::Read, JumpFrom::Beginning, JumpFrom::End]);
    prop_oneof![
        6 => content().prop_map(PayloadCheck::Content),
        1 => (0u32..10, any::<bool>(), prop::bool::weighted(0.3))
            .prop_map(|(pos, relative, negated)| PayloadCheck::IsDataAt(IsDataAt { pos, relative, negated })),
        1 => (byte_read(), ops, any::<bool>(), prop::sample::select(vec![0u64, 1, 0x31, 0x61, 0x6162, 0xab, 11, 1 << 20]))
            .prop_map(|(read, op, negated, value)| PayloadCheck::ByteTest(ByteTest { read, op, negated, value })),
        1 => (byte_read(), 1u32..3, any::<bool>(), from, -4i32..4)
            .prop_map(|(read, multiplier, align, from, post_offset)| PayloadCheck::ByteJump(ByteJump { read, multiplier, align, from, post_offset })),
        1 => pcre().prop_map(PayloadCheck::Pcre),
    ]
}

/// A signature: half of them stripped of what makes a signature per-packet only (absolute
/// positions, absence, `dsize`), so that matches across packets are frequent.
fn signature() -> impl Strategy<Value = Signature> {
    prop_oneof![any_signature(), any_signature().prop_map(streamable)]
}

/// `sig` without absolute positions, negated contents, `dsize`, byte_test, byte_jump or pcre.
fn streamable(mut sig: Signature) -> Signature {
    sig.dsize = None;
    sig.checks.retain(|c| matches!(c, PayloadCheck::Content(_) | PayloadCheck::IsDataAt(_)));
    for check in &mut sig.checks {
        match check {
            PayloadCheck::Content(c) => {
                c.offset = None;
                c.depth = None;
                c.startswith = false;
                c.endswith = false;
                c.negated = false;
            }
            PayloadCheck::IsDataAt(d) => d.relative = true,
            _ => {}
        }
    }
    sig
}

/// A signature with 1–3 contents (and maybe an `isdataat`), random header and flow.
fn any_signature() -> impl Strategy<Value = Signature> {
    let checks = (prop::collection::vec(content(), 1..=3), prop::option::of((check(), 0usize..4))).prop_map(|(contents, extra)| {
        let mut checks: Vec<PayloadCheck> = contents.into_iter().map(PayloadCheck::Content).collect();
        if let Some((c, at)) = extra {
            checks.insert(at.min(checks.len()), c);
        }
        checks
    });
    let action = prop_oneof![
        6 => Just(SigAction::Alert),
        1 => Just(SigAction::Drop),
        1 => Just(SigAction::Reject),
        1 => Just(SigAction::Pass),
    ];
    let proto = prop_oneof![
        3 => Just(SigProto::Ip),
        3 => Just(SigProto::Tcp),
        1 => Just(SigProto::Udp),
        1 => Just(SigProto::Icmp),
    ];
    let flow = (
        prop::option::of(any::<bool>()),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(to_server, established, not_established)| FlowMatch {
            to_server,
            established,
            not_established,
            stateless: false,
        });
    let ports = prop_oneof![
        4 => Just(PortMatch::default()),
        1 => Just(PortMatch { include: vec![(80, 80)], exclude: vec![] }),
        1 => Just(PortMatch { include: vec![], exclude: vec![(80, 80)] }),
    ];
    let addr = prop_oneof![
        4 => Just(AddrMatch::default()),
        1 => Just(AddrMatch {
            include: vec![Cidr { addr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 0)), len: 24 }],
            exclude: vec![],
        }),
    ];
    let dsize = prop::option::weighted(
        0.1,
        (0u32..8, 0u32..8).prop_map(|(a, b)| SizeRange {
            min: a.min(b),
            max: a.max(b),
        }),
    );
    (checks, action, proto, flow, ports, addr, any::<bool>(), dsize).prop_map(
        |(checks, action, proto, flow, dst_ports, src, bidirectional, dsize)| Signature {
            src,
            dst_ports,
            bidirectional,
            flow,
            dsize,
            ..Signature::new(action, proto, 1, checks)
        },
    )
}

/// Header fields of one flow direction: protocol, whether it goes to the server, and
/// which end is 10.0.0.1:1234 (the other being 192.168.1.1:80).
fn header() -> impl Strategy<Value = (u8, bool, bool)> {
    (prop::sample::select(&[6u8, 6, 17, 1, 47][..]), any::<bool>(), any::<bool>())
}

/// One packet of the flow direction.
fn packet((proto, to_server, swapped): (u8, bool, bool), established: bool, payload: &[u8]) -> Packet<'_> {
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 1));
    let ports = proto == 6 || proto == 17;
    let (pa, pb) = if ports { (1234, 80) } else { (0, 0) };
    let (src, dst, src_port, dst_port) = if swapped { (b, a, pb, pa) } else { (a, b, pa, pb) };
    Packet {
        proto,
        src,
        dst,
        src_port,
        dst_port,
        to_server,
        established,
        payload,
    }
}

/// The engine's listed matches, `more` and action for each packet through one stream.
fn engine_stream(db: &Database, packets: &[Packet]) -> Vec<(Vec<u32>, u32, Option<SigAction>)> {
    let mut st = Stream::new();
    let mut out = Matches::new();
    packets
        .iter()
        .map(|p| {
            db.scan(p, Some(&mut st), &mut out);
            (out.iter().collect(), out.more(), out.action())
        })
        .collect()
}

/// What the engine should report given the full match list.
fn expected(sigs: &[Signature], matched: &[u32]) -> (Vec<u32>, u32, Option<SigAction>) {
    let listed = reference::report(sigs, matched);
    let pass = matched.iter().any(|&i| sigs[i as usize].action == SigAction::Pass);
    let more = if pass {
        0
    } else {
        matched.len().saturating_sub(MAX_MATCHES) as u32
    };
    let action = matched.iter().map(|&i| sigs[i as usize].action).min();
    (listed, more, action)
}

/// Random packet sequences: independent payloads, one text cut at split points, or a few
/// long payloads.
fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let independent = prop::collection::vec(bytes(0..=12), 1..=4);
    let split = (bytes(1..=30), prop::collection::vec(0usize..=30, 0..=3)).prop_map(|(text, mut cuts)| {
        cuts.iter_mut().for_each(|c| *c = (*c).min(text.len()));
        cuts.sort_unstable();
        let mut parts = Vec::new();
        let mut at = 0;
        for c in cuts {
            parts.push(text[at..c].to_vec());
            at = c;
        }
        parts.push(text[at..].to_vec());
        parts
    });
    // Long enough for the engine's two-walker path (payloads of 128 bytes and more).
    let long = prop::collection::vec(bytes(100..=400), 1..=3);
    prop_oneof![4 => independent, 4 => split, 1 => long]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Streamed and per-packet, the engine reports exactly what the reference does.
    #[test]
    fn engine_matches_reference(
        sigs in prop::collection::vec(signature(), 1..=6),
        payloads in payloads(),
        established in prop::collection::vec(any::<bool>(), 4),
        hdr in header(),
        tail in 1usize..=16,
    ) {
        let packets: Vec<Packet> = payloads
            .iter()
            .zip(&established)
            .map(|(p, &e)| packet(hdr, e, p))
            .collect();
        let mut db = Database::build(sigs.clone(), tail).unwrap();
        db.set_backtrack_budget(u32::MAX);

        let want = reference::stream_matches(&sigs, tail, &packets);
        let listed = reference::scan_stream(&sigs, tail, &packets);
        let got = engine_stream(&db, &packets);
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(&g.0, &listed[k], "packet {} listed", k);
            prop_assert_eq!(g, &expected(&sigs, w), "packet {} (all matches {:?})", k, w);
        }

        // Without a stream: each payload alone.
        let mut out = Matches::new();
        for p in &packets {
            let matched: Vec<u32> = (0..sigs.len() as u32)
                .filter(|&i| reference::matches(&sigs[i as usize], p, p.payload))
                .collect();
            db.scan(p, None, &mut out);
            prop_assert_eq!((out.iter().collect(), out.more(), out.action()), expected(&sigs, &matched));
        }

        // With the default budget, whatever is listed really matches.
        let bounded = Database::build(sigs.clone(), tail).unwrap();
        for (g, w) in engine_stream(&bounded, &packets).iter().zip(&want) {
            prop_assert!(g.0.iter().all(|i| w.contains(i)));
        }
    }

    /// A stream scanned under one database and continued under another (a reload)
    /// matches the reference from the reload on, with the tail kept.
    #[test]
    fn reload_keeps_the_stream(
        old in prop::collection::vec(signature(), 1..=3),
        new in prop::collection::vec(signature(), 1..=6),
        payloads in payloads(),
        hdr in header(),
        tail in 1usize..=16,
    ) {
        let packets: Vec<Packet> = payloads.iter().map(|p| packet(hdr, true, p)).collect();
        let before = Database::build(old, tail).unwrap();
        let mut after = Database::build(new.clone(), tail).unwrap();
        after.set_backtrack_budget(u32::MAX);
        let want = reference::stream_matches(&new, tail, &packets);
        let mut st = Stream::new();
        let mut out = Matches::new();
        for (k, p) in packets.iter().enumerate() {
            let db = if k == 0 { &before } else { &after };
            db.scan(p, Some(&mut st), &mut out);
            if k > 0 {
                prop_assert_eq!(out.resynced(), k == 1 && before.fingerprint() != after.fingerprint());
                prop_assert_eq!((out.iter().collect(), out.more(), out.action()), expected(&new, &want[k]));
            }
        }
    }
}

/// Tiny deterministic generator (xorshift64) for the large test.
struct Rng(u64);
impl Rng {
    /// The next xorshift64 value.
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A value in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// `min` to `min + spread - 1` bytes from `alphabet`.
    fn text(&mut self, alphabet: &[u8], min: usize, spread: usize) -> Vec<u8> {
        let len = min + self.below(spread);
        (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }
}

/// 1,200 random signatures (many sharing a prefilter pattern) over random streams.
#[test]
fn thousand_patterns() {
    let alphabet = b"abcdefgh";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let plain = |bytes: Vec<u8>| Content {
        bytes,
        ..Content::default()
    };
    let sigs: Vec<Signature> = (0..1200)
        .map(|i| {
            let first = plain(rng.text(alphabet, 3, 6));
            let mut checks = vec![PayloadCheck::Content(Content {
                nocase: i % 3 == 0,
                ..first
            })];
            match rng.below(4) {
                0 => checks.push(PayloadCheck::Content(Content {
                    distance: Some(rng.below(4) as i32 - 1),
                    within: Some(3 + rng.below(6) as u32),
                    ..plain(rng.text(alphabet, 1, 3))
                })),
                1 => checks.push(PayloadCheck::Content(plain(rng.text(alphabet, 2, 4)))),
                2 => checks.push(PayloadCheck::Content(Content {
                    negated: true,
                    distance: Some(0),
                    within: Some(2),
                    ..plain(rng.text(alphabet, 1, 1))
                })),
                _ => {}
            }
            Signature {
                msg: format!("sig {i}"),
                ..Signature::new(
                    if i % 97 == 5 { SigAction::Drop } else { SigAction::Alert },
                    SigProto::Ip,
                    i,
                    checks,
                )
            }
        })
        .collect();
    let mut db = Database::build(sigs.clone(), 16).unwrap();
    db.set_backtrack_budget(u32::MAX);
    assert_eq!(db.stats().signatures, 1200);
    assert!(db.stats().prefilter_patterns >= 1000, "{:?}", db.stats());
    let mut total = 0;
    for _ in 0..40 {
        let payloads: Vec<Vec<u8>> = (0..4).map(|_| rng.text(alphabet, 20, 300)).collect();
        let packets: Vec<Packet> = payloads.iter().map(|p| packet((6, true, false), true, p)).collect();
        let want = reference::stream_matches(&sigs, 16, &packets);
        let got = engine_stream(&db, &packets);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, &expected(&sigs, w));
            total += w.len();
        }
    }
    assert!(total > 100, "too few matches ({total}) to mean anything");
}

/// A signature built around byte_test, byte_jump and pcre: maybe a content first, then
/// 1–2 of them, maybe a relative content after (so moved cursors are read).
fn number_and_pcre_signature() -> impl Strategy<Value = Signature> {
    let special = prop_oneof![
        byte_read().prop_flat_map(|read| {
            (Just(read), prop::sample::select(vec![ByteOp::Lt, ByteOp::Gt, ByteOp::Eq, ByteOp::And, ByteOp::Xor]), any::<bool>(), 0u64..0x70)
                .prop_map(|(read, op, negated, value)| PayloadCheck::ByteTest(ByteTest { read, op, negated, value }))
        }),
        (byte_read(), 1u32..3, any::<bool>(), prop::sample::select(vec![JumpFrom::Read, JumpFrom::Beginning, JumpFrom::End]), -4i32..4)
            .prop_map(|(read, multiplier, align, from, post_offset)| {
                // Small jumps (values read are up to 0x7c), so that they land inside the payload.
                let read = ByteRead { bitmask: Some(read.bitmask.unwrap_or(0x07)), ..read };
                let post_offset = if from == JumpFrom::End { -post_offset.abs() - 8 } else { post_offset };
                PayloadCheck::ByteJump(ByteJump { read, multiplier, align, from, post_offset })
            }),
        pcre().prop_map(PayloadCheck::Pcre),
    ];
    let first = prop::option::weighted(0.4, bytes(1..=2).prop_map(|b| PayloadCheck::Content(Content { bytes: b, ..Content::default() })));
    let after = prop::option::weighted(0.3, bytes(1..=2).prop_map(|b| {
        PayloadCheck::Content(Content { bytes: b, distance: Some(0), within: Some(4), ..Content::default() })
    }));
    (first, prop::collection::vec(special, 1..=2), after).prop_map(|(first, special, after)| {
        let checks = first.into_iter().chain(special).chain(after).collect();
        Signature::new(SigAction::Alert, SigProto::Ip, 1, checks)
    })
}

/// byte_test, byte_jump and pcre, per packet, against the reference; and the cases are
/// not vacuous: both outcomes occur often.
#[test]
fn number_and_pcre_checks_match_reference() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (number_and_pcre_signature(), bytes(0..=16));
    let (mut hits, mut misses) = (0, 0);
    let mut out = Matches::new();
    for _ in 0..20_000 {
        let (sig, payload) = strategy.new_tree(&mut runner).unwrap().current();
        let pkt = packet((6, true, false), true, &payload);
        let want = reference::matches(&sig, &pkt, &payload);
        let db = Database::build(vec![sig.clone()], 16).unwrap();
        db.scan(&pkt, None, &mut out);
        assert_eq!(!out.is_empty(), want, "{sig:?} over {payload:?}");
        if want {
            hits += 1;
        } else {
            misses += 1;
        }
    }
    assert!(hits > 1_500 && misses > 1_500, "{hits} hits, {misses} misses");
}
