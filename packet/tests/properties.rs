//! Property tests: no input makes `parse` panic, and every `Ok` is internally consistent
//! (offsets and payload inside the buffer); `validate` agrees with `parse` on every input.

mod common;

use common::*;
use proptest::prelude::*;
use rampart_packet::{parse, validate, FlowKey};

fn check(frame: &[u8]) {
    assert_eq!(validate(frame), parse(frame).map(|_| ()));
    if let Ok(meta) = parse(frame) {
        assert_sane(frame, &meta);
        if let Some(key) = FlowKey::from_meta(&meta) {
            let (canonical, _) = key.canonical();
            assert_eq!(canonical, key.reversed().canonical().0);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(frame in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&frame);
    }

    /// Arbitrary bytes behind a valid Ethernet header with an interesting EtherType, so
    /// the IP/ARP/VLAN parsers see most of the inputs.
    #[test]
    fn arbitrary_l3_never_panics(
        ethertype in prop::sample::select(vec![0x0800u16, 0x86dd, 0x0806, 0x8100, 0x88a8]),
        version_nibble in 0u8..16,
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(&body);
        if let Some(first) = frame.get_mut(14) {
            *first = (*first & 0x0f) | (version_nibble << 4);
        }
        check(&frame);
    }

    /// Valid samples with a few bytes overwritten and optionally cut short or extended.
    #[test]
    fn mutated_samples_never_panic(
        index in 0usize..17,
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
        extra in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let samples = all();
        let mut frame = samples[index % samples.len()].frame.clone();
        for (at, byte) in edits {
            let i = at.index(frame.len());
            frame[i] = byte;
        }
        if do_cut {
            frame.truncate(cut.index(frame.len() + 1));
        } else {
            frame.extend_from_slice(&extra);
        }
        check(&frame);
    }

    /// Mutations confined to the header bytes of the IPv6 extension-header samples, where
    /// the walker's length arithmetic lives.
    #[test]
    fn mutated_ipv6_chains_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((54usize..90, any::<u8>()), 1..6),
    ) {
        let mut frame = [ipv6_hbh_frag_udp(), ipv6_dstopts_ah_tcp(), ipv6_later_fragment()][which].frame.clone();
        for (at, byte) in edits {
            if let Some(b) = frame.get_mut(at) {
                *b = byte;
            }
        }
        check(&frame);
    }
}
