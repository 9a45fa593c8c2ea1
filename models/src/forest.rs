//! The flat representation both model formats compile to, and the prediction loop.
//!
//! Every tree's nodes sit in one array, laid out breadth-first so that a node's two
//! children are adjacent: a node stores only its left child and the right one is the
//! next slot, which makes the descent branch-free (`next = left + goes_right`).
//!
//! Leaves are self-loops: a leaf's feature is the padding slot, which always reads as
//! missing, and its missing values go "left", to itself. Every tree is then walked for
//! exactly its depth in steps, with no leaf test inside the loop, so the CPU overlaps
//! the walks of consecutive trees instead of stalling on a mispredicted leaf branch.
//!
//! Forests of shallow trees whose splits are f32 comparisons (XGBoost's) also get the
//! compact layout of `complete.rs` (8-byte nodes, no child indices) instead: `predict`
//! walks that alone, and the flat nodes are dropped.

use crate::complete::{CompleteForest, encode_row};
use crate::threshold::LIGHTGBM_ZERO;
use crate::tree::{Accumulation, RawNode, Split};

/// A node's flags share a word with its feature index.
const FEATURE_MASK: u32 = (1 << 28) - 1;
/// Missing values go left (else right).
const DEFAULT_LEFT: u32 = 1 << 31;
/// LightGBM's missing type Zero: NaN and values near zero follow the default direction.
const ZERO_MISSING: u32 = 1 << 30;
/// A categorical split; `value` is the index of its category set.
const CATEGORICAL: u32 = 1 << 29;

/// Trees walked together (see `Forest::for_each_leaf`): twelve measured fastest on
/// the seed model (the walks wait on memory; more lanes spill registers).
const LANES: usize = 12;

/// Models with fewer features use the fast encoding (its row buffer is on the stack).
const FAST_MAX_FEATURES: usize = 256;

/// The largest feature index a model may use.
pub(crate) const MAX_FEATURES: usize = FEATURE_MASK as usize - 1;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// A split's threshold (left when `value <= threshold`), a categorical split's set
    /// index, or a leaf's value.
    value: f64,
    /// Feature index and flags.
    feature: u32,
    /// The left child's index in the forest's node array; the right child follows it.
    /// A leaf points at itself.
    left: u32,
}

/// The function from the summed margin to the prediction (the objective's link).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Transform {
    Identity,
    /// `1 / (1 + exp(-scale * x))`.
    Sigmoid {
        scale: f64,
    },
    Exp,
    /// `sign(x) * x²` (LightGBM's `regression sqrt`).
    SignedSquare,
    /// `ln(1 + exp(x))` (LightGBM's `cross_entropy_lambda`).
    Log1pExp,
}

#[derive(Debug, Clone, Copy)]
struct TreeRef {
    root: u32,
    depth: u32,
}

/// A compiled tree ensemble.
#[derive(Debug, Clone)]
pub(crate) struct Forest {
    nodes: Vec<Node>,
    trees: Vec<TreeRef>,
    /// Category bitsets of categorical splits: `(start, len)` into `category_bits`.
    category_sets: Vec<(u32, u32)>,
    category_bits: Vec<u32>,
    num_features: usize,
    /// Whether any node is categorical or zero-missing (then the general step runs).
    general: bool,
    /// Whether the nodes are in the fast encoding (see `Forest::make_fast`).
    fast: bool,
    /// The compact layout (`complete.rs`), when the trees allow it; `nodes` is then
    /// empty and `predict` uses this alone.
    complete: Option<CompleteForest>,
    accumulation: Accumulation,
    base_score: f64,
    transform: Transform,
    /// Divide the sum by the number of trees (LightGBM's random-forest mode).
    average: bool,
}

/// What the forest builder needs besides the trees.
pub(crate) struct ForestParams {
    pub num_features: usize,
    pub accumulation: Accumulation,
    /// Added to the sum of the trees (in the margin space).
    pub base_score: f64,
    pub transform: Transform,
    pub average: bool,
}

