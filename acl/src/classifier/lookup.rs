//! Lookups: a key prepared once into the shapes the trees and candidates use
//! ([`Prepared`]), single lookups (one tree walk per tree of the key's class, then a
//! priority-ordered scan of the leaf's candidates) and `lookup_bulk` (a burst sorted by
//! class and walked level by level with prefetching). Reads only: never allocates,
//! panics or reads out of bounds, whatever the image holds.

use super::format::{
    decode, family_class, leads_to_blocks, Check, CheckV4, Pointer, Tree, BLOCK_END, BLOCK_LEN, CHECK_CODE_ANY,
    CHECK_PROTO_ANY, CHECK_TYPE_ANY, EMPTY_LEAF, FAMILY_CLASSES, V4_EXTENDED, V4_LONG_LEAF,
};
use super::{Classifier, NO_RULE};
use crate::{prefix_mask, Key};

/// Keys handled together by [`Classifier::lookup_bulk`]: one burst.
const BULK: usize = 32;
/// Tree levels `lookup_bulk` descends key by key before walking the burst
/// level by level (at 10k rules, the IPv4 tree's first three levels hold
/// 79 KiB; the fourth alone 226 KiB).
const BULK_DIRECT_LEVELS: usize = 3;

/// Where a walk ends: a leaf's run in `leaf_items`, or a leaf block.
enum Reached<'a> {
    Run(&'a [u32]),
    Block(&'a [u16; BLOCK_LEN]),
}

impl Check {
    #[inline(always)]
    fn matches(&self, key: &Prepared) -> bool {
        // Non-short-circuit `&`: a handful of ALU ops beats unpredictable
        // branches on every field.
        let src = (key.src ^ self.src) & prefix_mask(u32::from(self.src_len)) == 0;
        let dst = (key.dst ^ self.dst) & prefix_mask(u32::from(self.dst_len)) == 0;
        let (sport, dport) = (key.sport(), key.dport());
        let sport = (self.sport_lo <= sport) & (sport <= self.sport_hi);
        let dport = (self.dport_lo <= dport) & (dport <= self.dport_hi);
        let proto = self.flags & CHECK_PROTO_ANY != 0 || self.proto == key.proto();
        let itype = self.flags & CHECK_TYPE_ANY != 0 || self.icmp_type == key.icmp_type;
        let icode = self.flags & CHECK_CODE_ANY != 0 || self.icmp_code == key.icmp_code;
        let ingress = self.ingress == u64::MAX || self.ingress & key.ingress_bit != 0;
        src & dst & sport & dport & proto & itype & icode & ingress
    }
}

impl CheckV4 {
    #[inline(always)]
    fn rule(&self) -> u32 {
        self.rule_proto & 0xff_ffff
    }

    /// Whether the key matches, apart from the extended fields.
    #[inline(always)]
    fn matches(&self, key: &Prepared) -> bool {
        // One word that is 0 only on a match, and one branch on it: which
        // field differs varies from candidate to candidate, so a branch per
        // field mispredicts. A port is in `lo..=hi` when `port - lo` (mod
        // 2^16) is at most `hi - lo` (`validate` checks `lo <= hi`).
        let addresses = ((key.src4() ^ self.src) & self.src_mask) | ((key.dst4() ^ self.dst) & self.dst_mask);
        let sport = key.sport().wrapping_sub(self.sport_lo) > self.sport_hi.wrapping_sub(self.sport_lo);
        let dport = key.dport().wrapping_sub(self.dport_lo) > self.dport_hi.wrapping_sub(self.dport_lo);
        let proto = (self.rule_proto >> 24 ^ u32::from(key.proto())) & !(self.flags << 1 >> 31).wrapping_neg();
        addresses | u32::from(sport) | u32::from(dport) | proto == 0
    }
}

/// A key rearranged once per lookup into the shapes trees and checks use:
/// one cache line, which `lookup_bulk` builds for every key of a burst.
#[derive(Clone, Copy, Default)]
pub(crate) struct Prepared {
    /// The two words the IPv4 trees cut (`V4_FIELD_AT`), built for every
    /// key: the candidate checks take protocol and ports from word 1, and
    /// IPv4 addresses from word 0. (The other trees cut `Prepared::field`,
    /// built per level: keeping all five 128-bit fields here made the
    /// struct three times as large, which `lookup_bulk` pays for in every
    /// key of a burst.)
    words4: [u64; 2],
    src: u128,
    dst: u128,
    /// `1 << ingress` for slots 0..64, 0 above (only "any" rules match those).
    ingress_bit: u64,
    icmp_type: u8,
    icmp_code: u8,
    /// [`family_class`] of the key.
    class: u8,
}

const _: () = assert!(std::mem::size_of::<Prepared>() == 64);

impl Prepared {
    #[inline(always)]
    pub fn new(key: &Key) -> Prepared {
        let src = u128::from_be_bytes(key.src);
        let dst = u128::from_be_bytes(key.dst);
        let words4 = [
            (src as u64) << 32 | u64::from(dst as u32),
            u64::from(key.proto) << 56 | u64::from(key.src_port) << 40 | u64::from(key.dst_port) << 24,
        ];
        Prepared {
            words4,
            src,
            dst,
            ingress_bit: 1u64.checked_shl(u32::from(key.ingress)).unwrap_or(0),
            icmp_type: key.icmp_type,
            icmp_code: key.icmp_code,
            class: family_class(src, dst) as u8,
        }
    }

    #[inline(always)]
    fn src4(&self) -> u32 {
        (self.words4[0] >> 32) as u32
    }

    #[inline(always)]
    fn dst4(&self) -> u32 {
        self.words4[0] as u32
    }

    #[inline(always)]
    fn proto(&self) -> u8 {
        (self.words4[1] >> 56) as u8
    }

    #[inline(always)]
    fn sport(&self) -> u16 {
        (self.words4[1] >> 40) as u16
    }

    #[inline(always)]
    fn dport(&self) -> u16 {
        (self.words4[1] >> 24) as u16
    }

    /// Dimension `dim` left-aligned in 128 bits, so that any cut is
    /// `(field << offset) >> (128 - bits)`.
    #[inline(always)]
    fn field(&self, dim: usize) -> Option<u128> {
        Some(match dim {
            0 => self.src,
            1 => self.dst,
            2 => u128::from(self.proto()) << 120,
            3 => u128::from(self.sport()) << 112,
            4 => u128::from(self.dport()) << 112,
            _ => return None,
        })
    }
}

impl Classifier {
    /// (trees walked, levels descended, candidates checked) for one lookup —
    /// for tuning.
    #[doc(hidden)]
    pub fn lookup_cost(&self, key: &Key) -> (u32, u32, u32) {
        let key = Prepared::new(key);
        let (mut trees, mut levels, mut checked) = (0, 0, 0);
        let mut best = NO_RULE;
        for tree in self.trees_for(&key) {
            if tree.min_rule >= best {
                break;
            }
            trees += 1;
            best = if key.class == 0 {
                let reached = self.walk::<true>(tree.root, &key, &mut levels);
                self.scan::<true>(reached, &key, best, &mut checked)
            } else {
                let reached = self.walk::<false>(tree.root, &key, &mut levels);
                self.scan::<false>(reached, &key, best, &mut checked)
            };
        }
        (trees, levels, checked)
    }

    /// Index of the first rule matching `key`, or `None`.
    ///
    /// Never allocates and never panics, whatever the classifier holds: every
    /// index is read with `get` and every walk only moves forward (an
    /// unvalidated classifier can only give wrong answers, never read out of
    /// bounds or loop).
    #[inline]
    pub fn lookup(&self, key: &Key) -> Option<u32> {
        let key = Prepared::new(key);
        let best = if key.class == 0 { self.lookup_in::<true>(&key) } else { self.lookup_in::<false>(&key) };
        (best != NO_RULE).then_some(best)
    }

    #[inline(always)]
    fn lookup_in<const V4: bool>(&self, key: &Prepared) -> u32 {
        let mut best = NO_RULE;
        for tree in self.trees_for(key) {
            if tree.min_rule >= best {
                break;
            }
            let reached = self.walk::<V4>(tree.root, key, &mut 0);
            best = self.scan::<V4>(reached, key, best, &mut 0);
        }
        best
    }

    /// Classifies a burst: `out[i] = lookup(&keys[i])` for every `i` both
    /// slices have. Takes the keys 32 at a time, sorted by class; walks
    /// each tree's top levels key by key (they stay in cache), then the
    /// rest level by level, prefetching every key's next pointer before
    /// reading any, so the cache misses of the group overlap instead of
    /// queueing one after another.
    pub fn lookup_bulk(&self, keys: &[Key], out: &mut [Option<u32>]) {
        for (keys, out) in keys.chunks(BULK).zip(out.chunks_mut(BULK)) {
            let n = keys.len().min(out.len());
            let mut burst = Burst {
                prepared: std::array::from_fn(|j| keys.get(j).map_or(Prepared::default(), Prepared::new)),
                best: [NO_RULE; BULK],
                by_class: [0; BULK],
                at: [EMPTY_LEAF; BULK],
                min_index: [0; BULK],
                next: [0; BULK],
                walking: [0; BULK],
                at_leaf: [0; BULK],
                in_block: [0; BULK],
            };
            // The burst's keys sorted by class (a counting sort, without
            // branches), so that each tree goes over its own keys only.
            let mut class_end = [0usize; FAMILY_CLASSES];
            for p in &burst.prepared[..n] {
                class_end[usize::from(p.class) % FAMILY_CLASSES] += 1;
            }
            for c in 1..FAMILY_CLASSES {
                class_end[c] += class_end[c - 1];
            }
            // Where each class's keys start.
            let mut fill = [0usize; FAMILY_CLASSES];
            fill[1..].copy_from_slice(&class_end[..FAMILY_CLASSES - 1]);
            for (i, p) in burst.prepared[..n].iter().enumerate() {
                let slot = &mut fill[usize::from(p.class) % FAMILY_CLASSES];
                burst.by_class[*slot % BULK] = i as u8;
                *slot += 1;
            }
            let mut first = 0;
            for (class, &end) in class_end.iter().enumerate() {
                let keys = first..end;
                first = end;
                if keys.is_empty() {
                    continue;
                }
                let start = self.class_start.get(class).copied().unwrap_or(0) as usize;
                let end = self.class_start.get(class + 1).copied().unwrap_or(0) as usize;
                for tree in self.trees.get(start..end).unwrap_or(&[]) {
                    if class == 0 {
                        self.bulk_tree::<true>(tree, keys.clone(), &mut burst);
                    } else {
                        self.bulk_tree::<false>(tree, keys.clone(), &mut burst);
                    }
                }
            }
            for (o, &b) in out.iter_mut().zip(&burst.best[..n]) {
                *o = (b != NO_RULE).then_some(b);
            }
        }
    }

    /// One tree for the keys `b.by_class[keys]` (those of the tree's class).
    #[inline(always)]
    fn bulk_tree<const V4: bool>(&self, tree: &Tree, keys: std::ops::Range<usize>, b: &mut Burst) {
        // Lists of keys, as indices into the burst: walking (`next` is the
        // pointer to read, already prefetched), at a leaf pointer (`at`), in
        // a leaf block (`next`). The lists are kept without branches on the
        // keys' paths (these would mispredict about once per key and level):
        // every key is written to the next free slot of each list, which
        // only counts it if it belongs there (a list never holds more keys
        // than the burst, and `% BULK` keeps the write in bounds, which the
        // counts already do).
        let mut lists = Lists { walking: 0, at_leaf: 0, in_block: 0 };
        for k in keys {
            let i = usize::from(b.by_class[k % BULK]);
            if tree.min_rule < b.best[i] {
                // The top levels directly, one key after the other, as
                // `walk` does: they are small and shared by every key, so
                // they stay in cache, and a dependent load that hits costs
                // less than a pass over the burst.
                let (mut p, mut min_index) = (tree.root, 0);
                for _ in 0..BULK_DIRECT_LEVELS {
                    let Some(next) = child_index::<V4>(p, &b.prepared[i]) else { break };
                    if leads_to_blocks::<V4>(p) || next < min_index {
                        break;
                    }
                    let Some(q) = self.node::<V4>(next) else { break };
                    (p, min_index) = (q, next + 1);
                }
                b.min_index[i] = min_index;
                self.bulk_step::<V4>(i, p, b, &mut lists);
            }
        }
        // One pass per level: read each walking key's pointer (prefetched
        // by the previous pass, a whole burst ago), then compute and
        // prefetch where it leads.
        while lists.walking > 0 {
            let walking = std::mem::replace(&mut lists.walking, 0);
            for w in 0..walking {
                let i = usize::from(b.walking[w % BULK]);
                let next = b.next[i];
                let p = match self.node::<V4>(next) {
                    Some(p) if next >= b.min_index[i] => p,
                    _ => EMPTY_LEAF,
                };
                b.min_index[i] = next.wrapping_add(1);
                self.bulk_step::<V4>(i, p, b, &mut lists);
            }
        }
        for &i in &b.in_block[..lists.in_block.min(BULK)] {
            let i = usize::from(i);
            let reached = self.v4_leaf_blocks.get(b.next[i]).map(Reached::Block);
            b.best[i] = self.scan::<V4>(reached, &b.prepared[i], b.best[i], &mut 0);
        }
        for &i in &b.at_leaf[..lists.at_leaf.min(BULK)] {
            let i = usize::from(i);
            let reached = self.leaf::<V4>(b.at[i]).map(Reached::Run);
            b.best[i] = self.scan::<V4>(reached, &b.prepared[i], b.best[i], &mut 0);
        }
    }

    /// Key `i` of the burst has reached pointer `p`: files it in the list
    /// it now belongs to and prefetches what it reads next (the child
    /// pointer, the leaf block or the leaf's run), with no branch on `p`.
    #[inline(always)]
    fn bulk_step<const V4: bool>(&self, i: usize, p: u64, b: &mut Burst, lists: &mut Lists) {
        // No branch on the kind of pointer (a key reaching a leaf pointer
        // would mispredict): for IPv4 the child index is computed anyway.
        let (inner, next) = if V4 {
            (p & 1 == 0, v4_child_index(p, &b.prepared[i]))
        } else {
            let child = child_index::<V4>(p, &b.prepared[i]);
            (child.is_some(), child.unwrap_or(0))
        };
        let blocks = inner && leads_to_blocks::<V4>(p);
        b.at[i] = p;
        b.next[i] = next;
        let block_line = self.v4_leaf_blocks.as_ptr().wrapping_add(next).cast::<u8>();
        let run_line = self.leaf_items.as_ptr().wrapping_add(leaf_start::<V4>(p)).cast::<u8>();
        let child_line = std::hint::select_unpredictable(blocks, block_line, self.node_address::<V4>(next));
        prefetch(std::hint::select_unpredictable(inner, child_line, run_line));
        b.walking[lists.walking % BULK] = i as u8;
        lists.walking += usize::from(inner & !blocks);
        b.in_block[lists.in_block % BULK] = i as u8;
        lists.in_block += usize::from(blocks);
        b.at_leaf[lists.at_leaf % BULK] = i as u8;
        lists.at_leaf += usize::from(!inner);
    }

    /// The trees for the key's address family class.
    #[inline(always)]
    fn trees_for(&self, key: &Prepared) -> &[Tree] {
        let class = usize::from(key.class);
        let start = self.class_start.get(class).copied().unwrap_or(0) as usize;
        let end = self.class_start.get(class + 1).copied().unwrap_or(0) as usize;
        self.trees.get(start..end).unwrap_or(&[])
    }

    /// Pointer `i` of the IPv4 trees or of the others.
    #[inline(always)]
    fn node<const V4: bool>(&self, i: usize) -> Option<u64> {
        if V4 {
            self.v4_nodes.get(i).map(|&p| u64::from(p))
        } else {
            self.nodes.get(i).copied()
        }
    }

    /// The address of pointer `i` (only for prefetching: it may be out of
    /// bounds).
    #[inline(always)]
    fn node_address<const V4: bool>(&self, i: usize) -> *const u8 {
        if V4 {
            self.v4_nodes.as_ptr().wrapping_add(i).cast()
        } else {
            self.nodes.as_ptr().wrapping_add(i).cast()
        }
    }

    /// The candidate indices of leaf pointer `p` (`None` for an inner or
    /// broken pointer).
    #[inline(always)]
    pub(super) fn leaf<const V4: bool>(&self, p: u64) -> Option<&[u32]> {
        let Pointer::Leaf { start, len } = decode::<V4>(p) else { return None };
        if V4 && len == V4_LONG_LEAF {
            let len = *self.leaf_items.get(start)? as usize;
            let first = start.checked_add(1)?;
            return self.leaf_items.get(first..first.saturating_add(len));
        }
        self.leaf_items.get(start..start.saturating_add(len))
    }

    /// Follows `root` down to where `key`'s candidates are (`None` if the
    /// structure is broken), counting the levels in `levels`.
    #[inline(always)]
    fn walk<const V4: bool>(&self, root: u64, key: &Prepared, levels: &mut u32) -> Option<Reached<'_>> {
        let mut p = root;
        let mut min_index = 0;
        while let Some(i) = child_index::<V4>(p, key) {
            *levels += 1;
            if leads_to_blocks::<V4>(p) {
                return self.v4_leaf_blocks.get(i).map(Reached::Block);
            }
            if i < min_index {
                return None;
            }
            p = self.node::<V4>(i)?;
            min_index = i + 1;
        }
        self.leaf::<V4>(p).map(Reached::Run)
    }

    /// Whether IPv4 candidate `c` = `v4_checks[i]` matches, extended fields
    /// included.
    #[inline(always)]
    fn v4_matches(&self, c: &CheckV4, i: u32, key: &Prepared) -> bool {
        c.matches(key) && (c.flags & V4_EXTENDED == 0 || self.checks.get(i as usize).is_some_and(|full| full.matches(key)))
    }

    /// Best of `best` and the first of the `reached` candidates matching
    /// `key`, counting the candidates checked in `checked`.
    #[inline(always)]
    fn scan<const V4: bool>(&self, reached: Option<Reached<'_>>, key: &Prepared, best: u32, checked: &mut u32) -> u32 {
        match reached {
            Some(Reached::Run(run)) => self.scan_in::<V4>(run.iter().copied(), key, best, checked),
            Some(Reached::Block(block)) => {
                let run = block.iter().map_while(|&i| (i != BLOCK_END).then_some(u32::from(i)));
                self.scan_in::<true>(run, key, best, checked)
            }
            None => best,
        }
    }

    #[inline(always)]
    fn scan_in<const V4: bool>(&self, candidates: impl Iterator<Item = u32>, key: &Prepared, best: u32, checked: &mut u32) -> u32 {
        for i in candidates {
            let (rule, matches) = if V4 {
                let Some(c) = self.v4_checks.get(i as usize) else { break };
                if c.rule() >= best {
                    break;
                }
                (c.rule(), self.v4_matches(c, i, key))
            } else {
                let Some(c) = self.checks.get(i as usize) else { break };
                if c.rule >= best {
                    break;
                }
                (c.rule, c.matches(key))
            };
            *checked += 1;
            if matches {
                return rule;
            }
        }
        best
    }
}

