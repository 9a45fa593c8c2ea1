//! LightGBM text models (`booster.save_model("model.txt")`), one output.
//!
//! LightGBM's rule, reproduced exactly: values within `kZeroThreshold` (1e-35) of zero
//! are zero; a numeric split goes left when `value <= threshold` (f64); its
//! `decision_type` says categorical (bit 0), default left (bit 1) and the missing type
//! (bits 2-3): None (NaN is treated as 0), Zero (0 and NaN take the default side), NaN
//! (NaN takes the default side). Leaves are summed in f64 (the boost-from-average score
//! is already in the first tree), then the objective's output function applies.

use std::collections::HashMap;

use crate::forest::{Forest, ForestParams, Transform};
use crate::threshold::lightgbm_threshold;
use crate::tree::{Accumulation, RawNode, Split};

/// A LightGBM model read from its text, compiled.
#[derive(Debug, Clone)]
pub(crate) struct LgbModel {
    pub forest: Forest,
    pub feature_names: Vec<String>,
    pub objective: String,
}

const CATEGORICAL_MASK: i64 = 1;
const DEFAULT_LEFT_MASK: i64 = 2;

/// Whether the bytes look like a LightGBM text model.
pub(crate) fn looks_like(bytes: &[u8]) -> bool {
    let start = &bytes[..bytes.len().min(4096)];
    let text = String::from_utf8_lossy(start);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    lines.next() == Some("tree") && text.contains("version=")
}

pub(crate) fn parse(bytes: &[u8]) -> Result<LgbModel, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let mut lines = text.lines().enumerate().peekable();
    // the header: `key=value` lines up to the first tree
    let mut header: HashMap<&str, &str> = HashMap::new();
    while let Some((_, line)) = lines.peek() {
        let line = line.trim();
        if line.starts_with("Tree=") || line == "end of trees" {
            break;
        }
        lines.next();
        if let Some((key, value)) = line.split_once('=') {
            header.insert(key, value);
        } else if !line.is_empty() {
            // `tree` on the first line, flags such as `average_output` later
            header.insert(line, "");
        }
    }
    for (key, want) in [("num_class", "1"), ("num_tree_per_iteration", "1")] {
        if let Some(value) = header.get(key)
            && value.trim() != want
        {
            return Err(format!(
                "{key}={value}: only models with one output (regression, binary) are supported"
            ));
        }
    }
    let max_feature_idx: i64 = header
        .get("max_feature_idx")
        .ok_or("no max_feature_idx line in the header")?
        .trim()
        .parse()
        .map_err(|_| "max_feature_idx is not a number".to_string())?;
    let num_features = usize::try_from(max_feature_idx + 1)
        .map_err(|_| format!("max_feature_idx={max_feature_idx} is negative"))?;
    let feature_names: Vec<String> = header
        .get("feature_names")
        .map(|names| names.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if feature_names.len() != num_features {
        return Err(format!(
            "feature_names has {} names for {num_features} features",
            feature_names.len()
        ));
    }
    let objective = header.get("objective").map_or("", |s| s.trim()).to_owned();
    let transform = objective_transform(&objective)?;
    let average = header.contains_key("average_output");

    // the trees: a `Tree=N` line, then `key=value` lines up to a blank line
    let mut trees = Vec::new();
    let mut current: Option<(usize, HashMap<&str, &str>)> = None;
    let mut ended = false;
    for (number, line) in lines {
        let line = line.trim();
        if line.starts_with("Tree=") {
            if let Some((at, fields)) = current.take() {
                trees.push(tree_nodes(&fields, num_features).map_err(|e| tree_error(at, &e))?);
            }
            current = Some((number + 1, HashMap::new()));
        } else if line == "end of trees" {
            ended = true;
            break;
        } else if let Some((_, fields)) = current.as_mut()
            && let Some((key, value)) = line.split_once('=')
        {
            fields.insert(key, value);
        }
    }
    if let Some((at, fields)) = current.take() {
        trees.push(tree_nodes(&fields, num_features).map_err(|e| tree_error(at, &e))?);
    }
    if !ended {
        return Err("no `end of trees` line: the file is cut short".into());
    }
    let forest = Forest::build(
        trees,
        ForestParams {
            num_features,
            accumulation: Accumulation::F64,
            base_score: 0.0,
            transform,
            average,
        },
    )?;
    Ok(LgbModel {
        forest,
        feature_names,
        objective,
    })
}

fn tree_error(line: usize, e: &str) -> String {
    format!("tree at line {line}: {e}")
}

fn objective_transform(objective: &str) -> Result<Transform, String> {
    let mut words = objective.split_whitespace();
    let name = words.next().unwrap_or("");
    let options: Vec<&str> = words.collect();
    Ok(match name {
        // no objective line: a custom objective, raw scores
        ""
        | "none"
        | "custom"
        | "regression"
        | "regression_l2"
        | "l2"
        | "mean_squared_error"
        | "mse"
        | "regression_l1"
        | "l1"
        | "mean_absolute_error"
        | "mae"
        | "huber"
        | "fair"
        | "quantile"
        | "mape"
        | "mean_absolute_percentage_error"
        | "lambdarank"
        | "rank_xendcg" => {
            if options.contains(&"sqrt") {
                Transform::SignedSquare
            } else {
                Transform::Identity
            }
        }
        "poisson" | "gamma" | "tweedie" => Transform::Exp,
        "binary" => {
            let scale = options
                .iter()
                .find_map(|o| o.strip_prefix("sigmoid:"))
                .map_or(Ok(1.0), |s| {
                    s.parse::<f64>()
                        .map_err(|_| format!("objective {objective:?}: bad sigmoid {s:?}"))
                })?;
            Transform::Sigmoid { scale }
        }
        "cross_entropy" | "xentropy" => Transform::Sigmoid { scale: 1.0 },
        "cross_entropy_lambda" | "xentlambda" => Transform::Log1pExp,
        other => {
            return Err(format!(
                "objective {other:?} is not supported (regression and binary objectives are)"
            ));
        }
    })
}

