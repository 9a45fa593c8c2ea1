//! The event times each sensor's readings were counted at, so a redelivered reading (an
//! MQTT QoS-1 resend after a reconnect, a replayed file) is counted once.
//!
//! Readings of one sensor arrive nearly in time order, so each sensor's times are one
//! sorted run: a time after the last is an append, and only an out-of-order time pays
//! a walk back and a binary search (and, if new, an insert). Times of windows that can
//! no longer change are dropped from the front.
//!
//! The runs live in fixed-size blocks from one pool, linked per sensor, and a dropped
//! block goes back to the pool: once the horizon is filled nothing is allocated or
//! freed. A growing `Vec` per sensor was measured to cost a third of the throughput:
//! its reallocations, interleaved with timely's message buffers, left those buffers at
//! the top of the heap, where every free returned their pages and every allocation
//! faulted them in again.
//!
//! A block keeps one 64-bit base time and each time as a 16-bit millisecond offset from
//! it, so a block spans at most 65.5 s (at 12 Hz it fills in 10 s). That is a quarter of
//! the memory of whole times: with the default windows a sensor's times are kept for up
//! to three minutes, 4.8 MB at 1,000 sensors instead of 17 MB (BENCHMARKS.md, memory).

/// Times per block: the block, with its header, is 256 bytes.
const B: usize = 118;
/// No block.
const NONE: u32 = u32::MAX;

/// A piece of one sensor's run: `base + offsets[head..len]`, sorted.
#[derive(Clone)]
struct Block {
    base: i64,
    offsets: [u16; B],
    len: u16,
    head: u16,
    prev: u32,
    next: u32,
}

impl Block {
    fn time(&self, i: u16) -> i64 {
        self.base + i64::from(self.offsets[usize::from(i)])
    }
}

/// `time` as an offset from `base`, if a block with that base can hold it.
#[inline(always)]
fn offset(base: i64, time: i64) -> Option<u16> {
    time.checked_sub(base).and_then(|d| u16::try_from(d).ok())
}

/// One sensor's run: its first and last blocks. The last block's length, base and last
/// time are kept here, not in the block, so the common case (a time after the last)
/// reads this small array and writes one offset, and never touches the block's header.
#[derive(Clone, Copy, Debug)]
struct Run {
    first: u32,
    last: u32,
    /// The length of the last block (its `len` is stale while it is the last).
    tail_len: u16,
    /// The last block's base.
    tail_base: i64,
    last_time: i64,
}

const EMPTY: Run = Run {
    first: NONE,
    last: NONE,
    tail_len: 0,
    tail_base: 0,
    last_time: i64::MIN,
};

/// Where a new time goes, from [`Seen::find`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Vacancy {
    /// After every time of the sensor.
    Append,
    /// At `pos` in block `block` (`pos` may be its `head` or its `len`: before or after
    /// its times).
    At { block: u32, pos: u16 },
}

/// The counted times of every slot (sensor), each sorted and each time once.
#[derive(Default)]
pub(super) struct Seen {
    blocks: Vec<Block>,
    free: Vec<u32>,
    runs: Vec<Run>,
}

impl Seen {
    /// A slot with no times, numbered after the others.
    pub(super) fn add_slot(&mut self) {
        self.runs.push(EMPTY);
    }

    /// Where `time` would go in `slot`'s run, or `None` if it is already there.
    #[inline]
    pub(super) fn find(&self, slot: usize, time: i64) -> Option<Vacancy> {
        let run = &self.runs[slot];
        if run.last == NONE || time > run.last_time {
            // The common case: a sensor's next reading.
            return Some(Vacancy::Append);
        }
        // Out of order: most likely near the end, so walk back from there.
        let mut id = run.last;
        loop {
            let block = &self.blocks[id as usize];
            let len = self.len_of(run, id);
            if block.prev == NONE || block.time(block.head) <= time {
                if time < block.time(block.head) {
                    return Some(Vacancy::At {
                        block: id,
                        pos: block.head,
                    });
                }
                let live = &block.offsets[usize::from(block.head)..usize::from(len)];
                // At or after the first time, so not below the base; past the span it
                // is after every time here.
                let Some(off) = offset(block.base, time) else {
                    return Some(Vacancy::At {
                        block: id,
                        pos: len,
                    });
                };
                return match live.binary_search(&off) {
                    Ok(_) => None,
                    Err(at) => Some(Vacancy::At {
                        block: id,
                        pos: block.head + at as u16,
                    }),
                };
            }
            id = block.prev;
        }
    }

