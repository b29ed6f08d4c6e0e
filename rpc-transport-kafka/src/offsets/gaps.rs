//! Records a fetch skipped, read again by a consumer of their own.
//!
//! A consumer that reads at the end of a partition can be handed a record
//! while an earlier one is not readable yet. Tansu (the test broker) does
//! this: a produce first raises the partition's high watermark, which gives
//! the record its offset, and only then stores the record; a fetch lists
//! the records stored below the high watermark from its offset on. So when
//! two producers write one partition at once and the later offset is stored
//! first, a fetch at the earlier one returns the later record, and the
//! consumer moves past the earlier one for good; its commits then cover
//! it, so no other member reads it either. Seen: a request at offset 0 of
//! a partition written by two clients never reached its server, whose
//! fetch began with offset 1 (`replies_reach_their_own_client`); a plain
//! consumer behind 12 producers of one partition skipped 3 offsets of
//! 2,400, each readable when read again. It is as true of a reply topic,
//! which every server of the service writes. Apache Kafka never returns a
//! record above a missing one, but offsets can be skipped there for good
//! (transaction markers, compaction), so a gap is read again only for a
//! while ([`PATIENCE`]).

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::session::{Context, Detached, Session};
use crate::transport::Shared;

/// The most offsets one gap may span to be read again. A gap the race
/// above makes is a few records (one per producer writing at that moment);
/// a longer jump is something else (a reset, a log whose start moved) and
/// is left alone, as any consumer would.
pub(crate) const MAX_GAP: i64 = 1_000;

/// How long a skipped record is waited for. Against tansu it is readable
/// within milliseconds; one that never shows up was never there (a
/// transaction marker) or was written by a produce that failed.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// The pause between reads of a gap still missing a record.
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// How long one poll of the gap's consumer waits.
const POLL: Duration = Duration::from_millis(50);

/// The offsets a record at `offset` skipped when `expected` was the next
/// one due, if that is a gap worth reading again.
pub(crate) fn skipped(expected: i64, offset: i64) -> Option<Range<i64>> {
    (offset > expected && offset - expected <= MAX_GAP).then_some(expected..offset)
}

/// What reading a gap found.
pub(crate) struct Filled {
    /// The records found, in offset order.
    pub(crate) records: Vec<OwnedMessage>,
    /// Offsets of the gap still not readable after [`PATIENCE`].
    pub(crate) missing: Vec<i64>,
}

/// Reads the records at `gap` of `topic`/`partition` with a consumer of its
/// own (assigned, never in a group, never committing), again and again
/// until each one is found, [`PATIENCE`] runs out, or the generation is
/// lost or the transport closed. The consumer the gap was found by goes on
/// undisturbed.
pub(crate) async fn read(
    shared: Arc<Shared>,
    session: Arc<Session>,
    topic: Arc<str>,
    partition: i32,
    gap: Range<i64>,
) -> Filled {
    tracing::debug!(%topic, partition, ?gap, "a fetch skipped records; reading them again");
    let read = tokio::task::spawn_blocking(move || {
        read_blocking(&shared, &session, &topic, partition, gap.clone())
    });
    match read.await {
        Ok(filled) => filled,
        Err(error) => {
            tracing::warn!(%error, "reading a gap failed");
            Filled {
                records: Vec::new(),
                missing: Vec::new(),
            }
        }
    }
}

fn read_blocking(
    shared: &Shared,
    session: &Session,
    topic: &str,
    partition: i32,
    gap: Range<i64>,
) -> Filled {
    let mut missing: BTreeSet<i64> = gap.clone().collect();
    let mut records = Vec::new();
    let created: Result<BaseConsumer<Context>, _> = shared
        .config
        .consumer(&format!("{topic}.gaps"))
        .create_with_context(Context::new(session.health.clone()));
    let consumer = match created {
        Ok(consumer) => Detached::new(consumer, &session.live),
        Err(error) => {
            tracing::warn!(%error, topic, partition, "could not create a consumer to read a gap");
            return Filled {
                records,
                missing: missing.into_iter().collect(),
            };
        }
    };
    let give_up = Instant::now() + PATIENCE;
    // The first offset still missing, where the consumer reads from.
    let mut from = None;
    while let Some(&first) = missing.first() {
        let stop =
            Instant::now() >= give_up || session.health.is_lost() || shared.connection.is_closed();
        if stop {
            break;
        }
        if from != Some(first) {
            let mut assignment = TopicPartitionList::new();
            let assigned = assignment
                .add_partition_offset(topic, partition, Offset::Offset(first))
                .and_then(|()| consumer.assign(&assignment));
            if let Err(error) = assigned {
                tracing::debug!(%error, topic, partition, "could not assign a gap");
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
            from = Some(first);
        }
        match consumer.poll(POLL) {
            Some(Ok(message)) => {
                let offset = message.offset();
                if missing.remove(&offset) {
                    records.push(message.detach());
                } else if offset > first {
                    // Read past a record still not readable: read from it
                    // again after a pause.
                    from = None;
                    std::thread::sleep(RETRY_PAUSE);
                }
            }
            Some(Err(error)) => {
                tracing::debug!(%error, topic, partition, "reading a gap");
                std::thread::sleep(RETRY_PAUSE);
            }
            None => {}
        }
    }
    drop(consumer);
    if missing.is_empty() {
        tracing::debug!(topic, partition, ?gap, "skipped records read");
    } else {
        tracing::warn!(
            topic,
            partition,
            ?missing,
            "skipped offsets never became readable; left behind"
        );
    }
    Filled {
        records,
        missing: missing.into_iter().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_forward_jumps_within_bounds_are_gaps() {
        assert_eq!(skipped(5, 5), None);
        assert_eq!(
            skipped(5, 4),
            None,
            "a fetch going back (a rebalance) is no gap"
        );
        assert_eq!(skipped(0, 1), Some(0..1));
        assert_eq!(skipped(7, 10), Some(7..10));
        assert_eq!(skipped(0, MAX_GAP), Some(0..MAX_GAP));
        assert_eq!(skipped(0, MAX_GAP + 1), None, "a long jump is left alone");
    }
}
