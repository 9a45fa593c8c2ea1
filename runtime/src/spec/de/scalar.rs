//! Scalars: the YAML 1.2 core schema for plain scalars read untyped, and a typed
//! request reading the text as the type asked for (so `${PORT:-1883}` is a fine `u16`).
//!
//! Separate from the node deserializer because mapping keys and enum variant names go
//! through here too, without a node of their own; the caller locates the errors.

use std::borrow::Cow;

use serde::de::{Deserializer, Visitor};

use super::access::SpannedSeq;
use super::enums::UnitEnum;
use super::error::Error;
use crate::diagnostic::Location;
use crate::spec::Spanned;
use crate::spec::spanned::SPANNED_NAME;
use crate::spec::yaml::is_null;

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
pub(super) struct ScalarDe<'a> {
    pub(super) text: Cow<'a, str>,
    /// Plain scalars resolve by the core schema in `deserialize_any`; quoted ones and keys
    /// are strings.
    pub(super) plain: bool,
    pub(super) at: Location,
}

impl<'a> ScalarDe<'a> {
    pub(super) fn key(key: &'a Spanned<String>) -> Self {
        ScalarDe {
            text: Cow::Borrowed(&key.value),
            plain: false,
            at: key.at,
        }
    }

    pub(super) fn is_null(&self) -> bool {
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
