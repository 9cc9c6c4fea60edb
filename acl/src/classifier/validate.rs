//! Validation of untrusted images: [`Classifier::validate`] checks every index, offset
//! and invariant the lookup relies on before the dataplane uses a classifier decoded
//! from shared memory, so that a corrupted or hostile image is rejected, not used.

use super::format::{
    decode, CheckV4, Pointer, BLOCK_END, BLOCK_LEN, CHECK_CODE_ANY, CHECK_PROTO_ANY, CHECK_TYPE_ANY, DIMS, DIM_WIDTH,
    DIM_WIDTH_V4, FAMILY_CLASSES, MAX_CUT_BITS,
};
use super::{Classifier, NO_RULE};

impl Classifier {
    /// Checks every internal index, offset and invariant the lookup relies
    /// on, so that a classifier decoded from an untrusted or corrupted image
    /// is rejected here rather than used. (Lookups cannot read out of bounds,
    /// panic or loop even without this; skipping it can only produce wrong
    /// verdicts.)
    pub fn validate(&self) -> Result<(), String> {
        if self.rule_count == NO_RULE || self.rule_count as usize > crate::MAX_RULES {
            return Err(format!("rule count {} is out of range", self.rule_count));
        }
        for (i, check) in self.checks.iter().enumerate() {
            if check.rule >= self.rule_count {
                return Err(format!(
                    "candidate {i} names rule {} but there are {} rules",
                    check.rule, self.rule_count
                ));
            }
            if check.src_len > 128 || check.dst_len > 128 {
                return Err(format!("candidate {i} has a prefix longer than 128 bits"));
            }
            if check.sport_lo > check.sport_hi || check.dport_lo > check.dport_hi {
                return Err(format!("candidate {i} has an empty port range"));
            }
            if check.flags & !(CHECK_PROTO_ANY | CHECK_TYPE_ANY | CHECK_CODE_ANY) != 0 {
                return Err(format!("candidate {i} has unknown flag bits {:#x}", check.flags));
            }
        }
        if self.checks.windows(2).any(|w| w[0].rule > w[1].rule) {
            return Err("candidates are not in rule order".into());
        }
        if self.v4_checks.len() != self.checks.len()
            || self.v4_checks.iter().zip(&self.checks).any(|(c, full)| CheckV4::project(full) != *c)
        {
            return Err("the IPv4 candidates are not those of the candidates".into());
        }
        let starts = &self.class_start;
        if starts[0] != 0
            || starts.windows(2).any(|w| w[0] > w[1] || w[1] - w[0] > 2)
            || starts[FAMILY_CLASSES] as usize != self.trees.len()
        {
            return Err(format!("tree classes {starts:?} do not partition the {} trees", self.trees.len()));
        }
        let mut previous_min = 0;
        for (t, tree) in self.trees.iter().enumerate() {
            if starts.contains(&(t as u32)) {
                previous_min = 0;
            }
            if tree.min_rule < previous_min || tree.min_rule >= self.rule_count {
                return Err(format!("tree {t}: trees are not ordered by their best rule"));
            }
            previous_min = tree.min_rule;
            let v4 = t < starts[1] as usize;
            if v4 && tree.root > u64::from(u32::MAX) {
                return Err(format!("tree {t} root: {:#x} is not an IPv4 tree pointer", tree.root));
            }
            self.validate_pointer(tree.root, None, v4).map_err(|e| format!("tree {t} root: {e}"))?;
        }
        for (i, &p) in self.nodes.iter().enumerate() {
            self.validate_pointer(p, Some(i), false).map_err(|e| format!("tree node {i}: {e}"))?;
        }
        for (i, &p) in self.v4_nodes.iter().enumerate() {
            self.validate_pointer(u64::from(p), Some(i), true).map_err(|e| format!("IPv4 tree node {i}: {e}"))?;
        }
        for (i, block) in self.v4_leaf_blocks.iter().enumerate() {
            let len = block.iter().position(|&c| c == BLOCK_END).unwrap_or(BLOCK_LEN);
            let (run, rest) = block.split_at(len);
            if rest.iter().any(|&c| c != BLOCK_END) {
                return Err(format!("leaf block {i}: candidates after its end"));
            }
            if run.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("leaf block {i}: candidates are not in rule order"));
            }
            if run.last().is_some_and(|&c| usize::from(c) >= self.checks.len()) {
                return Err(format!("leaf block {i}: candidate past the {} candidates", self.checks.len()));
            }
        }
        Ok(())
    }

    /// One pointer, found at `nodes[at]` (or a root if `None`), of the IPv4
    /// trees or the others.
    fn validate_pointer(&self, p: u64, at: Option<usize>, v4: bool) -> Result<(), String> {
        let decoded = if v4 { decode::<true>(p) } else { decode::<false>(p) };
        match decoded {
            Pointer::Leaf { start, len } => {
                let items = if v4 { self.leaf::<true>(p) } else { self.leaf::<false>(p) };
                let Some(candidates) = items else {
                    return Err(format!(
                        "leaf candidates {start}..+{len} past the {} stored",
                        self.leaf_items.len()
                    ));
                };
                if candidates.windows(2).any(|w| w[0] >= w[1]) {
                    return Err("leaf candidates are not in rule order".into());
                }
                if candidates.last().is_some_and(|&i| i as usize >= self.checks.len()) {
                    return Err(format!("leaf candidate past the {} candidates", self.checks.len()));
                }
            }
            Pointer::Inner { dim, bits, offset, base, blocks } => {
                if dim >= DIMS {
                    return Err(format!("cut dimension {dim} does not exist"));
                }
                let width = if v4 { DIM_WIDTH_V4[dim] } else { DIM_WIDTH[dim] };
                if bits == 0 || bits > u32::from(MAX_CUT_BITS) || offset + bits > u32::from(width) {
                    return Err(format!("cut of {bits} bits at offset {offset} does not fit dimension {dim}"));
                }
                if blocks {
                    // Leaf blocks hold no pointers: no walk goes on from them.
                    let stored = self.v4_leaf_blocks.len();
                    if base.saturating_add(1 << bits) > stored {
                        return Err(format!("leaf blocks {base}..+{} past the {stored} stored", 1u32 << bits));
                    }
                    return Ok(());
                }
                if at.is_some_and(|at| base <= at) {
                    return Err("child pointers do not come after their parent".into());
                }
                let nodes = if v4 { self.v4_nodes.len() } else { self.nodes.len() };
                if base.saturating_add(1 << bits) > nodes {
                    return Err(format!("children {base}..+{} past the {nodes} pointers", 1u32 << bits));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::{inner_pointer, leaf_pointer, v4_inner_pointer, v4_leaf_pointer, V4_BLOCKS, V4_EXTENDED, V4_LONG_LEAF};
    use crate::synth;

    fn compiled() -> Classifier {
        let c = Classifier::compile(&synth::mixed_rules(400, 3)).unwrap();
        c.validate().unwrap();
        c
    }

    /// Applies `corrupt` and expects `validate` to name the problem.
    fn rejects(what: &str, corrupt: impl FnOnce(&mut Classifier)) {
        let mut c = compiled();
        corrupt(&mut c);
        let err = c.validate().expect_err(what);
        assert!(!err.is_empty(), "{what}");
        // And lookups on it stay safe.
        for k in synth::keys(&synth::mixed_rules(400, 3), 200, 75, 1) {
            let _ = c.lookup(&k);
        }
    }

    fn first_inner(c: &Classifier) -> usize {
        c.nodes.iter().position(|&p| p & 1 == 0).expect("an inner pointer")
    }

    #[test]
    fn validate_rejects_broken_structures() {
        rejects("child block past the end", |c| {
            let i = first_inner(c);
            c.nodes[i] = inner_pointer(0, 96, 16, c.nodes.len());
        });
        rejects("backward pointer (a cycle)", |c| {
            let i = first_inner(c);
            c.nodes[i] = inner_pointer(1, 96, 1, i);
        });
        rejects("unknown dimension", |c| {
            let i = first_inner(c);
            c.nodes[i] = (c.nodes[i] & !(7 << 1)) | 6 << 1;
        });
        rejects("cut past the field", |c| {
            let general = c.class_start[1] as usize;
            c.trees[general].root = inner_pointer(2, 4, 8, 0);
        });
        rejects("IPv4 cut past the field", |c| c.trees[0].root = v4_inner_pointer(2, 4, 8, 0, false));
        rejects("leaf past the end", |c| c.trees[0].root = leaf_pointer(c.leaf_items.len(), 2));
        rejects("leaf item past the candidates", |c| {
            let n = c.checks.len() as u32;
            *c.leaf_items.last_mut().unwrap() = n;
        });
        rejects("rule beyond the rule count", |c| c.checks[0].rule = c.rule_count);
        rejects("prefix longer than 128", |c| c.checks[0].src_len = 200);
        rejects("empty port range", |c| {
            c.checks[0].dport_lo = 10;
            c.checks[0].dport_hi = 9;
        });
        let v4_inner = |c: &Classifier| c.v4_nodes.iter().position(|&p| p & 1 == 0).expect("an IPv4 inner pointer");
        rejects("IPv4 cut past the 32-bit address", |c| {
            let i = v4_inner(c);
            c.v4_nodes[i] = v4_inner_pointer(1, 30, 4, (i + 2) & !1, false) as u32;
        });
        rejects("IPv4 child block past the end", |c| {
            let i = v4_inner(c);
            c.v4_nodes[i] = v4_inner_pointer(0, 0, 8, c.v4_nodes.len(), false) as u32;
        });
        rejects("IPv4 backward pointer", |c| {
            let i = v4_inner(c);
            c.v4_nodes[i] = v4_inner_pointer(0, 0, 1, i & !1, false) as u32;
        });
        rejects("IPv4 cut past the ports", |c| {
            let i = v4_inner(c);
            c.v4_nodes[i] = (c.v4_nodes[i] & !0xff) | 1 << 1 | 40 << 2;
        });
        rejects("IPv4 leaf past the end", |c| c.v4_nodes[0] = v4_leaf_pointer(c.leaf_items.len() - 1, 2) as u32);
        rejects("IPv4 root wider than 32 bits", |c| c.trees[0].root |= 1 << 40);
        rejects("IPv4 candidate differs from its candidate", |c| c.v4_checks[3].dst_mask ^= 1 << 7);
        rejects("IPv4 candidate loses its extended flag", |c| {
            let i = c.v4_checks.iter().position(|v| v.flags & V4_EXTENDED != 0).expect("an extended rule");
            c.v4_checks[i].flags &= !V4_EXTENDED;
        });
        rejects("IPv4 candidates missing", |c| {
            c.v4_checks.pop();
        });
        let v4_blocks = |c: &Classifier| {
            c.v4_nodes.iter().position(|&p| u64::from(p) & (V4_BLOCKS | 1) == V4_BLOCKS).expect("a leaf block node")
        };
        rejects("leaf blocks past the end", |c| {
            let i = v4_blocks(c);
            c.v4_nodes[i] = v4_inner_pointer(3, 0, 2, c.v4_leaf_blocks.len() - 2, true) as u32;
        });
        let block_of_two = |c: &Classifier| c.v4_leaf_blocks.iter().position(|b| b[1] != BLOCK_END).expect("a block of two");
        rejects("leaf block candidate past the candidates", |c| {
            let b = block_of_two(c);
            c.v4_leaf_blocks[b][1] = c.checks.len() as u16;
        });
        rejects("leaf block out of rule order", |c| {
            let b = block_of_two(c);
            c.v4_leaf_blocks[b].swap(0, 1);
        });
        rejects("leaf block candidates after its end", |c| {
            let b = c.v4_leaf_blocks.iter().position(|b| b[0] != BLOCK_END && b[1] == BLOCK_END).expect("a block of one");
            c.v4_leaf_blocks[b][2] = 0;
        });
        rejects("tree classes", |c| c.class_start[2] = 100);
        rejects("long IPv4 leaf past the end", |c| {
            c.leaf_items.extend([5, 2]);
            c.v4_nodes[0] = v4_leaf_pointer(c.leaf_items.len() - 2, V4_LONG_LEAF) as u32;
        });
        rejects("long IPv4 leaf length word", |c| {
            let start = c.leaf_items.len();
            c.leaf_items.extend([u32::MAX, 1, 2]);
            c.v4_nodes[0] = v4_leaf_pointer(start, V4_LONG_LEAF) as u32;
        });
        rejects("trees out of order", |c| {
            c.trees.swap(0, 1);
            c.class_start = [0, 2, 2, 2, 2];
            c.trees[0].min_rule = 5;
            c.trees[1].min_rule = 1;
        });
    }
}

