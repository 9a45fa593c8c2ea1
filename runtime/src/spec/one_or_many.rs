//! A setting that takes one name or a list of names (`actual: p_total` or
//! `actual: [p_l1, p_l2, p_l3]`).

use super::Spanned;

/// One field name or a list of them, each with its position when written as a list.
/// A single name carries no position; use the key's (`NodeSpec::key_at`).
#[derive(Debug)]
pub struct OneOrMany(pub Vec<Spanned<String>>);

impl<'de> serde::Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name or a list of field names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![Spanned::new(
                    v.to_string(),
                    Default::default(),
                )]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<OneOrMany, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    names.push(name);
                }
                Ok(OneOrMany(names))
            }
        }
        d.deserialize_any(Visitor)
    }
}
