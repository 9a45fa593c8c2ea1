//! The deserializer's error: serde's error constructors, the problems they describe
//! (several at once, for all the unknown keys of a mapping), their positions and the
//! messages and hints they become.
//!
//! Kept apart from the deserializers because it is the one part that knows the
//! wording: the deserializers only raise problems and say where they happened.

use std::fmt;

use serde::de::{self, Expected, Unexpected};

use crate::diagnostic::{Diagnostic, Location, closest};
use crate::spec::env::{EnvError, substitute};
use crate::spec::yaml::{Node, NodeValue};
use crate::spec::{Env, Spanned};

/// Separates a message from its hint in a custom error's text.
const HINT_MARK: &str = "\nhint: ";

/// A deserialization error with a hint, for hand-written `Deserialize` impls of config
/// types: `Err(error_with_hint("unknown format", "use clemap or json"))`.
///
/// Read from a pipeline file, the message and hint become a diagnostic at the value's
/// position; through other deserializers the text is `message` and `hint: …` on a second
/// line. (Any custom error text containing `"\nhint: "` is split the same way.)
pub fn error_with_hint<E: de::Error>(message: &str, hint: &str) -> E {
    E::custom(format_args!("{message}{HINT_MARK}{hint}"))
}

/// The error type of the deserializer: one or more problems, each located once known.
#[derive(Debug)]
pub(crate) struct Error {
    problems: Vec<Problem>,
}

#[derive(Debug)]
struct Problem {
    kind: Kind,
    /// `None` until the error passes the node it belongs to.
    at: Option<Location>,
    /// The scalar at fault as written (for messages), if the problem is at a scalar.
    raw: Option<Raw>,
    hint: Option<String>,
}

#[derive(Debug, Clone)]
struct Raw {
    text: String,
    /// Whether substitution changed it (so the message should say so).
    substituted: bool,
}

#[derive(Debug)]
pub(super) enum Kind {
    /// A finished message, printed as is.
    Plain(String),
    /// From [`de::Error::custom`]: prefixed with the value at fault.
    Custom(String),
    InvalidType {
        found: String,
        expected: String,
    },
    InvalidValue {
        expected: String,
    },
    InvalidLength {
        len: usize,
        expected: String,
    },
    UnknownField {
        field: String,
        expected: &'static [&'static str],
    },
    UnknownVariant {
        variant: String,
        expected: &'static [&'static str],
    },
    MissingField(&'static str),
    DuplicateField(&'static str),
}

impl Error {
    pub(super) fn new(kind: Kind, hint: Option<String>) -> Self {
        Error {
            problems: vec![Problem {
                kind,
                at: None,
                raw: None,
                hint,
            }],
        }
    }

    /// An environment substitution problem in the scalar `raw` at `at`.
    pub(super) fn env(at: Location, raw: &str, error: &EnvError) -> Self {
        let (message, hint) = error.describe(raw);
        let mut e = Error::new(Kind::Plain(message), Some(hint));
        e.problems[0].at = Some(at);
        e
    }

    /// Give the problems that have no position yet the position of `node` (the node
    /// whose deserialization they came out of), and scrub substituted values from them.
    pub(super) fn locate(mut self, node: &Node, env: &Env) -> Self {
        if self.problems.iter().all(|p| p.at.is_some()) {
            return self;
        }
        let raw = match &node.value {
            NodeValue::Scalar { text, .. } => Some(Raw {
                text: text.clone(),
                substituted: substitute(text, env).is_ok_and(|s| s.changed()),
            }),
            _ => None,
        };
        let mut secrets = Vec::new();
        collect_secrets(node, env, &mut secrets);
        for problem in self.problems.iter_mut().filter(|p| p.at.is_none()) {
            problem.at = Some(node.at);
            problem.raw = raw.clone();
            problem.scrub(&secrets);
        }
        self
    }

    /// Locate the problems without a position at a mapping key (keys are never
    /// substituted).
    pub(super) fn locate_key(mut self, key: &Spanned<String>) -> Self {
        for problem in self.problems.iter_mut().filter(|p| p.at.is_none()) {
            problem.at = Some(key.at);
            problem.raw = Some(Raw {
                text: key.value.clone(),
                substituted: false,
            });
        }
        self
    }

    pub(super) fn is_unknown_field(&self) -> bool {
        matches!(
            self.problems.first(),
            Some(Problem {
                kind: Kind::UnknownField { .. },
                ..
            })
        )
    }

    /// Add `other`'s problems after this one's.
    pub(super) fn extend(&mut self, other: Error) {
        self.problems.extend(other.problems);
    }

    pub(super) fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.problems
            .into_iter()
            .map(|p| {
                let (message, hint) = p.render();
                let d = Diagnostic::new(p.at.unwrap_or_default(), message);
                match hint {
                    Some(hint) => d.hint(hint),
                    None => d,
                }
            })
            .collect()
    }
}