/// How many keys of a burst each list of [`Classifier::bulk_tree`] holds.
struct Lists {
    walking: usize,
    at_leaf: usize,
    in_block: usize,
}

/// The per-burst state of [`Classifier::lookup_bulk`].
struct Burst {
    prepared: [Prepared; BULK],
    best: [u32; BULK],
    /// The keys (indices into the burst) sorted by class.
    by_class: [u8; BULK],
    /// Per key: the pointer reached, and the smallest index its next step
    /// may read (the forward-only rule of `walk`).
    at: [u64; BULK],
    min_index: [usize; BULK],
    /// Per key: the index its next step reads (the leaf block, once in one).
    next: [usize; BULK],
    /// Keys still walking, at a leaf pointer, in a leaf block, as indices
    /// into the burst.
    walking: [u8; BULK],
    at_leaf: [u8; BULK],
    in_block: [u8; BULK],
}

/// The index in `nodes` (`v4_nodes` if `V4`) an inner pointer sends `key`
/// to; `None` for a leaf.
#[inline(always)]
fn child_index<const V4: bool>(p: u64, key: &Prepared) -> Option<usize> {
    if V4 {
        return (p & 1 == 0).then(|| v4_child_index(p, key));
    }
    let Pointer::Inner { dim, bits, offset, base, .. } = decode::<V4>(p) else { return None };
    let field = key.field(dim)?;
    let child = field.wrapping_shl(offset).wrapping_shr(128u32.wrapping_sub(bits)) as usize;
    Some(base.wrapping_add(child))
}

