//! The compiled classifier and its lookup: a short list of hash tables, one
//! per merged mask type, probed in order of the best rule each can return.

use serde::{Deserialize, Serialize};

use crate::{prefix_mask, Key};

/// "No rule yet": larger than every rule index (compile caps rules below it).
pub(crate) const NO_RULE: u32 = u32::MAX;

/// Keys handled together by [`Classifier::lookup_bulk`]: one burst.
const BULK: usize = 32;

pub(crate) const CHECK_PROTO_ANY: u8 = 1;
pub(crate) const CHECK_TYPE_ANY: u8 = 2;
pub(crate) const CHECK_CODE_ANY: u8 = 4;

/// One (rule, source prefix, destination prefix) combination, checked field by
/// field against a key once the hash tables have narrowed the candidates. It
/// holds everything the rule asks for, so a hash collision or a merged
/// (coarser) table can never produce a wrong answer, only a wasted check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[repr(C, align(64))]
pub(crate) struct Check {
    pub src: u128,
    pub dst: u128,
    pub ingress: u64,
    pub sport_lo: u16,
    pub sport_hi: u16,
    pub dport_lo: u16,
    pub dport_hi: u16,
    pub rule: u32,
    pub src_len: u8,
    pub dst_len: u8,
    pub proto: u8,
    pub icmp_type: u8,
    pub icmp_code: u8,
    /// `CHECK_*_ANY` bits.
    pub flags: u8,
}

// One check per cache line: a bucket's candidates are read with few misses.
const _: () = assert!(std::mem::size_of::<Check>() == 64);

impl Check {
    #[inline(always)]
    fn matches(&self, key: &Prepared) -> bool {
        // Non-short-circuit `&`: a handful of ALU ops beats unpredictable
        // branches on every field.
        let src = (key.src ^ self.src) & prefix_mask(u32::from(self.src_len)) == 0;
        let dst = (key.dst ^ self.dst) & prefix_mask(u32::from(self.dst_len)) == 0;
        let sport = (self.sport_lo <= key.sport) & (key.sport <= self.sport_hi);
        let dport = (self.dport_lo <= key.dport) & (key.dport <= self.dport_hi);
        let proto = self.flags & CHECK_PROTO_ANY != 0 || self.proto == key.proto;
        let itype = self.flags & CHECK_TYPE_ANY != 0 || self.icmp_type == key.icmp_type;
        let icode = self.flags & CHECK_CODE_ANY != 0 || self.icmp_code == key.icmp_code;
        let ingress = self.ingress == u64::MAX || self.ingress & key.ingress_bit != 0;
        src & dst & sport & dport & proto & itype & icode & ingress
    }
}

/// A hash-table slot: the full 64-bit hash of a masked key and the range of
/// `checks` holding that bucket's candidates, in rule order. `len == 0` marks
/// an empty slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Slot {
    pub hash: u64,
    pub start: u32,
    pub len: u32,
}

/// One mask type: the key is masked with `masks`, hashed, and looked up with
/// linear probing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Table {
    /// Masks for the five key words (see [`Prepared::words`]).
    pub masks: [u64; 5],
    /// Smallest rule index in the table: once a better match is known the
    /// table (and every later one, they are sorted by this) cannot improve it.
    pub min_rule: u32,
    /// Longest probe sequence any stored bucket needs; lookups stop there.
    pub max_probe: u32,
    /// Power-of-two number of slots.
    pub slots: Vec<Slot>,
}

/// The compiled form of an ordered rule list. Built by
/// [`Classifier::compile`](crate::Classifier::compile) in the control
/// process, shipped with serde (postcard) inside the policy image, checked
/// with [`Classifier::validate`] by the dataplane, then only read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classifier {
    pub(crate) rule_count: u32,
    pub(crate) tables: Vec<Table>,
    pub(crate) checks: Vec<Check>,
}

