//! serde's access to lists and mappings (and the `(line, column, value)` sequence that
//! [`Spanned`] reads): each item or value deserialized by a node deserializer of its
//! own, its errors located at it, and every unknown key of a struct's mapping reported
//! at once.
//!
//! Separate from the node deserializer because the two recurse into each other: here is
//! the iteration, there what one node means.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};

use super::error::Error;
use super::node::NodeDe;
use super::scalar::ScalarDe;
use crate::diagnostic::Location;
use crate::spec::yaml::Node;
use crate::spec::{Env, Spanned};

/// `visit_seq` over `items`, refusing items the visitor left unread.
pub(super) fn visit_sequence<'de, V: Visitor<'de>>(
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

pub(super) struct MapDe<'a> {
    entries: &'a [(Spanned<String>, Node)],
    /// The next entry.
    index: usize,
    /// A struct's fields (with aliases), to report every unknown key at once.
    fields: Option<&'static [&'static str]>,
    env: &'a Env,
}

impl<'a> MapDe<'a> {
    pub(super) fn new(
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
                            e.extend(more.locate_key(other));
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

/// Answers [`Spanned`]'s request with `(line, column, value)`.
pub(super) struct SpannedSeq<D> {
    at: Location,
    step: u8,
    value: Option<D>,
}

impl<D> SpannedSeq<D> {
    pub(super) fn new(at: Location, value: D) -> Self {
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
