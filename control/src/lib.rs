//! Rampart's control process as a library: `rampartctl` (src/main.rs) is its command line,
//! and the fuzz targets (fuzz/) drive the same policy compiler and event formatting.
//!
//! - [`compile`]: a validated config → the policy image the dataplane runs.
//! - [`rules`]: what `rampartctl check` warns about (shadowed rules, neighbour discovery).
//! - [`daemon`]: `rampartctl run`, the admin socket and the loop that publishes, drains and
//!   exports.
//! - [`events`]: the event log (eve.json-style lines from the dataplane's event rings).
//! - [`metrics`]: the Prometheus endpoint.
//! - [`state`]: what the admin commands report.

pub mod compile;
pub mod daemon;
pub mod events;
pub mod metrics;
pub mod rules;
pub mod state;
