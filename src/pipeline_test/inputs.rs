//! A test's inputs → the payloads its source stand-ins emit.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use smartgrid_operators::simulate::{Simulator, SimulatorConfig};
use smartgrid_runtime::Diagnostic;
use smartgrid_runtime::record::Message;

use super::config::{ClemapReading, Input, Payload, SimulatedSensors};

/// Feature type of a Clemap ten-second reading.
const TEN_SEC: u8 = 16;
/// Bytes of a type-16 payload: Python `struct` layout `=Bd12sBqqqqqq`.
const TEN_SEC_LEN: usize = 70;
/// Simulated payloads one input may produce: a test is a handful of windows, and a
/// typo in `duration` must not fill the memory.
const MAX_SIMULATED: u64 = 1_000_000;

/// The payloads of `input`, in order; a problem found in one is reported at its place.
pub fn payloads(input: &Input) -> Result<Vec<Message>, Diagnostic> {
    let topic: Arc<str> = Arc::from(input.topic.as_deref().unwrap_or(&input.insert_at.value));
    let message = |bytes: Vec<u8>| Message {
        topic: Arc::clone(&topic),
        payload: Bytes::from(bytes),
    };
    let mut out = Vec::new();
    for payload in &input.payloads {
        out.push(message(bytes_of(payload)?));
    }
    if let Some(simulated) = &input.simulate {
        let at = input.insert_at.at;
        out.extend(
            simulate(simulated)
                .map_err(|e| Diagnostic::new(at, e))?
                .into_iter()
                .map(message),
        );
    }
    Ok(out)
}

fn bytes_of(payload: &Payload) -> Result<Vec<u8>, Diagnostic> {
    match payload {
        Payload::Hex(text) => hex::decode(text.trim()).map_err(|e| {
            Diagnostic::new(text.at, format!("not hexadecimal: {e}"))
                .hint("two hex digits per byte, e.g. `10000000…`")
        }),
        Payload::Base64(text) => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| {
                Diagnostic::new(text.at, format!("not base64: {e}"))
                    .hint("the standard alphabet, padded with `=`")
            }),
        Payload::Json(value) => Ok(value.to_string().into_bytes()),
        Payload::Clemap(reading) => clemap_ten_sec(reading),
    }
}

/// Encode a type-16 record: `u8` type, `f64` seconds, 12-byte id, `u8` phase, six `i64`
/// thousandths, little-endian (`testdata/mqtt_msg_format.json`). Written here from the
/// layout, not with the decoder's code, so a test cannot share the decoder's mistakes.
fn clemap_ten_sec(reading: &ClemapReading) -> Result<Vec<u8>, Diagnostic> {
    let id = hex::decode(reading.sensor.trim())
        .ok()
        .filter(|id| id.len() == 12)
        .ok_or_else(|| {
            Diagnostic::new(reading.sensor.at, "a Clemap sensor id is 24 hex characters")
                .hint("e.g. `411e7ec27378a661c935187c`")
        })?;
    let mut bytes = Vec::with_capacity(TEN_SEC_LEN);
    bytes.push(TEN_SEC);
    // Whole milliseconds as float seconds, as a monitor stamps them.
    bytes.extend_from_slice(&(reading.time.0 as f64 / 1000.0).to_le_bytes());
    bytes.extend_from_slice(&id);
    bytes.push(reading.phase);
    let values = [
        reading.p_l1,
        reading.p_l2,
        reading.p_l3,
        reading.q_l1,
        reading.q_l2,
        reading.q_l3,
    ];
    for value in values {
        let thousandths = (value * 1000.0).round();
        if !thousandths.is_finite() || thousandths.abs() >= 9.0e15 {
            return Err(Diagnostic::new(
                reading.sensor.at,
                format!("the value {value} does not fit a Clemap reading"),
            ));
        }
        // Exact: an integer below 2^53 in magnitude.
        bytes.extend_from_slice(&(thousandths as i64).to_le_bytes());
    }
    debug_assert_eq!(bytes.len(), TEN_SEC_LEN);
    Ok(bytes)
}

/// Every payload the simulated monitors produce over `duration`, in time order.
fn simulate(sensors: &SimulatedSensors) -> Result<Vec<Vec<u8>>, String> {
    let config = SimulatorConfig {
        sensors: sensors.sensors,
        rate: sensors.rate,
        seed: sensors.seed,
        start: Some(sensors.start),
        realtime: false,
        duration: Some(sensors.duration),
        faults: sensors.faults,
    };
    let total = config.ticks().unwrap_or(u64::MAX) * u64::from(sensors.sensors);
    if total > MAX_SIMULATED {
        return Err(format!(
            "`simulate` would produce {total} payloads; a test may use at most {MAX_SIMULATED}"
        ));
    }
    let mut simulator = Simulator::new(&config, 0..sensors.sensors).map_err(|e| e.to_string())?;
    Ok(simulator
        .payloads()
        .map(|p| p.as_bytes().to_vec())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first vector of `testdata/clemap_vectors.jsonl`, rebuilt from its `expect`.
    #[test]
    fn a_reading_encodes_as_the_reference_payload() {
        let reading = ClemapReading {
            sensor: smartgrid_runtime::spec::Spanned::new(
                "411e7ec27378a661c935187c".to_owned(),
                smartgrid_runtime::Location::default(),
            ),
            time: smartgrid_operators::simulate::StartTime(1_752_794_500_000),
            phase: 0,
            p_l1: 1539.906,
            p_l2: 2260.626,
            p_l3: -4964.667,
            q_l1: 2472.357,
            q_l2: -531.715,
            q_l3: -1162.007,
        };
        let expected = "1000000061611eda41411e7ec27378a661c935187c00427f170000000000927e220000000000c53eb4ffffffffffa5b9250000000000fde2f7ffffffffffe944eeffffffffff";
        assert_eq!(
            hex::encode(clemap_ten_sec(&reading).expect("encodes")),
            expected
        );
    }
}
