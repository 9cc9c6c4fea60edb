//! Rampart's ACL classifier: given the flow key of the first packet of a
//! flow (addresses, protocol, ports, ICMP type/code, ingress port slot), find
//! the FIRST rule of an ordered list that matches it — rule order is
//! priority — or none. The control process compiles the rule list
//! ([`Classifier::compile`]) and ships the compiled form inside the policy
//! image (serde, postcard); the dataplane decodes it, checks it with
//! [`Classifier::validate`] off the worker cores, and then only reads it:
//! [`Classifier::lookup`] / [`Classifier::lookup_bulk`] never allocate, never
//! panic and never read out of bounds, whatever the image held. Boundaries:
//! no DPDK, no I/O, no verdicts — what a rule *does* (allow, deny, inspect…),
//! its counters and the flow table live elsewhere; turning the operator's
//! policy (objects, tags, services) into [`Rule`]s is the policy compiler's
//! job; building a [`Key`] from a packet is the parser's. The slow, obviously
//! correct [`reference::first_match`] defines the semantics.
//!
//! How it works and why — the algorithm (multi-bit decision trees, with a compact
//! path of their own for IPv4 keys) and every design measured against it — is in the
//! design note beside the code, `acl/DESIGN.md`. `unsafe` appears once: the x86
//! prefetch intrinsic of `lookup_bulk`, a pure hint that never faults, whatever the
//! address (see its SAFETY comment).

#![deny(unsafe_code)]

mod classifier;
mod compile;
pub mod reference;
#[doc(hidden)]
pub mod synth;

pub use classifier::Classifier;
pub use compile::{CompileError, CompileOptions, MAX_ENTRIES, MAX_PAIRS_PER_RULE, MAX_RULES};

use serde::{Deserialize, Serialize};

/// IP protocol numbers the classifier gives a meaning to.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// An address prefix in the unified 128-bit space: IPv6 as is, IPv4 as the
/// IPv4-mapped address `::ffff:a.b.c.d` with `len = 96 + v4len`.
///
/// Because IPv4 lives inside `::ffff:0:0/96`, an IPv4 prefix (even
/// `0.0.0.0/0`, which is `::ffff:0:0/96`) can only contain IPv4 keys, and an
/// IPv6 prefix other than `::/0` or one covering `::ffff:0:0/96` can only
/// contain IPv6 keys. `::/0` (`len == 0`) is "any address of either family".
///
/// Bits of `addr` past `len` are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Prefix {
    pub addr: [u8; 16],
    pub len: u8,
}

impl Prefix {
    /// `::/0`: any address, IPv4 or IPv6.
    pub const ANY: Prefix = Prefix { addr: [0; 16], len: 0 };

    /// An IPv4 prefix `a.b.c.d/len` (`len` is clamped to 32).
    pub fn v4(addr: [u8; 4], len: u8) -> Prefix {
        Prefix { addr: v4_mapped(addr), len: 96 + len.min(32) }
    }

    /// An IPv6 prefix (`len` is clamped to 128).
    pub fn v6(addr: [u8; 16], len: u8) -> Prefix {
        Prefix { addr, len: len.min(128) }
    }

    /// Whether `addr` lies inside this prefix. A `len` above 128 is treated as
    /// 128 here; [`Classifier::compile`] rejects such prefixes.
    pub fn contains(&self, addr: &[u8; 16]) -> bool {
        let len = u32::from(self.len.min(128));
        let mask = prefix_mask(len);
        (u128::from_be_bytes(self.addr) ^ u128::from_be_bytes(*addr)) & mask == 0
    }
}

/// `a.b.c.d` as the IPv4-mapped IPv6 address `::ffff:a.b.c.d`.
pub fn v4_mapped(addr: [u8; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[10] = 0xff;
    out[11] = 0xff;
    out[12..].copy_from_slice(&addr);
    out
}

/// The mask selecting the first `len` bits (0..=128) of a 128-bit address.
#[inline(always)]
pub(crate) fn prefix_mask(len: u32) -> u128 {
    // `checked_shl` turns the `len == 0` case (a shift by 128) into 0 = match
    // anything, without a branch the optimiser cannot fold.
    u128::MAX.checked_shl(128u32.wrapping_sub(len)).unwrap_or(0)
}

/// One ACL rule. Every field narrows the match; all must hold.
///
/// Port ranges are compared with the key's ports as they are: the parser
/// puts 0 in both for protocols without ports, so a rule that names ports
/// only ever matches keys that carry them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Source prefixes (a union); empty = any.
    pub src: Vec<Prefix>,
    /// Destination prefixes (a union); empty = any.
    pub dst: Vec<Prefix>,
    /// IP protocol; `None` = any.
    pub proto: Option<u8>,
    /// Inclusive source port range; `(0, 65535)` = any.
    pub src_ports: (u16, u16),
    /// Inclusive destination port range; `(0, 65535)` = any.
    pub dst_ports: (u16, u16),
    /// ICMP / ICMPv6 type; only with `proto` 1 or 58.
    pub icmp_type: Option<u8>,
    /// ICMP / ICMPv6 code; only with `proto` 1 or 58.
    pub icmp_code: Option<u8>,
    /// Bitmap of ingress port slots 0..64; `u64::MAX` = any port (including
    /// slots ≥ 64, which no narrower bitmap can name).
    pub ingress: u64,
}

impl Default for Rule {
    /// The rule that matches every key.
    fn default() -> Rule {
        Rule {
            src: Vec::new(),
            dst: Vec::new(),
            proto: None,
            src_ports: (0, u16::MAX),
            dst_ports: (0, u16::MAX),
            icmp_type: None,
            icmp_code: None,
            ingress: u64::MAX,
        }
    }
}

/// What the classifier looks at in the first packet of a flow.
///
/// Addresses use the same unified space as [`Prefix`]: IPv4 keys carry
/// `::ffff:a.b.c.d`. The parser (or guard) must drop IPv6 packets whose
/// addresses are themselves IPv4-mapped (they are not valid on the wire,
/// RFC 4291 §2.5.5.2) — otherwise such a packet would be classified by the
/// IPv4 rules. Ports are 0 for protocols without ports; ICMP type/code are 0
/// for non-ICMP packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Key {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub proto: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// Ingress port slot.
    pub ingress: u8,
}
