//! Enums as a pipeline file writes them: a unit variant as a plain string, a variant
//! with settings as a single-key mapping `variant: settings`.
//!
//! Separate because serde's enum protocol (`EnumAccess`, `VariantAccess`) is a small
//! world of its own, and its errors (a variant that needs or takes no settings) are
//! about the file's shape rather than a value.

use serde::de::{DeserializeSeed, Deserializer, EnumAccess, VariantAccess, Visitor};

use super::error::{Error, error_with_hint};
use super::node::NodeDe;
use super::scalar::ScalarDe;
use crate::spec::yaml::Node;
use crate::spec::{Env, Spanned};

/// An enum written as a string: a unit variant.
pub(super) struct UnitEnum<'a> {
    pub(super) de: ScalarDe<'a>,
}

impl<'de> EnumAccess<'de> for UnitEnum<'_> {
    type Error = Error;
    type Variant = UnitOnly;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, UnitOnly), Error> {
        Ok((seed.deserialize(self.de)?, UnitOnly))
    }
}

pub(super) struct UnitOnly;

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
pub(super) struct MapEnum<'a> {
    pub(super) key: &'a Spanned<String>,
    pub(super) value: &'a Node,
    pub(super) env: &'a Env,
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
