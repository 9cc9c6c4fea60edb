//! Zero-copy, bounds-checked packet parsing and writing for the Rampart dataplane.
//!
//! Reading: this crate turns one received frame (a plain `&[u8]`) into a small [`Meta`]
//! record — offsets, addresses, ports, flags, fragment info — or a [`ParseError`] naming the
//! drop reason. [`parse`] is called once per packet on the hot path, so it never allocates,
//! never panics (every read goes through `get()`; there is no `unsafe`), and never verifies
//! checksums. It knows nothing about DPDK, mbufs, policy or flow state: the dataplane hands
//! it bytes, and unit tests, fuzzers and benchmarks do the same.
//!
//! Writing: the per-protocol views in the style of smoltcp (`Packet<T: AsRef<[u8]>>` with
//! `new_checked`, a `field` module of byte ranges, getters that return zero rather than
//! panic) also have setters where `T: AsMut<[u8]>` (a write past the end is dropped, never
//! a panic), and each protocol has a `Repr` that `parse`s a view and `emit`s into a buffer
//! with lengths and checksums filled in. [`checksum`] has the RFC 1071 sums and the RFC
//! 1624 incremental updates a rewrite needs; [`build`] assembles whole frames from `Repr`s
//! into a `Vec<u8>` for tests, tools and the reject answers (it allocates: not for the
//! per-packet path).
//!
//! ```
//! use rampart_packet::{parse, L3, ParseError};
//! // 14-byte Ethernet header carrying an unknown EtherType: switched, not dropped.
//! let frame = [0xff; 12].into_iter().chain([0x88, 0xb5]).collect::<Vec<u8>>();
//! let meta = parse(&frame).unwrap();
//! assert_eq!(meta.l3(), L3::Other);
//! assert_eq!(parse(&frame[..13]), Err(ParseError::EthernetTruncated));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod bytes;
mod error;
mod flow;
mod meta;

pub mod arp;
pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod icmpv6;
pub mod ip;
pub mod ipv4;
pub mod ipv6;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use error::{ParseError, ReprError};
pub use ethernet::EtherType;
pub use flow::{Direction, FlowKey};
pub use ip::{ipv4_mapped, IpProtocol};
pub use meta::{parse, validate, Meta, L3};
pub use tcp::TcpFlags;
