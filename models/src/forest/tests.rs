use super::*;
use crate::threshold::f32_less_than_as_f64_le;
use crate::xorshift::xorshift;

fn params(num_features: usize) -> ForestParams {
    ForestParams {
        num_features,
        accumulation: Accumulation::F64,
        base_score: 0.0,
        transform: Transform::Identity,
        average: false,
    }
}

fn stump(split: Split) -> Vec<RawNode> {
    vec![
        RawNode::Branch {
            feature: 0,
            split,
            left: 1,
            right: 2,
        },
        RawNode::Leaf(-1.0),
        RawNode::Leaf(1.0),
    ]
}

#[test]
fn nan_follows_default_direction() {
    for default_left in [true, false] {
        let forest = Forest::build(
            vec![stump(Split::Numeric {
                threshold: 0.5,
                default_left,
            })],
            params(1),
        )
        .unwrap();
        let expected = if default_left { -1.0 } else { 1.0 };
        assert_eq!(forest.predict(&[f64::NAN]), expected);
        // a value past the row's end is missing too
        assert_eq!(forest.predict(&[]), expected);
        assert_eq!(forest.predict(&[0.5]), -1.0);
        assert_eq!(forest.predict(&[0.5_f64.next_up()]), 1.0);
        assert_eq!(forest.predict(&[f64::INFINITY]), 1.0);
        assert_eq!(forest.predict(&[f64::NEG_INFINITY]), -1.0);
    }
}

#[test]
fn zero_missing_sends_zero_and_nan_to_default() {
    for default_left in [true, false] {
        let forest = Forest::build(
            vec![stump(Split::ZeroMissing {
                threshold: -0.5,
                default_left,
            })],
            params(1),
        )
        .unwrap();
        let default = if default_left { -1.0 } else { 1.0 };
        for missing in [f64::NAN, 0.0, -0.0, 1e-36, -LIGHTGBM_ZERO] {
            assert_eq!(forest.predict(&[missing]), default, "{missing}");
        }
        assert_eq!(forest.predict(&[-0.7]), -1.0);
        assert_eq!(forest.predict(&[1e-30]), 1.0);
    }
}

#[test]
fn categorical_membership() {
    // categories 1 and 33 go left
    let forest = Forest::build(
        vec![stump(Split::Categorical {
            bits: vec![0b10, 0b10],
        })],
        params(1),
    )
    .unwrap();
    assert_eq!(forest.predict(&[1.0]), -1.0);
    assert_eq!(forest.predict(&[1.9]), -1.0);
    assert_eq!(forest.predict(&[33.0]), -1.0);
    for right in [0.0, 2.0, 32.0, 64.0, 1e12, -1.0, f64::NAN] {
        assert_eq!(forest.predict(&[right]), 1.0, "{right}");
    }
}

#[test]
fn single_leaf_tree_and_uneven_depths() {
    let deep = vec![
        RawNode::Branch {
            feature: 1,
            split: Split::Numeric {
                threshold: 0.0,
                default_left: false,
            },
            left: 1,
            right: 2,
        },
        RawNode::Leaf(10.0),
        RawNode::Branch {
            feature: 0,
            split: Split::Numeric {
                threshold: 5.0,
                default_left: true,
            },
            left: 3,
            right: 4,
        },
        RawNode::Leaf(20.0),
        RawNode::Leaf(30.0),
    ];
    let forest = Forest::build(vec![vec![RawNode::Leaf(0.25)], deep], params(2)).unwrap();
    assert_eq!(forest.predict(&[0.0, -1.0]), 10.25);
    assert_eq!(forest.predict(&[5.0, 1.0]), 20.25);
    assert_eq!(forest.predict(&[6.0, 1.0]), 30.25);
    assert_eq!(forest.predict(&[f64::NAN, f64::NAN]), 20.25);
}

