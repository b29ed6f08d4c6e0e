//! Offsets in flight per partition, and the commits they allow.
//!
//! A commit of position `p` on a partition says every record before `p` is
//! done. So a partition commits up to the lowest offset still in flight (or
//! just past the highest received when none is): a request settled out of
//! order waits, uncommitted, for the ones before it. A crash redelivers
//! everything past the committed position, which is at-least-once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rpc_core::TransportError;
use tokio::sync::watch;

use crate::session::{Context, Detached};
use crate::transport::lock;

type RequestConsumer = Arc<Detached<StreamConsumer<Context>>>;

/// The commit state of one consumer's partitions.
pub(crate) struct Offsets {
    consumer: RequestConsumer,
    topic: Arc<str>,
    partitions: Mutex<HashMap<i32, Partition>>,
}

struct Partition {
    in_flight: BTreeSet<i64>,
    /// One past the highest offset received.
    next: i64,
    /// The position last committed, watched by at-most-once settlements.
    committed: watch::Sender<i64>,
}

impl Offsets {
    pub(crate) fn new(consumer: RequestConsumer, topic: Arc<str>) -> Self {
        Offsets {
            consumer,
            topic,
            partitions: Mutex::default(),
        }
    }

    /// A record was received and is now in flight.
    pub(crate) fn received(&self, partition: i32, offset: i64) {
        let mut partitions = lock(&self.partitions);
        let entry = partitions.entry(partition).or_insert_with(|| Partition {
            in_flight: BTreeSet::new(),
            next: offset,
            committed: watch::Sender::new(offset),
        });
        entry.in_flight.insert(offset);
        entry.next = entry.next.max(offset + 1);
    }

    /// A record is done with: commit as far as that allows (queued, sent by
    /// librdkafka's own thread).
    pub(crate) fn settled(&self, partition: i32, offset: i64) {
        if let Some(position) = self.settle(partition, offset) {
            let _ = self.commit(partition, position, CommitMode::Async);
        }
    }

    /// A record is done with before it runs (at-most-once): resolves once a
    /// commit past it has been acknowledged by the broker. When requests
    /// before it in its partition are still running, that waits for them.
    pub(crate) async fn settled_and_committed(
        self: Arc<Self>,
        partition: i32,
        offset: i64,
    ) -> Result<(), TransportError> {
        let mut committed = {
            self.settle(partition, offset);
            let partitions = lock(&self.partitions);
            match partitions.get(&partition) {
                Some(p) => p.committed.subscribe(),
                None => return Ok(()),
            }
        };
        // Queued commits (from `settled`) set the watch when issued; the
        // wait below is for one that covers this record.
        let _ = committed.wait_for(|position| *position > offset).await;
        let position = *committed.borrow();
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.commit(partition, position, CommitMode::Sync))
            .await
            .map_err(|e| TransportError::protocol("commit an offset", e))?
    }

    /// Takes `offset` out of flight; returns the position to commit if it
    /// moved.
    fn settle(&self, partition: i32, offset: i64) -> Option<i64> {
        let mut partitions = lock(&self.partitions);
        let entry = partitions.get_mut(&partition)?;
        if !entry.in_flight.remove(&offset) {
            return None;
        }
        let position = entry.in_flight.first().copied().unwrap_or(entry.next);
        let moved = entry.committed.send_if_modified(|committed| {
            if position > *committed {
                *committed = position;
                true
            } else {
                false
            }
        });
        moved.then_some(position)
    }

    fn commit(
        &self,
        partition: i32,
        position: i64,
        mode: CommitMode,
    ) -> Result<(), TransportError> {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition, Offset::Offset(position))
            .map_err(|e| TransportError::protocol("commit an offset", e))?;
        self.consumer.commit(&list, mode).map_err(|e| {
            // After a rebalance or a lost broker the commit is refused; the
            // records come back to whoever owns the partition now.
            tracing::debug!(%e, partition, position, "commit refused");
            TransportError::protocol("commit an offset", e)
        })
    }
}