/// The index an inner IPv4 pointer sends `key` to (garbage for a leaf).
#[inline(always)]
fn v4_child_index(p: u64, key: &Prepared) -> usize {
    // Wrapping shifts: a corrupt pointer gives a wrong index, never a panic.
    let word = std::hint::select_unpredictable(p & 2 == 0, key.words4[0], key.words4[1]);
    let shift = ((p >> 2) & 63) as u32;
    let bits = ((p >> 8) & 15) as u32 + 1;
    let child = word.wrapping_shl(shift).wrapping_shr(64 - bits) as usize;
    (((p >> 13) as usize) << 1).wrapping_add(child)
}

/// Where leaf pointer `p`'s run starts in `leaf_items` (garbage for an
/// inner pointer: only for prefetching).
#[inline(always)]
fn leaf_start<const V4: bool>(p: u64) -> usize {
    (if V4 { p >> 6 } else { p >> 25 }) as usize
}

/// Hints the CPU to start loading the cache line at `address`, which may
/// be any address at all.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch<T>(address: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SSE is in the x86_64 baseline target features. A prefetch is only a hint: it never
    // faults, whatever the address (unmapped, out of bounds or null).
    // SAFETY: `_mm_prefetch` needs only SSE (always present) and never dereferences.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = address;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    /// For every candidate that can match IPv4 keys, its projection (plus the
    /// full check when extended) agrees with the full check on IPv4 keys,
    /// including keys on and next to prefix and range edges.
    #[test]
    fn v4_projection_agrees_with_full_check() {
        let rules = synth::mixed_rules(2000, 5);
        let c = Classifier::compile(&rules).unwrap();
        let mut rng = synth::Rng::new(17);
        let v4_space = 0xffffu128 << 32;
        let mut compared = 0;
        for (full, v4) in c.checks.iter().zip(&c.v4_checks) {
            let reaches = |a: u128, l: u8| (a ^ v4_space) & prefix_mask(u32::from(l.min(96))) == 0;
            if !(reaches(full.src, full.src_len) && reaches(full.dst, full.dst_len)) {
                continue;
            }
            for _ in 0..40 {
                let near = |rng: &mut synth::Rng, a: u128| match rng.below(4) {
                    0 => a as u32,
                    1 => (a as u32).wrapping_sub(1),
                    2 => (a as u32) | (rng.next_u64() as u32 >> rng.below(32)),
                    _ => rng.next_u64() as u32,
                };
                let port = |rng: &mut synth::Rng, lo: u16, hi: u16| match rng.below(5) {
                    0 => lo,
                    1 => hi,
                    2 => lo.wrapping_sub(1),
                    3 => hi.wrapping_add(1),
                    _ => rng.next_u64() as u16,
                };
                let key = Key {
                    src: crate::v4_mapped(near(&mut rng, full.src).to_be_bytes()),
                    dst: crate::v4_mapped(near(&mut rng, full.dst).to_be_bytes()),
                    proto: if rng.percent(70) { full.proto } else { rng.next_u64() as u8 },
                    src_port: port(&mut rng, full.sport_lo, full.sport_hi),
                    dst_port: port(&mut rng, full.dport_lo, full.dport_hi),
                    icmp_type: if rng.percent(70) { full.icmp_type } else { rng.below(4) as u8 },
                    icmp_code: if rng.percent(70) { full.icmp_code } else { rng.below(4) as u8 },
                    ingress: rng.below(20) as u8,
                };
                let p = Prepared::new(&key);
                assert_eq!(p.class, 0);
                let projected = v4.matches(&p) && (v4.flags & V4_EXTENDED == 0 || full.matches(&p));
                assert_eq!(projected, full.matches(&p), "{full:?} {v4:?} {key:?}");
                compared += 1;
            }
        }
        assert!(compared > 10_000);
    }

    /// Leaves of 31 or more candidates (IPv4 pointers keep the count in
    /// front of them): rules no cut separates, none covering the others.
    #[test]
    fn long_ipv4_leaves() {
        let mut rules = Vec::new();
        for i in 0..80u8 {
            rules.push(crate::Rule {
                dst: vec![crate::Prefix::v4([10, 0, 0, 0], 8)],
                ingress: 1 << (i % 8) | 1 << 9,
                ..Default::default()
            });
        }
        let c = Classifier::compile(&rules).unwrap();
        c.validate().unwrap();
        let long = |p: u64| matches!(decode::<true>(p), Pointer::Leaf { len: V4_LONG_LEAF, .. });
        assert!(c.v4_nodes.iter().any(|&p| long(u64::from(p))) || long(c.trees[0].root));
        for ingress in 0..12u8 {
            for dst in [[10, 1, 2, 3], [11, 0, 0, 1]] {
                let key = Key {
                    src: crate::v4_mapped([1, 2, 3, 4]),
                    dst: crate::v4_mapped(dst),
                    proto: 6,
                    src_port: 1,
                    dst_port: 2,
                    icmp_type: 0,
                    icmp_code: 0,
                    ingress,
                };
                assert_eq!(c.lookup(&key), crate::reference::first_match(&rules, &key), "{key:?}");
            }
        }
    }

}
