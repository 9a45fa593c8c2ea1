//! Building Clemap payloads from readings in physical units: what the simulator
//! publishes and what the tests feed the decoder.

use super::{HEADER_LEN, ID_AT, ONE_MIN, ONE_MIN_LEN, PHASE_AT, TEN_SEC_LEN, TS_AT};

/// One type-16 (`TenSecData`) reading, in physical units (W, var).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TenSecData {
    /// Float seconds since the Unix epoch.
    pub timestamp: f64,
    /// The sensor's ObjectId.
    pub sensor_id: [u8; 12],
    /// Phase selector byte.
    pub phase: u8,
    /// Active power per phase, W.
    pub p: [f64; 3],
    /// Reactive power per phase, var.
    pub q: [f64; 3],
}

/// Encode a type-16 payload. Values are rounded to the format's milli-units.
pub fn encode_ten_sec(r: &TenSecData) -> [u8; TEN_SEC_LEN] {
    let mut out = [0u8; TEN_SEC_LEN];
    out[0] = 16;
    out[1..9].copy_from_slice(&r.timestamp.to_le_bytes());
    out[9..21].copy_from_slice(&r.sensor_id);
    out[21] = r.phase;
    for (i, v) in r.p.iter().chain(r.q.iter()).enumerate() {
        let milli = (v * 1000.0).round() as i64;
        out[22 + 8 * i..30 + 8 * i].copy_from_slice(&milli.to_le_bytes());
    }
    out
}

/// One type-17 (`OneMinData`) reading, in physical units. Each array holds L1, L2, L3.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneMinData {
    /// Float seconds since the Unix epoch.
    pub timestamp: f64,
    /// The sensor's ObjectId.
    pub sensor_id: [u8; 12],
    /// Phase selector byte.
    pub phase: u8,
    /// Voltage per phase, V.
    pub v: [f64; 3],
    /// Current per phase, A.
    pub i: [f64; 3],
    /// Apparent power per phase, VA.
    pub s: [f64; 3],
    /// Active power per phase, W.
    pub p: [f64; 3],
    /// Reactive power per phase, var.
    pub q: [f64; 3],
    /// Power factor per phase.
    pub pf: [f64; 3],
    /// Phase angle per phase.
    pub phi: [f64; 3],
    /// Average energy per phase (`i64` on the wire), in the device's unit.
    pub avg_energy: [f64; 3],
}

/// Encode a type-17 payload. Values are rounded to the format's milli-units (halves away
/// from zero); the 21 `i32` values saturate at the type's range (NaN becomes 0).
pub fn encode_one_min(r: &OneMinData) -> [u8; ONE_MIN_LEN] {
    let mut out = [0u8; ONE_MIN_LEN];
    out[0] = ONE_MIN;
    out[TS_AT..ID_AT].copy_from_slice(&r.timestamp.to_le_bytes());
    out[ID_AT..PHASE_AT].copy_from_slice(&r.sensor_id);
    out[PHASE_AT] = r.phase;
    let mut at = HEADER_LEN;
    for l in 0..3 {
        for v in [r.v[l], r.i[l], r.s[l], r.p[l], r.q[l], r.pf[l], r.phi[l]] {
            let milli = (v * 1000.0).round() as i32;
            out[at..at + 4].copy_from_slice(&milli.to_le_bytes());
            at += 4;
        }
    }
    for v in r.avg_energy {
        let milli = (v * 1000.0).round() as i64;
        out[at..at + 8].copy_from_slice(&milli.to_le_bytes());
        at += 8;
    }
    out
}
