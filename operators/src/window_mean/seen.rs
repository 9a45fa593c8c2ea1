//! The event times each sensor's readings were counted at, so a redelivered reading (an
//! MQTT QoS-1 resend after a reconnect, a replayed file) is counted once.
//!
//! Readings of one sensor arrive nearly in time order, so each sensor's times are one
//! sorted run: a time after the last is an append, and only an out-of-order time pays
//! a walk back and a scan (and, if new, a rewrite of one block). Times of windows that
//! can no longer change are dropped from the front.
//!
//! The runs live in fixed-size blocks from one pool, linked per sensor, and a dropped
//! block goes back to the pool: once the horizon is filled nothing is allocated or
//! freed. A growing `Vec` per sensor was measured to cost a third of the throughput:
//! its reallocations, interleaved with timely's message buffers, left those buffers at
//! the top of the heap, where every free returned their pages and every allocation
//! faulted them in again.
//!
//! A block keeps its first time whole and each later one as the gap from the time
//! before it, in LEB128 (seven bits a byte): one byte per reading at 12 Hz (gaps of
//! 83 ms), two from 8 Hz down to 0.06 Hz. With the default windows a sensor's times
//! are kept for up to three minutes: at 1,000 sensors that is 2.3 MB, against 4.8 MB
//! with 16-bit offsets and 17 MB with whole times (BENCHMARKS.md, memory).

/// Gap bytes per block: with its 20-byte header, the block is 256 bytes.
const BYTES: usize = 236;
/// No block.
const NONE: u32 = u32::MAX;
/// Most times a block can hold: its first, and a one-byte gap per byte.
const MOST: usize = BYTES + 1;

/// A piece of one sensor's run: `first`, then the times the gaps in
/// `gaps[head..used]` lead to, sorted.
#[derive(Clone)]
struct Block {
    first: i64,
    head: u16,
    used: u16,
    prev: u32,
    next: u32,
    gaps: [u8; BYTES],
}

/// `later - earlier` for `later > earlier`, whatever their distance.
#[inline(always)]
fn gap(earlier: i64, later: i64) -> u64 {
    (later as u64).wrapping_sub(earlier as u64)
}

/// Writes `gap` at `gaps[at..]` as LEB128; the end, or `None` if it does not fit.
#[inline]
fn put(gaps: &mut [u8; BYTES], mut at: usize, mut gap: u64) -> Option<usize> {
    loop {
        let byte = (gap & 0x7f) as u8;
        gap >>= 7;
        *gaps.get_mut(at)? = if gap == 0 { byte } else { byte | 0x80 };
        at += 1;
        if gap == 0 {
            return Some(at);
        }
    }
}

