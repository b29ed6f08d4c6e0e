//! Reply inboxes: a reply queue (or direct reply-to) consumer per client,
//! pushing each reply into the client's [`ReplySink`] from the receive task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use lapin::Channel;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use rpc_core::TransportError;
use rpc_core::transport::ReplySink;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backoff;
use crate::error::protocol;
use crate::properties::{self, Arrival, PropertiesError};
use crate::session::{Session, Subscription};
use crate::shared::{DIRECT_REPLY_TO, InboxEntry, Shared, short};

/// Keeps an inbox open; dropping it cancels the consumer and (in
/// exclusive-queue mode) lets the broker delete the reply queue.
pub struct InboxGuard {
    shared: Arc<Shared>,
    pub(crate) entry: Arc<InboxEntry>,
    task: JoinHandle<()>,
}

impl InboxGuard {
    /// Replies whose AMQP properties could not be read (each failed its call
    /// with a decode error when its correlation id named one).
    pub fn malformed_replies(&self) -> u64 {
        self.entry.malformed.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for InboxGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxGuard")
            .field("id", &self.entry.id)
            .field("queue", &self.entry.queue)
            .finish()
    }
}

impl Drop for InboxGuard {
    fn drop(&mut self) {
        self.task.abort();
        self.shared.remove_inbox(self.entry.id);
        if let Some(queue) = &self.entry.queue {
            // Exclusive and auto-deleted: the broker removes it once its
            // consumer's channel closes.
            self.shared.forget_declared(queue);
        }
    }
}

/// Opens an inbox: declares its reply queue (or opens its direct reply-to
/// channel) and starts consuming.
pub(crate) async fn open(
    shared: Arc<Shared>,
    sink: ReplySink,
) -> Result<InboxGuard, TransportError> {
    let id = shared.next_id();
    let queue = match shared.config.reply_mode {
        crate::ReplyMode::ExclusiveQueue => Some(format!(
            "{}reply.{}.{id}",
            shared.config.queue_prefix, shared.instance
        )),
        crate::ReplyMode::DirectReplyTo => None,
    };
    let entry = Arc::new(InboxEntry {
        id,
        sink,
        queue,
        direct: watch::Sender::new(None),
        malformed: AtomicU64::new(0),
    });
    // During an outage the inbox opens at once and subscribes when the
    // connection is back (its reply queue is among those the supervisor
    // re-declares first): a call's wait for the connection is bounded by
    // its own deadline, not by opening the inbox.
    let first = match shared.current_session() {
        Some(session) => Some(subscribe(&shared, &entry, session).await?),
        None if shared.is_closed() => return Err(TransportError::Closed),
        None => None,
    };
    shared.register_inbox(entry.clone());
    let task = tokio::spawn(run(shared.clone(), entry.clone(), first));
    Ok(InboxGuard {
        shared,
        entry,
        task,
    })
}

/// Re-declares every exclusive reply queue on a new session, before the
/// supervisor hands it out, so no reply sent on it finds its queue missing.
pub(crate) async fn redeclare_reply_queues(
    shared: &Shared,
    session: &Session,
) -> Result<(), TransportError> {
    let queues: Vec<String> = shared
        .inbox_entries()
        .iter()
        .filter_map(|entry| entry.queue.clone())
        .collect();
    if queues.is_empty() {
        return Ok(());
    }
    let channel = session
        .connection
        .create_channel()
        .await
        .map_err(|e| protocol("open channel", e))?;
    for queue in &queues {
        declare_reply_queue(&channel, queue).await?;
    }
    let _ = channel.close(200, "declared".into()).await;
    Ok(())
}

async fn subscribe(
    shared: &Shared,
    entry: &InboxEntry,
    session: Arc<Session>,
) -> Result<Subscription, TransportError> {
    let channel = Arc::new(
        session
            .connection
            .create_channel()
            .await
            .map_err(|e| protocol("open channel", e))?,
    );
    let queue = match &entry.queue {
        Some(queue) => {
            declare_reply_queue(&channel, queue).await?;
            shared.record_declared(queue);
            queue.as_str()
        }
        None => {
            if shared.config.confirms {
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| protocol("confirm select", e))?;
            }
            DIRECT_REPLY_TO
        }
    };
    let options = BasicConsumeOptions {
        // Replies are not acknowledged: a lost reply is a failed call, which
        // the client already handles; acks would only add traffic.
        no_ack: true,
        ..Default::default()
    };
    let consumer = channel
        .basic_consume(short(queue)?, "".into(), options, FieldTable::default())
        .await
        .map_err(|e| protocol("consume replies", e))?;
    if entry.queue.is_none() {
        entry
            .direct
            .send_replace(Some((session.generation, channel.clone())));
    }
    Ok(Subscription::new(session, channel, consumer))
}

async fn declare_reply_queue(channel: &Channel, queue: &str) -> Result<(), TransportError> {
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        durable: false,
        ..Default::default()
    };
    channel
        .queue_declare(short(queue)?, options, FieldTable::default())
        .await
        .map(drop)
        .map_err(|e| protocol("declare reply queue", e))
}

async fn run(shared: Arc<Shared>, entry: Arc<InboxEntry>, first: Option<Subscription>) {
    let mut current = first;
    loop {
        let Some(mut subscription) = current.take() else {
            match resubscribe(&shared, &entry).await {
                Some(subscription) => current = Some(subscription),
                None => {
                    entry.sink.closed();
                    return;
                }
            }
            continue;
        };
        while let Some(item) = subscription.consumer.next().await {
            match item {
                Ok(delivery) => {
                    match properties::decode(&delivery.properties, delivery.data, Arrival::Inbox) {
                        Ok(envelope) => entry.sink.deliver(envelope),
                        Err(error) => refuse_reply(&entry, &delivery.properties, &error),
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "reply consumer failed");
                    break;
                }
            }
        }
        subscription.session.check();
        if shared.is_closed() {
            entry.sink.closed();
            return;
        }
        // The broker cancelled the consumer (its queue was deleted): replies
        // in flight will not come. A lost connection is the supervisor's to
        // report, once; reporting it again here, later, would fail calls
        // made since, which wait to be sent and were never in flight.
        if subscription.session.is_alive() {
            entry.sink.connection_lost();
        }
    }
}

/// A reply whose properties cannot be read (no content type, an unknown
/// status, ...): counted, logged, and, when its correlation id names a
/// call, that call fails now with a decode error naming the reason rather
/// than waiting for its deadline.
fn refuse_reply(entry: &InboxEntry, props: &lapin::BasicProperties, error: &PropertiesError) {
    entry.malformed.fetch_add(1, Ordering::Relaxed);
    let call = props
        .correlation_id()
        .as_ref()
        .and_then(|id| properties::parse_correlation_id(id.as_str()).ok());
    tracing::warn!(%error, correlation_id = ?call, "unreadable reply");
    if let Some(id) = call {
        let message = format!("unreadable reply: {error}");
        entry.sink.fail(id, rpc_core::RpcError::Decode { message });
    }
}

async fn resubscribe(shared: &Shared, entry: &InboxEntry) -> Option<Subscription> {
    backoff::retry_until_closed(shared, "resubscribing a reply inbox", || async {
        let session = shared.live_session().await?;
        subscribe(shared, entry, session.clone())
            .await
            .inspect_err(|_| session.check())
    })
    .await
}
