//! `format:`: which payload format a `decode` node reads, and that format's settings.

use serde::Deserialize;

use super::{
    ClemapConfig, ClemapDecoder, JsonConfig, JsonDecoder, PayloadDecoder, StructConfig,
    StructDecoder,
};

/// Which payload format a `decode` node reads, and how: the node's `format:` key picks the
/// variant, the other keys are that format's settings. For example
///
/// ```yaml
/// format: clemap          # Clemap binary, ten-second records
/// feature_type: 16
/// ```
/// ```yaml
/// format: struct          # any fixed-size binary record
/// byte_order: little
/// fields:
///   - { name: kind, type: u8, role: skip }
///   - { name: ts,   type: f64, role: timestamp, unit: s }
///   - { name: id,   type: bytes, len: 12, role: sensor_id, encoding: hex }
///   - { name: p_l1, type: i64, divide_by: 1000 }
/// match: { field: kind, value: 16 }
/// ```
/// ```yaml
/// format: json            # JSON objects
/// sensor_id: /device
/// timestamp: /ts
/// timestamp_unit: ms
/// fields:
///   p_l1: /power/l1
///   p_l2: /power/l2
/// ```
///
/// Unknown keys are refused. Errors point at the key or value at fault when `format:` is
/// the mapping's first key (otherwise the mapping is read whole first and errors point at
/// the mapping).
///
/// A node config can embed it with `#[serde(flatten)]` (then the node's own struct must
/// not use `deny_unknown_fields`; the format still refuses keys nobody claims, but serde
/// buffers flattened keys, so those errors point at the node rather than the key).
#[derive(Clone, Debug, PartialEq)]
pub enum FormatConfig {
    /// `format: clemap`: Clemap three-phase monitor messages.
    Clemap(ClemapConfig),
    /// `format: struct`: a fixed-size binary record described field by field.
    Struct(StructConfig),
    /// `format: json`: JSON objects, values picked by JSON pointers.
    Json(JsonConfig),
}

/// The value of `format:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum FormatName {
    Clemap,
    Struct,
    Json,
}

impl FormatName {
    /// The format's settings from the rest of the mapping.
    fn settings<'de, D: serde::Deserializer<'de>>(self, rest: D) -> Result<FormatConfig, D::Error> {
        Ok(match self {
            FormatName::Clemap => FormatConfig::Clemap(ClemapConfig::deserialize(rest)?),
            FormatName::Struct => FormatConfig::Struct(StructConfig::deserialize(rest)?),
            FormatName::Json => FormatConfig::Json(JsonConfig::deserialize(rest)?),
        })
    }
}

// Internally tagged on `format`, like `#[serde(tag = "format")]`, but without serde's
// buffering when `format:` comes first, so the pipeline file's deserializer still knows
// where each setting stands.
impl<'de> Deserialize<'de> for FormatConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, MapAccess, Visitor, value::MapAccessDeserializer};

        struct FormatVisitor;

        impl<'de> Visitor<'de> for FormatVisitor {
            type Value = FormatConfig;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a mapping with a `format:` key (clemap, struct or json)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FormatConfig, A::Error> {
                let Some(first) = map.next_key::<String>()? else {
                    return Err(A::Error::missing_field("format"));
                };
                if first == "format" {
                    let name: FormatName = map.next_value()?;
                    return name.settings(MapAccessDeserializer::new(map));
                }
                let mut buffered = serde_json::Map::new();
                buffered.insert(first, map.next_value()?);
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    buffered.insert(key, value);
                }
                let name = buffered
                    .remove("format")
                    .ok_or_else(|| A::Error::missing_field("format"))?;
                let name = FormatName::deserialize(name).map_err(A::Error::custom)?;
                name.settings(serde_json::Value::Object(buffered))
                    .map_err(A::Error::custom)
            }
        }

        deserializer.deserialize_map(FormatVisitor)
    }
}

impl FormatConfig {
    /// Check the settings and build the decoder. The message says what is wrong and
    /// where (which field); the caller adds the file position.
    pub fn build(&self) -> Result<Box<dyn PayloadDecoder>, String> {
        Ok(match self {
            FormatConfig::Clemap(c) => Box::new(ClemapDecoder::new(c.feature_type)?),
            FormatConfig::Struct(c) => Box::new(StructDecoder::new(c)?),
            FormatConfig::Json(c) => Box::new(JsonDecoder::new(c)?),
        })
    }

