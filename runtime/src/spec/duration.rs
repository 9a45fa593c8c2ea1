//! Durations written with units: `500ms`, `10s`, `2m30s`, `1.5h`, `1d`.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::de::error_with_hint;

/// A duration in a pipeline file, always written with a unit.
///
/// Accepted: one or more `<number><unit>` parts, such as `500ms`, `10s`, `1m`, `1h`,
/// `2m30s`, `1.5s` or `1d`. Units are `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h` and `d`; a
/// part may have a fraction (`1.5s` = 1500 ms). A bare number such as `10` is refused
/// (seconds? milliseconds?), and a zero duration is written `0s`.
///
/// It prints back in the same compact form: `10s`, `1m`, `1m30s`, `250ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// The hint given when a unit is missing.
const UNIT_HINT: &str = "write a unit: 10s, 1m, 500ms";

/// The units, longest suffix first where one is a suffix of another.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
];

impl Duration {
    /// The duration in whole milliseconds, saturating at `u64::MAX`.
    pub fn as_millis_u64(&self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    /// The wrapped [`std::time::Duration`].
    pub fn get(&self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

/// Why a duration could not be parsed: a message and a hint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDurationError {
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.hint)
    }
}

impl std::error::Error for ParseDurationError {}

fn parse_error(message: impl Into<String>, hint: impl Into<String>) -> ParseDurationError {
    ParseDurationError {
        message: message.into(),
        hint: hint.into(),
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(parse_error("a duration cannot be empty", UNIT_HINT));
        }
        let mut total: u128 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let (number, after) = rest.split_at(number_len);
            if number.is_empty() {
                return Err(parse_error(
                    "a duration is a number followed by a unit",
                    UNIT_HINT,
                ));
            }
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            if unit.is_empty() {
                return Err(parse_error("a duration needs a unit", UNIT_HINT));
            }
            let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(parse_error(
                    format!("unknown duration unit `{unit}`"),
                    "units are ns, us, ms, s, m, h, d",
                ));
            };
            let part = scaled(number, scale)
                .ok_or_else(|| parse_error("invalid number in a duration", UNIT_HINT))?;
            total = total.checked_add(part).ok_or_else(|| {
                parse_error("the duration is too long", "write a shorter duration")
            })?;
            rest = after;
        }
        if total == 0 && text != "0s" {
            return Err(parse_error("a zero duration is written `0s`", "write `0s`"));
        }
        let secs = u64::try_from(total / 1_000_000_000)
            .map_err(|_| parse_error("the duration is too long", "write a shorter duration"))?;
        let nanos = u32::try_from(total % 1_000_000_000)
            .expect("a remainder of a division by 10^9 fits in u32");
        Ok(Duration(std::time::Duration::new(secs, nanos)))
    }
}

