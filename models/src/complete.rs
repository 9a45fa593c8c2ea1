//! The compact layout, for forests of shallow trees whose splits are f32 comparisons:
//! every XGBoost model of depth ≤ 8, and LightGBM models whose thresholds are f32
//! boundaries (such as the ones `xgboost_to_lightgbm` writes).
//!
//! Each tree is a complete binary tree in heap order: the root is node 1 and the
//! children of node `i` are `2i` and `2i + 1`, so a node needs no child index and is 8
//! bytes (an f32 threshold and a row slot). A leaf above the tree's full depth is
//! padded: its node becomes a split whose two subtrees are copies of the leaf, so the
//! walk ends on that leaf's value whichever way it goes below it. After `depth` steps
//! the walk is at `2^depth + leaf`, and the leaf values sit in an array of their own,
//! in the precision they are summed in. The seed model (250 trees of depth 6) takes
//! 190 KB this way against 485 KB in the general layout, and a step is a node load,
//! a row load, a compare and `2i + right`.
//!
//! The comparisons are in f32: the row is converted once, and a split goes right when
//! `(x as f32) >= t`. That is XGBoost's own rule. An f64 threshold `T` (right when
//! `x > T`) is taken only when it is exactly the f32 boundary of some `t` (see
//! [`f32_less_than_as_f64_le`]): then both comparisons agree for every input.
//!
//! Missing values use the doubled row of the fast encoding (`Forest::make_fast`), in
//! f32: slot `2f` holds feature `f` with NaN as -inf (read by default-left splits),
//! slot `2f + 1` with NaN as +inf (default-right), so a missing value lands on its
//! default side through the plain comparison, with no test in the walk.

use crate::threshold::f32_less_than_as_f64_le;
use crate::tree::{Accumulation, RawNode, Split};

/// Trees walked together in lock-step: the walks are independent chains of loads
/// that the CPU overlaps when they are interleaved in the instruction stream (walked
/// one after the other they take twice as long). 12 and 16 measured the same on the
/// seed model, 8 slower, 24 much slower (the lanes' indices no longer fit in
/// registers).
const LANES: usize = 12;

/// The deepest tree stored in this layout: a tree takes `2^depth` nodes and leaves
/// whatever its shape, so deep (LightGBM, leaf-wise) trees stay in the general one.
const MAX_DEPTH: u32 = 8;

/// A split: right when the row's value in `slot` is `>= threshold`.
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f32,
    slot: u32,
}

/// Node 0 of each tree (the root is node 1), the splits above padded leaves and the
/// spare lanes' trees: where they send the walk does not matter.
const UNUSED: Node = Node {
    threshold: 0.0,
    slot: 0,
};

/// Leaf values in the precision the model sums them in.
#[derive(Debug, Clone)]
enum Leaves {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// [`LANES`] consecutive trees, padded to the depth of the deepest, walked together.
#[derive(Debug, Clone, Copy)]
struct Group {
    /// The first tree's first node (and leaf) index; lane `l`'s tree starts
    /// `l * 2^depth` later.
    start: usize,
    depth: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct CompleteForest {
    /// `2^depth` nodes per tree, [`LANES`] trees per group (the last group's spare
    /// lanes included), in tree order.
    nodes: Vec<Node>,
    /// `2^depth` leaves per tree, at the same indices as the trees' nodes.
    leaves: Leaves,
    groups: Vec<Group>,
}

impl CompleteForest {
    /// The compact form of `trees` (checked by `Forest::build`, which gives their
    /// depths), or `None` when a split is not an f32 numeric one, a tree is deeper than
    /// [`MAX_DEPTH`], or padding would make the layout bigger than the general one.
    pub(crate) fn build(
        trees: &[Vec<RawNode>],
        depths: &[u32],
        accumulation: Accumulation,
    ) -> Option<CompleteForest> {
        // trees stay in order, because they are summed in order (it matters in f32)
        let mut groups = Vec::new();
        let mut len = 0;
        let mut padded = 0;
        for chunk in depths.chunks(LANES) {
            let depth = chunk.iter().copied().max().unwrap_or(0);
            if depth > MAX_DEPTH {
                return None;
            }
            groups.push(Group { start: len, depth });
            len += LANES << depth;
            padded += chunk.len() << depth;
        }
        // the trees' slots (an 8-byte node and its leaf each) against the general
        // layout's 16-byte nodes: padding may not make the layout bigger (the last
        // group's spare lanes aside)
        if padded > trees.iter().map(Vec::len).sum() {
            return None;
        }
        let mut nodes = vec![UNUSED; len];
        // the spare lanes' leaves are -0.0, which leaves any sum as it is (x + -0 is x
        // for every x, -0 included)
        let mut leaves = vec![-0.0; len];
        for (group, trees) in groups.iter().zip(trees.chunks(LANES)) {
            let n = 1usize << group.depth;
            for (lane, tree) in trees.iter().enumerate() {
                let at = group.start + lane * n;
                let mut layout = Layout {
                    tree,
                    nodes: &mut nodes[at..at + n],
                    leaves: &mut leaves[at..at + n],
                };
                layout.place(0, 1, group.depth)?;
            }
        }
        let leaves = match accumulation {
            // the f32 sum adds each leaf rounded to f32
            Accumulation::F32 => Leaves::F32(leaves.iter().map(|&v| v as f32).collect()),
            Accumulation::F64 => Leaves::F64(leaves),
        };
        Some(CompleteForest {
            nodes,
            leaves,
            groups,
        })
    }

