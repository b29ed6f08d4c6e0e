//! Offsets in flight per partition, and the commits they allow.
//!
//! A commit of position `p` on a partition says every record before `p` is
//! done. So a partition commits up to the lowest offset still in flight or
//! skipped by the fetch and not yet read again (`gaps.rs`), or just past the
//! highest received when there is none: a request settled out of order
//! waits, uncommitted, for the ones before it. A crash redelivers
//! everything past the committed position, which is at-least-once.
//!
//! Positions are stored, not committed one by one: librdkafka commits the
//! stored position of every partition each commit interval, on revocation
//! and on close (`Config::request_consumer`). A commit request per answered
//! request held a broker (tansu) to a third of the calls per second at 256
//! in flight.

pub(crate) mod gaps;

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rpc_core::TransportError;
use tokio::sync::watch;

use crate::session::{Context, Detached};
use crate::transport::{IdMap, lock};

type RequestConsumer = Arc<Detached<StreamConsumer<Context>>>;

/// The commit state of one consumer's partitions.
pub(crate) struct Offsets {
    /// The consumer commits go through; `None` once [`detach`](Self::detach)ed.
    consumer: Mutex<Option<RequestConsumer>>,
    topic: Arc<str>,
    partitions: Mutex<IdMap<i32, Partition>>,
}

struct Partition {
    in_flight: BTreeSet<i64>,
    /// Offsets the fetch skipped, being read again (`gaps.rs`): a commit
    /// must not pass them.
    skipped: BTreeSet<i64>,
    /// One past the highest offset received: the next the fetch should
    /// hand out.
    next: i64,
    /// The assignment (a count of them, see [`Offsets::started`]) the fetch
    /// position was last learnt in; 0: never.
    assignment: u64,
    /// The position last stored (committed within a commit interval),
    /// watched by at-most-once settlements, which commit it at once.
    committed: watch::Sender<i64>,
    /// The one-partition list positions are stored with, made at the first
    /// store and updated in place after: building a list per store (two
    /// allocations, a copy of the topic name, and their frees) cost twice
    /// the store itself. librdkafka keeps a reference to its partition
    /// object in it, so it must go before the consumer
    /// ([`Offsets::release_lists`]).
    stored: Option<TopicPartitionList>,
}

impl Partition {
    fn new(start: i64) -> Self {
        Partition {
            in_flight: BTreeSet::new(),
            skipped: BTreeSet::new(),
            next: start,
            assignment: 0,
            committed: watch::Sender::new(start),
            stored: None,
        }
    }

    /// The fetch starts (again) at `start`.
    fn start(&mut self, assignment: u64, start: i64) {
        self.assignment = assignment;
        self.next = start;
        self.skipped.retain(|&offset| offset >= start);
    }

    /// A record came from the fetch; returns the offsets it skipped.
    fn receive(&mut self, offset: i64) -> Option<Range<i64>> {
        let gap = gaps::skipped(self.next, offset);
        if let Some(gap) = &gap {
            self.skipped.extend(gap.clone());
        }
        // Fetched again after a rebalance: no longer skipped.
        self.skipped.remove(&offset);
        self.in_flight.insert(offset);
        self.next = self.next.max(offset + 1);
        gap
    }

    /// A skipped record was read again; false when no longer wanted.
    fn fill(&mut self, offset: i64) -> bool {
        let wanted = self.skipped.remove(&offset);
        if wanted {
            self.in_flight.insert(offset);
        }
        wanted
    }

    /// Where a commit may go now: not past anything still in flight or
    /// skipped.
    fn position(&self) -> i64 {
        let in_flight = self.in_flight.first().copied().unwrap_or(self.next);
        let skipped = self.skipped.first().copied().unwrap_or(self.next);
        in_flight.min(skipped)
    }

    /// A record is done with; returns the position to commit if it moved.
    fn settle(&mut self, offset: i64) -> Option<i64> {
        if !self.in_flight.remove(&offset) {
            return None;
        }
        self.advance()
    }

    /// Raises the committed position to where a commit may go; returns it
    /// if it moved.
    fn advance(&mut self) -> Option<i64> {
        let position = self.position();
        let moved = self.committed.send_if_modified(|committed| {
            if position > *committed {
                *committed = position;
                true
            } else {
                false
            }
        });
        moved.then_some(position)
    }
}

impl Drop for Offsets {
    fn drop(&mut self) {
        // Before the consumer field goes (see `Partition::stored`).
        self.release_lists();
    }
}

