//! Reply inboxes: a reply queue (or direct reply-to) consumer per client,
//! pushing each reply into the client's [`ReplySink`] from the receive task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use rpc_core::transport::ReplySink;
use rpc_core::{Address, TransportError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::protocol;
use crate::properties::{self, Arrival};
use crate::session::Session;
use crate::transport::{DIRECT_REPLY_TO, Shared, short};

/// One open inbox, as the transport tracks it.
pub(crate) struct InboxEntry {
    pub(crate) id: u64,
    pub(crate) sink: ReplySink,
    /// The reply queue's name (exclusive-queue mode).
    queue: Option<String>,
    /// The channel consuming direct replies, and its session's generation
    /// (direct reply-to mode): requests expecting replies here go out on it.
    direct: watch::Sender<Option<(u64, Arc<Channel>)>>,
    /// Replies whose properties could not be read.
    malformed: AtomicU64,
}

impl InboxEntry {
    /// The direct reply-to channel on `session`, waiting (at most the
    /// connect timeout) while it is being set up after a reconnect.
    pub(crate) async fn direct_channel(
        &self,
        session: &Session,
        shared: &Shared,
    ) -> Result<Arc<Channel>, TransportError> {
        let generation = session.generation;
        let mut current = self.direct.subscribe();
        let wait = current.wait_for(|c| matches!(c, Some((g, _)) if *g == generation));
        match tokio::time::timeout(shared.config.connect_timeout, wait).await {
            Ok(Ok(found)) => match &*found {
                Some((_, channel)) => Ok(channel.clone()),
                None => Err(TransportError::ConnectionLost),
            },
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::ConnectionLost),
        }
    }
}

/// Keeps an inbox open; dropping it cancels the consumer and (in
/// exclusive-queue mode) lets the broker delete the reply queue.
pub struct InboxGuard {
    shared: Arc<Shared>,
    entry: Arc<InboxEntry>,
    task: JoinHandle<()>,
}

impl InboxGuard {
    /// Replies dropped because their AMQP properties could not be read.
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

/// Opens an inbox: declares its reply queue, starts consuming, and returns
/// the address requests carry as `reply_to`.
pub(crate) async fn open(
    shared: Arc<Shared>,
    sink: ReplySink,
) -> Result<(Address, InboxGuard), TransportError> {
    let id = shared.next_id();
    let queue = match shared.config.reply_mode {
        crate::ReplyMode::ExclusiveQueue => Some(format!(
            "{}reply.{}.{id}",
            shared.config.queue_prefix, shared.instance
        )),
        crate::ReplyMode::DirectReplyTo => None,
    };
    let address = match &queue {
        Some(queue) => Address::new(queue.clone()),
        None => Address::new(format!("{DIRECT_REPLY_TO}/{id}")),
    };
    let entry = Arc::new(InboxEntry {
        id,
        sink,
        queue,
        direct: watch::Sender::new(None),
        malformed: AtomicU64::new(0),
    });
    let session = shared.session().await?;
    let first = subscribe(&shared, &entry, session).await?;
    shared.register_inbox(entry.clone());
    let task = tokio::spawn(run(shared.clone(), entry.clone(), first));
    Ok((
        address,
        InboxGuard {
            shared,
            entry,
            task,
        },
    ))
}

/// The inbox id inside a direct reply-to address, if it is one of ours.
pub(crate) fn direct_id(address: &str) -> Option<u64> {
    address
        .strip_prefix(DIRECT_REPLY_TO)?
        .strip_prefix('/')?
        .parse()
        .ok()
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

struct Subscription {
    session: Arc<Session>,
    // Held so the channel outlives nothing but the consumer.
    _channel: Arc<Channel>,
    consumer: Consumer,
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
    Ok(Subscription {
        session,
        _channel: channel,
        consumer,
    })
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

async fn run(shared: Arc<Shared>, entry: Arc<InboxEntry>, first: Subscription) {
    let mut current = Some(first);
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
                        Err(error) => {
                            entry.malformed.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%error, "dropped a reply with unreadable properties");
                        }
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
        // The connection dropped, or the broker cancelled the consumer (its
        // queue was deleted): replies in flight will not come.
        entry.sink.connection_lost();
    }
}

async fn resubscribe(shared: &Shared, entry: &InboxEntry) -> Option<Subscription> {
    let mut delay = shared.config.reconnect_min;
    loop {
        let session = shared.live_session().await.ok()?;
        match subscribe(shared, entry, session.clone()).await {
            Ok(subscription) => return Some(subscription),
            Err(error) => {
                tracing::debug!(%error, "could not resubscribe a reply inbox");
                session.check();
                tokio::select! {
                    () = shared.closed() => return None,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(shared.config.reconnect_max);
            }
        }
    }
}