impl Forest {
    /// Lay out the trees. Errors name the tree and node; they cannot happen for a model
    /// the libraries wrote, only for damaged or hand-made files.
    pub(crate) fn build(trees: Vec<Vec<RawNode>>, params: ForestParams) -> Result<Forest, String> {
        let mut forest = Forest::build_flat(&trees, params)?;
        // the compact layout needs what the fast encoding needs (numeric splits only,
        // finite values, a row that fits the stack buffer) and more (see `complete.rs`)
        if forest.fast {
            let depths: Vec<u32> = forest.trees.iter().map(|t| t.depth).collect();
            forest.complete = CompleteForest::build(&trees, &depths, forest.accumulation);
            if forest.complete.is_some() {
                // `predict` walks the compact layout alone from now on
                forest.nodes = Vec::new();
            }
        }
        Ok(forest)
    }

    /// The flat layout alone (what `build` starts from; the tests' oracle for the
    /// compact one).
    fn build_flat(trees: &[Vec<RawNode>], params: ForestParams) -> Result<Forest, String> {
        if params.num_features > MAX_FEATURES {
            return Err(format!(
                "{} features is more than this evaluator supports ({MAX_FEATURES})",
                params.num_features
            ));
        }
        let mut forest = Forest {
            nodes: Vec::with_capacity(trees.iter().map(Vec::len).sum()),
            trees: Vec::with_capacity(trees.len()),
            category_sets: Vec::new(),
            category_bits: Vec::new(),
            num_features: params.num_features,
            general: false,
            fast: false,
            complete: None,
            accumulation: params.accumulation,
            base_score: params.base_score,
            transform: params.transform,
            average: params.average,
        };
        for (t, tree) in trees.iter().enumerate() {
            forest
                .add_tree(tree)
                .map_err(|e| format!("tree {t}: {e}"))?;
        }
        forest.make_fast();
        Ok(forest)
    }

    fn add_tree(&mut self, tree: &[RawNode]) -> Result<(), String> {
        if tree.is_empty() {
            return Err("no nodes".into());
        }
        if self.nodes.len() + tree.len() >= u32::MAX as usize {
            return Err("too many nodes".into());
        }
        let base = self.nodes.len();
        // the padding slot of a row: always missing (see `Row`)
        let pad = self.num_features as u32;
        let mut slot = vec![usize::MAX; tree.len()];
        let mut depth_of = vec![0u32; tree.len()];
        slot[0] = base;
        // breadth-first: a node's slot is assigned when its parent is laid out, so each
        // node's children are adjacent and after it (the walk always moves forward)
        let mut order = Vec::with_capacity(tree.len());
        order.push(0usize);
        self.nodes.push(placeholder());
        let mut max_depth = 0;
        let mut next = 0;
        while next < order.len() {
            let raw = order[next];
            next += 1;
            let at = slot[raw];
            let node = match &tree[raw] {
                RawNode::Leaf(value) => Node {
                    value: *value,
                    feature: pad | DEFAULT_LEFT,
                    left: at as u32,
                },
                RawNode::Branch {
                    feature,
                    split,
                    left,
                    right,
                } => {
                    if *feature >= self.num_features {
                        return Err(format!(
                            "node {raw} splits on feature {feature}, but the model has {} features",
                            self.num_features
                        ));
                    }
                    for child in [*left, *right] {
                        if child >= tree.len() {
                            return Err(format!(
                                "node {raw} has child {child}, but the tree has {} nodes",
                                tree.len()
                            ));
                        }
                        if slot[child] != usize::MAX || child == 0 {
                            return Err(format!(
                                "node {child} is reached twice (the nodes do not form a tree)"
                            ));
                        }
                    }
                    let first = self.nodes.len();
                    slot[*left] = first;
                    slot[*right] = first + 1;
                    self.nodes.push(placeholder());
                    self.nodes.push(placeholder());
                    let d = depth_of[raw] + 1;
                    depth_of[*left] = d;
                    depth_of[*right] = d;
                    max_depth = max_depth.max(d);
                    order.push(*left);
                    order.push(*right);
                    let (value, flags) = match split {
                        Split::Numeric {
                            threshold,
                            default_left,
                        } => (*threshold, if *default_left { DEFAULT_LEFT } else { 0 }),
                        Split::ZeroMissing {
                            threshold,
                            default_left,
                        } => {
                            self.general = true;
                            let dl = if *default_left { DEFAULT_LEFT } else { 0 };
                            (*threshold, dl | ZERO_MISSING)
                        }
                        Split::Categorical { bits } => {
                            self.general = true;
                            let set = self.category_sets.len();
                            self.category_sets
                                .push((self.category_bits.len() as u32, bits.len() as u32));
                            self.category_bits.extend_from_slice(bits);
                            (set as f64, CATEGORICAL)
                        }
                    };
                    Node {
                        value,
                        feature: *feature as u32 | flags,
                        left: first as u32,
                    }
                }
            };
            self.nodes[at] = node;
        }
        // nodes never reached from the root are ignored (XGBoost keeps deleted nodes)
        self.trees.push(TreeRef {
            root: base as u32,
            depth: max_depth,
        });
        Ok(())
    }