    /// The format's name, as written after `format:`.
    pub fn name(&self) -> &'static str {
        match self {
            FormatConfig::Clemap(_) => "clemap",
            FormatConfig::Struct(_) => "struct",
            FormatConfig::Json(_) => "json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_config_is_tagged_by_format() {
        use serde_json::json;
        let c: FormatConfig = serde_json::from_value(json!({ "format": "clemap" })).expect("valid");
        assert_eq!(c, FormatConfig::Clemap(ClemapConfig { feature_type: 16 }));
        let c: FormatConfig =
            serde_json::from_value(json!({ "format": "clemap", "feature_type": 17 }))
                .expect("valid");
        assert_eq!(c.name(), "clemap");
        assert_eq!(c.build().expect("valid").schema().len(), 25);
        let c: FormatConfig =
            serde_json::from_value(json!({ "format": "clemap", "feature_type": 18 }))
                .expect("parses");
        assert!(c.build().err().expect("refused").contains("16"));
        // Unknown keys and formats are refused.
        let e = serde_json::from_value::<FormatConfig>(json!({ "format": "clemap", "type": 17 }))
            .expect_err("unknown key");
        assert!(e.to_string().contains("type"), "{e}");
        let e = serde_json::from_value::<FormatConfig>(json!({ "format": "xml" }))
            .expect_err("unknown format");
        assert!(e.to_string().contains("clemap"), "{e}");
        assert!(serde_json::from_value::<FormatConfig>(json!({ "feature_type": 16 })).is_err());
        assert!(serde_json::from_value::<FormatConfig>(json!({})).is_err());
        assert!(serde_json::from_value::<FormatConfig>(json!("clemap")).is_err());
        // `format` need not come first.
        let c: FormatConfig = serde_json::from_value(json!({
            "sensor_id": "/d", "timestamp": "/t", "fields": { "b": "/b", "a": "/a" }, "format": "json",
        }))
        .expect("valid");
        assert_eq!(
            c.build()
                .expect("valid")
                .schema()
                .fields()
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
        let e = serde_json::from_value::<FormatConfig>(
            json!({ "feature_type": 16, "format": "clemap", "x": 1 }),
        )
        .expect_err("unknown key");
        assert!(e.to_string().contains('x'), "{e}");
    }

    #[test]
    fn format_config_can_be_flattened_into_a_node_config() {
        use serde_json::json;
        #[derive(Debug, Deserialize)]
        struct Node {
            #[serde(default)]
            dead_letter: Option<String>,
            #[serde(flatten)]
            format: FormatConfig,
        }
        let n: Node = serde_json::from_value(json!({
            "format": "clemap", "feature_type": 17, "dead_letter": "bad",
        }))
        .expect("valid");
        assert_eq!(n.dead_letter.as_deref(), Some("bad"));
        assert_eq!(
            n.format,
            FormatConfig::Clemap(ClemapConfig { feature_type: 17 })
        );
        // The format still refuses keys nobody claims.
        let e = serde_json::from_value::<Node>(json!({ "format": "clemap", "dead_leter": "bad" }))
            .expect_err("typo");
        assert!(e.to_string().contains("dead_leter"), "{e}");
        let n: Node = serde_json::from_value(json!({
            "format": "json", "sensor_id": "/d", "timestamp": "/t", "fields": { "b": "/b", "a": "/a" },
        }))
        .expect("valid");
        assert_eq!(
            n.format
                .build()
                .expect("valid")
                .schema()
                .fields()
                .collect::<Vec<_>>(),
            ["b", "a"]
        );
    }

    /// The three formats as a pipeline file writes them, read by the runtime's own
    /// deserializer (YAML core schema, positions).
    #[test]
    fn format_configs_from_a_pipeline_file() {
        use smartgrid_runtime::spec::{Env, parse_str};
        let text = r#"
pipeline: test
nodes:
  ten:
    type: decode
    format: clemap
  one:
    type: decode
    format: clemap
    feature_type: 17
  custom:
    type: decode
    format: struct
    byte_order: big
    fields:
      - { name: kind, type: u8, role: skip }
      - { name: ts,   type: u64, role: timestamp, unit: ms }
      - { name: id,   type: bytes, len: 8, role: sensor_id, encoding: utf8 }
      - { type: pad, len: 3 }
      - { name: p,    type: i32, divide_by: 1000 }
      - { name: v,    type: f32 }
    match: { field: kind, value: 2 }
  js:
    type: decode
    format: json
    sensor_id_from_topic: 1
    timestamp: /ts
    timestamp_unit: ms
    fields:
      z: /power/z
      a: { path: /a, divide_by: 10 }
  bad:
    type: decode
    format: struct
    fields:
      - { name: kind, type: u24 }
  typo:
    type: decode
    format: clemap
    feature_typ: 17
"#;
        let spec =
            parse_str(text, "p.yaml", std::path::PathBuf::new(), Env::default()).expect("parses");
        let schemas: Vec<String> = spec
            .nodes
            .iter()
            .filter(|n| n.name != "bad" && n.name != "typo")
            .map(|n| {
                let config: FormatConfig =
                    n.settings().unwrap_or_else(|e| panic!("{}: {e:?}", n.name));
                config
                    .build()
                    .unwrap_or_else(|e| panic!("{}: {e}", n.name))
                    .schema()
                    .to_string()
            })
            .collect();
        assert_eq!(schemas[0], "phase, p_l1, p_l2, p_l3, q_l1, q_l2, q_l3");
        assert!(schemas[1].ends_with("avg_energy_l3"));
        assert_eq!(schemas[2], "p, v");
        assert_eq!(schemas[3], "z, a");
        // Errors point at the value at fault.
        let bad = spec.nodes.iter().find(|n| n.name == "bad").expect("node");
        let errors = bad.settings::<FormatConfig>().expect_err("unknown type");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].message.contains("u24"), "{errors:?}");
        assert_eq!(
            (errors[0].at.line, errors[0].at.column),
            (36, 29),
            "{errors:?}"
        );
        let typo = spec.nodes.iter().find(|n| n.name == "typo").expect("node");
        let errors = typo.settings::<FormatConfig>().expect_err("unknown key");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(
            (errors[0].at.line, errors[0].at.column),
            (40, 5),
            "{errors:?}"
        );
        assert!(
            errors[0]
                .hint
                .as_deref()
                .is_some_and(|h| h.contains("feature_type")),
            "{errors:?}"
        );
    }
}
