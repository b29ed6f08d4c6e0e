//! Reply inboxes: one reply topic per transport instance (one partition),
//! read by one consumer that hands each reply to the inbox its record key
//! names.
//!
//! Why a topic per instance rather than a partition per client of one shared
//! topic: a fresh topic is empty, so the consumer reads it from the start
//! and cannot miss a reply produced before its first fetch (assigning at the
//! end of a live partition and producing at once lost a record); nothing is
//! shared between clients, so no partition numbers need handing out; and
//! deleting the topic is the whole cleanup. The cost is one topic creation
//! when the first inbox opens.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rpc_core::transport::ReplySink;
use rpc_core::{Envelope, TransportError};

use crate::headers;
use crate::offsets::gaps;
use crate::session::{Context, Detached, Session};
use crate::transport::Shared;

/// An open inbox; dropping it closes the inbox (replies for it are dropped).
pub struct InboxGuard {
    pub(crate) id: u64,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for InboxGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxGuard").field("id", &self.id).finish()
    }
}

impl Drop for InboxGuard {
    fn drop(&mut self) {
        self.shared.remove_inbox(self.id);
    }
}

pub(crate) async fn open(
    shared: Arc<Shared>,
    sink: ReplySink,
) -> Result<InboxGuard, TransportError> {
    let session = shared.session().await?;
    let id = shared.next_id();
    shared.register_inbox(id, sink);
    let guard = InboxGuard {
        id,
        shared: shared.clone(),
    };
    start(&shared, &session).await?;
    Ok(guard)
}

/// Creates the reply topic and starts its consumer in `session`, unless
/// that generation has one already.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
) -> Result<(), TransportError> {
    let mut running = shared.reply_generation.lock().await;
    if *running == session.generation {
        return Ok(());
    }
    let topic = shared.reply_to.as_str();
    shared.create_topics(session, &[(topic, 1)]).await?;
    let consumer: StreamConsumer<Context> = shared
        .config
        .consumer(topic)
        .create_with_context(Context::new(session.health.clone()))
        .map_err(|e| session.kafka_error("create the reply consumer", e))?;
    // Read from where the last generation stopped; a topic the broker lost
    // (and that was just made again) is read from its start.
    let next = shared.reply_next_offset.load(Ordering::Acquire);
    let offset = if next < 0 {
        Offset::Beginning
    } else {
        Offset::Offset(next)
    };
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, offset)
        .map_err(|e| session.kafka_error("assign the reply topic", e))?;
    // `assign`, not `subscribe`: the group is never joined, so no rebalance.
    consumer
        .assign(&assignment)
        .map_err(|e| session.kafka_error("assign the reply topic", e))?;
    tokio::spawn(pump(
        shared.clone(),
        session.clone(),
        Detached::new(consumer, &session.live),
    ));
    *running = session.generation;
    Ok(())
}

/// Hands every reply to its inbox until the generation is lost or the
/// transport closes.
async fn pump(
    shared: Arc<Shared>,
    session: Arc<Session>,
    consumer: Detached<StreamConsumer<Context>>,
) {
    let topic: Arc<str> = shared.reply_to.as_str().into();
    // The offset the fetch should hand out next: where it was assigned (a
    // topic just made starts at 0).
    let mut expected = shared.reply_next_offset.load(Ordering::Acquire).max(0);
    // Made once, not per reply: each of these registers a waiter when
    // first polled.
    let stop = async {
        tokio::select! {
            () = session.health.lost() => {}
            () = shared.connection.closed() => {}
        }
    };
    tokio::pin!(stop);
    loop {
        let received = tokio::select! {
            biased;
            () = &mut stop => break,
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                let offset = message.offset();
                shared
                    .reply_next_offset
                    .store(offset + 1, Ordering::Release);
                // Every server of a call's service writes this topic, at
                // once, so the fetch can skip a reply not readable yet
                // (`offsets/gaps.rs`): it is read again on the side, and
                // handed over from there.
                if let Some(gap) = gaps::skipped(expected, offset) {
                    let read = gaps::read(shared.clone(), session.clone(), topic.clone(), 0, gap);
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        for record in read.await.records {
                            hand_over(&shared, &record);
                        }
                    });
                }
                expected = offset + 1;
                hand_over(&shared, &message);
            }
            Err(error) => tracing::debug!(%error, "reply consumer"),
        }
    }
    // Stop fetching at once (see requests.rs: a lost generation must not
    // fetch from a restarted broker).
    if let Err(error) = consumer.unassign() {
        tracing::debug!(%error, "could not unassign the reply topic");
    }
}

/// Hands one reply record to the inbox its key names; one for an inbox
/// closed since is dropped.
fn hand_over<M: Message>(shared: &Shared, message: &M) {
    tracing::trace!(offset = message.offset(), "reply received");
    let inbox = message
        .key()
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| k.parse::<u64>().ok())
        .and_then(|id| shared.inbox(id));
    let Some(sink) = inbox else { return };
    match headers::decode(message.headers(), headers::Source::Replies) {
        Ok(header) => sink.deliver(Envelope {
            header,
            body: message.payload().unwrap_or_default().to_vec(),
        }),
        Err(error) => tracing::debug!(%error, "unreadable reply dropped"),
    }
}
