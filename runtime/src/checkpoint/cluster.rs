//! The checkpoints of a cluster run: common cuts, and the cut every process restores.
//!
//! Each process writes its own checkpoints, but readings cross processes after
//! `decode` (the exchange by sensor), so a cut is consistent only if every process
//! cuts at the same timely time. In a cluster, cuts are therefore not announced by a
//! process's decoder but are the multiples of `checkpoint_interval` in timely time
//! (the decode watermark, in ms): every participant of every process computes them
//! alike ([`next_cut_after`]).
//!
//! A participant takes part in the cuts from the first one after it has seen time
//! move ([`super::NodeState`]: a decoder from its first watermark, any other from its
//! first input frontier past 0, and after every record it has applied): timely time
//! starts at 0 and jumps to the watermark (~1.7e12 ms), and no part is owed for the
//! cuts in between. From there on it holds input at or after its next cut until its
//! frontier has passed it, so its part holds exactly the records before the cut, from
//! whatever process they came. A cut some participant of a process took no part in is
//! never written by that process; that only makes it unusable for restoring.
//!
//! Why a part at cut `T` holds exactly the records before `T`: (a) before it starts,
//! a participant remembers the latest time of every batch it applied (`holds` is asked
//! before each one is applied), and its first cut is after that time and after its
//! frontier then; so nothing at or after its first cut was applied before it started.
//! (b) From then on `holds` keeps back every batch at or after the next cut, and the
//! next cut moves on only when the part for it is taken; so nothing at or after a cut
//! is applied before its part. (c) The part is taken once the frontier has passed `T`,
//! so every record before `T` has arrived, from every process. A decoder's part at `T`
//! is taken as its capability moves from before `T` to at or after it: everything it
//! decoded before went out before `T`, everything after at `T` or later, so its log
//! position splits the messages exactly as the other parts split the readings.
//!
//! Each process keeps its last [`KEPT`] checkpoints (and its write-ahead logs back to
//! the oldest one's positions). At start the processes send each other the times they
//! hold ([`exchange`], over timely's own connections, before the pipeline starts) and
//! each restores the newest time all hold ([`newest_common`]); the ones after it are
//! discarded.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use timely::dataflow::operators::vec::input::Handle;
use timely::dataflow::operators::vec::{Broadcast, Input};
use timely::dataflow::operators::{Inspect, Probe};

use crate::operator::Time;
use crate::render::Cluster;

/// How many checkpoints a cluster process keeps.
pub const KEPT: usize = 3;

/// The first cut strictly after `time`, cuts being every `every` ms of timely time
/// (`None`: none left before the end of time).
pub fn next_cut_after(time: Time, every: u64) -> Option<Time> {
    let every = every.max(1);
    (time / every).checked_add(1)?.checked_mul(every)
}

/// The newest checkpoint time every process holds, given each process's list (`None`:
/// none in common, or no process). A stop's checkpoint ([`super::AT_STOP`]) is the
/// newest of all, so it is chosen when every process wrote one.
pub fn newest_common(held: &[Vec<Time>]) -> Option<Time> {
    let (first, rest) = held.split_first()?;
    let mut common: BTreeSet<Time> = first.iter().copied().collect();
    for times in rest {
        let times: BTreeSet<Time> = times.iter().copied().collect();
        common.retain(|t| times.contains(t));
    }
    common.last().copied()
}

/// A process's index and the checkpoint times it holds.
type Held = (usize, Vec<Time>);

/// Why the processes could not agree.
#[derive(Debug, thiserror::Error)]
#[error("the processes could not tell each other their checkpoints: {0}")]
pub struct AgreementError(String);

/// Sends the checkpoint times this process holds to every process of `cluster`, and
/// returns every process's, in process order. It runs a dataflow of its own over
/// timely's cluster connections and returns when every process has sent its list, so
/// every process starts its pipeline from the same answer.
pub fn exchange(cluster: &Cluster, held: Vec<Time>) -> Result<Vec<Vec<Time>>, AgreementError> {
    let workers = cluster.workers.max(1);
    let guards = timely::execute(cluster.timely_config(), move |worker| {
        let received: Rc<RefCell<Vec<Held>>> = Rc::default();
        let mut input: Handle<u64, Held> = Handle::new();
        let sink = Rc::clone(&received);
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            scope
                .input_from(&mut input)
                .broadcast()
                .inspect(move |x| sink.borrow_mut().push(x.clone()))
                .probe()
                .0
        });
        // One worker per process speaks for it.
        if worker.index() % workers == 0 {
            input.send((worker.index() / workers, held.clone()));
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        let mut lists = received.take();
        lists.sort();
        lists.dedup_by_key(|(process, _)| *process);
        lists
            .into_iter()
            .map(|(_, times)| times)
            .collect::<Vec<_>>()
    })
    .map_err(AgreementError)?;
    guards
        .join()
        .into_iter()
        .next()
        .ok_or_else(|| AgreementError("no worker ran".into()))?
        .map_err(AgreementError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::AT_STOP;

    #[test]
    fn the_newest_time_every_process_holds_is_restored() {
        let held = vec![
            vec![3_000, 2_000, 1_000],
            vec![4_000, 3_000, 2_000],
            vec![3_000, 2_000],
        ];
        assert_eq!(newest_common(&held), Some(3_000));
        // One process's latest write was cut short: the one before it is common.
        let held = vec![vec![5_000, 4_000, 3_000], vec![4_000, 3_000, 2_000]];
        assert_eq!(newest_common(&held), Some(4_000));
    }

    #[test]
    fn nothing_in_common_restores_nothing() {
        assert_eq!(newest_common(&[vec![1_000], vec![2_000]]), None);
        assert_eq!(newest_common(&[vec![1_000], vec![]]), None);
        assert_eq!(newest_common(&[]), None);
    }

    #[test]
    fn a_stop_checkpoint_is_restored_only_when_every_process_wrote_one() {
        let all = vec![vec![AT_STOP, 2_000], vec![AT_STOP, 2_000, 1_000]];
        assert_eq!(newest_common(&all), Some(AT_STOP));
        // Process 1 was killed: the newest periodic cut both hold.
        let one = vec![vec![AT_STOP, 2_000, 1_000], vec![3_000, 2_000, 1_000]];
        assert_eq!(newest_common(&one), Some(2_000));
    }

    #[test]
    fn two_processes_of_two_workers_exchange_what_they_hold() {
        let port = || {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let addresses: Vec<String> = (0..2).map(|_| format!("127.0.0.1:{}", port())).collect();
        let held = [vec![3_000, 2_000], vec![2_000, 1_000]];
        let processes: Vec<_> = (0..2)
            .map(|process| {
                let cluster = Cluster {
                    workers: 2,
                    process,
                    addresses: addresses.clone(),
                };
                let own = held[process].clone();
                std::thread::spawn(move || exchange(&cluster, own).expect("exchange"))
            })
            .collect();
        for process in processes {
            let all = process.join().expect("a process");
            assert_eq!(all, held.to_vec());
            assert_eq!(newest_common(&all), Some(2_000));
        }
    }

    #[test]
    fn cuts_are_the_multiples_of_the_interval() {
        assert_eq!(next_cut_after(0, 1_000), Some(1_000));
        assert_eq!(next_cut_after(999, 1_000), Some(1_000));
        assert_eq!(next_cut_after(1_000, 1_000), Some(2_000));
        assert_eq!(
            next_cut_after(1_733_000_000_123, 1_000),
            Some(1_733_000_001_000)
        );
        assert_eq!(next_cut_after(AT_STOP, 1_000), None);
    }
}
