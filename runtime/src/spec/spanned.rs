//! A value together with where it was written.

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, Visitor};
use serde::{Serialize, Serializer};

use crate::diagnostic::Location;

/// The struct name the spec deserializer recognizes to hand out a value's position.
pub(crate) const SPANNED_NAME: &str = "$__smartgrid_spanned";

/// A config value together with its position in the pipeline file, so that a factory
/// can report a problem found later (an unknown input name, a missing file) at the
/// right line and column.
///
/// Use it as a field type: `url: Spanned<String>`. It dereferences to the value.
///
/// Deserialized from a pipeline file, `at` is where the value stands. Through any other
/// deserializer (for example `serde_json` in a unit test) the value is read as if it
/// were a plain `T` and `at` is `0:0`.
///
/// Equality and hashing look at the value only, not at the position.
#[derive(Clone, Default)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where the value was written (`0:0` when unknown).
    pub at: Location,
}

impl<T> Spanned<T> {
    /// A value at a position.
    pub fn new(value: T, at: Location) -> Self {
        Spanned { value, at }
    }

    /// The value, without its position.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Transform the value, keeping the position.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Spanned<U> {
        Spanned {
            value: f(self.value),
            at: self.at,
        }
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> AsRef<T> for Spanned<T> {
    fn as_ref(&self) -> &T {
        &self.value
    }
}

impl<T: fmt::Debug> fmt::Debug for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} @{}:{}", self.value, self.at.line, self.at.column)
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Spanned<T> {}

/// By value, like equality: spanned keys of a map sort as their text does.
impl<T: PartialOrd> PartialOrd for Spanned<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.value.partial_cmp(&other.value)
    }
}

impl<T: Ord> Ord for Spanned<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl<T: std::hash::Hash> std::hash::Hash for Spanned<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_newtype_struct(SPANNED_NAME, SpannedVisitor(PhantomData))
    }
}

/// The spec deserializer answers `SPANNED_NAME` with `visit_seq` of `(line, column,
/// value)`; other deserializers call `visit_newtype_struct` (or, for a few, the
/// `visit_*` of the value itself).
struct SpannedVisitor<T>(PhantomData<T>);

impl<T> SpannedVisitor<T> {
    fn plain<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Spanned<T>, D::Error>
    where
        T: Deserialize<'de>,
    {
        T::deserialize(deserializer).map(|value| Spanned {
            value,
            at: Location::default(),
        })
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
    type Value = Spanned<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        Self::plain(deserializer)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let missing = || de::Error::custom("internal error: incomplete position of a value");
        let line: usize = seq.next_element()?.ok_or_else(missing)?;
        let column: usize = seq.next_element()?.ok_or_else(missing)?;
        let value: T = seq.next_element()?.ok_or_else(missing)?;
        Ok(Spanned {
            value,
            at: Location { line, column },
        })
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Self::plain(v.into_deserializer())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Self::plain(v.into_deserializer())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Self::plain(v.into_deserializer())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Self::Value, E> {
        Self::plain(v.into_deserializer())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Self::Value, E> {
        Self::plain(v.into_deserializer())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Self::plain(v.into_deserializer())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Self::plain(v.into_deserializer())
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Self::plain(de::value::BorrowedStrDeserializer::new(v))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Self::plain(v.into_deserializer())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Self::plain(().into_deserializer())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Self::plain(de::value::MapAccessDeserializer::new(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        Self::plain(de::value::EnumAccessDeserializer::new(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Config {
        url: Spanned<String>,
        port: Option<Spanned<u16>>,
        tags: Vec<Spanned<String>>,
    }

    #[test]
    fn works_through_serde_json_with_unknown_position() {
        let config: Config =
            serde_json::from_str(r#"{"url": "mqtt://x", "port": 1883, "tags": ["a"]}"#)
                .expect("valid config");
        assert_eq!(*config.url, "mqtt://x");
        assert_eq!(config.url.at, Location::default());
        assert_eq!(config.port.map(Spanned::into_inner), Some(1883));
        assert_eq!(
            config.tags,
            vec![Spanned::new(
                "a".to_owned(),
                Location { line: 9, column: 9 }
            )]
        );
        let value = serde_json::json!({"url": "u", "tags": []});
        let config: Config = serde_json::from_value(value).expect("valid config");
        assert_eq!(config.url.as_str(), "u");
    }

    #[test]
    fn equality_ignores_position_and_serialization_is_transparent() {
        let a = Spanned::new(5, Location { line: 1, column: 2 });
        let b = Spanned::new(5, Location { line: 3, column: 4 });
        assert_eq!(a, b);
        assert_eq!(serde_json::to_string(&a).expect("serializable"), "5");
        assert_eq!(format!("{a:?}"), "5 @1:2");
        assert_eq!(a.map(|v| v * 2).value, 10);
    }
}