    /// Switch to the fast encoding where it gives the same answers: numeric splits
    /// only, finite thresholds and leaves, and a row that fits the stack buffer.
    ///
    /// The row is copied twice, interleaved: slot `2f` holds feature `f` with NaN as
    /// -inf, slot `2f + 1` with NaN as +inf. A default-left split reads the first, a
    /// default-right split the second, so a missing value lands on its default side
    /// through the plain comparison and the step needs no NaN test. Slot `2n` (n
    /// features) is -inf: a leaf reads it and stays put.
    fn make_fast(&mut self) {
        if self.general
            || self.num_features >= FAST_MAX_FEATURES
            || !self.nodes.iter().all(|n| n.value.is_finite())
        {
            return;
        }
        for node in &mut self.nodes {
            let feature = node.feature & FEATURE_MASK;
            let right_slot = u32::from(node.feature & DEFAULT_LEFT == 0);
            node.feature = 2 * feature + right_slot;
        }
        // a power-of-two length lets the walk mask its indices instead of checking
        // them (the padding is never visited)
        let len = self.nodes.len().next_power_of_two();
        self.nodes.resize(len, placeholder());
        self.fast = true;
    }

    pub(crate) fn num_features(&self) -> usize {
        self.num_features
    }

    pub(crate) fn num_trees(&self) -> usize {
        self.trees.len()
    }

    pub(crate) fn accumulation(&self) -> Accumulation {
        self.accumulation
    }

    pub(crate) fn base_score(&self) -> f64 {
        self.base_score
    }

    /// Predict one row; NaN and values past the row's end are missing.
    pub(crate) fn predict(&self, features: &[f64]) -> f64 {
        if let Some(complete) = &self.complete {
            return if self.num_features < 32 {
                self.predict_complete::<64>(complete, features)
            } else {
                self.predict_complete::<{ 2 * FAST_MAX_FEATURES }>(complete, features)
            };
        }
        self.predict_flat(features)
    }

    /// Predict in the flat layout (a forest without the compact one).
    fn predict_flat(&self, features: &[f64]) -> f64 {
        if self.fast {
            return if self.num_features < 32 {
                self.predict_fast::<64>(features)
            } else {
                self.predict_fast::<{ 2 * FAST_MAX_FEATURES }>(features)
            };
        }
        // copying the row into a padded stack buffer makes every feature read (and the
        // leaves' padding slot) a plain in-bounds load
        if self.num_features < 32 {
            self.predict_buffered::<32>(features)
        } else if self.num_features < 256 {
            self.predict_buffered::<256>(features)
        } else {
            self.predict_row(&SliceRow {
                values: features,
                num_features: self.num_features,
            })
        }
    }

    fn predict_buffered<const N: usize>(&self, features: &[f64]) -> f64 {
        let mut buffer = [f64::NAN; N];
        let n = features.len().min(self.num_features);
        buffer[..n].copy_from_slice(&features[..n]);
        self.predict_row(&ArrayRow(&buffer))
    }