/// A key rearranged once per lookup into the shapes the tables and checks use.
#[derive(Clone, Copy, Default)]
pub(crate) struct Prepared {
    /// src high/low, dst high/low, and `proto << 32 | sport << 16 | dport`.
    pub words: [u64; 5],
    src: u128,
    dst: u128,
    sport: u16,
    dport: u16,
    proto: u8,
    icmp_type: u8,
    icmp_code: u8,
    /// `1 << ingress` for slots 0..64, 0 above (only "any" rules match those).
    ingress_bit: u64,
}

impl Prepared {
    #[inline(always)]
    pub fn new(key: &Key) -> Prepared {
        let src = u128::from_be_bytes(key.src);
        let dst = u128::from_be_bytes(key.dst);
        Prepared {
            words: [
                (src >> 64) as u64,
                src as u64,
                (dst >> 64) as u64,
                dst as u64,
                pack_misc(key.proto, key.src_port, key.dst_port),
            ],
            src,
            dst,
            sport: key.src_port,
            dport: key.dst_port,
            proto: key.proto,
            icmp_type: key.icmp_type,
            icmp_code: key.icmp_code,
            ingress_bit: 1u64.checked_shl(u32::from(key.ingress)).unwrap_or(0),
        }
    }
}

/// The fifth hashed key word.
#[inline(always)]
pub(crate) fn pack_misc(proto: u8, sport: u16, dport: u16) -> u64 {
    u64::from(proto) << 32 | u64::from(sport) << 16 | u64::from(dport)
}

/// wyhash-style folded multiply: full 64×64→128 product, halves xored.
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// Hash of a masked key. Fixed constants, no per-process seed: the control
/// process and the dataplane must agree. Tables are static, so an attacker
/// choosing keys can at worst walk the longest probe sequence, which compile
/// bounds and records.
#[inline(always)]
pub(crate) fn hash_words(w: &[u64; 5]) -> u64 {
    const K: [u64; 6] = [
        0xa076_1d64_78bd_642f,
        0xe703_7ed1_a0b4_28db,
        0x8ebc_6af0_9c88_c6e3,
        0x5899_65cc_7537_4cc3,
        0x1d8e_4e27_c47d_124f,
        0x9e37_79b9_7f4a_7c15,
    ];
    let a = fold_mul(w[0] ^ K[0], w[1] ^ K[1]);
    let b = fold_mul(w[2] ^ K[2], w[3] ^ K[3]);
    fold_mul(a ^ w[4] ^ K[4], b ^ K[5])
}

#[inline(always)]
fn masked_hash(words: &[u64; 5], masks: &[u64; 5]) -> u64 {
    hash_words(&[
        words[0] & masks[0],
        words[1] & masks[1],
        words[2] & masks[2],
        words[3] & masks[3],
        words[4] & masks[4],
    ])
}

impl Classifier {
    /// Number of rules the classifier was compiled from (rule indices are
    /// below it).
    pub fn rule_count(&self) -> usize {
        self.rule_count as usize
    }

    /// Number of hash tables (merged mask types) a miss has to probe.
    pub fn table_count(&self) -> usize {
        self.tables.len()
    }

    /// Number of (rule, source, destination) candidates stored, counting the
    /// copies port-range splitting makes.
    pub fn check_count(&self) -> usize {
        self.checks.len()
    }

    /// Per table: (masks, min rule, slots used, largest bucket, max probe) —
    /// for tuning and benchmarks.
    #[doc(hidden)]
    pub fn table_stats(&self) -> Vec<([u64; 5], u32, usize, u32, u32)> {
        self.tables
            .iter()
            .map(|t| {
                let used = t.slots.iter().filter(|s| s.len > 0).count();
                let largest = t.slots.iter().map(|s| s.len).max().unwrap_or(0);
                (t.masks, t.min_rule, used, largest, t.max_probe)
            })
            .collect()
    }

