//! Rampart's control process as a library: `rampartctl` (src/main.rs) is its command line,
//! and the fuzz targets (fuzz/) drive the same policy compiler and event formatting.
//!
//! - [`compile`]: a validated config → the policy image the dataplane runs.
//! - [`rules`]: what `rampartctl check` warns about (shadowed rules, neighbour discovery).
//! - [`daemon`]: `rampartctl run`: the supervisor loop that attaches, publishes and drains.
//! - [`admin`]: the admin socket's server; [`api`]: its typed requests and replies, shared
//!   with the `rampartctl` commands; [`flows`]: `rampartctl flows` (paged dump, filters, kill).
//! - [`events`]: the event log (eve.json-style lines from the dataplane's event rings),
//!   sealed by [`chain`] (sequence numbers and chained HMACs; `rampartctl verify-log`);
//!   [`episodes`]: one `guard` event per attack episode, from the guard's counters.
//! - [`blocks`]: the dynamic blocklist (deny rules in front of the policy, kept in a file).
//! - [`metrics`]: the Prometheus endpoint.
//! - [`state`]: what the admin commands report.

pub mod admin;
pub mod api;
pub mod blocks;
pub mod chain;
pub mod compile;
pub mod daemon;
pub mod episodes;
pub mod flows;
pub mod inspection;
pub mod events;
pub mod metrics;
pub mod rules;
pub mod state;
