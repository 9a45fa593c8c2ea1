//! A `window_mean` state's checkpoint bytes written straight from the live windows.
//!
//! [`WindowSums::export`] builds the plain-data [`WindowSumsState`] first: a `String`
//! and a `Vec` per sensor and window, as large again as the bytes. At a stop with 1,000
//! sensors that copy was most of the stop's memory peak (BENCHMARKS.md), so the
//! operator serializes this borrowed view instead. It writes exactly the bytes
//! `export().to_bytes()` would (bincode writes a `str` as a `String`, a slice as a
//! `Vec`), so [`WindowSumsState::from_bytes`] reads both.
//!
//! [`WindowSumsState`]: super::state::WindowSumsState
//! [`WindowSumsState::from_bytes`]: super::state::WindowSumsState::from_bytes

use serde::Serialize;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use smartgrid_runtime::SensorId;

use super::sums::{WindowSums, Windows};
use super::time_list::TimeList;

impl<C> WindowSums<C> {
    /// The bytes of [`export`](Self::export)`().to_bytes()`, without the copy.
    pub(super) fn export_bytes(&self) -> Vec<u8> {
        bincode::serialize(&self.view()).expect("plain numbers and strings serialize")
    }

    /// [`export_bytes`](Self::export_bytes) written to `out` as they are made: a stop
    /// writes its checkpoint so, and never holds the state twice (BENCHMARKS.md,
    /// memory).
    pub(super) fn export_into(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        bincode::serialize_into(out, &self.view()).map_err(|e| match *e {
            bincode::ErrorKind::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        })
    }

    fn view(&self) -> StateView<'_, C> {
        // Slots in the order of their sensors' ids: every list in the state is sorted so.
        let mut by_id: Vec<usize> = (0..self.slots.sensors().len()).collect();
        by_id.sort_unstable_by(|&a, &b| {
            self.slots.sensors()[a]
                .as_str()
                .cmp(self.slots.sensors()[b].as_str())
        });
        StateView { sums: self, by_id }
    }
}

/// A sequence of `len` items that `items` makes (once per serialization pass).
struct Seq<F>(usize, F);

impl<F, I, T> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator<Item = T>,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0))?;
        for item in (self.1)() {
            seq.serialize_element(&item)?;
        }
        seq.end()
    }
}

struct StateView<'a, C> {
    sums: &'a WindowSums<C>,
    by_id: Vec<usize>,
}

impl<C> Serialize for StateView<'_, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (sums, by_id) = (self.sums, &self.by_id);
        let sizes = Seq(sums.sizes.len(), || {
            sums.sizes.iter().map(|windows| SizeView {
                windows,
                sensors: sums.slots.sensors(),
                by_id,
            })
        });
        let seen = &sums.slots.seen;
        let with_times = by_id.iter().filter(|&&slot| seen.has_times(slot));
        let counted = Seq(with_times.clone().count(), || {
            with_times.clone().map(|&slot| {
                let (mut times, mut last) = (TimeList::default(), None);
                seen.each(slot, |t| times.push(t, &mut last));
                (sums.slots.sensors()[slot].as_str(), times)
            })
        });
        let mut state = s.serialize_struct("WindowSumsState", 2)?;
        state.serialize_field("sizes", &sizes)?;
        state.serialize_field("counted", &counted)?;
        state.end()
    }
}

struct SizeView<'a, C> {
    windows: &'a Windows<C>,
    sensors: &'a [SensorId],
    by_id: &'a [usize],
}

impl<C> Serialize for SizeView<'_, C> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let windows = self.windows;
        let mut list: Vec<(i64, bool, &[f64])> = windows
            .emitted
            .iter()
            .map(|w| (w.start_ms, true, w.sums.as_slice()))
            .chain(
                windows
                    .open
                    .iter()
                    .map(|w| (w.start_ms, false, w.sums.as_slice())),
            )
            .collect();
        list.sort_by_key(|w| w.0);
        let stride = windows.layout.stride;
        let (sensors, by_id) = (self.sensors, self.by_id);
        let window_list = Seq(list.len(), || {
            list.iter().map(|&(start_ms, emitted, sums)| {
                let counted = move |slot: &&usize| {
                    sums.get(**slot * stride).is_some_and(|&count| count > 0.0)
                };
                // A sensor's part, as `SensorState`'s fields in order.
                let parts = Seq(by_id.iter().filter(counted).count(), move || {
                    by_id.iter().filter(counted).map(move |&slot| {
                        let run = &sums[slot * stride..(slot + 1) * stride];
                        (sensors[slot].as_str(), run[0] as u64, &run[1..])
                    })
                });
                // `WindowState`'s fields in order.
                (start_ms, emitted, parts)
            })
        });
        let mut size = s.serialize_struct("SizeState", 3)?;
        size.serialize_field("size_ms", &windows.size_ms.unsigned_abs())?;
        size.serialize_field("fields", &windows.layout.fields.len())?;
        size.serialize_field("windows", &window_list)?;
        size.end()
    }
}
