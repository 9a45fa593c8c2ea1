//! Conversions every binary and JSON decoder shares: timestamps to event-time ms,
//! integers divided exactly as Python divides them, bytes at an offset, sensor ids from
//! integers and topics.

use serde::Deserialize;
use smartgrid_runtime::record::SensorId;

use super::DecodeError;

/// The unit of a timestamp value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
    /// Seconds since the Unix epoch (may be fractional). The default.
    #[default]
    S,
    /// Milliseconds since the Unix epoch.
    Ms,
    /// Microseconds since the Unix epoch.
    Us,
}

/// The largest magnitude up to which every integer is an exact `f64` (2^53).
pub(crate) const MAX_EXACT_INT: u64 = 1 << 53;

/// A float timestamp in `unit` → event time in whole ms, rounded to the nearest ms
/// (halves away from zero).
///
/// Rounding, not truncating: Clemap timestamps step by 1/12 s and are stored as the
/// nearest `f64` (e.g. 1661972765.083333), and `ts * 1000.0` may land just below a whole
/// ms (…764.9999998 for a reading taken at …765 ms). Truncation would move such readings
/// one ms early, into the previous window when they sit on a window edge; rounding gives
/// the ms the device meant. NaN and ±inf are refused (`non_finite`), and so are values
/// whose ms do not fit an `i64` (`invalid`), so the cast never saturates silently.
#[inline]
pub(crate) fn float_time_ms(value: f64, unit: TimeUnit, name: &str) -> Result<i64, DecodeError> {
    if !value.is_finite() {
        return Err(DecodeError::NonFinite(name.to_owned()));
    }
    let ms = match unit {
        TimeUnit::S => value * 1000.0,
        TimeUnit::Ms => value,
        TimeUnit::Us => value / 1000.0,
    };
    round_to_i64(ms).ok_or_else(|| {
        DecodeError::Invalid(format!("field `{name}`: timestamp {value} is out of range"))
    })
}

/// `x.round() as i64` (halves away from zero), or `None` if that does not fit an `i64`
/// (or `x` is NaN). Not `f64::round`, which is a libm call on baseline x86-64 and a
/// noticeable part of decoding a Clemap record.
#[inline(always)]
pub(crate) fn round_to_i64(x: f64) -> Option<i64> {
    // ±2^63 are exact; every float in [-2^63, 2^63) truncates into an i64.
    if (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&x) {
        let t = x as i64; // truncation toward zero, exact
        // Exact: `t` is `x` without its fraction bits. `x` has fraction bits only below
        // 2^52, so `t ± 1` cannot overflow.
        let frac = x - t as f64;
        Some(if frac >= 0.5 {
            t + 1
        } else if frac <= -0.5 {
            t - 1
        } else {
            t
        })
    } else {
        None
    }
}

/// An integer timestamp in `unit` → event time in whole ms; microseconds are rounded to
/// the nearest ms (halves away from zero), like [`float_time_ms`].
pub(crate) fn int_time_ms(value: i128, unit: TimeUnit, name: &str) -> Result<i64, DecodeError> {
    let ms = match unit {
        TimeUnit::S => value.checked_mul(1000),
        TimeUnit::Ms => Some(value),
        TimeUnit::Us => {
            let (q, r) = (value / 1000, value % 1000);
            Some(if r >= 500 {
                q + 1
            } else if r <= -500 {
                q - 1
            } else {
                q
            })
        }
    };
    ms.and_then(|ms| i64::try_from(ms).ok()).ok_or_else(|| {
        DecodeError::Invalid(format!("field `{name}`: timestamp {value} is out of range"))
    })
}

/// `n / d` as the nearest `f64` (ties to even): exactly Python's `int / int` true
/// division, for `1 <= d <= 2^53`. Up to 2^53 in magnitude `n` and `d` are exact `f64`s
/// and one IEEE division is correctly rounded; beyond, [`div_exact_slow`] corrects the
/// double rounding `n as f64` would add.
#[inline]
pub(crate) fn div_exact_i64(n: i64, d: u64) -> f64 {
    if n.unsigned_abs() <= MAX_EXACT_INT {
        n as f64 / d as f64
    } else {
        div_exact_slow(n < 0, n.unsigned_abs(), d)
    }
}

/// [`div_exact_i64`] for unsigned values.
#[inline]
pub(crate) fn div_exact_u64(n: u64, d: u64) -> f64 {
    if n <= MAX_EXACT_INT {
        n as f64 / d as f64
    } else {
        div_exact_slow(false, n, d)
    }
}

