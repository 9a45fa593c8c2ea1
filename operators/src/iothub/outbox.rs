//! The outbox: every telemetry message goes here first and leaves only after IoT Hub
//! acknowledged it (PUBACK), so an outage or a restart loses nothing that was accepted.
//!
//! [`Outbox`] numbers the records of an [`OutboxStore`], a FIFO of byte records (in
//! memory, or on disk when the sink has a `spool` folder), and turns PUBACKs, which may
//! come in any order, into removals from the store's front.

use std::collections::{BTreeSet, VecDeque};

use crate::spool::{Spool, SpoolError};

/// Why the outbox refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// The outbox holds its maximum; the record was not added.
    #[error("the outbox is full ({bytes} bytes pending)")]
    Full {
        /// Bytes pending.
        bytes: u64,
    },
    /// The store failed (disk error).
    #[error("outbox: {0}")]
    Store(String),
}

/// A FIFO of byte records that keeps them until the front is acknowledged.
pub trait OutboxStore: Send + 'static {
    /// Adds a record at the back (durable when it returns, for a disk store).
    fn append(&mut self, record: &[u8]) -> Result<(), OutboxError>;
    /// Up to `limit` records, skipping the first `skip` pending ones, in order.
    fn read(&self, skip: usize, limit: usize) -> Result<Vec<Vec<u8>>, OutboxError>;
    /// Removes the front record.
    fn ack_front(&mut self) -> Result<(), OutboxError>;
    /// Records pending.
    fn len(&self) -> usize;
    /// Whether nothing is pending.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An in-memory store bounded by `max_bytes`: survives outages, not restarts.
#[derive(Debug)]
pub struct MemoryStore {
    records: VecDeque<Vec<u8>>,
    bytes: u64,
    max_bytes: u64,
}

impl MemoryStore {
    /// An empty store holding at most `max_bytes` of records.
    pub fn new(max_bytes: u64) -> Self {
        MemoryStore {
            records: VecDeque::new(),
            bytes: 0,
            max_bytes,
        }
    }
}

impl OutboxStore for MemoryStore {
    fn append(&mut self, record: &[u8]) -> Result<(), OutboxError> {
        let size = record.len() as u64;
        if self.bytes + size > self.max_bytes {
            return Err(OutboxError::Full { bytes: self.bytes });
        }
        self.bytes += size;
        self.records.push_back(record.to_vec());
        Ok(())
    }

    fn read(&self, skip: usize, limit: usize) -> Result<Vec<Vec<u8>>, OutboxError> {
        Ok(self
            .records
            .iter()
            .skip(skip)
            .take(limit)
            .cloned()
            .collect())
    }

    fn ack_front(&mut self) -> Result<(), OutboxError> {
        if let Some(record) = self.records.pop_front() {
            self.bytes -= record.len() as u64;
        }
        Ok(())
    }

    fn len(&self) -> usize {
        self.records.len()
    }
}

/// The on-disk spool as an outbox store. It must be opened with
/// [`WhenFull::Backpressure`](crate::spool::WhenFull::Backpressure): dropping the
/// oldest records would shift the [`Outbox`]'s numbering.
impl OutboxStore for Spool {
    fn append(&mut self, record: &[u8]) -> Result<(), OutboxError> {
        match Spool::append(self, record) {
            Ok(()) => Ok(()),
            Err(SpoolError::Full { pending, .. }) => Err(OutboxError::Full { bytes: pending }),
            Err(e) => Err(OutboxError::Store(e.to_string())),
        }
    }

    fn read(&self, skip: usize, limit: usize) -> Result<Vec<Vec<u8>>, OutboxError> {
        // The skipped records are the ones in flight (at most the in-flight window).
        self.iter()
            .skip(skip)
            .take(limit)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| OutboxError::Store(e.to_string()))
    }

    fn ack_front(&mut self) -> Result<(), OutboxError> {
        self.ack()
            .map(drop)
            .map_err(|e| OutboxError::Store(e.to_string()))
    }

    fn len(&self) -> usize {
        Spool::len(self)
    }
}

/// Numbered access to a store: record `front_id + i` is the store's `i`-th record.
pub struct Outbox {
    store: Box<dyn OutboxStore>,
    /// The id of the store's front record.
    front_id: u64,
    /// Acknowledged ids not yet at the front.
    acked: BTreeSet<u64>,
}

