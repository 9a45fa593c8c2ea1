//! The deserializer of one node of the YAML tree: substitutes `${VAR}` in its scalar,
//! hands its list or mapping to the accessors, and gives every error coming out of it
//! without a position the node's.
//!
//! The entry point of the deserializer; the pieces it hands work to (scalars, lists and
//! mappings, enums) live beside it.

use serde::de::{self, Deserializer, Unexpected, Visitor};

use super::access::{MapDe, SpannedSeq, visit_sequence};
use super::enums::{MapEnum, UnitEnum};
use super::error::{Error, Kind, choices_hint};
use super::scalar::ScalarDe;
use crate::spec::Env;
use crate::spec::env::substitute;
use crate::spec::spanned::SPANNED_NAME;
use crate::spec::yaml::{Node, NodeValue, ScalarStyle};

/// Deserializes one node; every error coming out of it without a position gets the
/// node's.
#[derive(Clone, Copy)]
pub(super) struct NodeDe<'a> {
    pub(super) node: &'a Node,
    pub(super) env: &'a Env,
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
