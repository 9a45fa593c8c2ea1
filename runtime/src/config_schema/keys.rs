//! One kind's keys as the schema describes them, for `smartgrid kinds KIND`.

use serde_json::{Value, json};

use super::{VARIABLE, node_keys, pipeline_schema};
use crate::registry::Registry;

/// One key of a kind, for `smartgrid kinds KIND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDoc {
    /// The key.
    pub name: String,
    /// Its type in words (`string`, `integer`, `duration`, `one of: a, b`, …).
    pub ty: String,
    /// Its default, if the schema states one.
    pub default: Option<String>,
    /// Whether it must be given.
    pub required: bool,
    /// Its doc comment.
    pub doc: String,
}

/// The keys of `kind`'s nodes (its settings, then `type`, `input`, … are left out),
/// as the schema says; `None` for an unknown kind. Keys of a kind with variants
/// (`decode`'s formats) are listed once each.
pub fn kind_keys(registry: &Registry, kind: &str) -> Option<Vec<KeyDoc>> {
    let schema = pipeline_schema(registry);
    let variants = schema.pointer("/properties/nodes/additionalProperties/oneOf")?;
    let node = variants
        .as_array()?
        .iter()
        .find(|v| v.get("title").and_then(Value::as_str) == Some(kind))?;
    let defs = schema.get("$defs").cloned().unwrap_or(json!({}));
    let mut keys: Vec<KeyDoc> = Vec::new();
    let branches: Vec<&Value> = match node.get("oneOf").and_then(Value::as_array) {
        Some(branches) => branches.iter().collect(),
        None => vec![node],
    };
    let common = node_keys(kind);
    // With variants (`decode`'s formats): which variants have each key, by tag value.
    let mut variants_of: Vec<(String, Vec<String>)> = Vec::new();
    for branch in &branches {
        let required: Vec<&str> = branch
            .pointer("/then/required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let Some(properties) = branch.get("properties").and_then(Value::as_object) else {
            continue;
        };
        let tag = properties
            .iter()
            .filter(|(name, _)| !common.contains_key(*name))
            .find_map(|(name, p)| Some((name.clone(), p.get("const")?.as_str()?.to_owned())));
        for (name, prop) in properties {
            if common.contains_key(name) {
                continue;
            }
            if let Some((_, value)) = &tag {
                match variants_of.iter_mut().find(|(k, _)| k == name) {
                    Some((_, values)) => values.push(value.clone()),
                    None => variants_of.push((name.clone(), vec![value.clone()])),
                }
            }
            if let Some(known) = keys.iter_mut().find(|k| &k.name == name) {
                // A variant's tag (`format: clemap`): list every variant's value.
                if let Some(value) = prop.get("const").and_then(Value::as_str) {
                    known.ty = format!("{}, {value}", known.ty);
                }
                continue;
            }
            let ty = match prop.get("const").and_then(Value::as_str) {
                Some(value) => format!("one of: {value}"),
                None => describe_type(prop, &defs),
            };
            let required = required.contains(&name.as_str());
            push_key(&mut keys, name.clone(), ty, required, prop, &defs, 0);
        }
    }
    // A key only some variants have says which (`fields  (list of table; format: struct, json)`).
    let tag_name = branches.first().and_then(|b| {
        b.get("properties")?
            .as_object()?
            .iter()
            .find(|(name, p)| !common.contains_key(*name) && p.get("const").is_some())
            .map(|(name, _)| name.clone())
    });
    if let Some(tag_name) = tag_name {
        for key in &mut keys {
            let top = key.name.split('.').next().unwrap_or_default();
            if let Some((_, values)) = variants_of.iter().find(|(k, _)| k == top)
                && values.len() < branches.len()
            {
                key.ty = format!("{}; {tag_name}: {}", key.ty, values.join(", "));
            }
        }
    }
    Some(keys)
}

/// How deep `kinds KIND` lists the keys of tables (`retry.max_delay` is one level).
const MAX_TABLE_DEPTH: usize = 1;

