//! A classifier travels inside the policy image (postcard). Whatever bytes
//! arrive, decoding plus `validate` either fails or yields a classifier whose
//! lookups neither panic nor hang — and lookups stay safe even when a caller
//! skips `validate`.

use std::sync::OnceLock;

use proptest::prelude::*;
use rampart_acl::{synth, Classifier, Key};

struct Fixture {
    bytes: Vec<u8>,
    keys: Vec<Key>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let rules = synth::mixed_rules(300, 42);
        let c = Classifier::compile(&rules).unwrap();
        Fixture { bytes: postcard::to_stdvec(&c).unwrap(), keys: synth::keys(&rules, 64, 75, 9) }
    })
}

/// Decodes `bytes` and, if that works, exercises every lookup path.
fn decode_and_use(bytes: &[u8]) -> Option<bool> {
    let c: Classifier = postcard::from_bytes(bytes).ok()?;
    let valid = c.validate().is_ok();
    let keys = &fixture().keys;
    let mut out = vec![None; keys.len()];
    c.lookup_bulk(keys, &mut out);
    for (k, bulk) in keys.iter().zip(&out) {
        let single = c.lookup(k);
        if valid {
            assert_eq!(single, *bulk);
        }
    }
    Some(valid)
}

#[test]
fn round_trip_is_identical_and_valid() {
    let f = fixture();
    let c: Classifier = postcard::from_bytes(&f.bytes).unwrap();
    c.validate().unwrap();
    assert_eq!(postcard::to_stdvec(&c).unwrap(), f.bytes);
    assert_eq!(decode_and_use(&f.bytes), Some(true));
}

#[test]
fn every_truncation_is_rejected_or_harmless() {
    let f = fixture();
    for len in (0..f.bytes.len()).step_by(7) {
        decode_and_use(&f.bytes[..len]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn flipped_bytes_are_rejected_or_harmless(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut bytes = fixture().bytes.clone();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        decode_and_use(&bytes);
    }

    #[test]
    fn random_bytes_are_rejected_or_harmless(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_and_use(&bytes);
    }
}
