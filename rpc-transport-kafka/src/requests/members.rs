//! One group member at a time: a served service's consumer of a new
//! generation joins the group only once the lost generation's consumer has
//! left it, and that one leaves only once it can reach the broker again.
//!
//! Why: tansu (the test broker) keeps a group's leader when the leader
//! leaves while the group is re-forming, so the group waits for a leader
//! that is gone, for good: every other member's `SyncGroup` is answered
//! "rebalance in progress" and no partition is assigned again. A lost
//! generation's consumer is often that leader (with one server, always),
//! and its `LeaveGroup`, held while the broker could not be reached, went
//! out the moment the connection was back: within milliseconds of the new
//! consumer's `JoinGroup`, before it in some runs and after it in others
//! (tansu's log showed the group stuck with the departed member as its
//! leader for 20 s and more). A leader that leaves a formed group is
//! forgotten, so the old consumer leaves first and the new one joins after.
//!
//! The old consumer must still reach the broker to leave: one destroyed
//! while it could not sent nothing, stayed in the group, silent, and the
//! group waited for the broker to drop it at its session timeout (6 s, then
//! tansu's next join: 11 s before requests flowed again). So it is kept,
//! unsubscribed (it fetches nothing), until the next generation is up, asks
//! its group coordinator something to know its own connection is back, and
//! is destroyed then, which sends the `LeaveGroup` and waits for its answer.
//! Whatever it handed out no longer keeps it (`Offsets::detach`).
//!
//! Each step is bounded by [`PATIENCE`]: a consumer that cannot leave stays
//! in the group until the broker drops it, as above.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::RequestConsumer;
use crate::session::LiveClients;
use crate::transport::lock;

/// How long each step of the old consumer's leaving is waited for: its
/// coordinator answering, then its destruction. Either takes a round trip
/// once the broker answers; this is the session timeout the consumers ask
/// for (`config.rs`), after which the broker drops the old member anyway.
pub(crate) const PATIENCE: Duration = Duration::from_secs(6);

/// The request consumers of one served service not yet destroyed, in
/// every generation, and the lost one waiting to leave.
#[derive(Default)]
pub(crate) struct Members {
    live: Arc<LiveClients>,
    retired: Mutex<Option<RequestConsumer>>,
}

impl Members {
    /// The count a new consumer is added to (`Detached::counted_in`).
    pub(crate) fn count(&self) -> &Arc<LiveClients> {
        &self.live
    }

    /// Keeps the consumer of a lost generation (unsubscribed) until the
    /// next generation can make it leave the group.
    pub(crate) fn retire(&self, consumer: RequestConsumer) {
        let earlier = lock(&self.retired).replace(consumer);
        drop(earlier);
    }

    /// Makes the retired consumer, if any, leave the group, then resolves
    /// once every earlier consumer of the service is destroyed (and so has
    /// left), each step at most [`PATIENCE`]. Called with the broker
    /// reachable again, before a new consumer joins.
    pub(crate) async fn leave(&self, generation: u64, topic: &str) {
        let started = tokio::time::Instant::now();
        let retired = lock(&self.retired).take();
        if let Some(consumer) = retired {
            let topic = topic.to_owned();
            let reached = tokio::task::spawn_blocking(move || {
                // Any request to the group coordinator will do: it answers
                // once this consumer's connection to it is back.
                let mut list = TopicPartitionList::new();
                list.add_partition(&topic, 0);
                let reached = consumer.committed_offsets(list, PATIENCE).map(drop);
                drop(consumer);
                reached
            })
            .await;
            if let Ok(Err(error)) = reached {
                tracing::debug!(generation, %error, "the previous request consumer did not reach its coordinator");
            }
        }
        if self.live.all_gone(PATIENCE).await {
            tracing::debug!(
                generation,
                waited_ms = started.elapsed().as_millis() as u64,
                "the previous request consumer has left the group"
            );
        } else {
            tracing::warn!(
                generation,
                "the previous request consumer has not left the group; joining anyway"
            );
        }
    }
}
