//! `format: json`: JSON payloads, values picked by JSON pointers (RFC 6901: `/a/b` is key
//! `b` of object `a`, `/a/0` the first item of array `a`; `~1` stands for `/`, `~0` for
//! `~`).
//!
//! ```yaml
//! format: json
//! sensor_id: /device            # or: sensor_id_from_topic: 3
//! timestamp: /ts
//! timestamp_unit: ms            # s (default) | ms | us
//! fields:                       # row column: pointer, in row order
//!   p_l1: /power/l1
//!   p_l2: /power/l2
//!   e: { path: /energy_wh, divide_by: 1000 }
//! ```
//!
//! `fields` may also be a list, `- { name: p_l1, path: /power/l1 }`, for tools that
//! reorder mappings. Values may be JSON numbers or numeric strings (`"230.5"`); a missing
//! value, `null`, a boolean or other text is an `invalid` error naming the pointer, and
//! NaN or infinity is `non_finite`. The sensor id is a string or an integer (shown in
//! decimal), at most 24 bytes.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use smartgrid_runtime::record::{MAX_FIELDS, Row, SENSOR_ID_MAX, SensorId};
use smartgrid_runtime::schema::Schema;

use super::{
    DecodeError, Decoded, PayloadDecoder, TimeUnit, float_time_ms, int_time_ms, sensor_from_topic,
};

/// The settings of `format: json`.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonConfig {
    /// JSON pointer to the sensor id (a string, or an integer shown in decimal), e.g.
    /// `/device`. Give this or `sensor_id_from_topic`.
    #[serde(default)]
    pub sensor_id: Option<String>,
    /// Take the sensor id from this level of the MQTT topic (0-based, `/`-separated)
    /// instead: with `meters/+/state`, `1` is the `+`.
    #[serde(default)]
    pub sensor_id_from_topic: Option<usize>,
    /// JSON pointer to the event time, a number (or numeric string) in `timestamp_unit`.
    pub timestamp: String,
    /// The timestamp's unit: `s` (the default; may be fractional), `ms` or `us`. Event
    /// times are whole ms, rounded to the nearest.
    #[serde(default)]
    pub timestamp_unit: TimeUnit,
    /// The row's values, in order: a mapping from column name to JSON pointer
    /// (`p_l1: /power/l1`), or to `{ path: /power/l1, divide_by: 1000 }`; or a list of
    /// `{ name, path, divide_by }`. At most 32.
    pub fields: JsonFields,
}

/// The ordered `fields` of a JSON format (see [`JsonConfig::fields`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JsonFields(pub Vec<JsonField>);

/// One row value of a JSON format.
#[derive(Clone, Debug, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonField {
    /// The row column's name.
    pub name: String,
    /// JSON pointer to the value, e.g. `/power/l1`.
    pub path: String,
    /// The row holds `value / divide_by`. A finite, non-zero number.
    #[serde(default)]
    pub divide_by: Option<f64>,
}

/// `{ path, divide_by }`: the long form of a mapping entry's value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PathAndScale {
    path: String,
    #[serde(default)]
    divide_by: Option<f64>,
}

/// A mapping entry's value: a pointer, or `{ path, divide_by }`.
struct FieldValue(PathAndScale);

impl schemars::JsonSchema for JsonFields {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JsonFields".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let long = schemars::json_schema!({
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "JSON pointer to the value, e.g. `/power/l1`."},
                "divide_by": {"type": "number", "description": "The row holds `value / divide_by`."}
            },
            "required": ["path"],
            "additionalProperties": false
        });
        let field = generator.subschema_for::<JsonField>();
        schemars::json_schema!({
            "description": "column name → JSON pointer (or `{ path, divide_by }`), or a list of `{ name, path, divide_by }`",
            "anyOf": [
                {"type": "object", "additionalProperties": {"anyOf": [{"type": "string"}, long]}},
                {"type": "array", "items": field}
            ]
        })
    }
}