impl Offsets {
    pub(crate) fn new(consumer: RequestConsumer, topic: Arc<str>) -> Self {
        Offsets {
            consumer: Mutex::new(Some(consumer)),
            topic,
            partitions: Mutex::default(),
        }
    }

    /// Lets go of the consumer when its generation is lost, so that the
    /// requests it handed out do not keep it: it leaves the group (by being
    /// destroyed) as soon as the broker is back, however long they run, and
    /// the next generation's consumer joins only once it has
    /// (`requests/members.rs`). What is settled after this is not
    /// committed: a member that has left cannot commit, and its records go
    /// to the group's next member (at-least-once).
    pub(crate) fn detach(&self) {
        self.release_lists();
        let consumer = lock(&self.consumer).take();
        drop(consumer);
    }

    /// Drops the lists positions were stored with: each holds a reference
    /// to a partition object of the consumer, which must not outlive it.
    fn release_lists(&self) {
        for entry in lock(&self.partitions).values_mut() {
            entry.stored = None;
        }
    }

    /// Whether the fetch position of `partition` is unknown in assignment
    /// number `assignment`: no record of it was received since.
    pub(crate) fn unstarted(&self, partition: i32, assignment: u64) -> bool {
        lock(&self.partitions)
            .get(&partition)
            .is_none_or(|p| p.assignment != assignment)
    }

    /// `partition` was (re-)assigned (assignment number `assignment`) and
    /// its fetch starts at `start` (the group's committed position, else
    /// 0: `requests::fetch_start`), or at its first record when that could
    /// not be learnt. Skipped offsets before it are done with: the
    /// group committed past them.
    pub(crate) fn started(&self, partition: i32, assignment: u64, start: i64) {
        let mut partitions = lock(&self.partitions);
        partitions
            .entry(partition)
            .or_insert_with(|| Partition::new(start))
            .start(assignment, start);
    }

    /// A record was received from the consumer and is now in flight.
    /// Returns the offsets it skipped, which the caller reads again
    /// (`gaps::read`) and hands to [`filled`](Self::filled) or
    /// [`given_up`](Self::given_up); until then no commit passes them.
    pub(crate) fn received(&self, partition: i32, offset: i64) -> Option<Range<i64>> {
        let mut partitions = lock(&self.partitions);
        partitions
            .entry(partition)
            .or_insert_with(|| Partition::new(offset))
            .receive(offset)
    }

    /// A skipped record was read again: whether it is still wanted (it is
    /// then in flight); not when the fetch brought it meanwhile.
    pub(crate) fn filled(&self, partition: i32, offset: i64) -> bool {
        lock(&self.partitions)
            .get_mut(&partition)
            .is_some_and(|entry| entry.fill(offset))
    }

    /// Skipped offsets that never became readable: no longer held back for.
    pub(crate) fn given_up(&self, partition: i32, offsets: &[i64]) {
        let mut partitions = lock(&self.partitions);
        let Some(entry) = partitions.get_mut(&partition) else {
            return;
        };
        for offset in offsets {
            entry.skipped.remove(offset);
        }
        if let Some(position) = entry.advance() {
            let _ = self.store(entry, partition, position);
        }
    }

    /// A record is done with: its partition's position moves as far as that
    /// allows, to be committed by librdkafka at the next commit interval.
    pub(crate) fn settled(&self, partition: i32, offset: i64) {
        let _ = self.settle(partition, offset);
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

    /// Takes `offset` out of flight and stores the partition's position if
    /// it moved. Stored under the lock, so that positions reach librdkafka
    /// in the order they were reached: a store never moves one back.
    fn settle(&self, partition: i32, offset: i64) -> Option<i64> {
        let mut partitions = lock(&self.partitions);
        let entry = partitions.get_mut(&partition)?;
        let position = entry.settle(offset)?;
        let _ = self.store(entry, partition, position);
        Some(position)
    }

    /// Stores `position` as the next commit of `partition`. librdkafka
    /// commits what is stored every commit interval, when the partition is
    /// revoked and when the consumer closes (`Config::request_consumer`):
    /// one commit request per interval, not one per request.
    fn store(
        &self,
        entry: &mut Partition,
        partition: i32,
        position: i64,
    ) -> Result<(), TransportError> {
        const ACTION: &str = "store an offset";
        let Some(consumer) = lock(&self.consumer).clone() else {
            tracing::debug!(partition, position, "the consumer has left its group");
            return Err(TransportError::ConnectionLost);
        };
        let offset = Offset::Offset(position);
        let list = match &mut entry.stored {
            Some(list) => {
                list.set_partition_offset(&self.topic, partition, offset)
                    .map_err(|e| TransportError::protocol(ACTION, e))?;
                list
            }
            None => {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&self.topic, partition, offset)
                    .map_err(|e| TransportError::protocol(ACTION, e))?;
                entry.stored.insert(list)
            }
        };
        // A partition revoked meanwhile refuses the store; its records
        // come back to whoever owns it now.
        consumer.store_offsets(list).map_err(|e| {
            tracing::debug!(%e, partition, position, "store refused");
            TransportError::protocol(ACTION, e)
        })
    }