    fn predict_fast<const N: usize>(&self, features: &[f64]) -> f64 {
        let mut slots = [f64::NEG_INFINITY; N];
        for f in 0..self.num_features {
            let value = features.get(f).copied().unwrap_or(f64::NAN);
            let (low, high) = if value.is_nan() {
                (f64::NEG_INFINITY, f64::INFINITY)
            } else {
                (value, value)
            };
            slots[(2 * f) & (N - 1)] = low;
            slots[(2 * f + 1) & (N - 1)] = high;
        }
        match self.accumulation {
            Accumulation::F32 => {
                let mut sum = SumF32(self.base_score as f32);
                self.for_each_leaf_fast(&slots, &mut sum);
                self.finish_f32(sum.0)
            }
            Accumulation::F64 => {
                let mut sum = SumF64(0.0);
                self.for_each_leaf_fast(&slots, &mut sum);
                self.finish_f64(sum.0)
            }
        }
    }

    /// Predict in the compact layout (see `complete.rs`), from the doubled row in f32.
    fn predict_complete<const M: usize>(&self, complete: &CompleteForest, features: &[f64]) -> f64 {
        let row = encode_row::<M>(features, self.num_features);
        match self.accumulation {
            Accumulation::F32 => self.finish_f32(complete.sum_f32(&row, self.base_score as f32)),
            Accumulation::F64 => self.finish_f64(complete.sum_f64(&row, 0.0)),
        }
    }

    fn predict_row<R: Row>(&self, row: &R) -> f64 {
        match self.accumulation {
            Accumulation::F32 => {
                let mut sum = SumF32(self.base_score as f32);
                if self.general {
                    self.for_each_leaf::<R, true, _>(row, &mut sum);
                } else {
                    self.for_each_leaf::<R, false, _>(row, &mut sum);
                }
                self.finish_f32(sum.0)
            }
            Accumulation::F64 => {
                let mut sum = SumF64(0.0);
                if self.general {
                    self.for_each_leaf::<R, true, _>(row, &mut sum);
                } else {
                    self.for_each_leaf::<R, false, _>(row, &mut sum);
                }
                self.finish_f64(sum.0)
            }
        }
    }

    /// Average (random-forest mode) and apply the output function, in f32.
    fn finish_f32(&self, mut sum: f32) -> f64 {
        if self.average && !self.trees.is_empty() {
            sum /= self.trees.len() as f32;
        }
        f64::from(transform_f32(self.transform, sum))
    }

    /// Average (random-forest mode), add the base score and apply the output function.
    fn finish_f64(&self, mut sum: f64) -> f64 {
        if self.average && !self.trees.is_empty() {
            sum /= self.trees.len() as f64;
        }
        transform_f64(self.transform, sum + self.base_score)
    }

    /// The leaf value of every tree, in tree order (the order of summation matters
    /// in f32). Trees are walked [`LANES`] at a time in lock-step: the walks are
    /// independent chains of loads, so the CPU overlaps them.
    #[inline(always)]
    fn for_each_leaf<R: Row, const GENERAL: bool, S: Sum>(&self, row: &R, sum: &mut S) {
        for group in self.trees.chunks(LANES) {
            // spare lanes walk the group's first tree again and are not summed
            let mut at = [group[0].root as usize; LANES];
            let mut depth = 0;
            for (lane, tree) in group.iter().enumerate() {
                at[lane] = tree.root as usize;
                depth = depth.max(tree.depth);
            }
            for _ in 0..depth {
                for a in &mut at {
                    *a = if GENERAL {
                        self.step_general(*a, row)
                    } else {
                        step(&self.nodes[*a], row)
                    };
                }
            }
            for &a in &at[..group.len()] {
                sum.add(self.nodes[a].value);
            }
        }
    }

    /// [`Forest::for_each_leaf`] in the fast encoding (see [`Forest::make_fast`]).
    #[inline(always)]
    fn for_each_leaf_fast<const N: usize, S: Sum>(&self, slots: &[f64; N], sum: &mut S) {
        let nodes = &self.nodes[..];
        if nodes.is_empty() {
            return;
        }
        // the length is a power of two (see `make_fast`) and every index in range, so
        // masking changes nothing but proves the accesses in bounds
        let mask = nodes.len() - 1;
        for group in self.trees.chunks(LANES) {
            let mut at = [group[0].root as usize; LANES];
            let mut depth = 0;
            for (lane, tree) in group.iter().enumerate() {
                at[lane] = tree.root as usize;
                depth = depth.max(tree.depth);
            }
            for _ in 0..depth {
                for a in &mut at {
                    let node = &nodes[*a & mask];
                    let value = slots[node.feature as usize & (N - 1)];
                    *a = node.left as usize + usize::from(value > node.value);
                }
            }
            for &a in &at[..group.len()] {
                sum.add(nodes[a & mask].value);
            }
        }
    }