    /// (tables probed, slots read, candidates checked) for one lookup —
    /// for tuning.
    #[doc(hidden)]
    pub fn lookup_cost(&self, key: &Key) -> (u32, u32, u32) {
        let key = Prepared::new(key);
        let (mut tables, mut slots_read, mut checked) = (0, 0, 0);
        let mut best = NO_RULE;
        'tables: for table in &self.tables {
            if table.min_rule >= best {
                break;
            }
            tables += 1;
            let hash = masked_hash(&key.words, &table.masks);
            let mask = table.slots.len() - 1;
            let mut i = hash as usize & mask;
            loop {
                slots_read += 1;
                let slot = table.slots[i];
                if slot.len == 0 {
                    continue 'tables;
                }
                if slot.hash == hash {
                    for c in &self.checks[slot.start as usize..][..slot.len as usize] {
                        if c.rule >= best {
                            break;
                        }
                        checked += 1;
                        if c.matches(&key) {
                            best = c.rule;
                            break;
                        }
                    }
                    continue 'tables;
                }
                i = (i + 1) & mask;
            }
        }
        (tables, slots_read, checked)
    }

    /// Bytes of lookup structures in memory.
    pub fn memory_bytes(&self) -> usize {
        self.checks.len() * std::mem::size_of::<Check>()
            + self
                .tables
                .iter()
                .map(|t| t.slots.len() * std::mem::size_of::<Slot>() + std::mem::size_of::<Table>())
                .sum::<usize>()
    }

    /// Index of the first rule matching `key`, or `None`.
    ///
    /// Never allocates and never panics, whatever the classifier holds: every
    /// index is read with `get` (an unvalidated classifier can only give wrong
    /// answers, never read out of bounds).
    #[inline]
    pub fn lookup(&self, key: &Key) -> Option<u32> {
        let key = Prepared::new(key);
        let mut best = NO_RULE;
        for table in &self.tables {
            if table.min_rule >= best {
                break;
            }
            let hash = masked_hash(&key.words, &table.masks);
            best = self.probe(table, hash, &key, best);
        }
        (best != NO_RULE).then_some(best)
    }

    /// Classifies a burst: `out[i] = lookup(&keys[i])` for every `i` both
    /// slices have. Works table by table over groups of 32 keys, hashing every
    /// key first and prefetching its slot so the memory accesses of a group
    /// overlap instead of queueing one after another.
    pub fn lookup_bulk(&self, keys: &[Key], out: &mut [Option<u32>]) {
        for (keys, out) in keys.chunks(BULK).zip(out.chunks_mut(BULK)) {
            let n = keys.len().min(out.len());
            let mut prepared = [Prepared::default(); BULK];
            let mut best = [NO_RULE; BULK];
            let mut hashes = [0u64; BULK];
            for (p, k) in prepared.iter_mut().zip(keys) {
                *p = Prepared::new(k);
            }
            let prepared = &prepared[..n];
            let best = &mut best[..n];
            let hashes = &mut hashes[..n];
            for table in &self.tables {
                // Keys whose best match precedes every rule of this table are done.
                if best.iter().all(|&b| table.min_rule >= b) {
                    break;
                }
                let slot_mask = table.slots.len().wrapping_sub(1);
                for (h, key) in hashes.iter_mut().zip(prepared) {
                    *h = masked_hash(&key.words, &table.masks);
                    if let Some(slot) = table.slots.get(*h as usize & slot_mask) {
                        prefetch(slot);
                    }
                }
                for ((b, &h), key) in best.iter_mut().zip(hashes.iter()).zip(prepared) {
                    if table.min_rule < *b {
                        *b = self.probe(table, h, key, *b);
                    }
                }
            }
            for (o, &b) in out.iter_mut().zip(best.iter()) {
                *o = (b != NO_RULE).then_some(b);
            }
        }
    }

    /// Best of `best` and the first matching candidate of `table`'s bucket
    /// for `hash`.
    #[inline(always)]
    fn probe(&self, table: &Table, hash: u64, key: &Prepared, best: u32) -> u32 {
        let slot_mask = table.slots.len().wrapping_sub(1);
        let mut i = hash as usize & slot_mask;
        for _ in 0..=table.max_probe {
            let Some(slot) = table.slots.get(i) else { return best };
            if slot.len == 0 {
                return best;
            }
            if slot.hash == hash {
                let start = slot.start as usize;
                let Some(candidates) = self.checks.get(start..start + slot.len as usize) else {
                    return best;
                };
                for check in candidates {
                    if check.rule >= best {
                        break;
                    }
                    if check.matches(key) {
                        return check.rule;
                    }
                }
                return best;
            }
            i = (i + 1) & slot_mask;
        }
        best
    }

    /// Checks every internal index, offset and invariant the lookup relies
    /// on, so that a classifier decoded from an untrusted or corrupted image
    /// either is rejected here or classifies exactly as compiled. Lookups
    /// cannot read out of bounds or panic even without this; skipping it can
    /// only produce wrong verdicts.
    pub fn validate(&self) -> Result<(), String> {
        if self.rule_count >= NO_RULE {
            return Err(format!("rule count {} is out of range", self.rule_count));
        }
        for (i, check) in self.checks.iter().enumerate() {
            if check.rule >= self.rule_count {
                return Err(format!(
                    "check {i} names rule {} but there are {} rules",
                    check.rule, self.rule_count
                ));
            }
            if check.src_len > 128 || check.dst_len > 128 {
                return Err(format!("check {i} has a prefix longer than 128 bits"));
            }
            if check.sport_lo > check.sport_hi || check.dport_lo > check.dport_hi {
                return Err(format!("check {i} has an empty port range"));
            }
            if check.flags & !(CHECK_PROTO_ANY | CHECK_TYPE_ANY | CHECK_CODE_ANY) != 0 {
                return Err(format!("check {i} has unknown flag bits {:#x}", check.flags));
            }
        }
        let mut previous_min = 0;
        for (t, table) in self.tables.iter().enumerate() {
            let slots = table.slots.len();
            if !slots.is_power_of_two() {
                return Err(format!("table {t}: slot count {slots} is not a power of two"));
            }
            if table.max_probe as usize >= slots {
                return Err(format!("table {t}: probe limit {} ≥ slot count {slots}", table.max_probe));
            }
            if table.min_rule < previous_min || table.min_rule >= self.rule_count {
                return Err(format!("table {t}: tables are not ordered by their best rule"));
            }
            previous_min = table.min_rule;
            let mut occupied = 0usize;
            for (s, slot) in table.slots.iter().enumerate() {
                if slot.len == 0 {
                    continue;
                }
                occupied += 1;
                let start = slot.start as usize;
                let end = start + slot.len as usize;
                let Some(candidates) = self.checks.get(start..end) else {
                    return Err(format!(
                        "table {t} slot {s}: candidates {start}..{end} past the {} checks",
                        self.checks.len()
                    ));
                };
                // The slot must be reachable within `max_probe` steps of its home.
                let home = slot.hash as usize & (slots - 1);
                if (s.wrapping_sub(home) & (slots - 1)) > table.max_probe as usize {
                    return Err(format!("table {t} slot {s}: beyond the probe limit"));
                }
                if candidates.windows(2).any(|w| w[0].rule > w[1].rule) {
                    return Err(format!("table {t} slot {s}: candidates are not in rule order"));
                }
                if candidates[0].rule < table.min_rule {
                    return Err(format!("table {t} slot {s}: rule below the table's best rule"));
                }
            }
            if occupied == slots {
                return Err(format!("table {t}: no empty slot to end a probe"));
            }
        }
        Ok(())
    }
}

/// Hints the CPU to start loading `value`'s cache line.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 CPU has (it is in
    // the baseline target features). A prefetch is only a hint: it never
    // faults and has no effect on memory contents, and the pointer comes
    // from a live reference anyway.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (value as *const T).cast::<i8>(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