/// `number` (digits with at most one `.`) times `scale` nanoseconds, truncated to whole
/// nanoseconds, saturating; `None` if malformed.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (int, frac) = match number.split_once('.') {
        Some((_, "")) => return None,
        Some((int, frac)) => (int, frac),
        None => (number, ""),
    };
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !int.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Only digits: a parse error is an overflow, and a saturated value is "too long".
    let int_value: u128 = if int.is_empty() {
        0
    } else {
        int.parse().unwrap_or(u128::MAX)
    };
    let whole = int_value.saturating_mul(scale);
    // Digits past the 18th are below a nanosecond for every unit (scale ≤ 8.64·10^13 ns),
    // and 18 digits times the scale still fit in u128.
    let digits = &frac[..frac.len().min(18)];
    let fraction = if digits.is_empty() {
        0
    } else {
        let numerator: u128 = digits.parse().ok()?;
        let exponent = u32::try_from(digits.len()).expect("at most 18 digits");
        numerator * scale / 10u128.pow(exponent)
    };
    Some(whole.saturating_add(fraction))
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (name, scale) in [
            ("d", 86_400 * 1_000_000_000u128),
            ("h", 3_600 * 1_000_000_000),
            ("m", 60 * 1_000_000_000),
            ("s", 1_000_000_000),
            ("ms", 1_000_000),
            ("us", 1_000),
            ("ns", 1),
        ] {
            let count = nanos / scale;
            if count > 0 {
                write!(f, "{count}{name}")?;
                nanos %= scale;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl DurationVisitor {
    fn bare_number<E: de::Error>(self) -> Result<Duration, E> {
        Err(error_with_hint("a duration needs a unit", UNIT_HINT))
    }
}

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, like 10s, 1m or 500ms")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        v.parse::<Duration>()
            .map_err(|e| error_with_hint(&e.message, &e.hint))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Duration, E> {
        self.bare_number()
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Duration, E> {
        self.bare_number()
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<Duration, E> {
        self.bare_number()
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<Duration, E> {
        self.bare_number()
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Duration, E> {
        self.bare_number()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration(std::time::Duration::from_millis(millis))
    }

    #[test]
    fn parse_and_format_table() {
        let cases: [(&str, Duration, &str); 16] = [
            ("500ms", ms(500), "500ms"),
            ("10s", ms(10_000), "10s"),
            ("1m", ms(60_000), "1m"),
            ("1h", ms(3_600_000), "1h"),
            ("1d", ms(86_400_000), "1d"),
            ("2m30s", ms(150_000), "2m30s"),
            ("90s", ms(90_000), "1m30s"),
            ("1.5s", ms(1_500), "1s500ms"),
            ("0.25s", ms(250), "250ms"),
            (".5m", ms(30_000), "30s"),
            ("1.5h", ms(5_400_000), "1h30m"),
            ("0s", ms(0), "0s"),
            (" 10s ", ms(10_000), "10s"),
            ("1h1m1s1ms", ms(3_661_001), "1h1m1s1ms"),
            (
                "1500us",
                Duration(std::time::Duration::from_micros(1_500)),
                "1ms500us",
            ),
            ("7ns", Duration(std::time::Duration::from_nanos(7)), "7ns"),
        ];
        for (text, expected, shown) in cases {
            let parsed: Duration = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(parsed, expected, "{text}");
            assert_eq!(parsed.to_string(), shown, "{text}");
            assert_eq!(
                shown.parse::<Duration>(),
                Ok(expected),
                "{shown} round-trips"
            );
        }
        assert_eq!(ms(1_500).as_millis_u64(), 1_500);
        assert_eq!(Duration(std::time::Duration::MAX).as_millis_u64(), u64::MAX);
    }

    #[test]
    fn refused() {
        let cases = [
            ("10", "a duration needs a unit"),
            ("0", "a duration needs a unit"),
            ("", "a duration cannot be empty"),
            ("1m30", "a duration needs a unit"),
            ("0ms", "a zero duration is written `0s`"),
            ("0m0s", "a zero duration is written `0s`"),
            ("10 s", "unknown duration unit ` s`"),
            ("10w", "unknown duration unit `w`"),
            ("-5s", "a duration is a number followed by a unit"),
            ("s", "a duration is a number followed by a unit"),
            ("1.s", "invalid number in a duration"),
            ("1.2.3s", "invalid number in a duration"),
            (".s", "invalid number in a duration"),
            (
                "99999999999999999999999999999999999999999d",
                "the duration is too long",
            ),
            ("9999999999999999999d", "the duration is too long"),
        ];
        for (text, message) in cases {
            let error = text.parse::<Duration>().expect_err(text);
            assert_eq!(error.message, message, "{text}");
        }
        assert_eq!(
            "10".parse::<Duration>().expect_err("bare").hint,
            "write a unit: 10s, 1m, 500ms"
        );
    }

    #[test]
    fn serde_through_json() {
        let d: Duration = serde_json::from_str("\"2m30s\"").expect("valid");
        assert_eq!(d, ms(150_000));
        assert_eq!(
            serde_json::to_string(&d).expect("serializable"),
            "\"2m30s\""
        );
        let e = serde_json::from_str::<Duration>("10").expect_err("bare number");
        assert!(
            e.to_string()
                .starts_with("a duration needs a unit\nhint: write a unit: 10s, 1m, 500ms"),
            "{e}"
        );
    }
}