    fn step_general<R: Row>(&self, at: usize, row: &R) -> usize {
        let node = &self.nodes[at];
        if node.feature & (ZERO_MISSING | CATEGORICAL) == 0 {
            return step(node, row);
        }
        let value = row.get((node.feature & FEATURE_MASK) as usize);
        let goes_right = if node.feature & CATEGORICAL != 0 {
            !self.in_category_set(node.value as usize, value)
        } else if value.is_nan() || value.abs() <= LIGHTGBM_ZERO {
            node.feature & DEFAULT_LEFT == 0
        } else {
            value > node.value
        };
        node.left as usize + goes_right as usize
    }

    fn in_category_set(&self, set: usize, value: f64) -> bool {
        // LightGBM: NaN and negative values are never members; others are truncated
        if value.is_nan() || value <= -1.0 {
            return false;
        }
        let category = value as u32 as usize;
        let Some(&(start, len)) = self.category_sets.get(set) else {
            return false;
        };
        let word = category / 32;
        if word >= len as usize {
            return false;
        }
        self.category_bits
            .get(start as usize + word)
            .is_some_and(|bits| (bits >> (category % 32)) & 1 == 1)
    }
}

/// Leaf values are summed in tree order, in the model's precision.
trait Sum {
    fn add(&mut self, leaf: f64);
}

struct SumF32(f32);

impl Sum for SumF32 {
    #[inline(always)]
    fn add(&mut self, leaf: f64) {
        self.0 += leaf as f32;
    }
}

struct SumF64(f64);

impl Sum for SumF64 {
    #[inline(always)]
    fn add(&mut self, leaf: f64) {
        self.0 += leaf;
    }
}

/// One step down a numeric split (or a leaf, which stays put).
#[inline(always)]
fn step<R: Row>(node: &Node, row: &R) -> usize {
    let value = row.get((node.feature & FEATURE_MASK) as usize);
    // NaN compares false both ways: `>` sends it left, "not `<=`" sends it right
    let goes_right = if node.feature & DEFAULT_LEFT != 0 {
        value > node.value
    } else {
        !value.le(&node.value)
    };
    node.left as usize + goes_right as usize
}

fn placeholder() -> Node {
    Node {
        value: 0.0,
        feature: 0,
        left: 0,
    }
}

/// Feature access: index `num_features` (the leaves' padding slot) is always missing.
trait Row {
    fn get(&self, feature: usize) -> f64;
}

struct ArrayRow<'a, const N: usize>(&'a [f64; N]);

impl<const N: usize> Row for ArrayRow<'_, N> {
    #[inline(always)]
    fn get(&self, feature: usize) -> f64 {
        // N is a power of two above every feature index, so the mask is a no-op that
        // lets the compiler drop the bounds check
        self.0[feature & (N - 1)]
    }
}

struct SliceRow<'a> {
    values: &'a [f64],
    num_features: usize,
}

impl Row for SliceRow<'_> {
    #[inline(always)]
    fn get(&self, feature: usize) -> f64 {
        if feature < self.num_features {
            self.values.get(feature).copied().unwrap_or(f64::NAN)
        } else {
            f64::NAN
        }
    }
}

fn transform_f32(transform: Transform, x: f32) -> f32 {
    match transform {
        Transform::Identity => x,
        Transform::Sigmoid { scale } => 1.0 / (1.0 + (-(scale as f32) * x).exp()),
        Transform::Exp => x.exp(),
        Transform::SignedSquare => x.signum() * x * x,
        Transform::Log1pExp => x.exp().ln_1p(),
    }
}

fn transform_f64(transform: Transform, x: f64) -> f64 {
    match transform {
        Transform::Identity => x,
        Transform::Sigmoid { scale } => 1.0 / (1.0 + (-scale * x).exp()),
        Transform::Exp => x.exp(),
        Transform::SignedSquare => x.signum() * x * x,
        Transform::Log1pExp => x.exp().ln_1p(),
    }
}

#[cfg(test)]
mod tests;
