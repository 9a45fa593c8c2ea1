//! YAML merge keys: `<<: *defaults` (or `<<: [*a, *b]`) in a mapping adds the keys of
//! the merged mappings that the mapping does not set itself, as in YAML 1.1 and most
//! YAML tools. Merged values keep the positions where they are written (under the
//! anchor), so a problem with one points there.

use crate::diagnostic::Diagnostic;
use crate::spec::Spanned;

use super::{Node, NodeValue};

/// The merge key.
const MERGE: &str = "<<";

/// `entries` with each `<<` replaced by the keys it merges that the mapping does not
/// set itself; of several merged mappings, the first to set a key wins. Problems (a
/// `<<` whose value is not a mapping or a list of mappings) are pushed.
pub(super) fn merge_keys(
    entries: Vec<(Spanned<String>, Node)>,
    problems: &mut Vec<Diagnostic>,
) -> Vec<(Spanned<String>, Node)> {
    if !entries.iter().any(|(k, _)| k.value == MERGE) {
        return entries;
    }
    let own: Vec<String> = entries
        .iter()
        .filter(|(k, _)| k.value != MERGE)
        .map(|(k, _)| k.value.clone())
        .collect();
    let mut merged = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        if key.value != MERGE {
            merged.push((key, value));
            continue;
        }
        let sources: Vec<Node> = match value.value {
            NodeValue::Mapping(_) => vec![value],
            NodeValue::Sequence(items) => items,
            _ => vec![value],
        };
        for source in sources {
            let NodeValue::Mapping(source_entries) = source.value else {
                problems.push(
                    Diagnostic::new(
                        source.at,
                        format!(
                            "`<<` merges a mapping or a list of mappings, not {}",
                            source.describe()
                        ),
                    )
                    .hint("write `<<: *name` where `&name` marks a mapping, or `<<: [*a, *b]`"),
                );
                continue;
            };
            for (k, v) in source_entries {
                let taken = own.contains(&k.value)
                    || merged
                        .iter()
                        .any(|(m, _): &(Spanned<String>, Node)| m.value == k.value);
                if !taken {
                    merged.push((k, v));
                }
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use crate::spec::yaml::{Node, NodeValue};

    fn scalar<'a>(node: &'a Node, key: &str) -> (&'a str, usize) {
        let value = node.get(key).unwrap_or_else(|| panic!("no key {key}"));
        match &value.value {
            NodeValue::Scalar { text, .. } => (text, value.at.line),
            other => panic!("{key} is {other:?}"),
        }
    }

    #[test]
    fn own_keys_win_then_the_first_merged_mapping() {
        let text = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 3\n";
        let root = Node::parse(text).expect("valid");
        let c = root.get("c").expect("c");
        assert_eq!(scalar(c, "x"), ("3", 5), "the mapping's own key wins");
        assert_eq!(scalar(c, "y"), ("1", 1), "the first merged mapping wins");
        assert_eq!(
            scalar(c, "z"),
            ("2", 2),
            "merged values keep where they are written"
        );
        assert!(c.get("<<").is_none());
    }

    #[test]
    fn merging_something_else_is_located() {
        let problems = Node::parse("a: &a 5\nc:\n  <<: *a\n").expect_err("a scalar");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].at.line, 3);
        assert!(
            problems[0].message.contains("merges a mapping"),
            "{}",
            problems[0].message
        );
    }
}