/// The nearest `f64` to `±mag / d` for `mag > 2^53`, `1 <= d <= 2^53`: the float
/// quotient is within 3 ulp of the true one; of the candidates around it, the one with the
/// smallest exact error (computed in `u128`) wins, ties to the even mantissa.
#[cold]
fn div_exact_slow(negative: bool, mag: u64, d: u64) -> f64 {
    let approx = mag as f64 / d as f64;
    let mut cands = [approx; 7];
    for i in 1..=3 {
        cands[3 + i] = cands[2 + i].next_up();
        cands[3 - i] = cands[4 - i].next_down();
    }
    // Every candidate is a positive normal float (≥ 1 since mag > d), value = m · 2^e.
    let parts = cands.map(|c| {
        let bits = c.to_bits();
        let m = (bits & ((1 << 52) - 1)) | (1 << 52);
        let e = ((bits >> 52) & 0x7ff) as i32 - 1075;
        (m, e)
    });
    // Scale everything by 2^k so all values are integers: k ≤ 55, |terms| < 2^120.
    let k = parts.iter().map(|&(_, e)| (-e).max(0)).max().unwrap_or(0);
    let target = u128::from(mag) << k;
    let mut best = approx;
    let mut best_err = u128::MAX;
    for (&c, &(m, e)) in cands.iter().zip(parts.iter()) {
        let value = (u128::from(m) * u128::from(d)) << (e + k);
        let err = value.abs_diff(target);
        if err < best_err || (err == best_err && m % 2 == 0) {
            best = c;
            best_err = err;
        }
    }
    if negative { -best } else { best }
}

/// The `N` bytes of `p` at `at`; zeros if they are out of range (callers check the
/// payload's length first, so that never happens, but no input can make this panic).
#[inline(always)]
pub(crate) fn bytes_at<const N: usize>(p: &[u8], at: usize) -> [u8; N] {
    match p.get(at..at.saturating_add(N)) {
        Some(s) => <[u8; N]>::try_from(s).unwrap_or([0; N]),
        None => [0; N],
    }
}