/// The values `${VAR}`s in `node` and below expand to, each with its reference, longest
/// value first.
pub(crate) fn collect_secrets(node: &Node, env: &Env, out: &mut Vec<(String, String)>) {
    match &node.value {
        NodeValue::Null => {}
        NodeValue::Scalar { text, .. } => {
            if let Ok(s) = substitute(text, env) {
                out.extend(s.secrets);
            }
        }
        NodeValue::Sequence(items) => items.iter().for_each(|n| collect_secrets(n, env, out)),
        NodeValue::Mapping(entries) => entries
            .iter()
            .for_each(|(_, n)| collect_secrets(n, env, out)),
    }
    out.sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
}

/// `text` with every value in `secrets` replaced by the reference it came from. Values
/// under 3 characters are left: they would replace ordinary digits and words, and are
/// no secrets.
pub(crate) fn redact(text: &str, secrets: &[(String, String)]) -> String {
    let mut text = text.to_string();
    for (value, reference) in secrets.iter().filter(|(v, _)| v.chars().count() >= 3) {
        if text.contains(value.as_str()) {
            text = text.replace(value.as_str(), reference);
        }
    }
    text
}

impl Problem {
    /// Replace substituted values a `Deserialize` impl may have quoted in its message.
    fn scrub(&mut self, secrets: &[(String, String)]) {
        let scrub = |text: &mut String| *text = redact(text, secrets);
        match &mut self.kind {
            Kind::Plain(text) | Kind::Custom(text) => scrub(text),
            Kind::InvalidType { found, expected } => {
                scrub(found);
                scrub(expected);
            }
            Kind::InvalidValue { expected } | Kind::InvalidLength { expected, .. } => {
                scrub(expected)
            }
            Kind::UnknownVariant { variant, .. } => scrub(variant),
            Kind::UnknownField { .. } | Kind::MissingField(_) | Kind::DuplicateField(_) => {}
        }
        if let Some(hint) = &mut self.hint {
            scrub(hint);
        }
    }

    /// The message and hint.
    fn render(&self) -> (String, Option<String>) {
        let shown = self.raw.as_ref().map(|raw| {
            if raw.substituted {
                format!("`{}` (after substitution)", raw.text)
            } else {
                format!("`{}`", raw.text)
            }
        });
        let (message, hint) = match &self.kind {
            Kind::Plain(text) => (text.clone(), None),
            Kind::Custom(text) => match &shown {
                Some(shown) => (format!("invalid value {shown}: {text}"), None),
                None => (text.clone(), None),
            },
            Kind::InvalidType { found, expected } => match &shown {
                Some(shown) => (format!("expected {expected}, found {found} {shown}"), None),
                None => (format!("expected {expected}, found {found}"), None),
            },
            Kind::InvalidValue { expected } => match &shown {
                Some(shown) => (format!("invalid value {shown}: expected {expected}"), None),
                None => (format!("invalid value: expected {expected}"), None),
            },
            Kind::InvalidLength { len, expected } => {
                let items = if *len == 1 { "item" } else { "items" };
                (format!("expected {expected}, found {len} {items}"), None)
            }
            Kind::UnknownField { field, expected } => (
                format!("unknown key `{field}`"),
                Some(choices_hint(Some(field), expected, "keys")),
            ),
            Kind::UnknownVariant { variant, expected } => {
                // Only suggest from text as written: a substituted value may be a secret.
                let (shown, word) = match &self.raw {
                    Some(raw) if raw.substituted => (shown.clone().unwrap_or_default(), None),
                    Some(raw) => (format!("`{}`", raw.text), Some(&raw.text)),
                    None => (format!("`{variant}`"), Some(variant)),
                };
                (
                    format!("unknown value {shown}"),
                    Some(choices_hint(word, expected, "values")),
                )
            }
            Kind::MissingField(field) => (format!("missing key `{field}`"), None),
            Kind::DuplicateField(field) => (format!("duplicate key `{field}`"), None),
        };
        (message, self.hint.clone().or(hint))
    }
}

