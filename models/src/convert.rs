//! XGBoost JSON → LightGBM text, with the same trees: for comparing LightGBM's
//! predictor with ours on the same ensemble, and for using an XGBoost model where only
//! LightGBM is available.
//!
//! The split rules differ: XGBoost goes left when `(x as f32) < t`, LightGBM when
//! `x <= t'` in f64. `t'` is the boundary of the f32 rounding (see
//! `threshold::f32_less_than_as_f64_le`), so both agree for every f64 input. The base
//! margin is added to the first tree's leaves (where LightGBM keeps its own initial
//! score). XGBoost sums in f32 and LightGBM in f64, so the two differ by f32 rounding
//! (about 1e-7 relative).

use std::fmt::Write as _;

use crate::forest::Transform;
use crate::threshold::f32_less_than_as_f64_le;
use crate::xgboost::{self, XgbTree};
use crate::{ModelError, ModelFormat};

/// Missing type NaN (`2 << 2`): NaN takes the default side, as in XGBoost.
const MISSING_NAN: u8 = 8;
const DEFAULT_LEFT: u8 = 2;

/// Convert an XGBoost JSON model to a LightGBM text model giving the same predictions.
pub fn xgboost_to_lightgbm(bytes: &[u8]) -> Result<String, ModelError> {
    let invalid = |message: String| ModelError::Invalid {
        format: ModelFormat::XGBoostJson,
        message,
    };
    let model = xgboost::parse(bytes).map_err(invalid)?;
    let objective = match model.transform {
        Transform::Identity => "regression",
        Transform::Sigmoid { .. } => "binary sigmoid:1",
        Transform::Exp => "poisson",
        other => return Err(invalid(format!("no LightGBM objective for {other:?}"))),
    };
    if model.num_features == 0 {
        return Err(invalid("the model has no features".into()));
    }
    let names: Vec<String> = match &model.feature_names {
        // LightGBM separates names by spaces
        Some(names) => names
            .iter()
            .map(|n| n.replace(char::is_whitespace, "_"))
            .collect(),
        None => (0..model.num_features)
            .map(|i| format!("Column_{i}"))
            .collect(),
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1"
    );
    let _ = writeln!(
        out,
        "label_index=0\nmax_feature_idx={}",
        model.num_features - 1
    );
    let _ = writeln!(out, "objective={objective}");
    let _ = writeln!(out, "feature_names={}", names.join(" "));
    let infos = vec!["none"; model.num_features];
    let _ = writeln!(out, "feature_infos={}\n", infos.join(" "));
    for (t, tree) in model.trees.iter().enumerate() {
        let bias = if t == 0 {
            f64::from(model.base_margin)
        } else {
            0.0
        };
        write_tree(&mut out, t, tree, bias).map_err(|e| invalid(format!("tree {t}: {e}")))?;
    }
    if model.trees.is_empty() {
        // LightGBM needs a tree to carry the base margin
        let _ = writeln!(
            out,
            "Tree=0\nnum_leaves=1\nnum_cat=0\nleaf_value={}\nshrinkage=1\n\n",
            f64::from(model.base_margin)
        );
    }
    let _ = writeln!(out, "end of trees\n\nparameters:\nend of parameters\n");
    Ok(out)
}

fn write_tree(out: &mut String, number: usize, tree: &XgbTree, bias: f64) -> Result<(), String> {
    // LightGBM numbers internal nodes from 0 (the root) and leaves separately; a child
    // that is a leaf is written as ~leaf
    let mut internal = Vec::new(); // XGBoost node of each LightGBM internal node
    let mut leaves = Vec::new(); // XGBoost node of each LightGBM leaf
    let mut stack = vec![0usize];
    let mut seen = vec![false; tree.left.len()];
    while let Some(node) = stack.pop() {
        if node >= tree.left.len() || std::mem::replace(&mut seen[node], true) {
            return Err(format!("node {node} is out of range or reached twice"));
        }
        if tree.is_leaf(node) {
            leaves.push(node);
        } else {
            internal.push(node);
            for child in [tree.right[node], tree.left[node]] {
                stack.push(usize::try_from(child).map_err(|_| format!("bad child {child}"))?);
            }
        }
    }
    let mut index = vec![0i64; tree.left.len()];
    for (i, &node) in internal.iter().enumerate() {
        index[node] = i as i64;
    }
    for (l, &node) in leaves.iter().enumerate() {
        index[node] = !(l as i64);
    }
    let join = |values: Vec<String>| values.join(" ");
    let _ = writeln!(out, "Tree={number}\nnum_leaves={}\nnum_cat=0", leaves.len());
    if !internal.is_empty() {
        let field = |f: &dyn Fn(usize) -> String| join(internal.iter().map(|&n| f(n)).collect());
        let _ = writeln!(
            out,
            "split_feature={}",
            field(&|n| tree.feature[n].to_string())
        );
        let _ = writeln!(out, "split_gain={}", field(&|_| "0".into()));
        let _ = writeln!(
            out,
            "threshold={}",
            field(&|n| format!("{:?}", f32_less_than_as_f64_le(tree.value[n])))
        );
        let _ = writeln!(
            out,
            "decision_type={}",
            field(&|n| {
                let dl = if tree.default_left[n] {
                    DEFAULT_LEFT
                } else {
                    0
                };
                (MISSING_NAN | dl).to_string()
            })
        );
        let child = |c: i64| index[c as usize].to_string();
        let _ = writeln!(out, "left_child={}", field(&|n| child(tree.left[n])));
        let _ = writeln!(out, "right_child={}", field(&|n| child(tree.right[n])));
    }
    let values: Vec<String> = leaves
        .iter()
        .map(|&n| format!("{:?}", f64::from(tree.value[n]) + bias))
        .collect();
    let _ = writeln!(out, "leaf_value={}", join(values));
    let _ = writeln!(out, "is_linear=0\nshrinkage=1\n\n");
    Ok(())
}
