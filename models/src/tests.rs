//! Edge cases of loading and evaluating small hand-written models. The expected values
//! follow the libraries' documented rules, computed here by hand.

use super::*;

/// An XGBoost JSON model from per-tree arrays (node 0 the root, -1 for a leaf).
fn xgb_json(objective: &str, base_score: &str, trees: &[serde_json::Value], names: bool) -> String {
    let feature_names = if names { r#"["a","b"]"# } else { "[]" };
    format!(
        r#"{{"learner":{{"attributes":{{}},"feature_names":{feature_names},"feature_types":[],
        "gradient_booster":{{"model":{{"gbtree_model_param":{{"num_parallel_tree":"1","num_trees":"{n}"}},
        "tree_info":[],"trees":{trees}}},"name":"gbtree"}},
        "learner_model_param":{{"base_score":"{base_score}","boost_from_average":"1","num_class":"0","num_feature":"2","num_target":"1"}},
        "objective":{{"name":"{objective}","reg_loss_param":{{"scale_pos_weight":"1"}}}}}},"version":[3,2,0]}}"#,
        n = trees.len(),
        trees = serde_json::Value::Array(trees.to_vec()),
    )
}

/// A stump on feature `f`: left leaf `l`, right leaf `r`.
fn xgb_stump(f: i64, threshold: f64, default_left: bool, l: f64, r: f64) -> serde_json::Value {
    serde_json::json!({
        "left_children": [1, -1, -1], "right_children": [2, -1, -1],
        "split_indices": [f, 0, 0], "split_conditions": [threshold, l, r],
        "default_left": [default_left as i64, 0, 0], "split_type": [0, 0, 0],
        "base_weights": [0, 0, 0], "parents": [2147483647, 0, 0],
        "tree_param": {"num_nodes": "3", "size_leaf_vector": "0", "num_feature": "2"}
    })
}

fn xgb_leaf(value: f64) -> serde_json::Value {
    serde_json::json!({
        "left_children": [-1], "right_children": [-1], "split_indices": [0],
        "split_conditions": [value], "default_left": [false], "split_type": [0],
        "tree_param": {"num_nodes": "1", "size_leaf_vector": "0", "num_feature": "2"}
    })
}

#[test]
fn xgboost_split_rule_is_f32_less_than() {
    let model = Model::parse(
        xgb_json(
            "reg:squarederror",
            "[5E-1]",
            &[xgb_stump(1, 0.1, true, 1.0, 2.0)],
            true,
        )
        .as_bytes(),
    )
    .unwrap();
    let t = 0.1_f32;
    // rows that round to the f32 threshold are not below it, though below 0.1 in f64
    assert_eq!(model.predict(&[0.0, f64::from(t)]), 2.5);
    assert_eq!(model.predict(&[0.0, f64::from(t) - 1e-12]), 2.5);
    assert_eq!(model.predict(&[0.0, f64::from(t.next_down())]), 1.5);
    assert_eq!(model.predict(&[0.0, f64::NAN]), 1.5);
    assert_eq!(model.predict(&[0.0]), 1.5, "past the end is missing");
    assert_eq!(model.feature_names().unwrap(), ["a", "b"]);
    let info = model.info();
    assert_eq!(info.format, ModelFormat::XGBoostJson);
    assert_eq!(info.base_score, 0.5);
    assert_eq!(info.trees, 1);
}