#[test]
fn malformed_trees_are_rejected() {
    let cyclic = vec![RawNode::Branch {
        feature: 0,
        split: Split::Numeric {
            threshold: 0.0,
            default_left: true,
        },
        left: 0,
        right: 0,
    }];
    assert!(Forest::build(vec![cyclic], params(1)).is_err());
    let out_of_range = stump(Split::Numeric {
        threshold: 0.0,
        default_left: true,
    });
    let e = Forest::build(vec![out_of_range], params(0)).unwrap_err();
    assert!(e.contains("feature 0"), "{e}");
    assert!(Forest::build(vec![vec![]], params(1)).is_err());
}

#[test]
fn wide_rows_use_the_slice_path() {
    let mut tree = stump(Split::Numeric {
        threshold: 0.5,
        default_left: true,
    });
    if let RawNode::Branch { feature, .. } = &mut tree[0] {
        *feature = 299;
    }
    let forest = Forest::build(vec![tree], params(300)).unwrap();
    let mut row = vec![0.0; 300];
    assert_eq!(forest.predict(&row), -1.0);
    row[299] = 1.0;
    assert_eq!(forest.predict(&row), 1.0);
    assert_eq!(forest.predict(&row[..10]), -1.0);
}

#[test]
fn fast_encoding_agrees_with_the_general_walk() {
    // random complete trees of depth 1..=5 with random default sides; the same
    // trees plus a categorical tree of zero leaves (which forces the general walk)
    let mut next = xorshift(0x2545f4914f6cdd1d_u64);
    let features = 5;
    let mut trees = Vec::new();
    for _ in 0..40 {
        let depth = 1 + next() % 5;
        let internal = (1usize << depth) - 1;
        let mut tree = Vec::new();
        for i in 0..internal {
            tree.push(RawNode::Branch {
                feature: (next() % features) as usize,
                split: Split::Numeric {
                    threshold: (next() % 200) as f64 / 10.0 - 10.0,
                    default_left: next().is_multiple_of(2),
                },
                left: 2 * i + 1,
                right: 2 * i + 2,
            });
        }
        for _ in 0..=internal {
            tree.push(RawNode::Leaf((next() % 1000) as f64 / 7.0));
        }
        trees.push(tree);
    }
    let fast = Forest::build(trees.clone(), params(features as usize)).unwrap();
    assert!(fast.fast);
    trees.push(vec![
        RawNode::Branch {
            feature: 0,
            split: Split::Categorical { bits: vec![1] },
            left: 1,
            right: 2,
        },
        RawNode::Leaf(0.0),
        RawNode::Leaf(0.0),
    ]);
    let general = Forest::build(trees, params(features as usize)).unwrap();
    assert!(!general.fast);
    for _ in 0..5000 {
        let row: Vec<f64> = (0..features)
            .map(|_| match next() % 10 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                _ => (next() % 220) as f64 / 10.0 - 11.0,
            })
            .collect();
        let len = (next() % (features + 2)) as usize;
        let row = &row[..len.min(row.len())];
        assert_eq!(fast.predict(row), general.predict(row), "{row:?}");
    }
}

/// A random tree of depth at most `max_depth` (leaves at every level), with f32
/// boundaries as thresholds, so that it fits the compact layout.
fn random_f32_tree(next: &mut impl FnMut() -> u64, features: u64, max_depth: u32) -> Vec<RawNode> {
    fn grow(
        tree: &mut Vec<RawNode>,
        next: &mut impl FnMut() -> u64,
        features: u64,
        levels: u32,
    ) -> usize {
        let at = tree.len();
        if levels == 0 || next().is_multiple_of(8) {
            tree.push(RawNode::Leaf((next() % 2000) as f64 / 7.0 - 140.0));
            return at;
        }
        tree.push(RawNode::Leaf(0.0));
        let threshold = f32_less_than_as_f64_le((next() % 200) as f32 / 10.0 - 10.0);
        let split = Split::Numeric {
            threshold,
            default_left: next().is_multiple_of(2),
        };
        let feature = (next() % features) as usize;
        let left = grow(tree, next, features, levels - 1);
        let right = grow(tree, next, features, levels - 1);
        tree[at] = RawNode::Branch {
            feature,
            split,
            left,
            right,
        };
        at
    }
    let mut tree = Vec::new();
    grow(&mut tree, next, features, max_depth);
    tree
}