/// Reads the LEB128 gap at `gaps[*at..]` and moves `at` past it.
#[inline]
fn take(gaps: &[u8], at: &mut usize) -> u64 {
    let mut gap = 0_u64;
    let mut shift = 0;
    while let Some(&byte) = gaps.get(*at) {
        *at += 1;
        gap |= u64::from(byte & 0x7f).wrapping_shl(shift);
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    gap
}

impl Block {
    /// Calls `f` with each of the block's times, `used` being its length in bytes.
    #[inline]
    fn each(&self, used: u16, mut f: impl FnMut(i64)) {
        let mut t = self.first;
        f(t);
        let mut at = usize::from(self.head);
        while at < usize::from(used) {
            t = t.wrapping_add(take(&self.gaps, &mut at) as i64);
            f(t);
        }
    }

    /// Writes `times` (sorted, at least one) into the block from its start, as many as
    /// fit in `room` bytes; how many it took.
    fn fill(&mut self, times: &[i64], room: usize) -> usize {
        self.first = times[0];
        self.head = 0;
        let mut end = 0;
        let mut taken = 1;
        for pair in times.windows(2) {
            match put(&mut self.gaps, end, gap(pair[0], pair[1])) {
                Some(next) if next <= room => end = next,
                _ => break,
            }
            taken += 1;
        }
        self.used = end as u16;
        taken
    }
}

/// One sensor's run: its first and last blocks. The last block's used length and last
/// time are kept here, not in the block, so the common case (a time after the last)
/// reads this small array and writes one byte, and never touches the block's header.
#[derive(Clone, Copy, Debug)]
struct Run {
    first: u32,
    last: u32,
    /// The used length of the last block (its `used` is stale while it is the last).
    tail_used: u16,
    last_time: i64,
}

const EMPTY: Run = Run {
    first: NONE,
    last: NONE,
    tail_used: 0,
    last_time: i64::MIN,
};

/// Where a new time goes, from [`Seen::find`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Vacancy {
    /// After every time of the sensor.
    Append,
    /// Before the `pos`-th time of block `block` (`pos` may be its count: after them).
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
            if block.prev == NONE || block.first <= time {
                let (mut pos, mut found) = (0_u16, false);
                block.each(self.used_of(run, id), |t| {
                    found |= t == time;
                    pos += u16::from(t < time);
                });
                return (!found).then_some(Vacancy::At { block: id, pos });
            }
            id = block.prev;
        }
    }

    /// Record `time` in `slot` where [`find`](Self::find) said, nothing changed between.
    ///
    /// The common case (an append of a one-byte gap with room in the last block) is
    /// inlined into the caller; the rest is out of line, so the caller saves no
    /// registers for it.
    #[inline(always)]
    pub(super) fn insert(&mut self, slot: usize, time: i64, at: Vacancy) {
        if at == Vacancy::Append {
            let run = &mut self.runs[slot];
            let step = gap(run.last_time, time);
            if run.last != NONE && step < 0x80 && usize::from(run.tail_used) < BYTES {
                self.blocks[run.last as usize].gaps[usize::from(run.tail_used)] = step as u8;
                run.tail_used += 1;
                run.last_time = time;
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
                let Run {
                    last, last_time, ..
                } = self.runs[slot];
                self.runs[slot].last_time = time;
                if last != NONE {
                    let block = &mut self.blocks[last as usize];
                    if let Some(end) = put(&mut block.gaps, block.used.into(), gap(last_time, time))
                    {
                        block.used = end as u16;
                        self.unsettle(slot);
                        return;
                    }
                }
                let id = self.alloc_with(time);
                self.link_after(slot, last, id);
            }
            Vacancy::At { block, pos } => self.insert_at(slot, block, pos, time),
        }
        self.unsettle(slot);
    }

    /// The used length of block `id` of `run`.
    fn used_of(&self, run: &Run, id: u32) -> u16 {
        if id == run.last {
            run.tail_used
        } else {
            self.blocks[id as usize].used
        }
    }

    /// Write the last block's length into it, before the blocks of `slot` change.
    fn settle(&mut self, slot: usize) {
        let run = self.runs[slot];
        if run.last != NONE {
            self.blocks[run.last as usize].used = run.tail_used;
        }
    }

    /// Take the last block's length back, after the blocks of `slot` changed.
    fn unsettle(&mut self, slot: usize) {
        let run = &mut self.runs[slot];
        run.tail_used = match run.last {
            NONE => 0,
            last => self.blocks[last as usize].used,
        };
    }

    /// Put `time` before the `pos`-th time of block `id`: the block is written anew,
    /// and split in two by bytes if it no longer fits.
    fn insert_at(&mut self, slot: usize, id: u32, pos: u16, time: i64) {
        let mut times = [0_i64; MOST + 1];
        let mut n = 0;
        let block = &self.blocks[id as usize];
        block.each(block.used, |t| {
            times[n] = t;
            n += 1;
        });
        let pos = usize::from(pos);
        times.copy_within(pos..n, pos + 1);
        times[pos] = time;
        n += 1;
        let times = &times[..n];
        let took = self.blocks[id as usize].fill(times, BYTES);
        if took < n {
            // Full: about half its bytes stay, the rest start a block after it.
            let kept = self.blocks[id as usize].fill(times, BYTES / 2);
            let new = self.alloc_with(times[kept]);
            let rest = self.blocks[new as usize].fill(&times[kept..], BYTES);
            debug_assert_eq!(kept + rest, n);
            self.link_after(slot, id, new);
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

    /// An unlinked block whose only time is `time`.
    fn alloc_with(&mut self, time: i64) -> u32 {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.blocks.push(Block {
                    first: 0,
                    head: 0,
                    used: 0,
                    prev: NONE,
                    next: NONE,
                    gaps: [0; BYTES],
                });
                // Four billion blocks would be a terabyte.
                u32::try_from(self.blocks.len() - 1).unwrap_or(NONE - 1)
            }
        };
        let block = &mut self.blocks[id as usize];
        (block.first, block.head, block.used, block.prev, block.next) = (time, 0, 0, NONE, NONE);
        id
    }

    /// Forget every slot's times before `floor`.
    pub(super) fn prune(&mut self, floor: i64) {
        for slot in 0..self.runs.len() {
            self.settle(slot);
            let mut first = self.runs[slot].first;
            while first != NONE {
                let block = &mut self.blocks[first as usize];
                if block.first >= floor {
                    break;
                }
                // Step the block's first time forward over the gaps, until one is kept.
                let (mut at, mut t) = (usize::from(block.head), block.first);
                while at < usize::from(block.used) && t < floor {
                    t = t.wrapping_add(take(&block.gaps, &mut at) as i64);
                }
                if t >= floor {
                    (block.first, block.head) = (t, at as u16);
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
            block.each(self.used_of(run, id), &mut f);
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
            seen.blocks.len() < 5 * 3_500 / (BYTES / 4),
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
    fn a_12_hz_sensor_costs_a_byte_a_reading_and_slow_or_shuffled_ones_stay_exact() {
        // 12 Hz: one block holds its first time and a one-byte gap per byte.
        let mut seen = one();
        (0..MOST as i64).for_each(|i| assert!(record(&mut seen, 0, i * 83)));
        assert_eq!(seen.blocks_in_use(), 1);
        assert!(record(&mut seen, 0, MOST as i64 * 83));
        assert_eq!(seen.blocks_in_use(), 2);

        // Gaps of one to five bytes, written out of order, against a set.
        let mut next = crate::xorshift::xorshift(0x0123_4567_89ab_cdef_u64);
        let mut seen = one();
        let mut oracle = BTreeSet::new();
        for i in 0..20_000_i64 {
            let step = [83, 1_000, 20_000, 3_000_000, 1 << 33][(next() % 5) as usize];
            let t = i * 1_000 + (next() % step) as i64 - step as i64 / 2;
            assert_eq!(record(&mut seen, 0, t), oracle.insert(t), "{i}: {t}");
        }
        assert_eq!(
            seen.between(0, i64::MIN, i64::MAX),
            oracle.iter().copied().collect::<Vec<_>>()
        );
    }

    #[test]
    fn times_beyond_a_blocks_span_and_at_the_ends_of_time_match_a_set() {
        let mut next = crate::xorshift::xorshift(0x9e37_79b9_7f4a_7c15_u64);
        let mut seen = one();
        let mut oracle = BTreeSet::new();
        let mut t = 0_i64;
        for i in 0..30_000 {
            // Mostly 12 Hz steps (one-byte gaps); some jumps of multi-byte gaps either way,
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
