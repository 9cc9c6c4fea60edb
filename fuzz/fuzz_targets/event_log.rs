//! Fuzz target: [`rampart_fuzz::event_log`] (what it checks is documented there). Run by
//! `scripts/fuzz.sh` (`make fuzz`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rampart_fuzz::event_log(data));