    /// `base` plus the leaf of every tree in tree order, summed in f32 (`base` alone
    /// for a forest built for f64 accumulation).
    pub(crate) fn sum_f32<const M: usize>(&self, row: &[f32; M], base: f32) -> f32 {
        match &self.leaves {
            Leaves::F32(leaves) => self.sum(row, leaves, base),
            Leaves::F64(_) => base,
        }
    }

    /// [`CompleteForest::sum_f32`] in f64.
    pub(crate) fn sum_f64<const M: usize>(&self, row: &[f32; M], base: f64) -> f64 {
        match &self.leaves {
            Leaves::F64(leaves) => self.sum(row, leaves, base),
            Leaves::F32(_) => base,
        }
    }

    /// The sum is passed through by value: behind a reference it would be stored and
    /// reloaded for every leaf, which put a store-to-load round trip on the chain of
    /// additions (about a quarter of the time on the seed model).
    #[inline(always)]
    fn sum<const M: usize, L>(&self, row: &[f32; M], leaves: &[L], mut sum: L) -> L
    where
        L: Copy + std::ops::Add<Output = L>,
    {
        for group in &self.groups {
            let nodes = &self.nodes[group.start..];
            let leaves = &leaves[group.start..];
            // a tree size known at compile time for each depth: the walk's indices
            // are then masked into fixed-size arrays and need no bounds checks
            sum = match group.depth {
                0 => walk_group::<1, M, L>(nodes, leaves, row, sum),
                1 => walk_group::<2, M, L>(nodes, leaves, row, sum),
                2 => walk_group::<4, M, L>(nodes, leaves, row, sum),
                3 => walk_group::<8, M, L>(nodes, leaves, row, sum),
                4 => walk_group::<16, M, L>(nodes, leaves, row, sum),
                5 => walk_group::<32, M, L>(nodes, leaves, row, sum),
                6 => walk_group::<64, M, L>(nodes, leaves, row, sum),
                7 => walk_group::<128, M, L>(nodes, leaves, row, sum),
                _ => walk_group::<256, M, L>(nodes, leaves, row, sum),
            };
        }
        sum
    }
}

/// Walk one group ([`LANES`] trees of `N` nodes at the slices' start) in lock-step for
/// `log2(N)` steps, and add its leaves to `sum` in tree order.
#[inline(always)]
fn walk_group<const N: usize, const M: usize, L>(
    nodes: &[Node],
    leaves: &[L],
    row: &[f32; M],
    mut sum: L,
) -> L
where
    L: Copy + std::ops::Add<Output = L>,
{
    // fixed sizes: each lane's tree is at a constant offset from the group's start
    let (Some(nodes), Some(leaves)) = (
        nodes.as_chunks::<N>().0.first_chunk::<LANES>(),
        leaves.as_chunks::<N>().0.first_chunk::<LANES>(),
    ) else {
        return sum;
    };
    let mut at = [1usize; LANES];
    for _ in 0..N.trailing_zeros() {
        for (a, tree) in at.iter_mut().zip(nodes) {
            // the masks change nothing (`a < N`, slots `< M`, both powers of two) but
            // prove the loads in bounds
            let node = tree[*a & (N - 1)];
            let x = row[node.slot as usize & (M - 1)];
            *a = 2 * *a + usize::from(x >= node.threshold);
        }
    }
    // every lane is summed, the spare ones too (their leaves are -0.0): with a
    // condition on the lane, the compiler moved the lane's walk under it, after the
    // others, where it ran alone
    for (a, values) in at.iter().zip(leaves) {
        sum = sum + values[*a & (N - 1)];
    }
    sum
}

/// Places one tree in heap order.
struct Layout<'a> {
    tree: &'a [RawNode],
    /// The tree's `2^depth` nodes (node 0 unused).
    nodes: &'a mut [Node],
    /// The tree's `2^depth` leaves.
    leaves: &'a mut [f64],
}

impl Layout<'_> {
    /// Place raw node `raw` at heap index `at`, `levels` above the leaves; `None` if a
    /// split has no f32 form.
    fn place(&mut self, raw: usize, at: usize, levels: u32) -> Option<()> {
        let node = self.tree.get(raw)?;
        if levels == 0 {
            let RawNode::Leaf(value) = node else {
                return None;
            };
            *self.leaves.get_mut(at - self.nodes.len())? = *value;
            return Some(());
        }
        match node {
            RawNode::Leaf(_) => {
                // padding: both subtrees end on this leaf
                self.place(raw, 2 * at, levels - 1)?;
                self.place(raw, 2 * at + 1, levels - 1)
            }
            RawNode::Branch {
                feature,
                split,
                left,
                right,
            } => {
                let Split::Numeric {
                    threshold,
                    default_left,
                } = split
                else {
                    return None;
                };
                let threshold = f32_threshold(*threshold)?;
                let slot = 2 * u32::try_from(*feature).ok()? + u32::from(!default_left);
                *self.nodes.get_mut(at)? = Node { threshold, slot };
                self.place(*left, 2 * at, levels - 1)?;
                self.place(*right, 2 * at + 1, levels - 1)
            }
        }
    }
}

