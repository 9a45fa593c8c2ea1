//! Errors in a pipeline file, each pointing at the place to fix.

use std::fmt;

/// A position in a pipeline file: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

/// One problem found in a pipeline file.
///
/// Shown as
/// ```text
/// pipeline.yaml:12:5: node `means_10s`: unknown key `sise`
///   hint: did you mean `size`?
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: String,
    /// Where in the file.
    pub at: Location,
    /// The node the problem belongs to, if any.
    pub node: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with no node and no hint yet; `file` is filled in by the caller
    /// that knows it (see [`Diagnostic::in_file`]).
    pub fn new(at: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            file: String::new(),
            at,
            node: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Attach the node's name.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Attach a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.with_hint(hint);
        self
    }

    /// Attach a hint to a diagnostic already reported (see
    /// [`PlanContext::error`](crate::node::PlanContext::error)).
    pub fn with_hint(&mut self, hint: impl Into<String>) {
        self.hint = Some(hint.into());
    }

    /// Set the file name.
    pub fn in_file(mut self, file: impl Into<String>) -> Self {
        self.file = file.into();
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.at.line, self.at.column)?;
        if let Some(node) = &self.node {
            write!(f, "node `{node}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a pipeline file, in file order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// The closest candidate to `word` by edit distance, if it is close enough to be a
/// plausible typo. Used for "did you mean …?" hints.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// One diagnostic per problem in a shared setting: a value under `connections:` (or an
/// anchor) is read by every node using it, and an unset variable there is one problem,
/// not one per node. The first node keeps it; the hint names the others.
pub(crate) fn collapse_shared(errors: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(errors.len());
    let mut also: Vec<Vec<String>> = Vec::new();
    for d in errors {
        let same = out.iter().position(|o| {
            o.at == d.at && o.file == d.file && o.message == d.message && o.hint == d.hint
        });
        match (same, d.node) {
            (Some(i), Some(node)) => also[i].push(node),
            (_, node) => {
                out.push(Diagnostic { node, ..d });
                also.push(Vec::new());
            }
        }
    }
    for (d, others) in out.iter_mut().zip(also) {
        if !others.is_empty() {
            let names = others
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let (nodes, verb) = if others.len() == 1 {
                ("node", "uses")
            } else {
                ("nodes", "use")
            };
            let also = format!("{nodes} {names} {verb} it too");
            d.hint = Some(match d.hint.take() {
                // "… (from connection `influx`; node `b` uses it too)"
                Some(hint) if hint.ends_with("`)") && hint.contains("(from connection `") => {
                    format!("{}; {also})", &hint[..hint.len() - 1])
                }
                Some(hint) => format!("{hint} ({also})"),
                None => also,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_finds_typos_only() {
        assert_eq!(closest("sise", ["size", "lateness"]), Some("size"));
        assert_eq!(
            closest("window_maen", ["window_mean", "decode"]),
            Some("window_mean")
        );
        assert_eq!(closest("zzzz", ["size", "lateness"]), None);
    }
}
