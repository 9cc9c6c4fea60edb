//! `cargo +nightly fuzz run parse` (from packet/): any byte string must parse without
//! panicking, an `Ok` must describe bytes that are inside the frame, and `validate` must
//! give the same verdict as `parse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rampart_packet::{parse, validate, FlowKey};

fuzz_target!(|frame: &[u8]| {
    let parsed = parse(frame);
    assert_eq!(validate(frame), parsed.map(|_| ()));
    let Ok(meta) = parsed else { return };
    let len = frame.len();
    assert!(meta.l3_offset() <= len);
    assert!(meta.l4_offset as usize <= len);
    let start = if meta.is_ip() {
        meta.l4_offset as usize + meta.l4_header_len(frame)
    } else {
        meta.l3_offset()
    };
    assert!(start + meta.payload_len as usize <= len);
    assert_eq!(meta.payload(frame).len(), meta.payload_len as usize);
    if let Some(inner) = meta.icmp_inner_offset() {
        assert!(inner <= len);
    }
    if let Some(key) = FlowKey::from_meta(&meta) {
        assert_eq!(key.canonical().0, key.reversed().canonical().0);
    }
});
