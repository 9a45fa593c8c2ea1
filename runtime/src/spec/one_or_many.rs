//! A setting that takes one name or a list of names (`actual: p_total` or
//! `actual: [p_l1, p_l2, p_l3]`).

use super::Spanned;

/// One field name or a list of them, each with its position.
#[derive(Debug)]
pub struct OneOrMany(pub Vec<Spanned<String>>);

impl<'de> serde::Deserialize<'de> for OneOrMany {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // The value is read with its position, which a single name then takes.
        let written = Spanned::<Written>::deserialize(d)?;
        let at = written.at;
        Ok(match written.value {
            Written(None, names) => OneOrMany(names),
            Written(Some(name), _) => OneOrMany(vec![Spanned::new(name, at)]),
        })
    }
}

/// A single name, or the list's names (with their positions).
struct Written(Option<String>, Vec<Spanned<String>>);

impl<'de> serde::Deserialize<'de> for Written {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Written;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a field name or a list of field names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Written, E> {
                Ok(Written(Some(v.to_string()), Vec::new()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Written, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    names.push(name);
                }
                Ok(Written(None, names))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::OneOrMany;
    use crate::diagnostic::Location;
    use crate::spec::{Env, parse_str};

    #[derive(serde::Deserialize)]
    struct Settings {
        one: OneOrMany,
        many: OneOrMany,
    }

    #[test]
    fn a_single_name_and_each_listed_name_keep_their_positions() {
        let text = "nodes:\n  n:\n    type: x\n    one: p_total\n    many: [p_l1, p_l2]\n";
        let spec = parse_str(
            text,
            "p.yaml",
            Default::default(),
            Env::Fixed(Default::default()),
        )
        .expect("parses");
        let settings: Settings = spec.nodes[0].settings().expect("settings");
        let at = |line, column| Location { line, column };
        assert_eq!(settings.one.0[0].at, at(4, 10));
        assert_eq!(settings.one.0[0].value, "p_total");
        let many: Vec<_> = settings.many.0.iter().map(|n| n.at).collect();
        assert_eq!(many, [at(5, 12), at(5, 18)]);
    }
}
