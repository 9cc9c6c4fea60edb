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
//! **Algorithm: multi-bit decision trees (HiCuts-style cuts, with EffiCuts'
//! separable trees), chosen by measurement.** Each rule is expanded into one
//! candidate per (source prefix, destination prefix) pair. Candidates are
//! split by the address families of the keys they can match (IPv4 bits and
//! IPv6 bits never share a cut), and those wide open in both addresses get a
//! tree of their own (cut on protocol and ports) instead of being copied
//! into every child of every address cut. Each tree node cuts 1–16 bits of
//! one field at any bit offset — addresses skip the bits all candidates
//! agree on, such as ::ffff:0:0/96 — choosing the cut whose largest child is
//! smallest within a space budget (copies ≤ 4 × candidates); subtrees of
//! siblings with equal candidate lists are shared, and candidates behind one
//! that covers a node's whole region are pruned. A lookup walks one tree per
//! family class (one load per level: a pointer encodes the next cut; 4 bytes
//! in the IPv4 trees, 8 in the others),
//! then scans at most 8 priority-ordered candidates in the leaf, stopping at
//! the first match; trees whose best rule cannot beat the match already found
//! are skipped. `lookup_bulk` sorts a burst by class, descends the top
//! three levels of a tree key by key (small and shared, they stay in
//! cache), then walks the rest level by level with prefetching, keeping its
//! lists of keys (walking, at a leaf, in a leaf block) without branches.
//!
//! Keys with IPv4 source and destination (nearly all traffic) take their own
//! path, built around the dependent loads a lookup waits for: their trees
//! have separate 4-byte pointers that name one of two 64-bit key words
//! (source · destination, protocol · ports) and a shift, so a level costs a
//! select, two shifts and an add between loads; a node whose children are
//! all leaves of at most 8 candidates keeps them as *leaf blocks* — 16 bytes
//! per child holding the leaf's u16 candidate indices (when there are fewer
//! than 65,535 candidates), so the last level's load is the leaf itself
//! instead of a pointer to a run of indices (where blocks would more than
//! double the bytes of the pointers and lists they replace, the node keeps
//! pointers); and leaves check 32-byte IPv4 projections of the candidates
//! (precomputed 32-bit masks, two per cache line, half the bytes of the
//! 64-byte general candidate); a rule with ICMP type/code or an ingress set
//! is then confirmed on its full candidate. `validate` recomputes every
//! projection and checks every block.
//!
//! Measured (2-core AMD EPYC 2.6 GHz VM, shared and noisy: run-to-run swings
//! of 2–4× were seen, so variants were compared back to back, pinned to one
//! core, as the minimum of 12 interleaved runs of `examples/stats.rs`;
//! `benches/classify.rs` gives the same picture; synthetic mixed sets in
//! [`synth`], keys 75 % inside a random rule, median hit rule ≈ n/3, rest
//! mostly misses):
//!
//! | design (10k rules)                         | lookups/s/core        | compile | image |
//! |--------------------------------------------|-----------------------|---------|-------|
//! | linear scan (1k rules only)                | 0.13 M                | –       | –     |
//! | VPP-style hash per exact mask type         | 0.05 M (1642 tables)  | –       | 0.6 MB |
//! | tuple-merge hashes (26 tables, ≤ 8/bucket) | 0.55–1.1 M (52 candidate checks) | 9 ms | 0.6 MB |
//! | one tree per family, leaves of 8 copied    | 1.1 M (45 MB, L3/TLB-bound) | 1 s | 29 MB |
//! | trees, leaves ≤ 16 (indices to 64-byte candidates) | 5.2–5.8 M single, 5.0–6.4 M bulk (1k rules: 9.5 M / 9.3 M) | 80 ms | 1.2 MB |
//! | same, IPv4 candidates inlined in the leaves | slower at 10k (6.2 MB in memory; 1k rules faster) | 170 ms | 5.4 MB |
//! | same, IPv4 trees, 32-byte IPv4 candidates | 6.5–7.0 M single, 6.7–6.9 M bulk (1k rules: 14 M / 10.6 M) | ≈ 90 ms (1k: 5 ms) | 1.5 MB (1k: 107 KB) |
//! | same, 4-byte IPv4 tree pointers           | 6.5–7.8 M single, 6.8–7.4 M bulk (1k rules: 15 M / 11 M) | ≈ 70–95 ms | 1.4 MB |
//! | same, leaves ≤ 8                           | 7.9–8.3 M single, 8.7–8.9 M bulk (1k rules: 16 M / 11.9 M); remeasured later: 7.4–8.1 M / 8.6–8.8 M (1k: 15.8 M / 11.8 M) | ≈ 120–160 ms (1k: 7 ms) | 2.1 MB (1k: 118 KB) |
//! | same, IPv4 pointers name a key word and a shift | 8.0–8.8 M single, 8.6–9.0 M bulk (1k rules: 17 M / 12.1 M) | ≈ 100–150 ms | 2.1 MB |
//! | same, leaf blocks, branchless bulk lists | 9.1–9.4 M single, 9.0–9.2 M bulk (1k rules: 17 M / 12.6 M) | ≈ 100–150 ms (1k: 5 ms) | 2.9 MB (1k: 147 KB) |
//! | same, one branch per IPv4 candidate check, smaller prepared keys | 10.2 M single, 10.7 M bulk (98.2 / 93.7 ns; 1k rules: 18.7 M / 14.4 M) | ≈ 100 ms (1k: 5 ms) | 2.9 MB (1k: 147 KB) |
//! | **these trees** (same; `lookup_bulk`: one pass per level, burst sorted by class, top 3 levels key by key) | **≈ 10 M single, 11.6 M bulk** (bursts of 32: 102.5 → 86.3 ns; 1k rules: 78 → 59 ns) | **≈ 100 ms** (1k: 5 ms) | **2.9 MB** (1k: 147 KB) |
//!
//! Hash tables (the VPP way) cost a probe per mask type and this mix has
//! dozens, each followed by candidate checks; trees cost ~4.3 dependent
//! loads plus ~5 candidate checks per lookup (leaves ≤ 16). At 1k rules (everything in L2)
//! the IPv4 path cut a lookup from ~105 to ~70 ns, which was mostly
//! arithmetic (128-bit shifts and masks); at 10k rules the gain is smaller
//! (~170 → ~145 ns) because what remains is memory latency: a profile shows
//! the stalls on the tree pointer load, the leaf's index run and the
//! candidates, in that order. The structures took 2.4 MB (850 KB pointers,
//! 700 KB index runs, 350 KB IPv4 and 700 KB general candidates — the IPv4
//! path touched about 1.7 MB of it), beyond the 512 KB L2. Halving the IPv4
//! trees' pointers to 4 bytes (93k of them: 745 → 372 KB; the IPv4 path now
//! touches about 1.35 MB, 2.1 MB in all) gave only a small gain: the
//! fastest of 12 interleaved `stats` runs was faster than the 8-byte build in
//! each of three sessions (single 129/144/155 vs 146/146/166 ns, bulk
//! 134/141/147 vs 143/142/153 ns at 10k; 65.8 vs 66.4 ns single at 1k), by
//! 1–12 %, about the size of the noise; criterion (`lookup/`, 3 interleaved
//! runs under a load average of 3) could not tell them apart. With the
//! smaller pointers, leaves of 8 instead of 16 then measured faster in three
//! sessions (10k: single 121.6/121.0 vs 126.6/124.7 ns, bulk 114.3/112.3 vs
//! 130.5/128.8 ns; 1k: 62.5 vs 64.8 ns single, 84.1 vs 87.5 ns bulk): 5.1
//! levels and 3.1 candidate checks per lookup instead of 4.3 and 5.3, for
//! 250k pointers, 279k leaf entries and 3.1 MB in memory; criterion
//! (`lookup/`, back to back on a quiet machine) agreed: 10k single 2.50 →
//! 2.38 ms, bulk 2.25 → 1.91 ms, 1k single 1.19 → 1.12 ms, at twice the
//! compile time (52 → 113 ms).
//!
//! A profile of that design (`perf record -e cpu-clock`, single lookups at
//! 10k) put 23 % of the time on the tree pointer loads, 18 % on the leaf's
//! index run and 11 % on the candidates; at 1k rules (all in L2) a lookup
//! still took 60 ns, so the arithmetic between loads mattered too. Hence two
//! changes, each measured as the fastest of 12 interleaved `stats` runs on
//! CPU 0: (1) IPv4 pointers that name a key word and a shift instead of a
//! dimension (no load of the key field per level: a `cmov`, two shifts and
//! a `lea` between loads): single 134 → 125 and 129 → 116 ns in two
//! sessions, bulk unchanged (116 ns); (2) leaf blocks, which end 63 % of
//! IPv4 lookups one dependent load earlier: single 115 → 107 ns. Blocks
//! first made bulk 12 % slower (111 → 124 ns; 1k: 82 → 94 ns, so code, not
//! memory): one more per-key branch (block or pointer) at each level and
//! in the scan, mispredicted about once per key; `lookup_bulk` now writes
//! each key to the next slot of every list and only counts it in the list
//! it belongs to, which brought bulk to 108 ns (1k: 78 ns, faster than
//! before blocks). Blocks were then limited to where they at most double
//! the bytes they replace (3.8 → 3.4 MB in memory at 10k, speed unchanged;
//! a port cut into 2^16 children sharing a few leaves would otherwise
//! quadruple its bytes). Altogether, in one session (12 interleaved runs
//! each): 10k single 127.8 → 106.3 ns, bulk 114.5 → 109.0 ns; 1k single
//! 63.1 → 58.7 ns, bulk 85.0 → 79.5 ns; 3.4 MB in memory (1.6 MB of it
//! leaf blocks and runs, 570 KB IPv4 pointers), 2.9 MB postcard, compile
//! 100–150 ms. Criterion (`lookup/…/10000`, 3 interleaved pairs on CPU 0,
//! the other core busy) agreed on single lookups (2.25/2.60/2.60 ms against
//! 2.58/2.93/2.67 ms for 16,384 keys) and could not tell bulk apart
//! (2.71/2.18/2.23 against 2.22/2.90/2.03 ms). Tried with blocks and dropped: every IPv4 leaf of ≤ 8 as a block,
//! including those under pointers (one scan path, 3.5 MB: 110–111 vs
//! 108–110 ns, no gain); checking all of a block's candidates without
//! branches and taking the first match (single 112 vs 108 ns, bulk 105 vs
//! 110 ns: mixed, not kept); a floor of 32–128 children for the space
//! budget of small nodes (levels 5.08 → 5.00 at up to 1.5× the memory:
//! slower); leaves of 4 or 6 (5.4–6.0 levels, 5–7.5 MB: slower).
//!
//! Earlier, tried and dropped:
//! copying the IPv4 candidates into the leaves (one dependent load less, but
//! 177k copies = 6 MB: slower at 10k), prefetching each key's first
//! candidates in `lookup_bulk` before the scans (no gain; presumably consecutive
//! single lookups already overlap their misses out of order, which would also
//! be why bulk barely beats single), leaves of 8/12/24 with 8-byte pointers and space factors 2/8 (within the
//! noise; space factor 8 with 4-byte pointers too), huge pages (a 2 MB pointer
//! chase here went from 137 to 127 ns with MADV_HUGEPAGE: small, and the
//! classifier's vectors come from decoding the image), a third IPv4 tree for
//! the "any source" candidates (wide source, narrow destination: leaf
//! entries 177k → 82k, but 1.82 trees and 5.6 levels per lookup instead of
//! 1.0 and 4.3, 173k pointers: 10–25 % slower). That left the 10 M/s
//! target met at 1k rules (17 M/s) but not at 10k: about 9.4 M/s single,
//! 9.2 M/s bulk (106–109 ns against 100), with the profile on the pointer
//! loads (~21 %), the leaf block or run (~13 % + 9 %) and the candidates
//! (~12 %).
//!
//! **Then, mispredictions rather than bytes.** Prefetching showed that the
//! misses were not all there was to it: a single lookup at 1k rules (all in
//! L2) took 59 ns, ~150 cycles for 3.5 levels and 3 candidates, and a
//! mispredicted branch that waits on a load also throws away the next
//! lookup's work that the core had started out of order. The IPv4
//! candidate check compiled to a branch per field (ports, then addresses,
//! then protocol), and which field differs varies from candidate to
//! candidate; it now folds every field's mismatch into one word (ports as
//! one wrapping compare each: `port - lo ≤ hi - lo`) and branches once on
//! it. And `Prepared` no longer keeps the five 128-bit fields the general
//! trees cut (80 of its ~180 bytes, zeroed and filled 32 times per burst by
//! `lookup_bulk`): those trees build the field per level, and the IPv4 words
//! are computed without a branch on the class; `lookup_bulk` builds its
//! prepared keys in place instead of zeroing them first. Measured as always (fastest
//! of 12 interleaved `taskset -c 1 …/stats N` runs, against the previous
//! build, back to back): **10k rules: single 104.8 → 98.2 ns (10.2 M/s),
//! bulk 107.3 → 93.7 ns (10.7 M/s)**; every one of the 12 pairs was faster
//! (single 98.2–103.7 against 104.8–109.8 ns, bulk 93.7–97.7 against
//! 107.3–117.5 ns); 1k rules: single 58.5 → 53.5 ns, bulk 79.0 → 69.3 ns.
//! The layout is unchanged (same image, same compile time). The one-branch
//! check alone gave 106.2 → 101.5 ns single, 108.2 → 98.8 ns bulk; the
//! smaller prepared key about 2 % more (1k: 56.4 → 54.0 / 75.6 → 72.1 ns),
//! building them in place 1–2 % of bulk (96.1 → 94.2 ns; 1k: 70.9 → 69.8).
//! So the target is met at 10k by `lookup_bulk` with a margin of ~6 %, and
//! by single lookups only just (the fastest run at 98 ns, the median of the
//! 12 at 99.7 ns; on a busier machine single lookups measure above 100).
//!
//! Tried in that session and dropped (each measured in the same process
//! against the kept `lookup_bulk`, or as interleaved builds):
//! - `lookup_bulk` as interleaved lanes (AMAC: 10 keys in flight, each
//!   visit reads what the previous one prefetched, candidates included, and
//!   a finished lane takes the next key): 121–124 vs 111–117 ns at 10k,
//!   91 vs 82 ns at 1k — the per-visit switch on the lane's stage
//!   mispredicts several times per key;
//! - groups of 8 or 16 keys walked one level per round without branches (a
//!   finished key rereads pointer 0): 129–133 vs 110 ns (16 keys: 154–174);
//! - single lookups, each preceded by branch-free prefetches down the tree
//!   of the keys 3, 6, 9, 12 places ahead (4 stages), or 2…14 ahead (7
//!   stages, then also their first candidate): 116–117 vs 110 ns at 10k,
//!   71–94 vs 59 ns single at 1k. The prefetches save ~15 ns of misses at
//!   10k and cost more than that in instructions;
//! - prefetching every key's first candidate before the scans in
//!   `lookup_bulk` (again): 98.5 vs 98.4 ns;
//! - checking the first 4 slots of a leaf block without a branch per
//!   candidate: 112.6 vs 101.4 ns single (and `&` instead of `&&` before
//!   the extended check: 122.5 ns) — a predicted "no match" lets the core
//!   load the next candidates early, a computed mask waits for all of them;
//! - the same single-branch fold for the general 64-byte check: 103.3 vs
//!   101.5 ns single at 10k, 57.8 vs 56.1 ns at 1k (kept as it was);
//! - ending a leaf block's scan on the bounds check (`BLOCK_END` past the
//!   candidates) instead of a separate end check: no difference;
//! - a larger space budget near the IPv4 root (16× or 32× candidates at
//!   depth 0, 8–16× at depths 0–1): 5.08 → 4.77–4.57 levels at 3.8–6.7 MB,
//!   within the noise (102.2 vs 103.0 ns) or slower (107 ns); deeper, the
//!   trees outgrow the pointer budget and leaves double.
//!
//! **Then, the work `lookup_bulk` does per key.** The dataplane classifies
//! bursts of 32, and criterion's `lookup/bulk32/10000` measured 8.8–10 M/s
//! (100–113 ns per key): `stats` in bursts of 32 took as long as single
//! lookups (~100 ns), and ~64 ns at 1k rules (all in L2) — more than a
//! single lookup there (54 ns), so compute, not memory. A profile
//! (`perf record -e cpu-clock` of the bench) showed the instruction after
//! each prefetch as the hottest of the walk: every level prefetched a
//! "leaf run" address computed from inner pointers too, a garbage address
//! megabytes away. Hence, each measured as the fastest of 3–6 interleaved
//! `BURSTS=1 taskset -c 1 …/stats 10000` runs against the previous build:
//! (1) one pass per level instead of two (read the pointer prefetched by
//! the previous pass, compute and prefetch where it leads — only real
//! addresses), (2) the burst sorted by class once (a counting sort), so
//! that each of the four trees visits only its own keys instead of all 32,
//! (3) `Prepared` in one cache line (64 bytes: ports, protocol and IPv4
//! addresses are read from the IPv4 tree words): ~100 → ~91 ns together;
//! (4) no branch on the kind of IPv4 pointer reached (a key reaching a leaf
//! pointer mispredicted): ~92 → ~90 ns; (5) the first three levels walked
//! key by key, as `walk` does, before the passes — they are small (79 KiB
//! at 10k rules: 64, 1 and 14 KiB; the fourth level alone is 226 KiB) and
//! every key reads them, so a dependent load that hits costs less than a
//! pass over the burst (0/1/2/3/4/6 levels: ~89/~86/~86/~85/~91/~104 ns;
//! 1k: ~66 → ~58 ns). Altogether, 6 interleaved pairs: **bursts of 32 at
//! 10k, fastest 102.5 → 86.3 ns** (each of the 6 pairs faster; 1k: 78.1 →
//! 58.9 ns); single lookups unchanged (~100 ns at 10k, ~54 ns at 1k).
//!
//! Tried in that session and dropped:
//! - one list of finished keys during the walk, split into blocks and
//!   runs afterwards (one list write less per level): ~91 vs ~89 ns;
//! - scanning the keys that finished in the previous pass during the next
//!   pass (to fill the short last passes): 95 vs 91 ns (a branch on block
//!   or run per key);
//! - checking a block's first 4 slots without a branch per candidate: 97–
//!   101 vs 89 ns; checking blocks slot by slot across the burst's keys,
//!   without branches (as the walk does levels): 96–101 vs 89–92 ns — a
//!   predicted "no match" is cheaper than the branch-free bookkeeping;
//! - prefetching each key's first candidate(s) before the scans, or one
//!   pass after the key finished walking: within the noise (again);
//! - no per-key `min_index` (the forward-only check done on the child
//!   index when it is computed): no difference;
//! - a larger space budget (factor 8 or 16: 3.9 or 2.9 levels, but 5.3
//!   or 10.4 candidates per lookup and 4.4–5.3 MB): slower.
//!
//! What remains, with numbers from `stats` (`LAYOUT=1`) at 10k rules: 553 KiB
//! of IPv4 pointers, 496 KiB of leaf runs (32-bit; 16-bit when there are
//! fewer than 65,536 candidates would save 248 KiB, an image format
//! change), 1,131 KiB of leaf blocks — 72,400 of them, only 423 empty (not
//! a fifth), 3.7 candidates on average, and only 10,908 under nodes whose
//! longest block has at most 4, so narrower blocks would save little —
//! and 321 KiB of IPv4 candidates: ~2.5 MB touched by IPv4 keys against a
//! 512 KB L2. The first three levels of the IPv4 tree are small (the root
//! cuts 14 bits of the destination, 64 KiB, and most of its children share
//! a few subtrees: 1 and 14 KiB of child arrays below), the misses are at
//! depths 4–7 (226, 463, 463, 263 KiB) and in the blocks and candidates.
//! A profile still puts ~20 % of single-lookup samples on the pointer
//! loads, ~10 % on the leaf block, ~10 % on the runs and ~10 % on the
//! candidates.
//!
//! `unsafe` appears once: the x86 prefetch intrinsic in `lookup_bulk`, a pure
//! hint that never faults, whatever the address (see its SAFETY comment).

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
