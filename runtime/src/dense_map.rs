//! A map whose entries lie in one array in the order their keys were first seen, found
//! through a small table of positions: the per-sensor state of the hot path.
//!
//! Every reading looks its sensor up in a few places (the decoder's ids, the watermark's
//! clocks, a window's slots). With a general hash map each lookup reads a control group
//! and a bucket of key and value scattered over a table twice the fleet's size, which
//! for a thousand sensors no longer fits the L1 cache. Here the table holds only 4-byte
//! positions (8 KiB for a thousand sensors) and the entries sit in first-seen order. A
//! fleet publishing periodically comes back in much the same order each round, so the
//! entries are read nearly in sequence, which the hardware prefetches.
//!
//! Open addressing with linear probing, at most half full; keys are compared whole, so
//! two keys with one hash are two entries.

/// A key of a [`DenseMap`]: compared whole, placed by its 64-bit hash.
pub trait DenseKey: Copy + Eq {
    /// A hash of the key; its bits are mixed again before use, so a hash whose low
    /// bits are shared (as a worker's sensors share their routing residue) is fine.
    fn dense_hash(&self) -> u64;
}

impl DenseKey for u64 {
    #[inline]
    fn dense_hash(&self) -> u64 {
        *self
    }
}

impl DenseKey for crate::SensorId {
    #[inline]
    fn dense_hash(&self) -> u64 {
        self.route_hash()
    }
}

/// A table position that holds no entry.
const EMPTY: u32 = u32::MAX;

/// Keys and values in first-seen order, with an index of their positions.
#[derive(Clone, Debug)]
pub struct DenseMap<K, V> {
    /// Positions into `keys` (and `values`); a power of two long, at most half used.
    table: Vec<u32>,
    keys: Vec<K>,
    values: Vec<V>,
}