/// Add the key `name` with schema `prop`, then the keys of its table if it is one
/// (`retry` → `retry.initial_delay`, …).
fn push_key(
    keys: &mut Vec<KeyDoc>,
    name: String,
    ty: String,
    required: bool,
    prop: &Value,
    defs: &Value,
    depth: usize,
) {
    let resolved = resolve(prop, defs);
    let default = prop
        .get("default")
        .or_else(|| resolved.get("default"))
        .filter(|d| !d.is_null())
        .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_owned));
    let doc = prop
        .get("description")
        .or_else(|| resolved.get("description"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    keys.push(KeyDoc {
        name: name.clone(),
        ty,
        default,
        required,
        doc,
    });
    if depth >= MAX_TABLE_DEPTH {
        return;
    }
    let Some(table) = table_of(prop, defs) else {
        return;
    };
    let inner_required: Vec<&str> = table
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = table.get("properties").and_then(Value::as_object) {
        for (child, schema) in properties {
            let ty = describe_type(schema, defs);
            let required = inner_required.contains(&child.as_str());
            let path = format!("{name}.{child}");
            push_key(keys, path, ty, required, schema, defs, depth + 1);
        }
    }
}

/// The table (an object with `properties`) `schema` is, or may be (an `Option` of one).
fn table_of(schema: &Value, defs: &Value) -> Option<Value> {
    let schema = resolve(schema, defs);
    if schema.get("properties").is_some() {
        return Some(schema);
    }
    schema
        .get("anyOf")
        .and_then(Value::as_array)?
        .iter()
        .find_map(|branch| table_of(branch, defs))
}

/// `schema` with a `$ref` (or a lone `allOf`) replaced by what it names.
fn resolve(schema: &Value, defs: &Value) -> Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str)
        && let Some(name) = reference.strip_prefix("#/$defs/")
        && let Some(def) = defs.get(name)
    {
        return resolve(def, defs);
    }
    if let Some([only]) = schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        return resolve(only, defs);
    }
    schema.clone()
}

/// Whether `schema` is what [`allow_variables`] adds (a string holding `${`) or `null`
/// (an `Option`): neither says what the key takes.
fn is_incidental(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("null")
        || schema.get("pattern").and_then(Value::as_str) == Some(VARIABLE)
}

/// A schema's type in a few words.
fn describe_type(schema: &Value, defs: &Value) -> String {
    let schema = resolve(schema, defs);
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let names: Vec<String> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        return format!("one of: {}", names.join(", "));
    }
    if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
        let consts: Vec<String> = variants
            .iter()
            .filter_map(|v| v.get("const").and_then(Value::as_str).map(str::to_owned))
            .collect();
        if consts.len() == variants.len() {
            return format!("one of: {}", consts.join(", "));
        }
    }
    if let Some(title) = schema.get("title").and_then(Value::as_str) {
        return title.to_owned();
    }
    for combinator in ["anyOf", "oneOf"] {
        if let Some(branches) = schema.get(combinator).and_then(Value::as_array) {
            let mut words: Vec<String> = Vec::new();
            for branch in branches.iter().filter(|b| !is_incidental(b)) {
                let word = describe_type(branch, defs);
                if !words.contains(&word) {
                    words.push(word);
                }
            }
            if !words.is_empty() {
                return words.join(" or ");
            }
        }
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let item = schema
                .get("items")
                .map_or_else(|| "value".into(), |i| describe_type(i, defs));
            format!("list of {item}")
        }
        Some(Value::String(t)) if t == "object" && schema.get("properties").is_none() => {
            "mapping".into()
        }
        Some(Value::String(t)) if t == "object" => "table".into(),
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => {
            // `[T, "null"]`: an `Option<T>` reads as a T.
            let mut words = Vec::new();
            for t in types.iter().filter(|t| t.as_str() != Some("null")) {
                let mut one = schema.clone();
                one["type"] = t.clone();
                words.push(describe_type(&one, defs));
            }
            words.join(" or ")
        }
        _ => "value".into(),
    }
}