    /// Commits `position` of `partition` now, in `mode`.
    fn commit(
        &self,
        partition: i32,
        position: i64,
        mode: CommitMode,
    ) -> Result<(), TransportError> {
        tracing::trace!(topic = %self.topic, partition, position, "commit");
        self.with_position(partition, position, "commit an offset", |consumer, list| {
            // After a rebalance or a lost broker the commit is refused; the
            // records come back to whoever owns the partition now.
            consumer.commit(list, mode)
        })
    }

    /// Hands `position` of `partition`, as a one-partition list, to `apply`
    /// with the group's consumer: `ConnectionLost` when the consumer has
    /// left its group, a protocol error (`action`) when librdkafka refuses.
    fn with_position(
        &self,
        partition: i32,
        position: i64,
        action: &'static str,
        apply: impl FnOnce(&StreamConsumer<Context>, &TopicPartitionList) -> KafkaResult<()>,
    ) -> Result<(), TransportError> {
        let Some(consumer) = lock(&self.consumer).clone() else {
            tracing::debug!(
                partition,
                position,
                action,
                "the consumer has left its group"
            );
            return Err(TransportError::ConnectionLost);
        };
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(&self.topic, partition, Offset::Offset(position))
            .map_err(|e| TransportError::protocol(action, e))?;
        apply(&consumer, &list).map_err(|e| {
            tracing::debug!(%e, partition, position, action, "refused");
            TransportError::protocol(action, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_settlements_commit_each_record() {
        let mut p = Partition::new(0);
        assert_eq!(p.receive(0), None);
        assert_eq!(p.receive(1), None);
        assert_eq!(p.settle(0), Some(1));
        assert_eq!(p.settle(1), Some(2));
    }

    #[test]
    fn a_commit_waits_for_an_earlier_record_in_flight() {
        let mut p = Partition::new(0);
        p.receive(0);
        p.receive(1);
        assert_eq!(p.settle(1), None);
        assert_eq!(p.settle(0), Some(2));
    }

    /// The loss this guards against: offset 0 not readable yet when the
    /// fetch at 0 returned offset 1. Committing 2 after offset 1 would
    /// have said offset 0 was done, and nobody would ever have read it.
    #[test]
    fn a_skipped_record_holds_back_commits_until_read_again() {
        let mut p = Partition::new(0);
        p.start(1, 0);
        assert_eq!(p.receive(1), Some(0..1), "the fetch skipped offset 0");
        assert_eq!(p.settle(1), None, "no commit past the skipped record");
        assert!(p.fill(0), "read again, it is wanted");
        assert!(!p.fill(0), "only once");
        assert_eq!(p.settle(0), Some(2));
    }

    #[test]
    fn a_gap_in_mid_stream_is_found() {
        let mut p = Partition::new(0);
        p.receive(0);
        assert_eq!(p.receive(3), Some(1..3));
        assert_eq!(p.settle(0), Some(1));
        assert_eq!(p.settle(3), None);
        assert!(p.fill(2));
        assert_eq!(p.settle(2), None, "offset 1 is still missing");
        p.skipped.remove(&1); // given up
        assert_eq!(p.advance(), Some(4));
    }

    #[test]
    fn a_skipped_record_fetched_again_is_no_longer_wanted() {
        let mut p = Partition::new(0);
        p.receive(0);
        assert_eq!(p.receive(2), Some(1..2));
        // A rebalance: the fetch starts again at the committed position.
        p.start(2, 1);
        assert_eq!(p.receive(1), None);
        assert!(!p.fill(1), "the fetch brought it");
    }

    #[test]
    fn a_start_past_skipped_offsets_drops_them() {
        let mut p = Partition::new(0);
        p.receive(0);
        p.receive(2);
        // Another member committed past offset 1 while it was not ours.
        p.start(2, 5);
        assert!(p.skipped.is_empty());
        assert_eq!(p.receive(5), None);
    }
}
