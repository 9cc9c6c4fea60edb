//! The compiled classifier: the [`Classifier`] type, what it holds and what its parts
//! cost (sizes and layout reports for tuning). A few decision trees (per address family
//! class, up to two) are walked with one load per level, then a short priority-ordered
//! scan of the leaf's candidates; keys of class 0 (IPv4 both ways) use their own 4-byte
//! pointers (cuts of two 64-bit key words), leaf blocks (a node's leaves inline, 16 bytes
//! each) and 32-byte IPv4 projections of the candidates. Split by job: `format.rs` (the
//! image layout: pointers, candidates, trees), `lookup.rs` (single and burst lookups) and
//! `validate.rs` (checking an untrusted image before use).

mod format;
mod lookup;
mod validate;

pub(crate) use format::*;

use serde::{Deserialize, Serialize};

/// "No rule yet": larger than every rule index (compile caps rules below it).
pub(crate) const NO_RULE: u32 = u32::MAX;

/// The compiled form of an ordered rule list. Built by
/// [`Classifier::compile`](crate::Classifier::compile) in the control
/// process, shipped with serde (postcard) inside the policy image, checked
/// with [`Classifier::validate`] by the dataplane, then only read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classifier {
    pub(crate) rule_count: u32,
    /// The trees for each address family class of keys (see
    /// [`family_class`]): class `c` owns `trees[class_start[c]..class_start[c + 1]]`,
    /// sorted by `min_rule`, so a lookup stops at the first tree that cannot
    /// beat the match it already has.
    pub(crate) trees: Vec<Tree>,
    pub(crate) class_start: [u32; FAMILY_CLASSES + 1],
    /// Child pointer arrays of all inner nodes; children always come after
    /// the pointer that leads to them, so every walk moves forward and ends.
    pub(crate) nodes: Vec<u64>,
    /// Leaf candidate lists: runs of indices into `checks`, each increasing.
    pub(crate) leaf_items: Vec<u32>,
    /// Every candidate once, in rule order (so increasing indices mean
    /// increasing rule numbers).
    pub(crate) checks: Vec<Check>,
    /// The trees of class 0 (IPv4 source and destination) have their own
    /// pointers, whose address cuts count bits within the 32-bit IPv4
    /// address; their leaves' indices select from `v4_checks`.
    pub(crate) v4_nodes: Vec<u32>,
    /// The children of IPv4 tree nodes whose children are all leaves of at
    /// most `BLOCK_LEN` candidates (when there are fewer than `BLOCK_END`
    /// candidates): each is the leaf's list itself, so reaching it costs one
    /// load less than a leaf pointer and its run in `leaf_items`.
    pub(crate) v4_leaf_blocks: Vec<[u16; BLOCK_LEN]>,
    /// `checks` as IPv4 keys see them: `v4_checks[i]` is
    /// `CheckV4::project(&checks[i], i)`.
    pub(crate) v4_checks: Vec<CheckV4>,
}

impl Classifier {
    /// Number of rules the classifier was compiled from (rule indices are
    /// below it).
    pub fn rule_count(&self) -> usize {
        self.rule_count as usize
    }

    /// Number of decision trees (at most 2 per address family class).
    pub fn tree_count(&self) -> usize {
        self.trees.len()
    }

    /// Number of candidate references stored in leaves.
    pub fn check_count(&self) -> usize {
        let in_blocks = self.v4_leaf_blocks.iter().flatten().filter(|&&c| c != BLOCK_END).count();
        self.leaf_items.len() + in_blocks
    }

    /// Number of tree pointers.
    pub fn node_count(&self) -> usize {
        self.nodes.len() + self.v4_nodes.len()
    }

    /// Bytes of lookup structures in memory.
    pub fn memory_bytes(&self) -> usize {
        self.checks.len() * std::mem::size_of::<Check>()
            + self.leaf_items.len() * 4
            + self.nodes.len() * 8
            + self.v4_nodes.len() * 4
            + self.v4_leaf_blocks.len() * std::mem::size_of::<[u16; BLOCK_LEN]>()
            + self.v4_checks.len() * std::mem::size_of::<CheckV4>()
            + self.trees.len() * std::mem::size_of::<Tree>()
    }

    /// How the IPv4 structures' bytes are spent, for tuning: sizes of the
    /// arrays, leaf blocks by candidate count, and leaf blocks by the
    /// longest block of their node.
    #[doc(hidden)]
    pub fn layout_report(&self) -> String {
        let block_len = |b: &[u16; BLOCK_LEN]| b.iter().position(|&c| c == BLOCK_END).unwrap_or(BLOCK_LEN);
        let mut by_len = [0usize; BLOCK_LEN + 1];
        for b in &self.v4_leaf_blocks {
            by_len[block_len(b)] += 1;
        }
        let mut by_widest = [0usize; BLOCK_LEN + 1];
        for &p in &self.v4_nodes {
            if let Pointer::Inner { bits, blocks: true, base, .. } = decode::<true>(u64::from(p)) {
                let blocks = self.v4_leaf_blocks.get(base..base.saturating_add(1 << bits)).unwrap_or(&[]);
                by_widest[blocks.iter().map(block_len).max().unwrap_or(0)] += blocks.len();
            }
        }
        // KiB of distinct child arrays (pointers or blocks) at each depth of
        // the IPv4 trees (shared subtrees counted once).
        let mut by_depth = Vec::new();
        let mut level: Vec<u64> = self.trees.get(..self.class_start[1] as usize).unwrap_or(&[]).iter().map(|t| t.root).collect();
        let mut seen = std::collections::HashSet::new();
        while !level.is_empty() {
            let (mut bytes, mut below) = (0, Vec::new());
            for &p in &level {
                if let Pointer::Inner { bits, base, blocks, .. } = decode::<true>(p) {
                    if seen.insert((base, blocks)) {
                        let n = 1usize << bits;
                        bytes += n * if blocks { 16 } else { 4 };
                        if !blocks {
                            below.extend(self.v4_nodes.get(base..base.saturating_add(n)).unwrap_or(&[]).iter().map(|&q| u64::from(q)));
                        }
                    }
                }
            }
            by_depth.push(bytes / 1024);
            level = below;
        }
        format!(
            "IPv4 tree KiB by depth {by_depth:?}; IPv4 pointers {} KiB, other pointers {} KiB, leaf runs {} KiB, leaf blocks {} KiB ({} by length {by_len:?}; \
             under nodes whose longest block is 0..=8: {by_widest:?}), candidates {} KiB, IPv4 candidates {} KiB",
            self.v4_nodes.len() * 4 / 1024,
            self.nodes.len() * 8 / 1024,
            self.leaf_items.len() * 4 / 1024,
            self.v4_leaf_blocks.len() * 16 / 1024,
            self.v4_leaf_blocks.len(),
            self.checks.len() * 64 / 1024,
            self.v4_checks.len() * 32 / 1024,
        )
    }
}
