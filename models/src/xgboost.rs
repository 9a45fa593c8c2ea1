//! XGBoost JSON models (`booster.save_model("model.json")`), gbtree booster, one output.
//!
//! XGBoost's rule, reproduced exactly: the row is converted to f32, a split goes left
//! when `value < threshold` (f32), NaN follows `default_left`, and the leaves are summed
//! in f32 tree by tree starting from the base margin. The JSON's `base_score` is in the
//! output space (a probability for logistic objectives, a mean for log-link ones); the
//! margin is the objective's inverse link of it, as XGBoost computes when it loads.

use serde::Deserialize;
use serde_json::Value;

use crate::forest::{Forest, ForestParams, Transform};
use crate::threshold::f32_less_than_as_f64_le;
use crate::tree::{Accumulation, RawNode, Split};

/// An XGBoost model as read from its JSON, before compilation.
#[derive(Debug, Clone)]
pub(crate) struct XgbModel {
    pub trees: Vec<XgbTree>,
    pub num_features: usize,
    pub feature_names: Option<Vec<String>>,
    pub objective: String,
    /// The base score in the margin space (what the trees are added to).
    pub base_margin: f32,
    pub transform: Transform,
}

/// One tree, as XGBoost's arrays (node 0 the root, -1 for no child).
#[derive(Debug, Clone)]
pub(crate) struct XgbTree {
    pub left: Vec<i64>,
    pub right: Vec<i64>,
    pub feature: Vec<usize>,
    /// Split thresholds for splits, leaf values for leaves.
    pub value: Vec<f32>,
    pub default_left: Vec<bool>,
}

#[derive(Deserialize)]
struct Document {
    learner: Learner,
}

#[derive(Deserialize)]
struct Learner {
    #[serde(default)]
    feature_names: Vec<String>,
    learner_model_param: ModelParam,
    objective: Objective,
    gradient_booster: Value,
}

#[derive(Deserialize)]
struct ModelParam {
    base_score: String,
    num_feature: String,
    #[serde(default)]
    num_class: Option<String>,
    #[serde(default)]
    num_target: Option<String>,
}

#[derive(Deserialize)]
struct Objective {
    name: String,
}

#[derive(Deserialize)]
struct JsonTree {
    left_children: Vec<i64>,
    right_children: Vec<i64>,
    split_indices: Vec<i64>,
    split_conditions: Vec<f64>,
    default_left: Vec<Value>,
    #[serde(default)]
    split_type: Vec<i64>,
    #[serde(default)]
    tree_param: Option<TreeParam>,
}

#[derive(Deserialize)]
struct TreeParam {
    #[serde(default)]
    size_leaf_vector: Option<String>,
}