#[test]
fn xgboost_nan_goes_right_when_default_right() {
    let model = Model::parse(
        xgb_json(
            "reg:squarederror",
            "0",
            &[xgb_stump(0, 1.0, false, -1.0, 1.0)],
            false,
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(model.predict(&[f64::NAN, 0.0]), 1.0);
    assert_eq!(model.predict(&[0.5, 0.0]), -1.0);
    assert!(model.feature_names().is_none());
    assert_eq!(model.num_features(), 2);
}

#[test]
fn xgboost_single_leaf_tree_and_f32_sum() {
    // f32 summation: 1e8 + 1 + 1 stays 1e8 in f32 (it would be 100000002 in f64)
    let model = Model::parse(
        xgb_json(
            "reg:squarederror",
            "1E8",
            &[xgb_leaf(1.0), xgb_leaf(1.0)],
            true,
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!(model.predict(&[]), 1e8);
}

#[test]
fn xgboost_logistic_base_score_is_a_probability() {
    // base_score 0.8 is the margin logit(0.8); with a zero tree the output is 0.8 again
    let model =
        Model::parse(xgb_json("binary:logistic", "8E-1", &[xgb_leaf(0.0)], true).as_bytes())
            .unwrap();
    let margin = -(1.0_f32 / 0.8 - 1.0).ln();
    assert_eq!(model.info().base_score, f64::from(margin));
    assert!((model.predict(&[]) - 0.8).abs() < 1e-6);
    // log link: the margin is ln(base_score), the output exp(margin + leaf)
    let model =
        Model::parse(xgb_json("count:poisson", "2", &[xgb_leaf(1.0)], true).as_bytes()).unwrap();
    assert!((model.predict(&[]) - 2.0 * 1f64.exp()).abs() < 1e-5);
}

#[test]
fn xgboost_unsupported_features_are_clear_errors() {
    let multi = xgb_json("multi:softprob", "0.5", &[xgb_leaf(0.0)], true);
    let e = Model::parse(multi.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("multi:softprob"), "{e}");

    let mut categorical = xgb_stump(0, 1.0, true, 0.0, 1.0);
    categorical["split_type"] = serde_json::json!([1, 0, 0]);
    let e = Model::parse(xgb_json("reg:squarederror", "0", &[categorical], true).as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("tree 0") && e.contains("categorical"), "{e}");

    let bad_feature = xgb_stump(7, 1.0, true, 0.0, 1.0);
    let e = Model::parse(xgb_json("reg:squarederror", "0", &[bad_feature], true).as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("feature 7") && e.contains("2 features"), "{e}");

    let mut short = xgb_stump(0, 1.0, true, 0.0, 1.0);
    short["right_children"] = serde_json::json!([2, -1]);
    let e = Model::parse(xgb_json("reg:squarederror", "0", &[short], true).as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("right_children"), "{e}");

    let mut cyclic = xgb_stump(0, 1.0, true, 0.0, 1.0);
    cyclic["left_children"] = serde_json::json!([0, -1, -1]);
    assert!(Model::parse(xgb_json("reg:squarederror", "0", &[cyclic], true).as_bytes()).is_err());
}

fn lgb_text(objective: &str, trees: &str) -> String {
    format!(
        "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\n\
         objective={objective}\nfeature_names=x y\nfeature_infos=[0:1] [0:1]\ntree_sizes=1 1\n\n\
         {trees}end of trees\n\nfeature_importances:\n\nparameters:\nend of parameters\n"
    )
}

/// A LightGBM stump on feature 0 with the given threshold and decision type.
fn lgb_stump(number: usize, threshold: &str, decision_type: u8) -> String {
    format!(
        "Tree={number}\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nsplit_gain=1\n\
         threshold={threshold}\ndecision_type={decision_type}\nleft_child=-1\nright_child=-2\n\
         leaf_value=-1 1\nleaf_weight=1 1\nleaf_count=1 1\ninternal_value=0\ninternal_weight=0\n\
         internal_count=2\nis_linear=0\nshrinkage=1\n\n\n"
    )
}

#[test]
fn lightgbm_missing_types() {
    let nan = f64::NAN;
    // (decision_type, threshold, [(row value, expected leaf)])
    type Case<'a> = (u8, &'a str, &'a [(f64, f64)]);
    let cases: &[Case<'_>] = &[
        // missing type NaN, default left / right
        (
            8 | 2,
            "0.5",
            &[(nan, -1.0), (0.5, -1.0), (0.6, 1.0), (0.0, -1.0)],
        ),
        (8, "0.5", &[(nan, 1.0), (0.5, -1.0), (0.6, 1.0)]),
        // missing type Zero: 0 and NaN take the default side whatever the threshold
        (
            4 | 2,
            "-0.5",
            &[
                (nan, -1.0),
                (0.0, -1.0),
                (1e-36, -1.0),
                (-0.7, -1.0),
                (0.1, 1.0),
            ],
        ),
        (4, "0.5", &[(nan, 1.0), (0.0, 1.0), (0.3, -1.0), (0.7, 1.0)]),
        // missing type None: NaN is 0 (default_left is ignored)
        (2, "-0.5", &[(nan, 1.0), (0.0, 1.0), (-0.7, -1.0)]),
        (0, "0.5", &[(nan, -1.0), (0.0, -1.0), (0.7, 1.0)]),
        // values within 1e-35 of zero are zero
        (8, "1e-40", &[(5e-36, -1.0), (-5e-36, -1.0), (2e-35, 1.0)]),
    ];
    for (decision_type, threshold, rows) in cases {
        let text = lgb_text("regression", &lgb_stump(0, threshold, *decision_type));
        let model = Model::parse(text.as_bytes()).unwrap();
        for (value, expected) in rows.iter() {
            assert_eq!(
                model.predict(&[*value, 0.0]),
                *expected,
                "decision_type {decision_type}, threshold {threshold}, value {value}"
            );
        }
    }
}

#[test]
fn lightgbm_single_leaf_tree_objective_and_average() {
    let trees = format!(
        "{}Tree=1\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nsplit_gain=\nthreshold=\n\
         decision_type=\nleft_child=\nright_child=\nleaf_value=0.25\nleaf_weight=\n\
         leaf_count=\ninternal_value=\ninternal_weight=\ninternal_count=\nis_linear=0\n\
         shrinkage=1\n\n\n",
        lgb_stump(0, "0.5", 10)
    );
    let model = Model::parse(lgb_text("regression", &trees).as_bytes()).unwrap();
    assert_eq!(model.predict(&[0.0]), -0.75);
    assert_eq!(model.info().trees, 2);
    assert_eq!(model.feature_names().unwrap(), ["x", "y"]);
    assert_eq!(model.info().accumulation, Accumulation::F64);

    let model = Model::parse(lgb_text("binary sigmoid:2", &trees).as_bytes()).unwrap();
    let expected = 1.0 / (1.0 + (-2.0 * 1.25_f64).exp());
    assert!((model.predict(&[1.0]) - expected).abs() < 1e-15);

    let averaged =
        lgb_text("regression", &trees).replace("tree_sizes", "average_output\ntree_sizes");
    let model = Model::parse(averaged.as_bytes()).unwrap();
    assert_eq!(model.predict(&[1.0]), 0.625);
}

#[test]
fn lightgbm_categorical_split() {
    // categories {0, 3} go left; the set index is the threshold
    let tree = "Tree=0\nnum_leaves=2\nnum_cat=1\nsplit_feature=1\nsplit_gain=1\nthreshold=0\n\
                decision_type=1\nleft_child=-1\nright_child=-2\nleaf_value=-1 1\n\
                cat_boundaries=0 1\ncat_threshold=9\nis_linear=0\nshrinkage=1\n\n\n";
    let model = Model::parse(lgb_text("regression", tree).as_bytes()).unwrap();
    for (value, expected) in [
        (0.0, -1.0),
        (3.0, -1.0),
        (3.5, -1.0),
        (1.0, 1.0),
        (-3.0, 1.0),
        (f64::NAN, 1.0),
        (40.0, 1.0),
    ] {
        assert_eq!(model.predict(&[0.0, value]), expected, "{value}");
    }
}

#[test]
fn lightgbm_damaged_models_are_clear_errors() {
    let good = lgb_text("regression", &lgb_stump(0, "0.5", 10));
    let cases = [
        (
            good.replace("split_feature=0", "split_feature=5"),
            "feature 5",
        ),
        (
            good.replace("leaf_value=-1 1", "leaf_value=-1"),
            "leaf_value",
        ),
        (good.replace("threshold=0.5", "threshold=abc"), "threshold"),
        (good.replace("num_class=1", "num_class=3"), "num_class"),
        (
            good.replace("objective=regression", "objective=multiclass num_class:3"),
            "multiclass",
        ),
        (
            good.replace("right_child=-2", "right_child=-9"),
            "out of range",
        ),
        (good.replace("is_linear=0", "is_linear=1"), "linear"),
        (good.replace("end of trees", ""), "cut short"),
        (
            good.replace("feature_names=x y", "feature_names=x"),
            "feature_names",
        ),
    ];
    for (text, needle) in cases {
        let e = Model::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("LightGBM") && e.contains(needle),
            "{needle}: {e}"
        );
    }
}

#[test]
fn garbage_is_not_a_model() {
    let inputs: [&[u8]; 6] = [
        b"",
        b"hello world",
        b"{\"foo\": 1}",
        b"{\"learner\": ",
        b"\xff\xfe\x00garbage",
        b"tree\nversion=v4\n",
    ];
    for input in inputs {
        assert!(Model::parse(input).is_err(), "{input:?}");
    }
    let e = Model::parse(b"hello world").unwrap_err().to_string();
    assert!(
        e.contains("not a model") && e.contains("hello world"),
        "{e}"
    );
}

#[test]
fn from_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.json");
    std::fs::write(&path, "{\"learner\": {}}").unwrap();
    let e = Model::from_file(&path).unwrap_err().to_string();
    assert!(
        e.contains("broken.json") && e.contains("XGBoost JSON"),
        "{e}"
    );
    let e = Model::from_file(&dir.path().join("absent.txt"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.txt"), "{e}");
}

#[test]
fn fingerprint_is_fnv1a_of_the_bytes() {
    // FNV-1a 64 test vectors
    assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
    assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    let text = lgb_text("regression", &lgb_stump(0, "0.5", 10));
    let model = Model::parse(text.as_bytes()).unwrap();
    assert_eq!(model.fingerprint(), fnv1a64(text.as_bytes()));
    let other = Model::parse(text.replace("0.5", "0.25").as_bytes()).unwrap();
    assert_ne!(model.fingerprint(), other.fingerprint());
}

#[test]
fn feature_count_mismatch_is_handled() {
    let model = Model::parse(
        xgb_json(
            "reg:squarederror",
            "0",
            &[xgb_stump(1, 1.0, false, -1.0, 1.0)],
            true,
        )
        .as_bytes(),
    )
    .unwrap();
    // too few: the rest is missing (NaN goes right here); too many: the extra is ignored
    assert_eq!(model.predict(&[0.0]), 1.0);
    assert_eq!(model.predict(&[]), 1.0);
    assert_eq!(model.predict(&[0.0, 0.5, -100.0, f64::NAN]), -1.0);
}

#[test]
fn model_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone>() {}
    check::<Model>();
}