    /// Record `time` in `slot` where [`find`](Self::find) said, nothing changed between.
    ///
    /// The common case (an append with room in the last block) is inlined into the
    /// caller; the rest is out of line, so the caller saves no registers for it.
    #[inline(always)]
    pub(super) fn insert(&mut self, slot: usize, time: i64, at: Vacancy) {
        if at == Vacancy::Append {
            let run = &mut self.runs[slot];
            if run.last != NONE
                && usize::from(run.tail_len) < B
                && let Some(off) = offset(run.tail_base, time)
            {
                run.last_time = time;
                self.blocks[run.last as usize].offsets[usize::from(run.tail_len)] = off;
                run.tail_len += 1;
                return;
            }
        }
        self.insert_slow(slot, time, at);
    }

    #[inline(never)]
    fn insert_slow(&mut self, slot: usize, time: i64, at: Vacancy) {
        self.settle(slot);
        match at {
            Vacancy::Append => {
                let last = self.runs[slot].last;
                self.runs[slot].last_time = time;
                let id = self.alloc_with(time);
                self.link_after(slot, last, id);
            }
            Vacancy::At { block, pos } => self.insert_at(slot, block, pos, time),
        }
        self.unsettle(slot);
    }

    /// The length of block `id` of `run`.
    fn len_of(&self, run: &Run, id: u32) -> u16 {
        if id == run.last {
            run.tail_len
        } else {
            self.blocks[id as usize].len
        }
    }

    /// Write the last block's length into it, before the blocks of `slot` change.
    fn settle(&mut self, slot: usize) {
        let run = self.runs[slot];
        if run.last != NONE {
            self.blocks[run.last as usize].len = run.tail_len;
        }
    }

    /// Take the last block's length and base back, after the blocks of `slot` changed.
    fn unsettle(&mut self, slot: usize) {
        let run = &mut self.runs[slot];
        (run.tail_len, run.tail_base) = match run.last {
            NONE => (0, 0),
            last => {
                let block = &self.blocks[last as usize];
                (block.len, block.base)
            }
        };
    }

    /// Put `time` at `pos` of block `id`, between the times at `pos - 1` and `pos`.
    fn insert_at(&mut self, slot: usize, id: u32, pos: u16, time: i64) {
        let block = &mut self.blocks[id as usize];
        let Some(off) = offset(block.base, time) else {
            // Outside this block's span: before its first time (only in the first
            // block) or after its last. It starts a block of its own there.
            let before = time < block.base;
            let new = self.alloc_with(time);
            if before {
                self.link_before(slot, id, new);
            } else {
                self.link_after(slot, id, new);
            }
            return;
        };
        let (head, len, pos_) = (
            usize::from(block.head),
            usize::from(block.len),
            usize::from(pos),
        );
        if head > 0 {
            // Room before the live times (pruned ones): shift the smaller ones left.
            block.offsets.copy_within(head..pos_, head - 1);
            block.offsets[pos_ - 1] = off;
            block.head -= 1;
        } else if len < B {
            block.offsets.copy_within(pos_..len, pos_ + 1);
            block.offsets[pos_] = off;
            block.len += 1;
        } else {
            // Full: the upper half moves to a new block after it, with the same base.
            let half = B / 2;
            let (base, upper) = (block.base, block.offsets);
            let new = self.alloc_with(base);
            let moved = &mut self.blocks[new as usize];
            moved.offsets[..B - half].copy_from_slice(&upper[half..]);
            moved.len = (B - half) as u16;
            self.blocks[id as usize].len = half as u16;
            self.link_after(slot, id, new);
            if pos_ <= half {
                self.insert_at(slot, id, pos, time);
            } else {
                self.insert_at(slot, new, (pos_ - half) as u16, time);
            }
        }
    }

    /// Link the unlinked block `new` into `slot`'s run after `after` (`NONE`: the run is
    /// empty).
    fn link_after(&mut self, slot: usize, after: u32, new: u32) {
        let run = &mut self.runs[slot];
        if after == NONE {
            (run.first, run.last) = (new, new);
            return;
        }
        let next = self.blocks[after as usize].next;
        self.blocks[after as usize].next = new;
        let block = &mut self.blocks[new as usize];
        block.prev = after;
        block.next = next;
        if next == NONE {
            run.last = new;
        } else {
            self.blocks[next as usize].prev = new;
        }
    }

