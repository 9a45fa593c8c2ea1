//! The pipeline file's JSON Schema, generated from the config types the nodes
//! deserialize (`schemars`' `JsonSchema` derive next to serde's; doc comments become
//! descriptions), for `smartgrid schema` and `smartgrid kinds KIND`.
//!
//! Two things the file allows that the types do not say: any scalar may be written as
//! `${VAR}` (so a number or a boolean may also be a string holding `${`), and a node's
//! keys may come from its `connection:` (so a node naming one needs none of its keys).

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value, json};

use crate::registry::Registry;
use crate::spec::{ByteSize, Duration, OneOrMany, Spanned};

mod keys;
pub use keys::{KeyDoc, kind_keys};

/// Keys every node has, besides its kind's settings.
fn node_keys(kind: &str) -> Map<String, Value> {
    let names = json!({"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"});
    let mut keys = Map::new();
    keys.insert(
        "type".into(),
        json!({"const": kind, "description": "The node kind."}),
    );
    keys.insert(
        "input".into(),
        json!({"description": "The node this one reads from.", "allOf": [names]}),
    );
    keys.insert(
        "inputs".into(),
        json!({"description": "The nodes this one reads from, in order.", "type": "array", "items": names}),
    );
    keys.insert(
        "connection".into(),
        json!({"type": "string", "description": "A name under `connections:`: its settings, under this node's own."}),
    );
    keys
}

/// The schema of one kind's node: its settings, the common node keys, and `type` fixed
/// to the kind. A kind whose settings come in variants (`oneOf`, such as `decode`'s
/// formats) gets the node keys in each variant.
pub(crate) fn node_schema(kind: &str, summary: &str, settings: Schema) -> Value {
    let mut value = settings.to_value();
    add_node_keys(&mut value, kind);
    if let Value::Object(map) = &mut value {
        map.insert("title".into(), json!(kind));
        map.insert("description".into(), json!(summary));
    }
    value
}

fn add_node_keys(value: &mut Value, kind: &str) {
    let Value::Object(map) = value else { return };
    if let Some(Value::Array(variants)) = map.get_mut("oneOf") {
        for variant in variants {
            add_node_keys(variant, kind);
        }
        return;
    }
    let properties = map
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(properties) = properties {
        for (key, schema) in node_keys(kind) {
            properties.entry(key).or_insert(schema);
        }
    }
    map.insert("type".into(), json!("object"));
    map.insert("additionalProperties".into(), json!(false));
    // A node naming a connection may take any of its required keys from it.
    let required = map.remove("required").unwrap_or_else(|| json!([]));
    map.insert("required".into(), json!(["type"]));
    if required.as_array().is_some_and(|r| !r.is_empty()) {
        map.insert("if".into(), json!({"not": {"required": ["connection"]}}));
        map.insert("then".into(), json!({"required": required}));
    }
}

/// The whole pipeline file's schema (JSON Schema 2020-12).
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let kinds: Vec<Value> = registry
        .kind_schemas(&mut generator)
        .map(|(kind, summary, settings)| node_schema(kind, summary, settings))
        .collect();
    let definitions = generator.take_definitions(true);
    let mut schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "smartgrid pipeline",
        "description": "A smartgrid pipeline file (`smartgrid run FILE`).",
        "type": "object",
        "properties": {
            "pipeline": {"type": "string", "description": "The pipeline's name: a tag on every stored point, part of client ids and folder names (default: the file's stem)."},
            "data_dir": {"type": "string", "description": "Where everything the run writes goes (state, spools, dead letters, outboxes, write-ahead logs, file sinks), relative to the pipeline file; default the pipeline file's folder."},
            "state_dir": {"type": "string", "description": "Where state that survives restarts is kept, relative to `data_dir` (default `.smartgrid/state/<pipeline>`)."},
            "checkpoint_interval": {"description": "How often state is checkpointed with a `wal:` source (default `10s`).", "allOf": [Duration::json_schema(&mut SchemaGenerator::default())]},
            "http": {"description": "An HTTP listener for `/metrics`, `/health`, `/ready` and taps (default: none). `listen:` is `ip:port`, `localhost:port` or a port alone (loopback); default `127.0.0.1:9898`.", "type": "object", "additionalProperties": false, "properties": {"listen": {"type": ["string", "integer"]}}},
            "status_interval": {"description": "How often a status line is logged (default `1m`; `0` turns it off).", "type": "string"},
            "connections": {
                "type": "object",
                "description": "Settings shared by several nodes, by name; a node's `connection: <name>` takes them under its own.",
                "additionalProperties": {"type": "object"}
            },
            "nodes": {
                "type": "object",
                "description": "The nodes, by name.",
                "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
                "additionalProperties": {"oneOf": kinds}
            }
        },
        "patternProperties": {"^x-": {"description": "Ignored: a place for `&anchors` that nodes merge with `<<: *name`."}},
        "additionalProperties": false,
        "required": ["nodes"],
        "$defs": definitions,
    });
    allow_variables(&mut schema);
    schema
}

