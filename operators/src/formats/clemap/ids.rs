//! The sensor ids a Clemap decoder made recently, by ObjectId.
//!
//! Every decoded reading needs its sensor's [`SensorId`]: 24 hex characters and their
//! stable hash, about 80 instructions from the 12 raw bytes. A fleet is a fixed set of
//! monitors, each publishing 12 times a second, so the same few hundred ids come back
//! over and over: each worker's decoder keeps a small table of the ids it made, which
//! turns that into one probe. The table is bounded (a miss overwrites the older of a
//! set's two entries), so any number of distinct ids costs the same memory.

use smartgrid_runtime::SensorId;

/// Sets of two entries: 4096 ids in 224 KiB per worker, room for the sensors one
/// worker usually holds with few sets overflowing.
const SETS: usize = 2048;

/// An ObjectId as two words, the second with bit 32 set so that no key is zero: a zero
/// key marks an empty entry.
type Key = (u64, u64);

fn key_of(raw: &[u8; 12]) -> Key {
    let (low, high) = raw.split_at(8);
    let low = u64::from_le_bytes(low.try_into().unwrap_or_default());
    let high = u32::from_le_bytes(high.try_into().unwrap_or_default());
    (low, u64::from(high) | 1 << 32)
}

/// The table, allocated on first use (a decoder that is only planned, never run,
/// costs nothing). Keys and ids apart, so a probe reads 32 bytes of keys and copies
/// one id.
#[derive(Clone, Default)]
pub(super) struct SensorIds {
    /// Per set: the most recently made entry, then the one before it.
    keys: Vec<[Key; 2]>,
    ids: Vec<[SensorId; 2]>,
}

impl std::fmt::Debug for SensorIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.keys.iter().flatten().filter(|k| k.1 != 0).count();
        f.debug_struct("SensorIds").field("held", &held).finish()
    }
}

impl SensorIds {
    /// `SensorId::from_object_id(raw)`, from the table when this decoder made it
    /// recently.
    #[inline]
    pub(super) fn get(&mut self, raw: &[u8; 12]) -> SensorId {
        if self.keys.len() != SETS {
            self.allocate();
        }
        let key = key_of(raw);
        let set = set_of(key);
        let (keys, ids) = (&mut self.keys[set], &mut self.ids[set]);
        if keys[0] == key {
            return ids[0];
        }
        if keys[1] == key {
            return ids[1];
        }
        // A miss replaces the older entry.
        let id = SensorId::from_object_id(raw);
        keys[1] = keys[0];
        ids[1] = ids[0];
        keys[0] = key;
        ids[0] = id;
        id
    }

    #[cold]
    fn allocate(&mut self) {
        let empty = SensorId::from_object_id(&[0; 12]);
        self.keys = vec![[(0, 0); 2]; SETS];
        self.ids = vec![[empty; 2]; SETS];
    }
}

/// An ObjectId's set. Its last bytes vary most between monitors (a counter, then
/// random bytes), and a multiply spreads them over the high bits.
#[inline]
fn set_of(key: Key) -> usize {
    let word = (key.0 >> 32) | (key.1 << 32);
    let spread = word.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // SETS is a power of two: the top log2(SETS) bits index it.
    (spread >> (64 - SETS.trailing_zeros())) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table gives what `from_object_id` makes, for ids that collide, repeat and
    /// evict one another: far more distinct ids than entries, in a shuffled order.
    #[test]
    fn gives_the_id_from_object_id_makes_whatever_was_made_before() {
        let mut next = crate::xorshift::xorshift(0x2545_f491_4f6c_dd1d_u64);
        let ids: Vec<[u8; 12]> = (0..3 * SETS * 2)
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
            }
        }
    }

    #[test]
    fn a_small_fleet_fits_without_misses() {
        let fleet: Vec<[u8; 12]> = (0u32..1000)
            .map(|i| {
                let mut raw = *b"\x65\x4f\x00\x00rand\x00\x00\x00\x00";
                raw[8..].copy_from_slice(&i.to_be_bytes());
                raw
            })
            .collect();
        let mut sets = vec![0u8; SETS];
        for raw in &fleet {
            sets[set_of(key_of(raw))] += 1;
        }
        let overflowing = sets.iter().filter(|&&n| n > 2).count();
        assert!(
            overflowing * 100 <= SETS,
            "{overflowing} sets of {SETS} hold more than two of 1000 sequential ids"
        );
    }
}