/// A sensor id from an integer, in decimal, without allocating.
pub(crate) fn sensor_from_int(value: i128) -> Result<SensorId, DecodeError> {
    let mut buf = [0u8; 40];
    let mut at = buf.len();
    let mut mag = value.unsigned_abs();
    loop {
        at -= 1;
        buf[at] = b'0' + (mag % 10) as u8;
        mag /= 10;
        if mag == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    let text = std::str::from_utf8(&buf[at..]).map_err(|e| DecodeError::Invalid(e.to_string()))?;
    SensorId::new(text).map_err(|e| DecodeError::Invalid(e.to_string()))
}

/// The sensor id taken from level `level` (0-based, `/`-separated) of `topic`.
pub(crate) fn sensor_from_topic(topic: &str, level: usize) -> Result<SensorId, DecodeError> {
    match topic.split('/').nth(level) {
        Some(part) if !part.is_empty() => SensorId::new(part)
            .map_err(|e| DecodeError::Invalid(format!("topic `{topic}`, level {level}: {e}"))),
        Some(_) => Err(DecodeError::Invalid(format!(
            "topic `{topic}`: level {level} is empty"
        ))),
        None => Err(DecodeError::Invalid(format!(
            "topic `{topic}` has no level {level} (levels count from 0)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_division_matches_python_for_large_integers() {
        // Expected values printed by CPython 3 (`repr(n / d)`).
        let cases: &[(i64, u64, f64)] = PYTHON_DIVISIONS;
        for &(n, d, want) in cases {
            let got = div_exact_i64(n, d);
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{n} / {d}: got {got:e}, want {want:e}"
            );
        }
        // The slow path matters: a plain float division gets some of these wrong.
        assert!(
            cases
                .iter()
                .any(|&(n, d, want)| n as f64 / d as f64 != want)
        );
        assert_eq!(div_exact_u64(u64::MAX, 1000), 18_446_744_073_709_552.0);
        assert_eq!(div_exact_u64(u64::MAX, 1), 18_446_744_073_709_551_616.0);
        assert_eq!(div_exact_i64(-1_539_906, 1000), -1539.906);
    }

    /// `(n, d, n / d)` as CPython 3 computes it (`int / int` is correctly rounded).
    const PYTHON_DIVISIONS: &[(i64, u64, f64)] = &[
        (9007199254740993, 1000, 9007199254740.992),
        (9007199254740995, 1000, 9007199254740.994),
        (-9007199254740997, 1000, -9007199254740.996),
        (9223372036854775807, 1000, 9223372036854776.0),
        (-9223372036854775808, 1000, -9223372036854776.0),
        (4611686018427400249, 1000, 4611686018427400.0),
        (9007199254740993000, 1000, 9007199254740992.0),
        (12345678901234567, 1000, 12345678901234.566),
        (-98765432109876543, 1000, -98765432109876.55),
        (1152921504606847476, 1000, 1152921504606847.5),
        (1152921504606848476, 1000, 1152921504606848.5),
        (18014398509483984, 1000, 18014398509483.984),
        (8751522060614153272, 9007199254740992, 971.6141292208828),
        (454370880871703632, 1000, 454370880871703.6),
        (5384277854032611832, 3, 1.7947592846775373e+18),
        (-801730537304183000, 9007199254740992, -89.0099702060202),
        (2228731587588131727, 9007199254740992, 247.43891242497227),
        (7635371956029742518, 3, 2.5451239853432474e+18),
        (5796057243379086136, 9007199254740992, 643.4916203644876),
        (9013371251807347356, 1000, 9013371251807348.0),
        (7926981193680131902, 7, 1.1324258848114474e+18),
        (1339525474502357570, 7, 1.9136078207176538e+17),
        (7536444224106726744, 1000, 7536444224106727.0),
        (5277437786102939537, 1000000, 5277437786102.939),
        (5061058156284687826, 1000, 5061058156284688.0),
        (-1908641064788912561, 9007199254740992, -211.9017255873726),
        (-2906503427372119832, 999999937, -2906503610.4818473),
        (2773869745950206296, 10, 2.7738697459502064e+17),
        (7201665993724218516, 1000, 7201665993724219.0),
        (-2778316532664331951, 1000000, -2778316532664.332),
        (-4148771959611387168, 1000, -4148771959611387.0),
        (-4730754186100707088, 10, -4.730754186100707e+17),
        (3163915179705761023, 999999937, 3163915379.0324297),
        (370630300494228585, 1000000, 370630300494.2286),
        (-6421975045359419970, 999999937, -6421975449.943873),
        (-7359038396711568155, 1000, -7359038396711568.0),
    ];

    #[test]
    fn rounding_matches_f64_round() {
        let mut cases = vec![
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4_503_599_627_370_495.5,
            -4_503_599_627_370_495.5,
            4_503_599_627_370_497.0,
            9_007_199_254_740_993.0,
            9_223_372_036_854_774_784.0,
            -9_223_372_036_854_775_808.0,
            1_661_972_765_083.333,
            1_722_881_499_500.0,
        ];
        // A deterministic spread over many magnitudes.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = f64::from_bits(x);
            if v.is_finite() && v.abs() < 9.2e18 {
                cases.push(v);
            }
            cases.push((x % 10_000_000) as f64 / 8.0 - 600_000.0);
        }
        for v in cases {
            assert_eq!(round_to_i64(v), Some(v.round() as i64), "{v:e}");
        }
        assert_eq!(round_to_i64(9_223_372_036_854_775_808.0), None);
        assert_eq!(round_to_i64(-9_223_372_036_854_777_856.0), None);
        assert_eq!(round_to_i64(f64::NAN), None);
        assert_eq!(round_to_i64(f64::INFINITY), None);
    }

    #[test]
    fn timestamps_round_to_the_nearest_ms() {
        assert_eq!(
            float_time_ms(1661972765.083333, TimeUnit::S, "t"),
            Ok(1661972765083)
        );
        assert_eq!(float_time_ms(1.0005, TimeUnit::S, "t"), Ok(1001));
        assert_eq!(float_time_ms(-0.0015, TimeUnit::S, "t"), Ok(-2));
        assert_eq!(float_time_ms(1500.5, TimeUnit::Ms, "t"), Ok(1501));
        assert_eq!(float_time_ms(1_500_499.0, TimeUnit::Us, "t"), Ok(1500));
        assert_eq!(
            float_time_ms(f64::NAN, TimeUnit::S, "t"),
            Err(DecodeError::NonFinite("t".into()))
        );
        assert_eq!(
            float_time_ms(1e300, TimeUnit::S, "t").map_err(|e| e.reason()),
            Err("invalid")
        );
        assert_eq!(
            int_time_ms(1_700_000_000, TimeUnit::S, "t"),
            Ok(1_700_000_000_000)
        );
        assert_eq!(int_time_ms(1_500_500, TimeUnit::Us, "t"), Ok(1501));
        assert_eq!(int_time_ms(-1_500_500, TimeUnit::Us, "t"), Ok(-1501));
        assert_eq!(int_time_ms(1_500_499, TimeUnit::Us, "t"), Ok(1500));
        assert_eq!(
            int_time_ms(i128::from(u64::MAX), TimeUnit::Ms, "t").map_err(|e| e.reason()),
            Err("invalid")
        );
        assert_eq!(
            int_time_ms(i128::from(i64::MAX), TimeUnit::S, "t").map_err(|e| e.reason()),
            Err("invalid")
        );
    }

    #[test]
    fn sensor_ids_from_integers_and_topics() {
        assert_eq!(sensor_from_int(0).map(|s| s.to_string()), Ok("0".into()));
        assert_eq!(
            sensor_from_int(-42).map(|s| s.to_string()),
            Ok("-42".into())
        );
        assert_eq!(
            sensor_from_int(i128::from(u64::MAX)).map(|s| s.to_string()),
            Ok("18446744073709551615".into())
        );
        assert_eq!(
            sensor_from_topic("data/realtime/feature/abc", 3).map(|s| s.to_string()),
            Ok("abc".into())
        );
        assert_eq!(
            sensor_from_topic("data/realtime/", 2).map_err(|e| e.reason()),
            Err("invalid")
        );
        assert_eq!(
            sensor_from_topic("data", 1).map_err(|e| e.reason()),
            Err("invalid")
        );
    }
}