/// The f32 `t` for which `x > threshold` (in f64) holds exactly when `(x as f32) >= t`,
/// if there is one: `threshold` must be `t`'s boundary as `f32_less_than_as_f64_le`
/// computes it (whose tests check that it is the boundary).
fn f32_threshold(threshold: f64) -> Option<f32> {
    if !threshold.is_finite() {
        return None;
    }
    // the boundary lies between `t` and the f32 below it, so it rounds to one of them
    let near = threshold as f32;
    [near, near.next_up()]
        .into_iter()
        .find(|t| t.is_finite() && f32_less_than_as_f64_le(*t).to_bits() == threshold.to_bits())
}

/// The row for [`CompleteForest::sum_f32`] and `sum_f64`: each feature in f32 twice,
/// slot `2f` with NaN as -inf and slot `2f + 1` with NaN as +inf; NaN and features
/// past the slice's end are missing. `M` is a power of two above `2 * num_features`.
pub(crate) fn encode_row<const M: usize>(features: &[f64], num_features: usize) -> [f32; M] {
    let mut row = [f32::NEG_INFINITY; M];
    for f in 0..num_features {
        let value = features.get(f).copied().unwrap_or(f64::NAN);
        let (low, high) = if value.is_nan() {
            (f32::NEG_INFINITY, f32::INFINITY)
        } else {
            // XGBoost's own conversion (round to nearest; beyond f32's range, ±inf)
            (value as f32, value as f32)
        };
        row[(2 * f) & (M - 1)] = low;
        row[(2 * f + 1) & (M - 1)] = high;
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xorshift::xorshift;

    #[test]
    fn f32_threshold_inverts_the_boundary() {
        let mut next = xorshift(0x853c49e6748fea9b_u64);
        for _ in 0..20_000 {
            let t = f32::from_bits(next() as u32);
            let boundary = f32_less_than_as_f64_le(t);
            match f32_threshold(boundary) {
                // the same comparison (±0 compare equal)
                Some(found) => assert_eq!(found, t, "t={t:e}"),
                None => assert!(
                    !t.is_finite() || !boundary.is_finite(),
                    "t={t:e} boundary={boundary:e}"
                ),
            }
        }
        // LightGBM's own thresholds are not f32 boundaries
        for t in [0.5, 1.0, -3.25, 1e-35, 0.1] {
            assert_eq!(f32_threshold(t), None, "{t}");
        }
        assert_eq!(f32_threshold(f64::NAN), None);
        assert_eq!(f32_threshold(f64::INFINITY), None);
    }
}