/// "did you mean `x`? valid keys: a, b, c"
pub(super) fn choices_hint(word: Option<&String>, choices: &[&str], what: &str) -> String {
    if choices.is_empty() {
        return format!("no {what} are accepted here");
    }
    let list = choices.join(", ");
    match word.and_then(|w| closest(w, choices.iter().copied())) {
        Some(best) => format!("did you mean `{best}`? valid {what}: {list}"),
        None => format!("valid {what}: {list}"),
    }
}

/// "a string", "an integer", … for the value serde saw.
fn found(unexpected: &Unexpected<'_>) -> String {
    match unexpected {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a number",
        Unexpected::Char(_) => "a character",
        Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "an empty value",
        Unexpected::Option => "an optional value",
        Unexpected::NewtypeStruct => "a wrapped value",
        Unexpected::Seq => "a list",
        Unexpected::Map => "a mapping",
        Unexpected::Enum => "an enum value",
        Unexpected::UnitVariant => "a plain value",
        Unexpected::NewtypeVariant | Unexpected::TupleVariant | Unexpected::StructVariant => {
            "a value with settings"
        }
        Unexpected::Other(other) => other,
    }
    .to_owned()
}

/// serde's "expected" wording, in the file's terms ("struct Window" → "a mapping").
fn expected(exp: &dyn Expected) -> String {
    let text = exp.to_string();
    if text.starts_with("struct ") || text == "a map" {
        "a mapping".to_owned()
    } else if text == "a sequence"
        || text.starts_with("tuple struct ")
        || text.starts_with("a tuple of size")
    {
        "a list".to_owned()
    } else if text.starts_with("enum ") {
        "a string or a single-key mapping".to_owned()
    } else if text == "unit" {
        "an empty value".to_owned()
    } else {
        text
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            f.write_str(&problem.render().0)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let text = msg.to_string();
        match text.split_once(HINT_MARK) {
            Some((message, hint)) => {
                Error::new(Kind::Custom(message.to_owned()), Some(hint.to_owned()))
            }
            None => Error::new(Kind::Custom(text), None),
        }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        let expected = expected(exp);
        let hint = type_hint(&expected);
        Error::new(
            Kind::InvalidType {
                found: found(&unexp),
                expected,
            },
            hint,
        )
    }

    fn invalid_value(_unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        // The value itself is not kept: it may come from a secret; the message quotes
        // the YAML text instead once the error is located.
        Error::new(
            Kind::InvalidValue {
                expected: expected(exp),
            },
            None,
        )
    }

    fn invalid_length(len: usize, exp: &dyn Expected) -> Self {
        Error::new(
            Kind::InvalidLength {
                len,
                // Not `expected()`: "a tuple of size 2" says how many.
                expected: exp.to_string(),
            },
            None,
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Error::new(
            Kind::UnknownVariant {
                variant: variant.to_owned(),
                expected,
            },
            None,
        )
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Error::new(
            Kind::UnknownField {
                field: field.to_owned(),
                expected,
            },
            None,
        )
    }

    fn missing_field(field: &'static str) -> Self {
        Error::new(Kind::MissingField(field), None)
    }

    fn duplicate_field(field: &'static str) -> Self {
        Error::new(Kind::DuplicateField(field), None)
    }
}

/// What to write instead, for the common scalar types.
fn type_hint(expected: &str) -> Option<String> {
    let hint = match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "write a whole number, e.g. 5",
        "i8" | "i16" | "i32" | "i64" | "isize" => "write a whole number, e.g. -5 or 5",
        "f32" | "f64" => "write a number, e.g. 0.5",
        "a boolean" => "write true or false",
        "a string" => "write text; quote it if it looks like a number",
        "a list" => "write a list: [a, b] or one `- item` per line",
        "a mapping" => "write `key: value` pairs, indented under this key",
        _ => return None,
    };
    Some(hint.to_owned())
}
