//! `rampart-signatures`: inline inspection's rules and matcher, without DPDK.
//!
//! - [`model`]: what a signature is (header, payload checks), plain serde data;
//! - [`parse`]: Suricata/Snort rule files → signatures, variables resolved, keywords
//!   outside the supported subset reported (never silently dropped), errors naming the
//!   file, line and keyword;
//! - [`engine`]: the matcher the dataplane runs: a streaming multi-pattern prefilter
//!   (an `aho-corasick` DFA whose state is kept per flow and direction) selects candidate
//!   signatures, verification runs only on those, over the packet and a bounded tail of
//!   the previous one;
//! - [`pcre`]: `pcre` patterns in the subset a DFA runs, compiled to dense DFAs;
//! - [`reference`]: a slow, obviously correct matcher the engine is tested against.
//!
//! The control process parses (in `rampartctl check` and on every compile); the
//! dataplane's manager builds the [`engine::Database`] when it builds a runtime, off the
//! worker cores; the pipeline's inspect stage scans with it.

pub mod engine;
pub mod model;
pub mod parse;
pub mod pcre;
pub mod reference;

pub use model::*;
