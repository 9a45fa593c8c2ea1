//! A serde [`Deserializer`] over a [`Node`] tree.
//!
//! What it does beyond a plain YAML deserializer:
//!
//! * every error carries the position of the innermost key or value at fault (an error a
//!   value's own `Deserialize` impl returns through [`serde::de::Error::custom`] gets the
//!   value's position too);
//! * `${VAR}` / `${VAR:-default}` is substituted in every scalar value as it is read, and
//!   error messages quote the value as written, never the substituted text;
//! * plain scalars resolve like the YAML 1.2 core schema when the type does not say
//!   (`deserialize_any`); a typed request (`u16`, `f64`, `bool`, `String`…) reads the text
//!   as that type, quoted or not, so `port: ${PORT:-1883}` is a fine `u16`;
//! * an unknown key gets "did you mean …?" and the list of valid keys, and every unknown
//!   key of the mapping is reported, not only the first.
//!
//! A plain scalar that is empty after substitution (`${PASSWORD:-}`) reads as `None` for
//! an `Option`; quote it (`"${PASSWORD:-}"`) to get `Some("")`. An empty value (`tls:`)
//! reads as a struct with every key missing, so a struct whose fields all have defaults
//! can be switched on with its name alone.

use std::borrow::Cow;
use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, Expected, IntoDeserializer,
    MapAccess, SeqAccess, Unexpected, VariantAccess, Visitor,
};

use super::env::{EnvError, substitute};
use super::spanned::SPANNED_NAME;
use super::yaml::{Node, NodeValue, ScalarStyle, is_null};
use super::{Env, Spanned};
use crate::diagnostic::{Diagnostic, Location, closest};

/// Deserialize `node` as a `T`, substituting `${VAR}` from `env`. Every problem found is
/// returned, each at its position (without a file or node name).
pub(crate) fn from_node<T: DeserializeOwned>(node: &Node, env: &Env) -> Result<T, Vec<Diagnostic>> {
    T::deserialize(NodeDe { node, env }).map_err(|e| e.locate(node, env).into_diagnostics())
}

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

