//! A triplet as the training side reads it: the JSON record `compare_with_lag` emits
//! (`{"sensor_id", "time", "time_ms", "predicted", "actual", "error", "target_time",
//! "model_version", "flagged", <features…>}`, operators/src/formats/json_record.rs),
//! alone or packed into a JSON array as the `iothub` sink sends them.
//!
//! Only what training needs is kept: the sensor and time (to order and de-duplicate),
//! `flagged` (for the weight), `actual`, the configured features in order and the
//! current window's total (the persistence forecast). Anything else may be present.

use serde_json::Value;

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Triplet {
    pub sensor: String,
    /// The prediction's event time (the input window's start), ms since the epoch.
    pub time_ms: i64,
    /// Over the threshold (1) or a sampled good prediction (0).
    pub flagged: bool,
    /// What came: the target window's total.
    pub actual: f64,
    /// The configured features, in the configured order (NaN: the record had `null`).
    pub features: Vec<f64>,
    /// The sum of the persistence fields: "next window = this window".
    pub current: f64,
}

/// What a triplet must have, by name.
#[derive(Debug, Clone)]
pub struct Fields {
    pub features: Vec<String>,
    /// Fields summed to the current window's total (e.g. `p_l1, p_l2, p_l3`).
    pub current: Vec<String>,
}

/// Why a record is not a usable triplet (counted by reason, shown with its place).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BadTriplet {
    #[error("malformed JSON: {0}")]
    Json(String),
    #[error("not a JSON object")]
    NotAnObject,
    #[error("no `{0}` field")]
    Missing(String),
    #[error("`{0}` is not a number")]
    NotANumber(String),
    #[error("`{0}` is not a finite number")]
    NotFinite(String),
    #[error("`sensor_id` is not a string")]
    Sensor,
}

impl BadTriplet {
    /// A short key for counting (the same for every missing feature of one name).
    pub fn reason(&self) -> String {
        match self {
            BadTriplet::Json(_) => "malformed JSON".into(),
            BadTriplet::NotAnObject => "not a JSON object".into(),
            other => other.to_string(),
        }
    }
}

/// The triplets in one message or line: an object, or an array of objects (the
/// `iothub` sink's batches). Each element is parsed on its own, so one bad record in
/// a batch costs that record only.
pub fn parse_value(value: &Value, fields: &Fields) -> Vec<Result<Triplet, BadTriplet>> {
    match value {
        Value::Array(items) => items.iter().map(|v| parse_record(v, fields)).collect(),
        other => vec![parse_record(other, fields)],
    }
}

/// [`parse_value`] of JSON text.
pub fn parse_text(text: &[u8], fields: &Fields) -> Vec<Result<Triplet, BadTriplet>> {
    match serde_json::from_slice::<Value>(text) {
        Ok(value) => parse_value(&value, fields),
        Err(e) => vec![Err(BadTriplet::Json(e.to_string()))],
    }
}

fn parse_record(value: &Value, fields: &Fields) -> Result<Triplet, BadTriplet> {
    let Value::Object(map) = value else {
        return Err(BadTriplet::NotAnObject);
    };
    let get = |name: &str| {
        map.get(name)
            .ok_or_else(|| BadTriplet::Missing(name.into()))
    };
    // JSON has no NaN: the sink writes a missing value as `null`
    let number = |name: &str| -> Result<f64, BadTriplet> {
        match get(name)? {
            Value::Null => Ok(f64::NAN),
            Value::Number(n) => n
                .as_f64()
                .ok_or_else(|| BadTriplet::NotANumber(name.into())),
            _ => Err(BadTriplet::NotANumber(name.into())),
        }
    };
    let finite = |name: &str| -> Result<f64, BadTriplet> {
        let v = number(name)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(BadTriplet::NotFinite(name.into()))
        }
    };
    let sensor = match get("sensor_id")? {
        Value::String(s) => s.clone(),
        _ => return Err(BadTriplet::Sensor),
    };
    let time_ms = match get("time_ms")? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| BadTriplet::NotANumber("time_ms".into()))?,
        _ => return Err(BadTriplet::NotANumber("time_ms".into())),
    };
    let flagged = finite("flagged")? != 0.0;
    let actual = finite("actual")?;
    let features = fields
        .features
        .iter()
        .map(|name| number(name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut current = 0.0;
    for name in &fields.current {
        current += finite(name)?;
    }
    Ok(Triplet {
        sensor,
        time_ms,
        flagged,
        actual,
        features,
        current,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            features: vec!["a".into(), "b".into()],
            current: vec!["a".into()],
        }
    }

    #[test]
    fn a_record_an_array_and_bad_ones() {
        let one =
            br#"{"sensor_id":"s","time_ms":5,"flagged":1,"actual":3.5,"a":1,"b":null,"x":"y"}"#;
        let parsed = parse_text(one, &fields());
        let t = parsed[0].as_ref().expect("valid");
        assert_eq!(
            (t.time_ms, t.flagged, t.actual, t.current),
            (5, true, 3.5, 1.0)
        );
        assert!(t.features[1].is_nan());
        let batch = br#"[{"sensor_id":"s","time_ms":5,"flagged":0,"actual":1,"a":1,"b":2},{"sensor_id":"s"},7]"#;
        let parsed = parse_text(batch, &fields());
        assert!(parsed[0].is_ok());
        assert_eq!(parsed[1], Err(BadTriplet::Missing("time_ms".into())));
        assert_eq!(parsed[2], Err(BadTriplet::NotAnObject));
        assert!(matches!(
            parse_text(b"{nope", &fields())[0],
            Err(BadTriplet::Json(_))
        ));
        let no_actual = br#"{"sensor_id":"s","time_ms":5,"flagged":0,"actual":null,"a":1,"b":2}"#;
        assert_eq!(
            parse_text(no_actual, &fields())[0],
            Err(BadTriplet::NotFinite("actual".into()))
        );
    }
}