/// What a value written as `${VAR}` matches.
const VARIABLE: &str = "\\$\\{";

/// Let every number, integer and boolean also be a string with a `${VAR}` in it.
fn allow_variables(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for child in map.values_mut() {
                allow_variables(child);
            }
            let scalar = |t: &Value| matches!(t.as_str(), Some("integer" | "number" | "boolean"));
            let typed = match map.get("type") {
                Some(Value::String(_)) => map.get("type").is_some_and(scalar),
                Some(Value::Array(types)) => types.iter().any(scalar),
                _ => false,
            };
            if typed {
                let mut original = std::mem::take(map);
                // What documents the key stays on it, for editors and `kinds`.
                for key in ["title", "description", "default"] {
                    if let Some(value) = original.remove(key) {
                        map.insert(key.into(), value);
                    }
                }
                map.insert(
                    "anyOf".into(),
                    json!([original, {"type": "string", "pattern": VARIABLE}]),
                );
            }
        }
        Value::Array(items) => items.iter_mut().for_each(allow_variables),
        _ => {}
    }
}

/// The settings of a kind that reads two groups of keys (its `Config` and the rest,
/// see [`Node::CONFIG_KEYS`](crate::node::Node::CONFIG_KEYS)) as one table: the keys
/// and required keys of both.
pub fn union(first: Schema, second: Schema) -> Schema {
    let mut merged = first.to_value();
    let second = second.to_value();
    for key in ["properties", "required"] {
        match (merged.get_mut(key), second.get(key)) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                for (k, v) in b {
                    a.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            (Some(Value::Array(a)), Some(Value::Array(b))) => a.extend(b.iter().cloned()),
            (None, Some(b)) => {
                if let Value::Object(m) = &mut merged {
                    m.insert(key.into(), b.clone());
                }
            }
            _ => {}
        }
    }
    Schema::try_from(merged).expect("an object schema stays one")
}

/// The settings of a kind whose `tag` key (such as `decode`'s `format`) picks a
/// variant with keys of its own: one table per variant, each with the common keys and
/// `tag` fixed to the variant's name.
pub fn tagged_variants(common: Schema, tag: &str, variants: Vec<(&str, Schema)>) -> Schema {
    let branches: Vec<Value> = variants
        .into_iter()
        .map(|(name, variant)| {
            let mut branch = union(common.clone(), variant).to_value();
            if let Some(Value::Object(properties)) = branch.get_mut("properties") {
                let doc = properties
                    .get(tag)
                    .and_then(|p| p.get("description"))
                    .cloned()
                    .unwrap_or(Value::Null);
                properties.insert(tag.into(), json!({"const": name, "description": doc}));
            }
            branch
        })
        .collect();
    json_schema!({ "oneOf": branches })
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "title": "duration",
            "type": "string",
            "description": "A duration with a unit: `500ms`, `10s`, `1m`, `2m30s`, `1h`, `1d`.",
            "pattern": "^\\s*([0-9]+(\\.[0-9]+)?\\s*(ns|us|µs|ms|s|m|h|d)\\s*)+$|\\$\\{"
        })
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "size".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "title": "size",
            "description": "A size in bytes: a number, or with a unit such as `512KiB`, `1MiB`, `2GB`.",
            "type": ["string", "integer"],
            "minimum": 0
        })
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        // A position is not part of the file: the value's schema, as if unwrapped.
        true
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        generator.subschema_for::<T>()
    }
}

impl JsonSchema for OneOrMany {
    fn schema_name() -> Cow<'static, str> {
        "FieldNames".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "title": "field name or list of field names",
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_top_level_key_the_parser_knows_is_in_the_schema() {
        // A new top-level key needs its entry in `pipeline_schema` too.
        let schema = pipeline_schema(&Registry::new());
        let properties = schema["properties"].as_object().expect("properties");
        for key in crate::spec::TOP_KEYS {
            assert!(
                properties.contains_key(key),
                "`{key}` is missing from the schema"
            );
        }
        assert_eq!(properties.len(), crate::spec::TOP_KEYS.len());
    }

    #[test]
    fn numbers_and_booleans_may_be_variables() {
        let mut schema =
            json!({"properties": {"n": {"type": "integer", "description": "d", "minimum": 1}}});
        allow_variables(&mut schema);
        assert_eq!(
            schema["properties"]["n"],
            json!({"description": "d", "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": VARIABLE}]})
        );
    }
}