fn tree_nodes(fields: &HashMap<&str, &str>, num_features: usize) -> Result<Vec<RawNode>, String> {
    let num_leaves: usize = field(fields, "num_leaves")?
        .trim()
        .parse()
        .map_err(|_| "num_leaves is not a count".to_string())?;
    if num_leaves == 0 {
        return Err("num_leaves=0".into());
    }
    if fields.get("is_linear").is_some_and(|v| v.trim() != "0") {
        return Err("linear trees (linear_tree=true) are not supported".into());
    }
    let leaf_value: Vec<f64> = numbers(fields, "leaf_value", num_leaves)?;
    if num_leaves == 1 {
        return Ok(vec![RawNode::Leaf(leaf_value[0])]);
    }
    let internal = num_leaves - 1;
    let split_feature: Vec<i64> = numbers(fields, "split_feature", internal)?;
    let threshold: Vec<f64> = numbers(fields, "threshold", internal)?;
    let decision_type: Vec<i64> = if fields.contains_key("decision_type") {
        numbers(fields, "decision_type", internal)?
    } else {
        vec![0; internal]
    };
    let left_child: Vec<i64> = numbers(fields, "left_child", internal)?;
    let right_child: Vec<i64> = numbers(fields, "right_child", internal)?;
    let (cat_boundaries, cat_threshold): (Vec<usize>, Vec<u32>) =
        if decision_type.iter().any(|d| d & CATEGORICAL_MASK != 0) {
            let num_cat: usize = field(fields, "num_cat")?
                .trim()
                .parse()
                .map_err(|_| "num_cat is not a count".to_string())?;
            let boundaries: Vec<usize> = numbers(fields, "cat_boundaries", num_cat + 1)?;
            let total = *boundaries.last().unwrap_or(&0);
            (boundaries, numbers(fields, "cat_threshold", total)?)
        } else {
            (Vec::new(), Vec::new())
        };

    // internal nodes first, then the leaves; LightGBM writes a leaf child as ~leaf
    let child = |c: i64| -> Result<usize, String> {
        if c >= 0 {
            Ok(c as usize)
        } else {
            let leaf = (!c) as usize;
            if leaf >= num_leaves {
                return Err(format!("leaf child {c} is out of range"));
            }
            Ok(internal + leaf)
        }
    };
    let mut nodes = Vec::with_capacity(internal + num_leaves);
    for i in 0..internal {
        let feature = usize::try_from(split_feature[i])
            .ok()
            .filter(|&f| f < num_features)
            .ok_or_else(|| {
                format!(
                    "node {i} splits on feature {}, but the model has {num_features} features",
                    split_feature[i]
                )
            })?;
        let kind = decision_type[i];
        let default_left = kind & DEFAULT_LEFT_MASK != 0;
        let split = if kind & CATEGORICAL_MASK != 0 {
            let set = threshold[i];
            let range = (set >= 0.0 && set.fract() == 0.0)
                .then_some(set as usize)
                .and_then(|s| Some(*cat_boundaries.get(s)?..*cat_boundaries.get(s + 1)?))
                .and_then(|r| cat_threshold.get(r))
                .ok_or_else(|| format!("node {i}: category set {set} does not exist"))?;
            Split::Categorical {
                bits: range.to_vec(),
            }
        } else {
            let t = lightgbm_threshold(threshold[i]);
            match (kind >> 2) & 3 {
                // None: NaN is zero, so it goes where zero goes
                0 => Split::Numeric {
                    threshold: t,
                    default_left: 0.0 <= t,
                },
                1 => Split::ZeroMissing {
                    threshold: t,
                    default_left,
                },
                2 => Split::Numeric {
                    threshold: t,
                    default_left,
                },
                other => return Err(format!("node {i}: unknown missing type {other}")),
            }
        };
        if left_child[i] == 0 || right_child[i] == 0 {
            return Err(format!("node {i} points back at the root"));
        }
        nodes.push(RawNode::Branch {
            feature,
            split,
            left: child(left_child[i])?,
            right: child(right_child[i])?,
        });
    }
    nodes.extend(leaf_value.into_iter().map(RawNode::Leaf));
    Ok(nodes)
}

fn field<'a>(fields: &HashMap<&str, &'a str>, key: &str) -> Result<&'a str, String> {
    fields
        .get(key)
        .copied()
        .ok_or_else(|| format!("no {key} line"))
}

fn numbers<T: std::str::FromStr>(
    fields: &HashMap<&str, &str>,
    key: &str,
    expected: usize,
) -> Result<Vec<T>, String> {
    let values = field(fields, key)?
        .split_whitespace()
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| format!("{key}: {v:?} is not a number"))
        })
        .collect::<Result<Vec<T>, String>>()?;
    if values.len() != expected {
        return Err(format!(
            "{key} has {} values, expected {expected}",
            values.len()
        ));
    }
    Ok(values)
}