// ---------------------------------------------------------------------------------------
// Errors

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
enum Kind {
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
    fn new(kind: Kind, hint: Option<String>) -> Self {
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
    fn env(at: Location, raw: &str, error: &EnvError) -> Self {
        let (message, hint) = error.describe(raw);
        let mut e = Error::new(Kind::Plain(message), Some(hint));
        e.problems[0].at = Some(at);
        e
    }

    /// Give the problems that have no position yet the position of `node` (the node
    /// whose deserialization they came out of), and scrub substituted values from them.
    fn locate(mut self, node: &Node, env: &Env) -> Self {
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
    fn locate_key(mut self, key: &Spanned<String>) -> Self {
        for problem in self.problems.iter_mut().filter(|p| p.at.is_none()) {
            problem.at = Some(key.at);
            problem.raw = Some(Raw {
                text: key.value.clone(),
                substituted: false,
            });
        }
        self
    }

    fn is_unknown_field(&self) -> bool {
        matches!(
            self.problems.first(),
            Some(Problem {
                kind: Kind::UnknownField { .. },
                ..
            })
        )
    }

    fn into_diagnostics(self) -> Vec<Diagnostic> {
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

/// The values `${VAR}`s in `node` and below expand to, longest first.
fn collect_secrets(node: &Node, env: &Env, out: &mut Vec<String>) {
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
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

impl Problem {
    /// Replace substituted values a `Deserialize` impl may have quoted in its message.
    fn scrub(&mut self, secrets: &[String]) {
        let scrub = |text: &mut String| {
            for secret in secrets.iter().filter(|s| s.chars().count() >= 3) {
                if text.contains(secret.as_str()) {
                    *text = text.replace(secret.as_str(), "***");
                }
            }
        };
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
fn choices_hint(word: Option<&String>, choices: &[&str], what: &str) -> String {
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

// ---------------------------------------------------------------------------------------
// Scalars

/// A scalar's text resolved by the YAML 1.2 core schema.
enum Resolved {
    Null,
    Bool(bool),
    Int(Int),
    Float(f64),
    Str,
}

#[derive(Clone, Copy)]
enum Int {
    Pos(u128),
    Neg(i128),
}

fn resolve_plain(text: &str) -> Resolved {
    if is_null(text) {
        Resolved::Null
    } else if let Some(b) = parse_bool(text) {
        Resolved::Bool(b)
    } else if let Some(i) = parse_int(text) {
        Resolved::Int(i)
    } else if let Some(f) = parse_float(text) {
        Resolved::Float(f)
    } else {
        Resolved::Str
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// `[-+]?[0-9]+`, `0o[0-7]+`, `0x[0-9a-fA-F]+`.
fn parse_int(text: &str) -> Option<Int> {
    let (radix, digits, negative) = if let Some(hex) = text.strip_prefix("0x") {
        (16, hex, false)
    } else if let Some(oct) = text.strip_prefix("0o") {
        (8, oct, false)
    } else if let Some(rest) = text.strip_prefix('-') {
        (10, rest, true)
    } else {
        (10, text.strip_prefix('+').unwrap_or(text), false)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if !negative {
        return Some(Int::Pos(magnitude));
    }
    if magnitude == i128::MIN.unsigned_abs() {
        Some(Int::Neg(i128::MIN))
    } else {
        i128::try_from(magnitude).ok().map(|m| Int::Neg(-m))
    }
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`, `[-+]?.inf`, `.nan` (and integers).
fn parse_float(text: &str) -> Option<f64> {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(if text.starts_with('-') {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    if mantissa_ok && exponent_ok {
        text.parse().ok()
    } else {
        None
    }
}

fn visit_int<'de, V: Visitor<'de>>(int: Int, visitor: V) -> Result<V::Value, Error> {
    match int {
        Int::Pos(u) => match u64::try_from(u) {
            Ok(u) => visitor.visit_u64(u),
            Err(_) => visitor.visit_u128(u),
        },
        Int::Neg(i) => match i64::try_from(i) {
            Ok(i) => visitor.visit_i64(i),
            Err(_) => visitor.visit_i128(i),
        },
    }
}

/// A scalar after substitution (or a mapping key), not yet located: the caller locates
/// its errors.
#[derive(Clone)]
struct ScalarDe<'a> {
    text: Cow<'a, str>,
    /// Plain scalars resolve by the core schema in `deserialize_any`; quoted ones and keys
    /// are strings.
    plain: bool,
    at: Location,
}

impl<'a> ScalarDe<'a> {
    fn key(key: &'a Spanned<String>) -> Self {
        ScalarDe {
            text: Cow::Borrowed(&key.value),
            plain: false,
            at: key.at,
        }
    }

    fn is_null(&self) -> bool {
        self.plain && is_null(&self.text)
    }

    fn visit_text<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.text {
            Cow::Borrowed(text) => visitor.visit_str(text),
            Cow::Owned(text) => visitor.visit_string(text),
        }
    }

    /// A number request: integer, else float, else the text (for the visitor to refuse).
    fn number<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if let Some(int) = parse_int(&self.text) {
            visit_int(int, visitor)
        } else if let Some(float) = parse_float(&self.text) {
            visitor.visit_f64(float)
        } else {
            self.visit_text(visitor)
        }
    }
}

macro_rules! scalar_numbers {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.number(visitor)
        }
    )*};
}

macro_rules! scalar_text {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.visit_text(visitor)
        }
    )*};
}

macro_rules! scalar_any {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_any(visitor)
        }
    )*};
}

impl<'de> Deserializer<'de> for ScalarDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if !self.plain {
            return self.visit_text(visitor);
        }
        match resolve_plain(&self.text) {
            Resolved::Null => visitor.visit_unit(),
            Resolved::Bool(b) => visitor.visit_bool(b),
            Resolved::Int(i) => visit_int(i, visitor),
            Resolved::Float(f) => visitor.visit_f64(f),
            Resolved::Str => self.visit_text(visitor),
        }
    }

    scalar_numbers!(deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128);

    scalar_text!(deserialize_char deserialize_str deserialize_string deserialize_identifier);

    scalar_any!(deserialize_seq deserialize_map);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match parse_float(&self.text) {
            Some(f) => visitor.visit_f64(f),
            None => self.visit_text(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match parse_bool(&self.text) {
            Some(b) => visitor.visit_bool(b),
            None => self.visit_text(visitor),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_bytes(self.text.as_bytes())
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_byte_buf(self.text.into_owned().into_bytes())
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.is_null() {
            visitor.visit_unit()
        } else {
            self.visit_text(visitor)
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        if name == SPANNED_NAME {
            visitor.visit_seq(SpannedSeq::new(self.at, self))
        } else {
            visitor.visit_newtype_struct(self)
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_enum(UnitEnum { de: self })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

// ---------------------------------------------------------------------------------------
// Nodes

/// Deserializes one node; every error coming out of it without a position gets the
/// node's.
#[derive(Clone, Copy)]
struct NodeDe<'a> {
    node: &'a Node,
    env: &'a Env,
}

impl<'a> NodeDe<'a> {
    fn located<R>(self, f: impl FnOnce(Self) -> Result<R, Error>) -> Result<R, Error> {
        f(self).map_err(|e| e.locate(self.node, self.env))
    }

    /// The scalar with `${VAR}` substituted.
    fn scalar(self, text: &'a str, style: ScalarStyle) -> Result<ScalarDe<'a>, Error> {
        let substituted =
            substitute(text, self.env).map_err(|e| Error::env(self.node.at, text, &e))?;
        Ok(ScalarDe {
            text: substituted.text,
            plain: style == ScalarStyle::Plain,
            at: self.node.at,
        })
    }

    /// Whether this reads as null: empty, `~`, `null`, or a plain scalar that is one of
    /// those after substitution.
    fn is_null(self) -> Result<bool, Error> {
        match &self.node.value {
            NodeValue::Null => Ok(true),
            NodeValue::Scalar {
                text,
                style: ScalarStyle::Plain,
            } => Ok(self.scalar(text, ScalarStyle::Plain)?.is_null()),
            _ => Ok(false),
        }
    }

    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.node.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Scalar { text, style } => {
                self.scalar(text, *style)?.deserialize_any(visitor)
            }
            NodeValue::Sequence(items) => visit_sequence(items, self.env, visitor),
            NodeValue::Mapping(entries) => visitor.visit_map(MapDe::new(entries, None, self.env)),
        }
    }
}

/// `visit_seq` over `items`, refusing items the visitor left unread.
fn visit_sequence<'de, V: Visitor<'de>>(
    items: &[Node],
    env: &Env,
    visitor: V,
) -> Result<V::Value, Error> {
    let mut seq = SeqDe {
        items: items.iter(),
        env,
        count: 0,
    };
    let value = visitor.visit_seq(&mut seq)?;
    if seq.items.len() > 0 {
        let count = seq.count;
        let expected = format!("{count} item{}", if count == 1 { "" } else { "s" });
        return Err(de::Error::invalid_length(items.len(), &expected.as_str()));
    }
    Ok(value)
}

macro_rules! node_scalar {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            self.located(|d| match &d.node.value {
                NodeValue::Scalar { text, style } => d.scalar(text, *style)?.$method(visitor),
                _ => d.any(visitor),
            })
        }
    )*};
}

impl<'de> Deserializer<'de> for NodeDe<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.located(|d| d.any(visitor))
    }

    node_scalar!(deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_identifier);

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.located(|d| {
            if d.is_null()? {
                visitor.visit_none()
            } else {
                visitor.visit_some(d)
            }
        })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.located(|d| {
            if d.is_null()? {
                visitor.visit_unit()
            } else {
                d.any(visitor)
            }
        })
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.located(|d| {
            if name == SPANNED_NAME {
                visitor.visit_seq(SpannedSeq::new(d.node.at, d))
            } else {
                visitor.visit_newtype_struct(d)
            }
        })
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.located(|d| match &d.node.value {
            NodeValue::Sequence(items) => visit_sequence(items, d.env, visitor),
            _ => d.any(visitor),
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.located(|d| match &d.node.value {
            NodeValue::Mapping(entries) => visitor.visit_map(MapDe::new(entries, None, d.env)),
            _ => d.any(visitor),
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.located(|d| match &d.node.value {
            NodeValue::Mapping(entries) => {
                visitor.visit_map(MapDe::new(entries, Some(fields), d.env))
            }
            NodeValue::Null => visitor.visit_map(MapDe::new(&[], Some(fields), d.env)),
            // Not `visit_seq`: derived structs would read a list positionally.
            NodeValue::Sequence(_) => Err(de::Error::invalid_type(Unexpected::Seq, &"a mapping")),
            NodeValue::Scalar { .. } => d.any(visitor),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.located(|d| match &d.node.value {
            NodeValue::Scalar { text, style } => visitor.visit_enum(UnitEnum {
                de: d.scalar(text, *style)?,
            }),
            NodeValue::Mapping(entries) if entries.len() == 1 => {
                let (key, value) = &entries[0];
                visitor.visit_enum(MapEnum {
                    key,
                    value,
                    env: d.env,
                })
            }
            NodeValue::Mapping(entries) => Err(Error::new(
                Kind::Plain(format!(
                    "expected a single key naming the variant, found {} keys",
                    entries.len()
                )),
                Some(choices_hint(None, variants, "values")),
            )),
            NodeValue::Null | NodeValue::Sequence(_) => Err(Error::new(
                Kind::InvalidType {
                    found: d.node.describe().to_owned(),
                    expected: "a string or a single-key mapping".to_owned(),
                },
                Some(choices_hint(None, variants, "values")),
            )),
        })
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a> {
    items: std::slice::Iter<'a, Node>,
    env: &'a Env,
    count: usize,
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(node) => {
                self.count += 1;
                // Errors the item's `Deserialize` impl makes after reading (untagged enums,
                // validation) are located here.
                seed.deserialize(NodeDe {
                    node,
                    env: self.env,
                })
                .map(Some)
                .map_err(|e| e.locate(node, self.env))
            }
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: &'a [(Spanned<String>, Node)],
    /// The next entry.
    index: usize,
    /// A struct's fields (with aliases), to report every unknown key at once.
    fields: Option<&'static [&'static str]>,
    env: &'a Env,
}

impl<'a> MapDe<'a> {
    fn new(
        entries: &'a [(Spanned<String>, Node)],
        fields: Option<&'static [&'static str]>,
        env: &'a Env,
    ) -> Self {
        MapDe {
            entries,
            index: 0,
            fields,
            env,
        }
    }
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some((key, _)) = self.entries.get(self.index) else {
            return Ok(None);
        };
        match seed.deserialize(ScalarDe::key(key)) {
            Ok(k) => Ok(Some(k)),
            Err(e) => {
                let mut e = e.locate_key(key);
                if let Some(fields) = self.fields
                    && e.is_unknown_field()
                {
                    // The struct refuses unknown keys: report the others now rather than
                    // one per run.
                    for (other, _) in &self.entries[self.index + 1..] {
                        if !fields.contains(&other.value.as_str()) {
                            let more: Error = de::Error::unknown_field(&other.value, fields);
                            e.problems.extend(more.locate_key(other).problems);
                        }
                    }
                }
                Err(e)
            }
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let Some((_, node)) = self.entries.get(self.index) else {
            return Err(de::Error::custom(
                "internal error: a value was read past the end of a mapping",
            ));
        };
        self.index += 1;
        seed.deserialize(NodeDe {
            node,
            env: self.env,
        })
        .map_err(|e| e.locate(node, self.env))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() - self.index)
    }
}

/// An enum written as a string: a unit variant.
struct UnitEnum<'a> {
    de: ScalarDe<'a>,
}

impl<'de> EnumAccess<'de> for UnitEnum<'_> {
    type Error = Error;
    type Variant = UnitOnly;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, UnitOnly), Error> {
        Ok((seed.deserialize(self.de)?, UnitOnly))
    }
}

struct UnitOnly;

impl UnitOnly {
    fn needs_settings() -> Error {
        error_with_hint(
            "this value needs settings",
            "write it as a mapping: `<value>: <settings>`",
        )
    }
}

impl<'de> VariantAccess<'de> for UnitOnly {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, Error> {
        Err(Self::needs_settings())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _visitor: V) -> Result<V::Value, Error> {
        Err(Self::needs_settings())
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(Self::needs_settings())
    }
}

/// An enum written as a single-key mapping `variant: settings`.
struct MapEnum<'a> {
    key: &'a Spanned<String>,
    value: &'a Node,
    env: &'a Env,
}

impl<'de, 'a> EnumAccess<'de> for MapEnum<'a> {
    type Error = Error;
    type Variant = NodeDe<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, NodeDe<'a>), Error> {
        let variant = seed
            .deserialize(ScalarDe::key(self.key))
            .map_err(|e| e.locate_key(self.key))?;
        Ok((
            variant,
            NodeDe {
                node: self.value,
                env: self.env,
            },
        ))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        if self.node.is_null() {
            Ok(())
        } else {
            let e: Error = error_with_hint(
                "this value takes no settings",
                "remove the settings after it",
            );
            Err(e.locate(self.node, self.env))
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
            .map_err(|e| e.locate(self.node, self.env))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_struct("", fields, visitor)
    }
}

/// Answers [`Spanned`]'s request with `(line, column, value)`.
struct SpannedSeq<D> {
    at: Location,
    step: u8,
    value: Option<D>,
}

impl<D> SpannedSeq<D> {
    fn new(at: Location, value: D) -> Self {
        SpannedSeq {
            at,
            step: 0,
            value: Some(value),
        }
    }
}

impl<'de, D: Deserializer<'de, Error = Error>> SeqAccess<'de> for SpannedSeq<D> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.step = self.step.saturating_add(1);
        match self.step {
            1 => seed
                .deserialize(IntoDeserializer::<Error>::into_deserializer(self.at.line))
                .map(Some),
            2 => seed
                .deserialize(IntoDeserializer::<Error>::into_deserializer(self.at.column))
                .map(Some),
            _ => match self.value.take() {
                Some(value) => seed.deserialize(value).map(Some),
                None => Ok(None),
            },
        }
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Deserialize;

    use super::*;
    use crate::spec::Duration;

    fn env(vars: &[(&str, &str)]) -> Env {
        Env::Fixed(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    fn read<T: DeserializeOwned>(yaml: &str, vars: &[(&str, &str)]) -> Result<T, Vec<Diagnostic>> {
        let node = Node::parse(yaml).expect("test YAML is valid");
        from_node(&node, &env(vars))
    }

    fn errors<T: DeserializeOwned + fmt::Debug>(
        yaml: &str,
        vars: &[(&str, &str)],
    ) -> Vec<(usize, usize, String, Option<String>)> {
        read::<T>(yaml, vars)
            .expect_err("the config is invalid")
            .into_iter()
            .map(|d| (d.at.line, d.at.column, d.message, d.hint))
            .collect()
    }

    fn at(line: usize, column: usize) -> Location {
        Location { line, column }
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Window {
        size: Duration,
        #[serde(default)]
        lateness: Option<Duration>,
        #[serde(default)]
        fields: Vec<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Mqtt {
        url: String,
        port: u16,
        #[serde(default)]
        password: Option<String>,
        #[serde(default)]
        window: Option<Window>,
    }

    #[test]
    fn unknown_key_has_did_you_mean_and_valid_keys() {
        let found = errors::<Window>("size: 10s\nsise: 20s\n", &[]);
        assert_eq!(
            found,
            vec![(
                2,
                1,
                "unknown key `sise`".to_owned(),
                Some("did you mean `size`? valid keys: size, lateness, fields".to_owned())
            )]
        );
    }

    #[test]
    fn every_unknown_key_of_a_mapping_is_reported() {
        let found = errors::<Window>("sise: 10s\nfoo: 1\nfields: []\nlatenes: 1s\n", &[]);
        let found: Vec<_> = found.into_iter().map(|(l, c, m, _)| (l, c, m)).collect();
        assert_eq!(
            found,
            vec![
                (1, 1, "unknown key `sise`".to_owned()),
                (2, 1, "unknown key `foo`".to_owned()),
                (4, 1, "unknown key `latenes`".to_owned()),
            ]
        );
        let hints = errors::<Window>("foo: 1\n", &[]);
        assert_eq!(
            hints[0].3.as_deref(),
            Some("valid keys: size, lateness, fields")
        );
    }

    #[test]
    fn missing_key_is_at_the_mapping() {
        let found = errors::<Mqtt>("url: x\nport: 1\nwindow:\n  lateness: 1s\n", &[]);
        assert_eq!(found, vec![(4, 3, "missing key `size`".to_owned(), None)]);
        // An empty value reads as a mapping with every key missing (and as `None` for an
        // `Option`).
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            window: Window,
        }
        let found = errors::<Outer>("window:\n", &[]);
        assert_eq!(found, vec![(1, 1, "missing key `size`".to_owned(), None)]);
        let config: Mqtt = read("url: x\nport: 1\nwindow:\n", &[]).expect("valid");
        assert_eq!(config.window, None);
    }

    #[test]
    fn type_errors_point_at_the_value() {
        let found = errors::<Mqtt>("url: x\nport: abc\n", &[]);
        assert_eq!(
            found,
            vec![(
                2,
                7,
                "expected u16, found a string `abc`".to_owned(),
                Some("write a whole number, e.g. 5".to_owned())
            )]
        );
        let found = errors::<Mqtt>("url: x\nport: 70000\n", &[]);
        assert_eq!(
            found,
            vec![(2, 7, "invalid value `70000`: expected u16".to_owned(), None)]
        );
        let found = errors::<Mqtt>(
            "url: x\nport: 1\nwindow: {size: 1s, fields: [a, [b]]}\n",
            &[],
        );
        assert_eq!(
            found,
            vec![(
                3,
                32,
                "expected a string, found a list".to_owned(),
                Some("write text; quote it if it looks like a number".to_owned())
            )]
        );
        let found = errors::<Mqtt>("url: [x]\nport: 1\n", &[]);
        assert_eq!(
            found,
            vec![(
                1,
                6,
                "expected a string, found a list".to_owned(),
                Some("write text; quote it if it looks like a number".to_owned())
            )]
        );
        let found = errors::<Mqtt>("- 1\n", &[]);
        assert_eq!(
            found,
            vec![(
                1,
                1,
                "expected a mapping, found a list".to_owned(),
                Some("write `key: value` pairs, indented under this key".to_owned())
            )]
        );
    }

    #[test]
    fn custom_errors_of_nested_values_get_their_position() {
        let found = errors::<Mqtt>("url: x\nport: 1\nwindow:\n  size: 10\n", &[]);
        assert_eq!(
            found,
            vec![(
                4,
                9,
                "invalid value `10`: a duration needs a unit".to_owned(),
                Some("write a unit: 10s, 1m, 500ms".to_owned())
            )]
        );
        let found = errors::<Window>("size: 5 parsecs\n", &[]);
        assert_eq!((found[0].0, found[0].1), (1, 7));
        assert!(
            found[0]
                .2
                .starts_with("invalid value `5 parsecs`: unknown duration unit"),
            "{found:?}"
        );
    }

    #[test]
    fn substitution_in_typed_values() {
        let config: Mqtt = read(
            "url: mqtt://${HOST:-localhost}:1883/$$x\nport: ${PORT:-1883}\npassword: ${PASSWORD:-}\n",
            &[],
        )
        .expect("valid");
        assert_eq!(config.url, "mqtt://localhost:1883/$x");
        assert_eq!(config.port, 1883);
        assert_eq!(config.password, None);
        let config: Mqtt = read(
            "url: 'mqtt://${HOST}'\nport: \"${PORT}\"\npassword: \"${PASSWORD:-}\"\n",
            &[("HOST", "broker"), ("PORT", "8883")],
        )
        .expect("valid");
        assert_eq!(config.url, "mqtt://broker");
        assert_eq!(config.port, 8883);
        assert_eq!(config.password.as_deref(), Some(""));
    }

    #[test]
    fn unset_variable_is_reported_at_its_value() {
        let found = errors::<Mqtt>("url: x\nport: 1\npassword: \"pre-${SECRET}\"\n", &[]);
        assert_eq!(
            found,
            vec![(
                3,
                11,
                "environment variable `SECRET` is not set".to_owned(),
                Some("export SECRET=… or write ${SECRET:-default}".to_owned())
            )]
        );
        let found = errors::<Mqtt>("url: ${HOST\nport: 1\n", &[]);
        assert_eq!(found[0].2, "unterminated ${ in `${HOST`");
        // An ignored value is not substituted.
        #[derive(Debug, Deserialize)]
        struct Lenient {
            #[allow(dead_code)]
            a: u8,
        }
        read::<Lenient>("a: 1\nb: ${UNSET}\n", &[]).expect("unknown keys are ignored");
    }

    #[test]
    fn substituted_values_never_appear_in_messages() {
        let vars = [
            ("PORT", "hunter2"),
            ("FMT", "topsecret"),
            ("URL", "not a number"),
        ];
        let found = errors::<Mqtt>("url: x\nport: ${PORT}\n", &vars);
        assert_eq!(
            found[0].2,
            "expected u16, found a string `${PORT}` (after substitution)"
        );
        #[derive(Debug, Deserialize)]
        #[serde(rename_all = "lowercase")]
        enum Format {
            Clemap,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Decode {
            format: Format,
            rate: std::net::IpAddr,
            #[serde(default)]
            b: Option<bool>,
        }
        let found = errors::<Decode>("format: ${FMT}\nrate: 1.1.1.1\n", &vars);
        assert_eq!(found[0].2, "unknown value `${FMT}` (after substitution)");
        assert_eq!(found[0].3.as_deref(), Some("valid values: clemap"));
        let found = errors::<Decode>("format: clemap\nrate: ${PORT}\n", &vars);
        assert!(!found[0].2.contains("hunter2"), "{found:?}");
        let found = errors::<Decode>("format: clemap\nrate: 1.1.1.1\nb: ${URL}\n", &vars);
        assert_eq!(
            found[0].2,
            "expected a boolean, found a string `${URL}` (after substitution)"
        );
        // A Deserialize impl quoting its input is scrubbed.
        #[derive(Debug)]
        struct Quoting;
        impl<'de> Deserialize<'de> for Quoting {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Err(de::Error::custom(format!("cannot use {s}")))
            }
        }
        let found = errors::<Quoting>("user:${PORT}@host", &vars);
        assert_eq!(
            found[0].2,
            "invalid value `user:${PORT}@host` (after substitution): cannot use user:***@host"
        );
        let found = errors::<Vec<Quoting>>("[\"${FMT}\"]", &vars);
        assert!(!found[0].2.contains("topsecret"), "{found:?}");
    }

    #[test]
    fn spanned_values_know_their_position() {
        #[derive(Debug, Deserialize)]
        struct Config {
            name: Spanned<String>,
            inputs: Vec<Spanned<String>>,
            port: Spanned<u16>,
            map: BTreeMap<String, Spanned<Option<u8>>>,
            keys: HashMap<Spanned<String>, u8>,
        }
        let config: Config = read(
            "name: a\ninputs:\n  - x\n  - ${Y:-y}\nport: '1883'\nmap: {k: ~, j: 3}\nkeys:\n  kk: 1\n",
            &[],
        )
        .expect("valid");
        assert_eq!(config.name.at, at(1, 7));
        assert_eq!(
            config
                .inputs
                .iter()
                .map(|s| (s.value.as_str(), s.at))
                .collect::<Vec<_>>(),
            vec![("x", at(3, 5)), ("y", at(4, 5))]
        );
        assert_eq!((*config.port, config.port.at), (1883, at(5, 7)));
        assert_eq!(config.map["k"].value, None);
        assert_eq!(
            (config.map["j"].value, config.map["j"].at),
            (Some(3), at(6, 16))
        );
        let (key, _) = config.keys.iter().next().expect("one key");
        assert_eq!((key.as_str(), key.at), ("kk", at(8, 3)));
    }

    #[test]
    fn deserialize_any_follows_the_core_schema() {
        let value: serde_json::Value = read(
            "a: 10\nb: \"10\"\nc: -3\nd: 1.5\ne: true\nf: ~\ng:\nh: 0x1F\ni: .inf\nj: text\nk: [1, '2']\nl: 1e3\nm: ${N:-7}\n",
            &[],
        )
        .expect("valid");
        assert_eq!(
            value,
            serde_json::json!({
                "a": 10, "b": "10", "c": -3, "d": 1.5, "e": true, "f": null, "g": null, "h": 31,
                "i": null, "j": "text", "k": [1, "2"], "l": 1000.0, "m": 7
            })
        );
        let big: u128 = read("99999999999999999999999", &[]).expect("valid");
        assert_eq!(big, 99_999_999_999_999_999_999_999);
        let small: i128 = read("-99999999999999999999999", &[]).expect("valid");
        assert_eq!(small, -99_999_999_999_999_999_999_999);
    }

    #[test]
    fn enums_from_strings_and_single_key_mappings() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(rename_all = "snake_case", deny_unknown_fields)]
        enum Sink {
            Stdout,
            File(String),
            Mqtt { topic: String, qos: u8 },
            Pair(u8, u8),
        }
        let sinks: Vec<Sink> = read(
            "- stdout\n- file: out.csv\n- mqtt: {topic: t, qos: 1}\n- pair: [1, 2]\n- stdout:\n",
            &[],
        )
        .expect("valid");
        assert_eq!(
            sinks,
            vec![
                Sink::Stdout,
                Sink::File("out.csv".into()),
                Sink::Mqtt {
                    topic: "t".into(),
                    qos: 1
                },
                Sink::Pair(1, 2),
                Sink::Stdout
            ]
        );
        let found = errors::<Vec<Sink>>("- stdot\n", &[]);
        assert_eq!(
            found,
            vec![(
                1,
                3,
                "unknown value `stdot`".to_owned(),
                Some("did you mean `stdout`? valid values: stdout, file, mqtt, pair".to_owned())
            )]
        );
        let found = errors::<Vec<Sink>>("- mqtt: {topic: t, qso: 1}\n", &[]);
        assert_eq!(
            (found[0].0, found[0].1, found[0].2.as_str()),
            (1, 20, "unknown key `qso`")
        );
        let found = errors::<Vec<Sink>>("- fil: x\n", &[]);
        assert_eq!(
            (found[0].0, found[0].1, found[0].2.as_str()),
            (1, 3, "unknown value `fil`")
        );
        let found = errors::<Vec<Sink>>("- file\n", &[]);
        assert_eq!(
            found[0].2,
            "invalid value `file`: this value needs settings"
        );
        let found = errors::<Vec<Sink>>("- {file: a, stdout: }\n", &[]);
        assert_eq!(
            found[0].2,
            "expected a single key naming the variant, found 2 keys"
        );
        let found = errors::<Vec<Sink>>("- stdout: 1\n", &[]);
        assert_eq!(
            (found[0].0, found[0].1, found[0].2.as_str()),
            (1, 11, "invalid value `1`: this value takes no settings")
        );
        let found = errors::<Vec<Sink>>("- [1]\n", &[]);
        assert_eq!(
            found[0].2,
            "expected a string or a single-key mapping, found a list"
        );
    }

    #[test]
    fn maps_options_newtypes_and_tuples() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Meters(u32);
        #[derive(Debug, Deserialize, PartialEq)]
        struct Config {
            ids: HashMap<u16, String>,
            names: BTreeMap<String, f64>,
            limit: Meters,
            pair: (u8, String),
            #[serde(default)]
            absent: Option<u8>,
            null: Option<u8>,
            unit: (),
            flag: bool,
            ch: char,
        }
        let config: Config = read(
            "ids: {1: a, 0x10: b}\nnames: {x: 1, y: .5}\nlimit: 30\npair: [1, \"2\"]\nnull: null\nunit: ~\nflag: 'true'\nch: c\n",
            &[],
        )
        .expect("valid");
        assert_eq!(config.ids[&16], "b");
        assert_eq!(config.names["y"], 0.5);
        assert_eq!(config.limit, Meters(30));
        assert_eq!(config.pair, (1, "2".to_owned()));
        assert_eq!((config.absent, config.null), (None, None));
        assert!(config.flag);
        assert_eq!(config.ch, 'c');
        let found = errors::<(u8, u8)>("[1, 2, 3]", &[]);
        assert_eq!(found[0].2, "expected 2 items, found 3 items");
        let found = errors::<(u8, u8)>("[1]", &[]);
        assert_eq!(found[0].2, "expected a tuple of size 2, found 1 item");
        let found = errors::<HashMap<u8, u8>>("300: 1", &[]);
        assert_eq!(
            (found[0].0, found[0].1, found[0].2.as_str()),
            (1, 1, "invalid value `300`: expected u8")
        );
    }

    #[test]
    fn untagged_and_flatten_do_not_crash() {
        #[derive(Debug, Deserialize, PartialEq)]
        #[serde(untagged)]
        enum Either {
            Number(u16),
            Text(String),
            List(Vec<u8>),
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Inner {
            port: u16,
            at: Spanned<String>,
        }
        #[derive(Debug, Deserialize, PartialEq)]
        struct Outer {
            name: String,
            #[serde(flatten)]
            inner: Inner,
            #[serde(flatten)]
            rest: BTreeMap<String, serde_json::Value>,
        }
        let v: Vec<Either> = read("[1, x, [2], '3']", &[]).expect("valid");
        assert_eq!(
            v,
            vec![
                Either::Number(1),
                Either::Text("x".into()),
                Either::List(vec![2]),
                Either::Text("3".into())
            ]
        );
        let o: Outer = read("name: n\nport: ${P:-5}\nat: here\nextra: 1\n", &[]).expect("valid");
        assert_eq!(o.inner.port, 5);
        assert_eq!(o.inner.at.value, "here");
        assert_eq!(o.rest["extra"], serde_json::json!(1));
        let found = errors::<Vec<Either>>("- {a: 1}\n", &[]);
        assert_eq!((found[0].0, found[0].1), (1, 3));
        let found = errors::<Outer>("name: n\nport: x\nat: y\n", &[]);
        assert_eq!((found[0].0, found[0].1), (1, 1));
    }

    #[test]
    fn error_with_hint_through_other_deserializers() {
        let e: serde_json::Error = error_with_hint("bad", "do this");
        assert_eq!(e.to_string(), "bad\nhint: do this");
    }
}
