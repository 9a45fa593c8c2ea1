//! The trees as the format parsers hand them over, before either layout compiles them.
//!
//! Both layouts (`forest.rs`, the flat one, and `complete.rs`, the compact one) are
//! built from these, and the forest chooses between them: kept apart from both so that
//! the compact layout does not depend on the module that decides whether to use it.

/// How a split routes a row.
#[derive(Debug, Clone)]
pub(crate) enum Split {
    /// Left when `value <= threshold` (compared in f64); missing values (NaN) go to the
    /// default side.
    Numeric { threshold: f64, default_left: bool },
    /// LightGBM's missing type Zero: NaN and values within [`LIGHTGBM_ZERO`] of zero go
    /// to the default side, others left when `value <= threshold`.
    ///
    /// [`LIGHTGBM_ZERO`]: crate::threshold::LIGHTGBM_ZERO
    ZeroMissing { threshold: f64, default_left: bool },
    /// Left when the value, truncated to an integer, is a member of the bitset
    /// (LightGBM's layout: bit `c % 32` of word `c / 32`); NaN and negatives go right.
    Categorical { bits: Vec<u32> },
}

/// A tree node as the format parsers produce it: children are indices in the tree's
/// node list, node 0 is the root.
#[derive(Debug, Clone)]
pub(crate) enum RawNode {
    Leaf(f64),
    Branch {
        feature: usize,
        split: Split,
        left: usize,
        right: usize,
    },
}

/// How leaf values are summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accumulation {
    /// In f32, tree by tree from the base score (XGBoost).
    F32,
    /// In f64 (LightGBM).
    F64,
}