impl<'de> Deserialize<'de> for FieldValue {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON pointer such as `/power/l1`, or `{ path: …, divide_by: … }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldValue, E> {
                Ok(FieldValue(PathAndScale {
                    path: v.to_owned(),
                    divide_by: None,
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FieldValue, A::Error> {
                PathAndScale::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FieldValue)
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for JsonFields {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonFields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping `name: /json/pointer`, or a list of `{ name, path }`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonFields, A::Error> {
                let mut fields = Vec::new();
                while let Some((name, FieldValue(v))) = map.next_entry::<String, FieldValue>()? {
                    fields.push(JsonField {
                        name,
                        path: v.path,
                        divide_by: v.divide_by,
                    });
                }
                Ok(JsonFields(fields))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonFields, A::Error> {
                let mut fields = Vec::new();
                while let Some(field) = seq.next_element::<JsonField>()? {
                    fields.push(field);
                }
                Ok(JsonFields(fields))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Where the sensor id comes from.
#[derive(Clone, Debug, PartialEq)]
enum SensorSource {
    Pointer(String),
    Topic(usize),
}

/// A checked `format: json` mapping.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonDecoder {
    sensor: SensorSource,
    timestamp: String,
    unit: TimeUnit,
    fields: Vec<JsonField>,
}

/// Check that `p` is a JSON pointer.
fn check_pointer(what: &str, p: &str) -> Result<(), String> {
    if !(p.is_empty() || p.starts_with('/')) {
        return Err(format!(
            "{what}: `{p}` is not a JSON pointer; pointers start with `/`, e.g. `/{}`",
            p.replace('.', "/")
        ));
    }
    let mut chars = p.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!(
                "{what}: `{p}`: `~` must be written `~0` in a JSON pointer (`~1` is `/`)"
            ));
        }
    }
    Ok(())
}

impl JsonDecoder {
    /// Check a mapping. The message names the setting at fault.
    pub fn new(config: &JsonConfig) -> Result<Self, String> {
        let sensor = match (&config.sensor_id, config.sensor_id_from_topic) {
            (Some(p), None) => {
                check_pointer("`sensor_id`", p)?;
                SensorSource::Pointer(p.clone())
            }
            (None, Some(level)) => SensorSource::Topic(level),
            (Some(_), Some(_)) => {
                return Err(
                    "give either `sensor_id` (a JSON pointer) or `sensor_id_from_topic`, not both"
                        .into(),
                );
            }
            (None, None) => {
                return Err(
                    "no sensor id: set `sensor_id` (a JSON pointer) or `sensor_id_from_topic`"
                        .into(),
                );
            }
        };
        check_pointer("`timestamp`", &config.timestamp)?;
        let fields = &config.fields.0;
        if fields.is_empty() {
            return Err("`fields` is empty: map at least one column name to a JSON pointer".into());
        }
        if fields.len() > MAX_FIELDS {
            return Err(format!(
                "`fields` has {} entries; a row holds at most {MAX_FIELDS}",
                fields.len()
            ));
        }
        for (i, f) in fields.iter().enumerate() {
            if f.name.trim().is_empty() {
                return Err(format!("`fields[{i}]`: the name is empty"));
            }
            if fields[..i].iter().any(|g| g.name == f.name) {
                return Err(format!("`fields.{}`: the name is used twice", f.name));
            }
            check_pointer(&format!("`fields.{}`", f.name), &f.path)?;
            if let Some(d) = f.divide_by
                && (!d.is_finite() || d == 0.0)
            {
                return Err(format!(
                    "`fields.{}`: `divide_by` must be a finite, non-zero number",
                    f.name
                ));
            }
        }
        Ok(JsonDecoder {
            sensor,
            timestamp: config.timestamp.clone(),
            unit: config.timestamp_unit,
            fields: fields.clone(),
        })
    }
}

/// A number at `pointer`, as `f64`; integers stay integers for timestamps.
enum Number {
    Int(i128),
    Float(f64),
}

fn number(doc: &Value, pointer: &str) -> Result<Number, DecodeError> {
    let value = doc
        .pointer(pointer)
        .ok_or_else(|| DecodeError::Invalid(format!("no value at `{pointer}`")))?;
    match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(Number::Int(i.into()))
            } else if let Some(u) = n.as_u64() {
                Ok(Number::Int(u.into()))
            } else {
                n.as_f64().map(Number::Float).ok_or_else(|| {
                    DecodeError::Invalid(format!("`{pointer}`: {n} is not a number"))
                })
            }
        }
        Value::String(s) => {
            let s = s.trim();
            if let Ok(i) = s.parse::<i64>() {
                Ok(Number::Int(i.into()))
            } else {
                s.parse::<f64>().map(Number::Float).map_err(|_| {
                    DecodeError::Invalid(format!("`{pointer}`: {s:?} is not a number"))
                })
            }
        }
        other => Err(DecodeError::Invalid(format!(
            "`{pointer}`: {other} is not a number"
        ))),
    }
}

impl PayloadDecoder for JsonDecoder {
    fn schema(&self) -> Schema {
        Schema::new(self.fields.iter().map(|f| &f.name))
    }

    fn for_worker(&self) -> Box<dyn PayloadDecoder> {
        Box::new(self.clone())
    }

    fn decode(
        &mut self,
        topic: &str,
        payload: &[u8],
        row: &mut Row,
    ) -> Result<Option<Decoded>, DecodeError> {
        if payload.is_empty() {
            return Err(DecodeError::Empty);
        }
        let doc: Value = serde_json::from_slice(payload)
            .map_err(|e| DecodeError::Invalid(format!("not JSON: {e}")))?;
        let time_ms = match number(&doc, &self.timestamp)? {
            Number::Int(i) => int_time_ms(i, self.unit, &self.timestamp)?,
            Number::Float(f) => float_time_ms(f, self.unit, &self.timestamp)?,
        };
        let sensor = match &self.sensor {
            SensorSource::Topic(level) => sensor_from_topic(topic, *level)?,
            SensorSource::Pointer(p) => {
                let text = match doc.pointer(p) {
                    None => return Err(DecodeError::Invalid(format!("no value at `{p}`"))),
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.to_string(),
                    Some(other) => {
                        return Err(DecodeError::Invalid(format!(
                            "`{p}`: {other} is not a sensor id (a string or an integer)"
                        )));
                    }
                };
                if text.is_empty() {
                    return Err(DecodeError::Invalid(format!(
                        "`{p}`: the sensor id is empty"
                    )));
                }
                SensorId::new(&text).map_err(|_| {
                    DecodeError::Invalid(format!(
                        "`{p}`: the sensor id is {} bytes long; at most {SENSOR_ID_MAX} are allowed",
                        text.len()
                    ))
                })?
            }
        };
        row.clear();
        for f in &self.fields {
            let value = match number(&doc, &f.path)? {
                Number::Int(i) => i as f64,
                Number::Float(v) => v,
            };
            let value = match f.divide_by {
                Some(d) => value / d,
                None => value,
            };
            if !value.is_finite() {
                return Err(DecodeError::NonFinite(f.path.clone()));
            }
            row.try_push(value)
                .map_err(|_| DecodeError::Invalid(format!("more than {MAX_FIELDS} values")))?;
        }
        Ok(Some(Decoded { sensor, time_ms }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::FormatConfig;
    use serde_json::json;

    fn decoder(v: Value) -> Result<JsonDecoder, String> {
        let config: JsonConfig = serde_json::from_value(v).map_err(|e| e.to_string())?;
        JsonDecoder::new(&config)
    }

    fn decode(
        d: &JsonDecoder,
        topic: &str,
        payload: &str,
    ) -> Result<Option<(Decoded, Row)>, DecodeError> {
        let mut row = Row::new();
        d.clone()
            .decode(topic, payload.as_bytes(), &mut row)
            .map(|o| o.map(|decoded| (decoded, row)))
    }

    fn meter() -> JsonDecoder {
        decoder(json!({
            "sensor_id": "/device",
            "timestamp": "/ts",
            "timestamp_unit": "ms",
            "fields": { "p_l2": "/power/l2", "p_l1": "/power/l1", "e": { "path": "/e/0", "divide_by": 1000 } },
        }))
        .expect("valid")
    }

    #[test]
    fn values_in_mapping_order() {
        let d = meter();
        assert_eq!(
            d.schema().fields().collect::<Vec<_>>(),
            ["p_l2", "p_l1", "e"]
        );
        let (decoded, row) = decode(
            &d,
            "t",
            r#"{"device":"meter-7","ts":1700000000123,"power":{"l1":1.5,"l2":"-2.25"},"e":[1500]}"#,
        )
        .expect("ok")
        .expect("kept");
        assert_eq!(decoded.sensor.as_str(), "meter-7");
        assert_eq!(decoded.time_ms, 1_700_000_000_123);
        assert_eq!(row.as_slice(), &[-2.25, 1.5, 1.5]);
    }

    #[test]
    fn list_form_and_numeric_ids() {
        let d = decoder(json!({
            "sensor_id": "/id",
            "timestamp": "/t",
            "fields": [ { "name": "v", "path": "/a~1b" }, { "name": "w", "path": "/x", "divide_by": 10 } ],
        }))
        .expect("valid");
        let (decoded, row) = decode(&d, "t", r#"{"id":42,"t":"1700000000.5","a/b":3,"x":"25"}"#)
            .expect("ok")
            .expect("kept");
        assert_eq!(
            (decoded.sensor.as_str(), decoded.time_ms),
            ("42", 1_700_000_000_500)
        );
        assert_eq!(row.as_slice(), &[3.0, 2.5]);
    }

    #[test]
    fn missing_and_non_numeric_fields_are_invalid() {
        let d = meter();
        let err = |payload: &str| decode(&d, "t", payload).expect_err("rejected");
        let e = err(r#"{"device":"m","ts":1,"power":{"l2":2},"e":[1]}"#);
        assert_eq!(e, DecodeError::Invalid("no value at `/power/l1`".into()));
        let e = err(r#"{"device":"m","ts":1,"power":{"l1":"abc","l2":2},"e":[1]}"#);
        assert!(
            e.reason() == "invalid" && e.to_string().contains("/power/l1"),
            "{e}"
        );
        let e = err(r#"{"device":"m","ts":1,"power":{"l1":true,"l2":2},"e":[1]}"#);
        assert!(
            e.reason() == "invalid" && e.to_string().contains("/power/l1"),
            "{e}"
        );
        let e = err(r#"{"device":"m","ts":1,"power":{"l1":null,"l2":2},"e":[1]}"#);
        assert_eq!(e.reason(), "invalid");
        let e = err(r#"{"device":"m","ts":1,"power":{"l1":"NaN","l2":2},"e":[1]}"#);
        assert_eq!(e, DecodeError::NonFinite("/power/l1".into()));
        let e = err(r#"{"device":"m","ts":"inf","power":{"l1":1,"l2":2},"e":[1]}"#);
        assert_eq!(e, DecodeError::NonFinite("/ts".into()));
        let e = err(r#"{"ts":1,"power":{"l1":1,"l2":2},"e":[1]}"#);
        assert!(e.to_string().contains("/device"), "{e}");
        let e = err(r#"{"device":{"x":1},"ts":1,"power":{"l1":1,"l2":2},"e":[1]}"#);
        assert_eq!(e.reason(), "invalid");
        let e =
            err(r#"{"device":"0123456789012345678901234","ts":1,"power":{"l1":1,"l2":2},"e":[1]}"#);
        assert!(e.to_string().contains("25 bytes"), "{e}");
        assert_eq!(err("{\"device\":").reason(), "invalid");
        assert_eq!(err("not json").reason(), "invalid");
        assert_eq!(err(""), DecodeError::Empty);
        assert_eq!(err("[1, 2]").reason(), "invalid");
    }

    #[test]
    fn sensor_id_from_the_topic() {
        let d = decoder(json!({
            "sensor_id_from_topic": 1,
            "timestamp": "/ts",
            "fields": { "p": "/p" },
        }))
        .expect("valid");
        let (decoded, row) = decode(&d, "meters/m-3/state", r#"{"ts":1.0005,"p":7}"#)
            .expect("ok")
            .expect("kept");
        assert_eq!((decoded.sensor.as_str(), decoded.time_ms), ("m-3", 1001));
        assert_eq!(row.as_slice(), &[7.0]);
        let e = decode(&d, "meters", r#"{"ts":1,"p":7}"#).expect_err("no level 1");
        assert_eq!(e.reason(), "invalid");
    }

    #[test]
    fn invalid_mappings_are_explained() {
        let err = |v: Value| decoder(v).expect_err("invalid");
        let fields = json!({ "p": "/p" });
        assert!(err(json!({ "timestamp": "/ts", "fields": fields })).contains("sensor id"));
        let both = json!({ "sensor_id": "/d", "sensor_id_from_topic": 1, "timestamp": "/ts", "fields": fields });
        assert!(err(both).contains("not both"));
        let e = err(json!({ "sensor_id": "device", "timestamp": "/ts", "fields": fields }));
        assert!(e.contains("`/device`"), "{e}");
        let e =
            err(json!({ "sensor_id": "/d", "timestamp": "/ts", "fields": { "p": "power.l1" } }));
        assert!(e.contains("fields.p") && e.contains("/power/l1"), "{e}");
        assert!(
            err(json!({ "sensor_id": "/d", "timestamp": "/a~2", "fields": fields })).contains("~0")
        );
        assert!(
            err(json!({ "sensor_id": "/d", "timestamp": "/ts", "fields": {} })).contains("empty")
        );
        let wide: serde_json::Map<String, Value> = (0..33)
            .map(|i| (format!("f{i}"), json!(format!("/{i}"))))
            .collect();
        assert!(
            err(json!({ "sensor_id": "/d", "timestamp": "/ts", "fields": wide })).contains("32")
        );
        let dup = json!([{ "name": "p", "path": "/a" }, { "name": "p", "path": "/b" }]);
        assert!(
            err(json!({ "sensor_id": "/d", "timestamp": "/ts", "fields": dup })).contains("twice")
        );
        let zero = json!({ "p": { "path": "/p", "divide_by": 0 } });
        assert!(
            err(json!({ "sensor_id": "/d", "timestamp": "/ts", "fields": zero }))
                .contains("divide_by")
        );
        let e = err(
            json!({ "sensor_id": "/d", "timestamp": "/ts", "fields": { "p": { "path": "/p", "scale": 2 } } }),
        );
        assert!(e.contains("scale"), "{e}");
        let e = err(json!({ "sensor_id": "/d", "timestamp": "/ts", "fields": { "p": 3 } }));
        assert!(e.contains("JSON pointer"), "{e}");
        let e = err(
            json!({ "sensor_id": "/d", "timestamp": "/ts", "timestamp_unit": "h", "fields": fields }),
        );
        assert!(e.contains("h"), "{e}");
        let e = err(json!({ "sensor_id": "/d", "timestamp": "/ts", "field": fields }));
        assert!(e.contains("field"), "{e}");
    }

    #[test]
    fn format_config_builds_a_json_decoder() {
        let config: FormatConfig = serde_json::from_value(json!({
            "format": "json",
            "sensor_id": "/device",
            "timestamp": "/ts",
            "fields": { "b": "/b", "a": "/a" },
        }))
        .expect("valid");
        assert_eq!(config.name(), "json");
        let d = config.build().expect("valid");
        assert_eq!(d.schema().fields().collect::<Vec<_>>(), ["b", "a"]);
    }
}
