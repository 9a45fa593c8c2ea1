//! Gradient-boosted tree models: the pure-Rust evaluator lands here with the prediction issue.