impl Outbox {
    /// Numbers `store`'s records from 0.
    pub fn new(store: Box<dyn OutboxStore>) -> Self {
        Outbox {
            store,
            front_id: 0,
            acked: BTreeSet::new(),
        }
    }

    /// Adds a record; its id.
    pub fn push(&mut self, record: &[u8]) -> Result<u64, OutboxError> {
        self.store.append(record)?;
        Ok(self.front_id + self.store.len() as u64 - 1)
    }

    /// Up to `limit` records with ids from `from` on (ids below the front count as the
    /// front), each with its id, skipping acknowledged ones.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, OutboxError> {
        let from = from.max(self.front_id);
        let skip = usize::try_from(from - self.front_id).unwrap_or(usize::MAX);
        let records = self.store.read(skip, limit)?;
        Ok(records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (from + i as u64, r))
            .filter(|(id, _)| !self.acked.contains(id))
            .collect())
    }

    /// Marks `id` delivered; removes every delivered record at the front.
    pub fn ack(&mut self, id: u64) -> Result<(), OutboxError> {
        if id < self.front_id || id >= self.end_id() {
            return Ok(());
        }
        self.acked.insert(id);
        while self.acked.remove(&self.front_id) {
            self.store.ack_front()?;
            self.front_id += 1;
        }
        Ok(())
    }

    /// One past the last id.
    pub fn end_id(&self) -> u64 {
        self.front_id + self.store.len() as u64
    }

    /// Records not yet delivered.
    pub fn pending(&self) -> usize {
        self.store.len() - self.acked.len()
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("front_id", &self.front_id)
            .field("pending", &self.pending())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_acks_remove_only_from_the_front() {
        let mut outbox = Outbox::new(Box::new(MemoryStore::new(1 << 20)));
        for i in 0..5u8 {
            assert_eq!(outbox.push(&[i]).expect("room"), u64::from(i));
        }
        outbox.ack(2).expect("ack");
        outbox.ack(0).expect("ack");
        assert_eq!(outbox.pending(), 3);
        let ids: Vec<u64> = outbox
            .read_from(0, 10)
            .expect("read")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, vec![1, 3, 4]);
        outbox.ack(1).expect("ack");
        assert_eq!(
            outbox.read_from(0, 10).expect("read"),
            vec![(3, vec![3]), (4, vec![4])]
        );
        outbox.ack(9).expect("unknown ids are ignored");
        assert_eq!(outbox.push(&[5]).expect("room"), 5);
        assert_eq!(outbox.read_from(4, 1).expect("read"), vec![(4, vec![4])]);
    }

    #[test]
    fn the_spool_keeps_unacknowledged_records_across_reopen() {
        use crate::spool::{SpoolOptions, WhenFull};
        let dir = tempfile::tempdir().expect("tempdir");
        let options = SpoolOptions {
            max_bytes: 1 << 20,
            when_full: WhenFull::Backpressure,
            fsync: false,
            ..SpoolOptions::default()
        };
        {
            let spool = Spool::open(dir.path(), options.clone()).expect("open");
            let mut outbox = Outbox::new(Box::new(spool));
            for i in 0..10u8 {
                outbox.push(&[i; 3]).expect("room");
            }
            for id in [1, 0, 2, 5] {
                outbox.ack(id).expect("ack");
            }
            assert_eq!(outbox.pending(), 6);
        }
        // Reopened: 0..=2 are gone; 5 was acknowledged out of order and is sent again
        // (at least once), with everything after the front.
        let spool = Spool::open(dir.path(), options).expect("reopen");
        let outbox = Outbox::new(Box::new(spool));
        let records: Vec<u8> = outbox
            .read_from(0, 100)
            .expect("read")
            .into_iter()
            .map(|(_, r)| r[0])
            .collect();
        assert_eq!(records, vec![3, 4, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn a_full_store_refuses() {
        let mut outbox = Outbox::new(Box::new(MemoryStore::new(4)));
        outbox.push(b"abc").expect("room");
        assert!(matches!(
            outbox.push(b"de"),
            Err(OutboxError::Full { bytes: 3 })
        ));
        outbox.ack(0).expect("ack");
        outbox.push(b"de").expect("room again");
    }
}
