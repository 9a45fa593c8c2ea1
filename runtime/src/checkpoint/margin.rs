//! The replay margin of a cluster run's checkpoints.
//!
//! Each process of a cluster writes its own checkpoints, each at a cut of its own
//! decoder's making; after a crash every process restores its latest. A process whose
//! latest checkpoint is older than another's would then miss what the other's sources
//! emitted between the two, if each replayed its log only from its own latest cut. So
//! in a cluster every process replays from the position of an *earlier* checkpoint,
//! `checkpoints` before its latest, and keeps its log back to there: what is replayed
//! twice is dropped by the windows, which count a reading once per (sensor, event time)
//! while its window can still change. This holds while the processes' latest
//! checkpoints are less than `checkpoints` intervals apart (they commit within moments
//! of each other, as the frontier passes each cut).

use std::collections::{BTreeMap, VecDeque};

/// The positions of the last few checkpoints of a process.
#[derive(Debug, Default)]
pub(super) struct ReplayMargin {
    /// How many checkpoints before the latest are replayed from (0: the latest).
    checkpoints: usize,
    recent: VecDeque<BTreeMap<String, u64>>,
}

impl ReplayMargin {
    /// Replay from `checkpoints` checkpoints before the latest; `restored` (the
    /// positions the run started from) counts as the first.
    pub fn new(checkpoints: usize, restored: &BTreeMap<String, u64>) -> Self {
        let mut recent = VecDeque::new();
        if checkpoints > 0 && !restored.is_empty() {
            recent.push_back(restored.clone());
        }
        ReplayMargin {
            checkpoints,
            recent,
        }
    }

    /// The positions to write for a checkpoint whose sources have got to `latest`: the
    /// earliest of each source's over this and the `checkpoints` before it.
    pub fn positions(&mut self, latest: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        if self.checkpoints == 0 {
            return latest.clone();
        }
        self.recent.push_back(latest.clone());
        while self.recent.len() > self.checkpoints + 1 {
            self.recent.pop_front();
        }
        let mut earliest = latest.clone();
        for positions in &self.recent {
            for (source, at) in positions {
                if let Some(kept) = earliest.get_mut(source) {
                    *kept = (*kept).min(*at);
                }
            }
        }
        earliest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: u64) -> BTreeMap<String, u64> {
        BTreeMap::from([("meters".to_string(), position)])
    }

    #[test]
    fn a_single_process_replays_from_its_latest_cut() {
        let mut margin = ReplayMargin::new(0, &at(5));
        assert_eq!(margin.positions(&at(10)), at(10));
        assert_eq!(margin.positions(&at(20)), at(20));
    }

    #[test]
    fn a_cluster_process_replays_from_an_earlier_cut_counting_the_restored_one() {
        let mut margin = ReplayMargin::new(2, &at(5));
        assert_eq!(margin.positions(&at(10)), at(5));
        assert_eq!(margin.positions(&at(20)), at(5));
        assert_eq!(margin.positions(&at(30)), at(10));
        assert_eq!(margin.positions(&at(40)), at(20));
        let mut fresh = ReplayMargin::new(2, &BTreeMap::new());
        assert_eq!(fresh.positions(&at(10)), at(10));
        assert_eq!(fresh.positions(&at(20)), at(10));
    }
}
