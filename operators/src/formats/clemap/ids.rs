//! The sensor ids a Clemap decoder made recently, by ObjectId.
//!
//! Every decoded reading needs its sensor's [`SensorId`]: 24 hex characters and their
//! stable hash, about 80 instructions from the 12 raw bytes. A fleet is a fixed set of
//! monitors, each publishing 12 times a second, so the same few hundred ids come back
//! over and over: each worker's decoder keeps a small table of the ids it made, which
//! turns that into one probe of a [`DenseMap`] (whose entries a periodic fleet reads
//! nearly in order). The table is bounded (a full one starts afresh), so any number of
//! distinct ids costs the same memory.

use smartgrid_runtime::SensorId;
use smartgrid_runtime::dense_map::{DenseKey, DenseMap};

/// Most ids kept: a table this full starts afresh, so any number of distinct ids (a
/// fleet this large, or ids that keep changing) costs at most this many entries
/// (about 260 KiB).
const MOST: usize = 4096;

/// An ObjectId as two words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ObjectKey(u64, u32);

impl DenseKey for ObjectKey {
    /// Its last bytes vary most between monitors (a counter, then random bytes).
    #[inline]
    fn dense_hash(&self) -> u64 {
        (self.0 >> 32) | (u64::from(self.1) << 32)
    }
}

fn key_of(raw: &[u8; 12]) -> ObjectKey {
    let (low, high) = raw.split_at(8);
    ObjectKey(
        u64::from_le_bytes(low.try_into().unwrap_or_default()),
        u32::from_le_bytes(high.try_into().unwrap_or_default()),
    )
}

/// The ids this decoder made, in the order it first made them.
#[derive(Clone, Default)]
pub(super) struct SensorIds {
    made: DenseMap<ObjectKey, SensorId>,
}

impl std::fmt::Debug for SensorIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SensorIds")
            .field("held", &self.made.len())
            .finish()
    }
}

impl SensorIds {
    /// `SensorId::from_object_id(raw)`, from the table when this decoder made it
    /// before.
    #[inline]
    pub(super) fn get(&mut self, raw: &[u8; 12]) -> SensorId {
        let key = key_of(raw);
        if let Some(at) = self.made.position(&key) {
            return self.made.values()[at];
        }
        self.make(key, raw)
    }

    #[cold]
    fn make(&mut self, key: ObjectKey, raw: &[u8; 12]) -> SensorId {
        if self.made.len() >= MOST {
            self.made.clear();
        }
        let id = SensorId::from_object_id(raw);
        self.made.get_or_insert_with(key, || id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table gives what `from_object_id` makes, for ids that repeat and overflow
    /// it: far more distinct ids than entries, in a shuffled order.
    #[test]
    fn gives_the_id_from_object_id_makes_whatever_was_made_before() {
        let mut next = crate::xorshift::xorshift(0x2545_f491_4f6c_dd1d_u64);
        let ids: Vec<[u8; 12]> = (0..3 * MOST)
            .map(|i| {
                let mut raw = [0u8; 12];
                raw[..8].copy_from_slice(&next().to_le_bytes());
                raw[8..].copy_from_slice(&(i as u32).to_le_bytes());
                raw
            })
            .collect();
        let mut table = SensorIds::default();
        for _ in 0..4 {
            for _ in 0..ids.len() {
                let raw = &ids[(next() % ids.len() as u64) as usize];
                let id = table.get(raw);
                let made = SensorId::from_object_id(raw);
                assert_eq!(id, made);
                assert_eq!(id.as_str(), made.as_str());
                assert_eq!(id.route_hash(), made.route_hash());
                assert!(table.made.len() <= MOST);
            }
        }
    }
}