/// Parse an XGBoost JSON model. Errors are plain messages; the caller adds the format
/// and the file.
pub(crate) fn parse(bytes: &[u8]) -> Result<XgbModel, String> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| format!("not a model: {e}"))?;
    let learner = doc.learner;
    let param = &learner.learner_model_param;
    let num_features: usize = param
        .num_feature
        .trim()
        .parse()
        .map_err(|_| format!("num_feature {:?} is not a count", param.num_feature))?;
    for (what, value) in [
        ("num_class", &param.num_class),
        ("num_target", &param.num_target),
    ] {
        if let Some(v) = value {
            let n: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{what} {v:?} is not a count"))?;
            if n > 1 {
                return Err(format!(
                    "{what} is {n}: only models with one output (regression, binary) are supported"
                ));
            }
        }
    }
    let objective = learner.objective.name;
    let (transform, link) = objective_link(&objective)?;
    let base_score = parse_base_score(&param.base_score)?;
    let base_margin = link.margin(base_score);
    if !base_margin.is_finite() {
        return Err(format!(
            "base_score {base_score} is outside the domain of the {objective} objective"
        ));
    }

    let booster = &learner.gradient_booster;
    let name = booster.get("name").and_then(Value::as_str).unwrap_or("");
    if name != "gbtree" {
        return Err(format!(
            "booster {name:?} is not supported (only gbtree: dart and gblinear are not)"
        ));
    }
    let model = booster
        .get("model")
        .ok_or("gradient_booster has no model")?;
    let trees = model
        .get("trees")
        .and_then(Value::as_array)
        .ok_or("gradient_booster.model has no trees array")?;
    let trees = trees
        .iter()
        .enumerate()
        .map(|(t, tree)| parse_tree(tree, num_features).map_err(|e| format!("tree {t}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;

    let feature_names = if learner.feature_names.is_empty() {
        None
    } else if learner.feature_names.len() != num_features {
        return Err(format!(
            "{} feature names for {num_features} features",
            learner.feature_names.len()
        ));
    } else {
        Some(learner.feature_names)
    };
    Ok(XgbModel {
        trees,
        num_features,
        feature_names,
        objective,
        base_margin,
        transform,
    })
}

fn parse_tree(tree: &Value, num_features: usize) -> Result<XgbTree, String> {
    let tree = JsonTree::deserialize(tree).map_err(|e| e.to_string())?;
    if let Some(size) = tree.tree_param.and_then(|p| p.size_leaf_vector)
        && !matches!(size.trim(), "0" | "1")
    {
        return Err("vector leaves (multi-target trees) are not supported".into());
    }
    let n = tree.left_children.len();
    for (what, len) in [
        ("right_children", tree.right_children.len()),
        ("split_indices", tree.split_indices.len()),
        ("split_conditions", tree.split_conditions.len()),
        ("default_left", tree.default_left.len()),
    ] {
        if len != n {
            return Err(format!("{what} has {len} entries, left_children {n}"));
        }
    }
    if n == 0 {
        return Err("no nodes".into());
    }
    if tree.split_type.iter().any(|&t| t != 0) {
        return Err("categorical splits are not supported".into());
    }
    let mut feature = Vec::with_capacity(n);
    for (i, &f) in tree.split_indices.iter().enumerate() {
        let is_split = tree.left_children[i] != -1;
        match usize::try_from(f) {
            Ok(f) if !is_split || f < num_features => feature.push(f),
            _ if !is_split => feature.push(0),
            _ => {
                return Err(format!(
                    "node {i} splits on feature {f}, but the model has {num_features} features"
                ));
            }
        }
    }
    let default_left = tree
        .default_left
        .iter()
        .map(|v| match v {
            Value::Bool(b) => Ok(*b),
            Value::Number(n) => Ok(n.as_f64() != Some(0.0)),
            other => Err(format!("default_left entry {other} is not a flag")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(XgbTree {
        left: tree.left_children,
        right: tree.right_children,
        feature,
        value: tree.split_conditions.iter().map(|&v| v as f32).collect(),
        default_left,
    })
}

/// XGBoost writes `base_score` as a string: `"5E-1"`, or from 3.1 on a vector
/// `"[5E-1]"` (one entry per target).
fn parse_base_score(text: &str) -> Result<f32, String> {
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    let mut values = inner.split(',').map(str::trim).filter(|s| !s.is_empty());
    let first = values
        .next()
        .ok_or_else(|| format!("base_score {text:?} is empty"))?;
    if values.next().is_some() {
        return Err(format!(
            "base_score {text:?} has several entries (multi-target models are not supported)"
        ));
    }
    first
        .parse::<f32>()
        .map_err(|_| format!("base_score {text:?} is not a number"))
}

/// The inverse link XGBoost applies to `base_score` (`ProbToMargin`), in f32 as XGBoost.
#[derive(Debug, Clone, Copy)]
enum Link {
    Identity,
    Logit,
    Log,
}

impl Link {
    fn margin(self, base_score: f32) -> f32 {
        match self {
            Link::Identity => base_score,
            Link::Logit => -(1.0 / base_score - 1.0).ln(),
            Link::Log => base_score.ln(),
        }
    }
}

fn objective_link(objective: &str) -> Result<(Transform, Link), String> {
    Ok(match objective {
        "reg:squarederror"
        | "reg:linear"
        | "reg:squaredlogerror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror" => (Transform::Identity, Link::Identity),
        "reg:logistic" | "binary:logistic" => (Transform::Sigmoid { scale: 1.0 }, Link::Logit),
        "binary:logitraw" => (Transform::Identity, Link::Logit),
        "count:poisson" | "reg:gamma" | "reg:tweedie" => (Transform::Exp, Link::Log),
        other => {
            return Err(format!(
                "objective {other:?} is not supported (regression and binary objectives are)"
            ));
        }
    })
}

impl XgbModel {
    /// Compile to the evaluator's flat forest.
    pub(crate) fn compile(&self) -> Result<Forest, String> {
        let trees = self.trees.iter().map(XgbTree::raw_nodes).collect();
        Forest::build(
            trees,
            ForestParams {
                num_features: self.num_features,
                accumulation: Accumulation::F32,
                base_score: f64::from(self.base_margin),
                transform: self.transform,
                average: false,
            },
        )
    }
}

impl XgbTree {
    pub(crate) fn is_leaf(&self, node: usize) -> bool {
        self.left[node] == -1
    }

    fn raw_nodes(&self) -> Vec<RawNode> {
        (0..self.left.len())
            .map(|i| {
                if self.is_leaf(i) {
                    RawNode::Leaf(f64::from(self.value[i]))
                } else {
                    RawNode::Branch {
                        feature: self.feature[i],
                        split: Split::Numeric {
                            threshold: f32_less_than_as_f64_le(self.value[i]),
                            default_left: self.default_left[i],
                        },
                        // a negative child (other than a leaf's -1) is out of range
                        left: usize::try_from(self.left[i]).unwrap_or(usize::MAX),
                        right: usize::try_from(self.right[i]).unwrap_or(usize::MAX),
                    }
                }
            })
            .collect()
    }
}