impl<K, V> Default for DenseMap<K, V> {
    fn default() -> Self {
        DenseMap {
            table: Vec::new(),
            keys: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<K: DenseKey, V> DenseMap<K, V> {
    /// An empty map; nothing is allocated until the first insert.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in first-seen order (an entry's position is its index here).
    pub fn keys(&self) -> &[K] {
        &self.keys
    }

    /// The values, in the keys' order.
    pub fn values(&self) -> &[V] {
        &self.values
    }

    /// Where `key`'s probe starts: the top bits of its mixed hash.
    #[inline]
    fn home(&self, key: &K) -> usize {
        let bits = self.table.len().trailing_zeros();
        // A Fibonacci multiply moves every bit of the hash into the top ones.
        (key.dense_hash().wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    /// The position of `key`, or the table slot where it would go.
    #[inline]
    fn probe(&self, key: &K) -> Result<usize, usize> {
        let mask = self.table.len() - 1;
        let mut at = self.home(key);
        loop {
            let position = self.table[at];
            if position == EMPTY {
                return Err(at);
            }
            if self.keys[position as usize] == *key {
                return Ok(position as usize);
            }
            at = (at + 1) & mask;
        }
    }

    /// The position of `key`, if it has an entry.
    #[inline]
    pub fn position(&self, key: &K) -> Option<usize> {
        if self.table.is_empty() {
            return None;
        }
        self.probe(key).ok()
    }

    /// The position of `key`'s entry, made with `make` (at the end) if it had none.
    #[inline]
    pub fn position_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> usize {
        if !self.table.is_empty() {
            match self.probe(&key) {
                Ok(position) => return position,
                Err(at) if 2 * (self.keys.len() + 1) <= self.table.len() => {
                    return self.push(at, key, make());
                }
                Err(_) => {}
            }
        }
        self.insert_growing(key, make())
    }

    /// The value of `key`, made with `make` if it had none.
    #[inline]
    pub fn get_or_insert_with(&mut self, key: K, make: impl FnOnce() -> V) -> &mut V {
        let position = self.position_or_insert_with(key, make);
        &mut self.values[position]
    }

    #[cold]
    fn insert_growing(&mut self, key: K, value: V) -> usize {
        self.rebuild(2 * (self.keys.len() + 1));
        let at = self.probe(&key).expect_err("the key had no entry");
        self.push(at, key, value)
    }

    #[inline]
    fn push(&mut self, at: usize, key: K, value: V) -> usize {
        let position = self.keys.len();
        // Four billion entries would not fit in memory long before this saturates.
        self.table[at] = u32::try_from(position).unwrap_or(EMPTY - 1);
        self.keys.push(key);
        self.values.push(value);
        position
    }

    /// Keep only the entries `keep` says to, in their order (positions shift down).
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let before = self.keys.len();
        let mut kept = 0;
        for i in 0..before {
            if keep(&self.keys[i], &mut self.values[i]) {
                self.keys.swap(kept, i);
                self.values.swap(kept, i);
                kept += 1;
            }
        }
        if kept < before {
            self.keys.truncate(kept);
            self.values.truncate(kept);
            self.rebuild(2 * kept);
        }
    }

    /// Remove every entry, keeping the allocations.
    pub fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
        self.table.fill(EMPTY);
    }

    /// A table of at least `room` slots (and 16), indexing every entry again.
    fn rebuild(&mut self, room: usize) {
        let size = room.max(16).next_power_of_two();
        self.table.clear();
        self.table.resize(size, EMPTY);
        for position in 0..self.keys.len() {
            let at = self
                .probe(&self.keys[position])
                .expect_err("keys are distinct");
            self.table[at] = u32::try_from(position).unwrap_or(EMPTY - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A key whose hash is chosen, to force collisions.
    #[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
    struct Key(u32, u64);

    impl DenseKey for Key {
        fn dense_hash(&self) -> u64 {
            self.1
        }
    }

    /// Against std's HashMap, through inserts, lookups and removals of keys that share
    /// hashes (every key's hash is one of eight).
    #[test]
    fn agrees_with_a_hash_map_whatever_the_collisions() {
        let mut next = {
            let mut x = 0x2545_f491_4f6c_dd1d_u64;
            move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            }
        };
        let mut dense: DenseMap<Key, u64> = DenseMap::new();
        let mut oracle: HashMap<Key, u64> = HashMap::new();
        for round in 0..20_000_u64 {
            let n = next();
            let key = Key((n % 3000) as u32, (n >> 32) % 8);
            match n % 7 {
                0 => {
                    let cut = next() % 3000;
                    dense.retain(|k, _| u64::from(k.0) > cut);
                    oracle.retain(|k, _| u64::from(k.0) > cut);
                }
                1..=3 => {
                    *dense.get_or_insert_with(key, || 0) += round;
                    *oracle.entry(key).or_insert(0) += round;
                }
                _ => {
                    let got = dense.position(&key).map(|p| dense.values()[p]);
                    assert_eq!(got, oracle.get(&key).copied(), "{key:?}");
                }
            }
            assert_eq!(dense.len(), oracle.len());
        }
        for (position, key) in dense.keys().iter().enumerate() {
            assert_eq!(dense.position(key), Some(position));
            assert_eq!(dense.values()[position], oracle[key]);
        }
        dense.clear();
        assert!(dense.is_empty() && dense.position(&Key(1, 1)).is_none());
    }

    #[test]
    fn entries_keep_their_first_seen_order_through_removals() {
        let mut map: DenseMap<u64, char> = DenseMap::new();
        for (k, v) in [(30, 'a'), (10, 'b'), (20, 'c'), (40, 'd')] {
            map.get_or_insert_with(k, || v);
        }
        map.get_or_insert_with(10, || 'x');
        map.retain(|&k, _| k != 20);
        assert_eq!(map.keys(), [30, 10, 40]);
        assert_eq!(map.values(), ['a', 'b', 'd']);
        assert_eq!(map.position(&40), Some(2));
    }
}