#[test]
fn compact_layout_agrees_with_the_flat_one() {
    let mut next = xorshift(0x9e3779b97f4a7c15_u64);
    let features = 6;
    // 29 trees: two full lock-step groups and one with spare lanes
    let mut trees: Vec<_> = (0..28)
        .map(|_| random_f32_tree(&mut next, features, 5))
        .collect();
    trees.push(vec![RawNode::Leaf(0.125)]);
    for accumulation in [Accumulation::F32, Accumulation::F64] {
        let params = || ForestParams {
            accumulation,
            base_score: 0.5,
            ..params(features as usize)
        };
        let forest = Forest::build(trees.clone(), params()).unwrap();
        assert!(forest.complete.is_some());
        let flat = Forest::build_flat(&trees, params()).unwrap();
        assert!(flat.complete.is_none());
        for _ in 0..5000 {
            let row: Vec<f64> = (0..features)
                .map(|_| match next() % 12 {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => f64::NEG_INFINITY,
                    3 => -0.0,
                    4 => 1e300,
                    // exactly on a threshold, and on the f32 rounding boundary
                    5 => f64::from((next() % 200) as f32 / 10.0 - 10.0),
                    6 => f32_less_than_as_f64_le((next() % 200) as f32 / 10.0 - 10.0),
                    _ => (next() % 2200) as f64 / 100.0 - 11.0,
                })
                .collect();
            let len = (next() % (features + 2)) as usize;
            let row = &row[..len.min(row.len())];
            assert_eq!(
                forest.predict(row).to_bits(),
                flat.predict(row).to_bits(),
                "{accumulation:?} {row:?}"
            );
        }
    }
}

#[test]
fn compact_layout_only_where_it_fits() {
    let stump = |threshold| {
        stump(Split::Numeric {
            threshold,
            default_left: true,
        })
    };
    let boundary = f32_less_than_as_f64_le(0.5);
    let f32_forest = Forest::build(vec![stump(boundary)], params(1)).unwrap();
    assert!(f32_forest.complete.is_some());
    // an f64 threshold that no f32 comparison reproduces
    let f64_forest = Forest::build(vec![stump(0.5)], params(1)).unwrap();
    assert!(f64_forest.complete.is_none());
    assert_eq!(f64_forest.predict(&[0.5]), -1.0);
    assert_eq!(f32_forest.predict(&[0.5]), 1.0);
    // a chain of depth 9
    let mut deep = Vec::new();
    for i in 0..9 {
        deep.push(RawNode::Branch {
            feature: 0,
            split: Split::Numeric {
                threshold: f32_less_than_as_f64_le(i as f32),
                default_left: true,
            },
            left: 2 * i + 1,
            right: 2 * i + 2,
        });
        deep.push(RawNode::Leaf(i as f64));
    }
    deep.push(RawNode::Leaf(9.0));
    let deep_forest = Forest::build(vec![deep.clone()], params(1)).unwrap();
    assert!(deep_forest.complete.is_none());
    assert_eq!(deep_forest.predict(&[4.5]), 5.0);
    // a deep tree among stumps: every tree of its group would be padded to its depth
    deep.truncate(2 * 6);
    deep.push(RawNode::Leaf(6.0));
    let mut trees = vec![deep];
    trees.extend((0..11).map(|_| stump(boundary)));
    let padded = Forest::build(trees, params(1)).unwrap();
    assert!(padded.complete.is_none());
}

#[test]
fn spare_lanes_leave_a_negative_zero_sum() {
    for trees in [1, 12, 13] {
        let forest = Forest::build(
            vec![vec![RawNode::Leaf(-0.0)]; trees],
            ForestParams {
                accumulation: Accumulation::F32,
                base_score: -0.0,
                ..params(1)
            },
        )
        .unwrap();
        assert!(forest.complete.is_some());
        assert_eq!(forest.predict(&[1.0]).to_bits(), (-0.0_f64).to_bits());
    }
}
