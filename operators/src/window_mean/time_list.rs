//! A sorted list of event times, stored small for checkpoints: the first time, then each
//! gap to the next, as LEB128 varints. A sensor's readings 83 ms apart take one byte
//! each, against eight as whole times; at 1,000 sensors the two-minute horizon of counted
//! times is 1.4 MB in a checkpoint instead of 11.5 MB per window size.

use serde::{Deserialize, Serialize};

/// Sorted, distinct event times (ms since the epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimeList {
    bytes: Vec<u8>,
}

/// The bytes of a list that is not one (a torn or foreign state).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("a list of event times is malformed at byte {0}")]
pub struct Malformed(usize);

impl TimeList {
    /// Appends `time`, which must be after every time already in the list (a time not
    /// after the last is a caller's bug; it is skipped rather than breaking the order).
    pub fn push(&mut self, time: i64, last: &mut Option<i64>) {
        let value = match *last {
            None => zigzag(time),
            Some(prev) if time > prev => time.wrapping_sub(prev) as u64,
            Some(_) => return,
        };
        *last = Some(time);
        let mut v = value;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.bytes.push(byte);
                return;
            }
            self.bytes.push(byte | 0x80);
        }
    }

    /// Whether the list holds no time.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Every time, in order, or where the bytes stop making sense.
    pub fn times(&self) -> Result<Vec<i64>, Malformed> {
        let mut out = Vec::new();
        let mut at = 0;
        let mut last: Option<i64> = None;
        while at < self.bytes.len() {
            let start = at;
            let mut value = 0_u64;
            let mut shift = 0;
            loop {
                let Some(&byte) = self.bytes.get(at) else {
                    return Err(Malformed(start));
                };
                at += 1;
                if shift > 63 || (shift == 63 && byte & 0x7e != 0) {
                    return Err(Malformed(start));
                }
                value |= u64::from(byte & 0x7f) << shift;
                shift += 7;
                if byte & 0x80 == 0 {
                    break;
                }
            }
            let time = match last {
                None => unzigzag(value),
                Some(prev) => {
                    let time = prev.wrapping_add(value as i64);
                    if value == 0 || time <= prev {
                        return Err(Malformed(start));
                    }
                    time
                }
            };
            out.push(time);
            last = Some(time);
        }
        Ok(out)
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(times: &[i64]) -> TimeList {
        let mut list = TimeList::default();
        let mut last = None;
        for &t in times {
            list.push(t, &mut last);
        }
        list
    }

    #[test]
    fn times_come_back_as_they_went_in_across_the_whole_range() {
        let cases: [&[i64]; 5] = [
            &[],
            &[0],
            &[i64::MIN, -1, 0, 1, i64::MAX],
            &[
                1_700_000_000_000,
                1_700_000_000_083,
                1_700_000_000_166,
                1_700_000_090_000,
            ],
            &[-5_000, -4_917, 3_000_000_000_000],
        ];
        for times in cases {
            assert_eq!(list(times).times().unwrap(), times);
        }
        // Readings 83 ms apart: a byte each after the first.
        let steady: Vec<i64> = (0..1_000).map(|i| 1_700_000_000_000 + 83 * i).collect();
        let encoded = list(&steady);
        assert!(encoded.bytes.len() < 1_000 + 8, "{}", encoded.bytes.len());
        assert_eq!(encoded.times().unwrap(), steady);
    }

    #[test]
    fn a_time_not_after_the_last_is_skipped() {
        assert_eq!(list(&[5, 5, 3, 7]).times().unwrap(), [5, 7]);
    }

    #[test]
    fn torn_or_foreign_bytes_are_an_error_not_a_panic() {
        let whole = list(&[1_700_000_000_000, 1_700_000_000_083]);
        let mut torn = whole.clone();
        torn.bytes.pop();
        torn.bytes.push(0x80);
        assert!(torn.times().is_err());
        for bytes in [vec![0xff; 11], vec![0x02, 0x00], vec![0x80]] {
            assert!(TimeList { bytes }.times().is_err());
        }
    }
}