    /// Link the unlinked block `new` into `slot`'s run before `before`.
    fn link_before(&mut self, slot: usize, before: u32, new: u32) {
        let prev = self.blocks[before as usize].prev;
        self.blocks[before as usize].prev = new;
        let block = &mut self.blocks[new as usize];
        block.prev = prev;
        block.next = before;
        if prev == NONE {
            self.runs[slot].first = new;
        } else {
            self.blocks[prev as usize].next = new;
        }
    }

    /// An unlinked block whose base, and only time, is `time`. (A block made to take
    /// half of another's times is then shortened by its caller.)
    fn alloc_with(&mut self, time: i64) -> u32 {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.blocks.push(Block {
                    base: 0,
                    offsets: [0; B],
                    len: 0,
                    head: 0,
                    prev: NONE,
                    next: NONE,
                });
                // Four billion blocks would be a terabyte.
                u32::try_from(self.blocks.len() - 1).unwrap_or(NONE - 1)
            }
        };
        let block = &mut self.blocks[id as usize];
        (block.base, block.len, block.head, block.prev, block.next) = (time, 1, 0, NONE, NONE);
        block.offsets[0] = 0;
        id
    }

    /// Forget every slot's times before `floor`.
    pub(super) fn prune(&mut self, floor: i64) {
        for slot in 0..self.runs.len() {
            self.settle(slot);
            let mut first = self.runs[slot].first;
            while first != NONE {
                let block = &mut self.blocks[first as usize];
                if block.time(block.len - 1) >= floor {
                    // The floor is within this block's span: its last time is not
                    // below it, and its base is (or the block keeps every time).
                    if let Some(cut) = offset(block.base, floor) {
                        let live = &block.offsets[usize::from(block.head)..usize::from(block.len)];
                        block.head += live.partition_point(|&o| o < cut) as u16;
                    }
                    break;
                }
                let next = block.next;
                self.free.push(first);
                first = next;
            }
            if first == NONE {
                self.runs[slot] = EMPTY;
            } else {
                self.blocks[first as usize].prev = NONE;
                self.runs[slot].first = first;
            }
            self.unsettle(slot);
        }
    }

    /// Keep only the slots in `keep`, renumbered in that order.
    pub(super) fn renumber(&mut self, keep: &[usize]) {
        let mut kept = vec![false; self.runs.len()];
        for &slot in keep {
            kept[slot] = true;
        }
        for (slot, run) in self.runs.iter().enumerate() {
            if kept[slot] {
                continue;
            }
            let mut id = run.first;
            while id != NONE {
                self.free.push(id);
                id = self.blocks[id as usize].next;
            }
        }
        self.runs = keep.iter().map(|&slot| self.runs[slot]).collect();
    }

    /// Whether `slot` keeps any time.
    pub(super) fn has_times(&self, slot: usize) -> bool {
        self.runs[slot].first != NONE
    }

    /// Calls `f` with each of `slot`'s times, in order.
    pub(super) fn each(&self, slot: usize, mut f: impl FnMut(i64)) {
        let run = &self.runs[slot];
        let mut id = run.first;
        while id != NONE {
            let block = &self.blocks[id as usize];
            (block.head..self.len_of(run, id)).for_each(|i| f(block.time(i)));
            id = block.next;
        }
    }

    /// `slot`'s times in `[from, to)`, in order.
    #[cfg(test)]
    pub(super) fn between(&self, slot: usize, from: i64, to: i64) -> Vec<i64> {
        let mut out = Vec::new();
        self.each(slot, |t| {
            if t >= from && t < to {
                out.push(t);
            }
        });
        out
    }

    /// How many times `slot` keeps.
    #[cfg(test)]
    pub(super) fn len(&self, slot: usize) -> usize {
        self.between(slot, i64::MIN, i64::MAX).len()
    }

    /// How many blocks hold times.
    #[cfg(test)]
    pub(super) fn blocks_in_use(&self) -> usize {
        self.blocks.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn record(seen: &mut Seen, slot: usize, t: i64) -> bool {
        match seen.find(slot, t) {
            Some(at) => {
                seen.insert(slot, t, at);
                true
            }
            None => false,
        }
    }

    fn one() -> Seen {
        let mut seen = Seen::default();
        seen.add_slot();
        seen
    }

    #[test]
    fn each_time_is_new_once_in_any_order_and_pruning_keeps_the_rest() {
        let mut seen = one();
        for t in [10, 20, 15, 30, 5] {
            assert!(record(&mut seen, 0, t), "{t}");
        }
        for t in [10, 20, 15, 30, 5] {
            assert!(!record(&mut seen, 0, t), "{t} again");
        }
        assert_eq!(seen.between(0, 6, 30), [10, 15, 20]);
        seen.prune(12);
        assert_eq!(seen.between(0, i64::MIN, i64::MAX), [15, 20, 30]);
        // A pruned time counts as new (its windows are gone), a kept one does not.
        assert!(record(&mut seen, 0, 10));
        assert!(!record(&mut seen, 0, 20));
        assert!(record(&mut seen, 0, 25));
        assert_eq!(seen.between(0, i64::MIN, i64::MAX), [10, 15, 20, 25, 30]);
        seen.prune(31);
        assert_eq!(seen.len(0), 0);
        assert_eq!(seen.blocks_in_use(), 0);
        assert!(record(&mut seen, 0, 1));
    }

    #[test]
    fn many_sensors_in_a_shuffled_order_match_a_set_through_splits_and_prunes() {
        let mut next = crate::xorshift::xorshift(0x2545_f491_4f6c_dd1d_u64);
        let mut seen = Seen::default();
        let mut oracle: Vec<BTreeSet<i64>> = vec![BTreeSet::new(); 5];
        (0..5).for_each(|_| seen.add_slot());
        for i in 0..40_000_i64 {
            let slot = (next() % 5) as usize;
            // Mostly in order, some far out of it, some repeated.
            let t = match next() % 10 {
                0 => i - (next() % 3_000) as i64,
                1 => i - 1,
                _ => i,
            };
            let floor = i - 2_500;
            if t < floor {
                continue;
            }
            assert_eq!(
                record(&mut seen, slot, t),
                oracle[slot].insert(t),
                "{slot} {t}"
            );
            if i % 1_000 == 0 {
                seen.prune(floor);
                for set in &mut oracle {
                    set.retain(|&t| t >= floor);
                }
            }
        }
        for (slot, set) in oracle.iter().enumerate() {
            assert_eq!(
                seen.between(slot, i64::MIN, i64::MAX),
                set.iter().copied().collect::<Vec<_>>()
            );
            assert_eq!(
                seen.between(slot, 30_000, 31_000).len(),
                set.range(30_000..31_000).count()
            );
        }
        // What was pruned went back to the pool and was used again.
        assert!(
            seen.blocks.len() < 5 * 3_500 / (B / 2),
            "{}",
            seen.blocks.len()
        );
        seen.renumber(&[3, 1]);
        assert_eq!(
            seen.between(0, i64::MIN, i64::MAX),
            oracle[3].iter().copied().collect::<Vec<_>>()
        );
        assert_eq!(
            seen.between(1, i64::MIN, i64::MAX),
            oracle[1].iter().copied().collect::<Vec<_>>()
        );
        seen.prune(i64::MAX);
        assert_eq!(seen.blocks_in_use(), 0);
    }

    #[test]
    fn times_beyond_a_blocks_span_and_at_the_ends_of_time_match_a_set() {
        let mut next = crate::xorshift::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        let mut seen = one();
        let mut oracle = BTreeSet::new();
        let mut t = 0_i64;
        for i in 0..30_000 {
            // Mostly 12 Hz steps; some jumps past a block's 65.5 s span either way,
            // some repeats of a recent time.
            t += match next() % 16 {
                0 => 65_000 + (next() % 200_000) as i64,
                1 => -((next() % 300_000) as i64),
                2 => -((next() % 2_000) as i64),
                _ => 83,
            };
            assert_eq!(record(&mut seen, 0, t), oracle.insert(t), "{i}: {t}");
            if i % 5_000 == 4_999 {
                let floor = t - 1_000_000;
                seen.prune(floor);
                oracle.retain(|&x| x >= floor);
                assert_eq!(
                    seen.between(0, i64::MIN, i64::MAX),
                    oracle.iter().copied().collect::<Vec<_>>()
                );
            }
        }
        for t in [
            i64::MAX,
            i64::MIN,
            0,
            i64::MIN + 1,
            i64::MAX - 1,
            0,
            i64::MIN,
        ] {
            assert_eq!(record(&mut seen, 0, t), oracle.insert(t), "{t}");
        }
        // Every time but i64::MAX, which no half-open range holds.
        assert_eq!(
            seen.between(0, i64::MIN, i64::MAX),
            oracle.range(..i64::MAX).copied().collect::<Vec<_>>()
        );
        seen.prune(i64::MIN);
        assert!(!record(&mut seen, 0, i64::MIN));
        seen.prune(i64::MAX);
        assert!(!record(&mut seen, 0, i64::MAX));
        assert_eq!(seen.len(0), 0);
        assert_eq!(seen.blocks_in_use(), 1);
    }
}
