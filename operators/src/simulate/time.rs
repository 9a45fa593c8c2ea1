//! The simulator's `start` setting: an RFC 3339 time or epoch milliseconds.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// When the simulated stream begins: milliseconds since the Unix epoch.
///
/// Written in a pipeline as an RFC 3339 time (`2024-06-01T18:00:00Z`,
/// `2024-06-01T20:00:00.250+02:00`) or as a number of milliseconds since the epoch
/// (`1717264800000`, also accepted as a string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StartTime(pub i64);

impl schemars::JsonSchema for StartTime {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StartTime".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "title": "RFC 3339 time or epoch milliseconds",
            "type": ["string", "integer"]
        })
    }
}

/// Text that is neither an RFC 3339 time nor epoch milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a start time: write an RFC 3339 time such as `2024-06-01T18:00:00Z` or \
     milliseconds since the Unix epoch"
)]
pub struct BadStartTime(pub String);

impl FromStr for StartTime {
    type Err = BadStartTime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if !t.is_empty()
            && t.bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-'))
        {
            return t
                .parse::<i64>()
                .map(StartTime)
                .map_err(|_| BadStartTime(s.to_owned()));
        }
        parse_rfc3339(t)
            .map(StartTime)
            .ok_or_else(|| BadStartTime(s.to_owned()))
    }
}

impl<'de> Deserialize<'de> for StartTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StartTime;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time or milliseconds since the Unix epoch")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StartTime, E> {
                Ok(StartTime(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StartTime, E> {
                i64::try_from(v)
                    .map(StartTime)
                    .map_err(|_| E::custom(format!("{v} ms is too far in the future")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StartTime, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Milliseconds since the epoch of `YYYY-MM-DD(T| )HH:MM:SS[.fff…](Z|±HH:MM)`; digits
/// beyond milliseconds are dropped.
pub(super) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let d = b.get(r)?;
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| d.iter().fold(0i64, |n, c| n * 10 + i64::from(c - b'0')))
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    // 60 admits a leap second, which lands on the next second like most systems do.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut i = 19;
    let mut millis = 0;
    if b[i] == b'.' {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for k in 0..3 {
            millis = millis * 10
                + if k < digits {
                    i64::from(b[i + 1 + k] - b'0')
                } else {
                    0
                };
        }
        i += 1 + digits;
    }
    let offset_min = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digits = [*h1, *h2, *m1, *m2];
            if !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let [h1, h2, m1, m2] = digits.map(|c| i64::from(c - b'0'));
            let (oh, om) = (h1 * 10 + h2, m1 * 10 + m2);
            if oh > 23 || om > 59 {
                return None;
            }
            if *sign == b'+' {
                oh * 60 + om
            } else {
                -(oh * 60 + om)
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_min * 60;
    Some(secs * 1_000 + millis)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-06-01T18:00:00Z"),
            Some(1_717_264_800_000)
        );
        assert_eq!(
            parse_rfc3339("2024-06-01T20:00:00+02:00"),
            Some(1_717_264_800_000)
        );
        assert_eq!(
            parse_rfc3339("2024-06-01 17:30:00.25-00:30"),
            Some(1_717_264_800_250)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T00:00:00.123456Z"),
            Some(1_709_164_800_123)
        );
        assert_eq!(parse_rfc3339("1969-12-31T23:59:59Z"), Some(-1_000));
        for bad in [
            "",
            "2024-06-01",
            "2024-06-01T18:00:00",
            "2023-02-29T00:00:00Z",
            "2024-13-01T00:00:00Z",
            "2024-06-01T24:00:00Z",
            "2024-06-01T18:00:00.Z",
            "2024-06-01T18:00:00+2:00",
            "2024-06-01T18:00:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn start_time_from_text_or_number() {
        assert_eq!("1717264800000".parse(), Ok(StartTime(1_717_264_800_000)));
        assert_eq!(
            "2024-06-01T18:00:00Z".parse(),
            Ok(StartTime(1_717_264_800_000))
        );
        assert!("yesterday".parse::<StartTime>().is_err());
        let v: StartTime = serde_json::from_str("1717264800000").unwrap();
        assert_eq!(v, StartTime(1_717_264_800_000));
        let v: StartTime = serde_json::from_str("\"2024-06-01T18:00:00Z\"").unwrap();
        assert_eq!(v, StartTime(1_717_264_800_000));
        let e = serde_json::from_str::<StartTime>("\"soon\"").unwrap_err();
        assert!(e.to_string().contains("not a start time"), "{e}");
    }
}
