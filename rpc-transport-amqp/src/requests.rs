//! The request stream of one served service: a consumer on its queue with
//! prefetch = concurrency and manual acks, re-established after a cancel
//! or a reconnect, polled directly by the server runtime (no task hop).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use rpc_core::transport::{
    Delivery, DeliveryHandle, SendFuture, ServiceSpec, SettleFuture, Settled, Settlement,
};
use rpc_core::{Envelope, ErrorKind, TransportError};

use crate::backoff;
use crate::config::QueueKind;
use crate::error::protocol;
use crate::properties::{self, Arrival, PropertiesError, long};
use crate::publish::{json_error_body, queue_reply};
use crate::session::{Session, Subscription};
use crate::settlements::{Settle, Settler};
use crate::shared::{Shared, short};
use crate::topology;

/// Requests for one service, as [`Transport::serve`](rpc_core::Transport::serve)
/// hands them out. Dropping it cancels the consumer; requests it had
/// received but not yielded go back to the queue.
pub struct AmqpRequests {
    shared: Arc<Shared>,
    spec: ServiceSpec,
    state: State,
    /// A broadcast subscription (a private queue on the broadcast exchange).
    broadcast: bool,
    /// At-most-once requests running on the current subscription's channel.
    slots: Arc<AckedRunning>,
}

enum State {
    /// Consuming, with the settler of the subscription's channel.
    Consuming(Subscription, Settler),
    Resubscribing(Pin<Box<dyn Future<Output = Result<Subscription, TransportError>> + Send>>),
    Done,
}

impl AmqpRequests {
    pub(crate) async fn open(
        shared: Arc<Shared>,
        spec: ServiceSpec,
        broadcast: bool,
    ) -> Result<Self, TransportError> {
        let session = shared.session().await?;
        let subscription = subscribe(&shared, &spec, session, broadcast).await?;
        let slots = AckedRunning::new(&shared, &spec, &subscription);
        let settler = Settler::start(
            subscription.channel.clone(),
            subscription.session.unsettled.clone(),
        );
        Ok(AmqpRequests {
            shared,
            spec,
            state: State::Consuming(subscription, settler),
            broadcast,
            slots,
        })
    }

    /// The service these requests are for.
    pub fn service(&self) -> &str {
        &self.spec.name
    }
}

impl std::fmt::Debug for AmqpRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpRequests")
            .field("service", &self.spec.name)
            .finish_non_exhaustive()
    }
}

impl Stream for AmqpRequests {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Consuming(subscription, settler) => {
                    match subscription.consumer.poll_next_unpin(cx) {
                        Poll::Ready(Some(Ok(delivery))) => {
                            if let Some(delivery) =
                                accept(&this.spec, &this.slots, subscription, settler, delivery)
                            {
                                return Poll::Ready(Some(delivery));
                            }
                        }
                        Poll::Ready(Some(Err(error))) => {
                            tracing::debug!(%error, service = %this.spec.name, "request consumer failed");
                            subscription.session.check();
                            this.state = this.resubscribe();
                        }
                        Poll::Ready(None) => {
                            // Cancelled by the broker (queue deleted) or by a
                            // connection loss: take it up again either way.
                            subscription.session.check();
                            this.state = this.resubscribe();
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                State::Resubscribing(future) => match future.as_mut().poll(cx) {
                    Poll::Ready(Ok(subscription)) => {
                        this.slots = AckedRunning::new(&this.shared, &this.spec, &subscription);
                        let settler = Settler::start(
                            subscription.channel.clone(),
                            subscription.session.unsettled.clone(),
                        );
                        this.state = State::Consuming(subscription, settler);
                    }
                    Poll::Ready(Err(_closed)) => this.state = State::Done,
                    Poll::Pending => return Poll::Pending,
                },
                State::Done => return Poll::Ready(None),
            }
        }
    }
}

impl AmqpRequests {
    fn resubscribe(&self) -> State {
        if self.shared.is_closed() {
            return State::Done;
        }
        State::Resubscribing(Box::pin(resubscribe(
            self.shared.clone(),
            self.spec.clone(),
            self.broadcast,
        )))
    }
}

impl Drop for AmqpRequests {
    fn drop(&mut self) {
        let State::Consuming(subscription, _) = &mut self.state else {
            return;
        };
        // Hand back what lapin buffered but we never yielded, now rather
        // than when the channel finally closes.
        let mut tags = Vec::new();
        while let Some(Some(Ok(delivery))) = subscription.consumer.next().now_or_never() {
            tags.push(delivery.delivery_tag);
        }
        if tags.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let channel = subscription.channel.clone();
            runtime.spawn(async move {
                for tag in tags {
                    let options = BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    };
                    let _ = channel.basic_nack(tag, options).await;
                }
            });
        }
    }
}

/// Turns a lapin delivery into ours; a delivery whose properties cannot
/// be read is answered with a decode error (when it has a reply address)
/// and dead-lettered, and the stream moves on.
fn accept(
    spec: &ServiceSpec,
    slots: &Arc<AckedRunning>,
    subscription: &Subscription,
    settler: &Settler,
    delivery: lapin::message::Delivery,
) -> Option<Delivery> {
    let lapin::message::Delivery {
        delivery_tag,
        properties,
        data,
        ..
    } = delivery;
    let arrival = Arrival::RequestQueue {
        service: &spec.name,
    };
    match properties::decode(&properties, data, arrival) {
        Ok(envelope) => Some(Delivery::new(
            envelope,
            Box::new(AmqpDelivery {
                session: subscription.session.clone(),
                channel: subscription.channel.clone(),
                delivery_tag,
                correlation: properties.correlation_id().clone(),
                slots: slots.clone(),
                acked_early: AtomicBool::new(false),
                settler: settler.clone(),
            }),
        )),
        Err(error) => {
            tracing::warn!(%error, service = %spec.name, "refusing a request with unreadable properties");
            spec.refused();
            tokio::spawn(refuse(
                subscription.channel.clone(),
                delivery_tag,
                properties,
                error,
            ));
            None
        }
    }
}

/// Answers an unreadable request with a decode error, then dead-letters it.
async fn refuse(
    channel: Arc<Channel>,
    delivery_tag: u64,
    request: BasicProperties,
    error: PropertiesError,
) {
    if let Some(reply_to) = request.reply_to() {
        // Shaped like every reply (docs/wire.md): the inbox implies the
        // kind, the version is the default.
        let mut headers = FieldTable::default();
        headers.insert(
            properties::STATUS_HEADER.into(),
            long(ErrorKind::Decode.as_str()),
        );
        headers.insert(
            properties::ERROR_HEADER.into(),
            long(&format!("request refused: {error}")),
        );
        // Echo the correlation id as sent (it may be what failed to parse)
        // so the caller can still pair the answer.
        let reply = BasicProperties::default()
            .with_content_type(ShortString::from(rpc_core::ContentType::Json.mime()))
            .with_headers(headers);
        let reply = match request.correlation_id() {
            Some(id) => reply.with_correlation_id(id.clone()),
            None => reply,
        };
        let body = json_error_body(ErrorKind::Decode, &format!("request refused: {error}"));
        // On the request's own channel, as every reply (publish_reply): the
        // broker has the answer before the reject that follows it.
        let published = channel
            .basic_publish(
                "".into(),
                reply_to.clone(),
                BasicPublishOptions::default(),
                &body,
                reply,
            )
            .await;
        match published {
            Ok(confirm) => {
                let _ = confirm.await;
            }
            Err(error) => tracing::debug!(%error, "could not answer a refused request"),
        }
    }
    let _ = channel
        .basic_reject(delivery_tag, BasicRejectOptions { requeue: false })
        .await;
}

async fn subscribe(
    shared: &Shared,
    spec: &ServiceSpec,
    session: Arc<Session>,
    broadcast: bool,
) -> Result<Subscription, TransportError> {
    let channel = session
        .connection
        .create_channel()
        .await
        .map_err(|e| protocol("open channel", e))?;
    // Prefetch = concurrency: the broker hands this server no more than it
    // runs at once, and the rest stay queued for other servers.
    let prefetch = u16::try_from(spec.concurrency).unwrap_or(u16::MAX);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| protocol("set prefetch", e))?;
    let queue = if broadcast {
        topology::declare_broadcast(&channel, shared, &spec.name).await?
    } else {
        topology::declare_service(&session, shared, &spec.name).await?
    };
    let consumer = channel
        .basic_consume(
            short(&queue)?,
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| protocol("consume requests", e))?;
    Ok(Subscription::new(session, Arc::new(channel), consumer))
}

async fn resubscribe(
    shared: Arc<Shared>,
    spec: ServiceSpec,
    broadcast: bool,
) -> Result<Subscription, TransportError> {
    let subscription = backoff::retry_until_closed(&shared, "resubscribing requests", || async {
        let session = shared.live_session().await?;
        subscribe(&shared, &spec, session.clone(), broadcast)
            .await
            .inspect_err(|_| session.check())
    })
    .await
    .ok_or(TransportError::Closed)?;
    tracing::info!(service = %spec.name, "consuming requests again");
    Ok(subscription)
}

/// Answers one delivery, to the queue its `reply_to` names, and settles it,
/// both on the channel it arrived on (straight on the channel, not through
/// lapin's `Acker`, which takes a detour through lapin's internal task):
/// the broker handles a channel's methods in order, so it has the reply
/// before the ack that follows it. The settlement is queued once the reply
/// is written, by the channel's settler (settlements.rs).
struct AmqpDelivery {
    /// The session the delivery came on: whether it is still connected
    /// tells a lost connection from a refused publish.
    session: Arc<Session>,
    channel: Arc<Channel>,
    delivery_tag: u64,
    /// The request's correlation id as it arrived, echoed on the reply.
    correlation: Option<ShortString>,
    slots: Arc<AckedRunning>,
    /// Acked before its run (at-most-once): holds one of `slots` until dropped.
    acked_early: AtomicBool,
    /// Queues the reply's settlement once the reply is written.
    settler: Settler,
}

impl Drop for AmqpDelivery {
    fn drop(&mut self) {
        if self.acked_early.load(Ordering::Acquire)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (slots, channel) = (self.slots.clone(), self.channel.clone());
            runtime.spawn(async move { slots.release(&channel).await });
        }
    }
}

/// Keeps an at-most-once server's running plus unacked requests within its
/// concurrency.
///
/// The prefetch (= concurrency) counts unacked deliveries only. An
/// at-most-once request is acked before it runs, which frees its prefetch
/// slot while it still runs, so the broker would send one more: a server at
/// concurrency 16 would hold 16 running and 16 waiting while another server
/// idles. While such requests run, a channel-wide (global) limit of
/// concurrency minus their number holds the rest back at the broker.
/// RabbitMQ's prefetch cannot say "none" (0 means unlimited), so while
/// every slot runs an at-most-once request one more may wait here.
///
/// The channel gets its global limit with its first at-most-once request,
/// so a server that never runs one pays nothing (a channel with a global
/// limit asks its limiter before each delivery), and keeps it after
/// (`concurrency` with none running): RabbitMQ tells the queue that a
/// channel's limit is now in force by a message it does not wait for, so
/// until the queue has read it, the queue delivers past the limit. Seen: a
/// server at concurrency 4 held 3 requests beyond the 4 running
/// (`amqp_at_most_once`). The first limit is therefore fenced: a passive
/// declare of the queue, which the channel asks of the queue after that
/// message, returns only once the queue has read it; the ack follows.
/// Later changes of the limit's value need no fence: the queue asks the
/// channel's limiter itself. Quorum queues refuse consumers on a channel
/// with a global limit, so there the prefetch stays per consumer.
struct AckedRunning {
    concurrency: u16,
    enabled: bool,
    /// The subscription's queue, which the first limit is fenced on.
    queue: ShortString,
    /// Serializes limit updates, so the last one sent is the current count.
    limit: tokio::sync::Mutex<ChannelLimit>,
}

/// The channel's global limit as last set.
#[derive(Default)]
struct ChannelLimit {
    /// At-most-once requests running.
    running: u16,
    /// Whether the queue is known to apply a global limit (fenced).
    in_force: bool,
}

impl AckedRunning {
    fn new(shared: &Shared, spec: &ServiceSpec, subscription: &Subscription) -> Arc<Self> {
        Arc::new(AckedRunning {
            concurrency: u16::try_from(spec.concurrency).unwrap_or(u16::MAX),
            enabled: shared.config.queue_kind == QueueKind::Classic,
            queue: subscription.consumer.queue(),
            limit: tokio::sync::Mutex::new(ChannelLimit::default()),
        })
    }

    /// Takes a slot for a request about to be acked before it runs: the
    /// lower limit is in force (the broker answered, and the queue has it)
    /// before the ack leaves.
    async fn acquire(&self, channel: &Channel) -> lapin::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let mut limit = self.limit.lock().await;
        limit.running += 1;
        set_channel_limit(channel, self.limit(limit.running)).await?;
        if !limit.in_force {
            channel
                .queue_declare(
                    self.queue.clone(),
                    QueueDeclareOptions {
                        passive: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            limit.in_force = true;
        }
        Ok(())
    }

    /// Gives the slot back once the request's run is over.
    async fn release(&self, channel: &Channel) {
        if !self.enabled {
            return;
        }
        let mut limit = self.limit.lock().await;
        limit.running = limit.running.saturating_sub(1);
        let _ = set_channel_limit(channel, self.limit(limit.running)).await;
    }

    /// The global limit with `running` at-most-once requests running.
    fn limit(&self, running: u16) -> u16 {
        self.concurrency.saturating_sub(running).max(1)
    }
}

async fn set_channel_limit(channel: &Channel, limit: u16) -> lapin::Result<()> {
    channel
        .basic_qos(limit, BasicQosOptions { global: true })
        .await
}

impl DeliveryHandle for AmqpDelivery {
    fn reply(&self, request: &Envelope, reply: Envelope) -> SendFuture {
        // A request without `reply_to` (a oneway call, or a foreign client
        // that wants no answer) gets none.
        let Some(to) = &request.header.reply_to else {
            return Box::pin(Settled);
        };
        // Queued now, its write handed to the settler: the call does not
        // wait for lapin to write it.
        match queue_reply(
            &self.session,
            &self.channel,
            to,
            self.correlation.clone(),
            reply,
        ) {
            Ok(Some(written)) => {
                self.settler.reply_queued(written);
                Box::pin(Settled)
            }
            Ok(None) => Box::pin(Settled),
            Err(error) => Box::pin(std::future::ready(Err(error))),
        }
    }

    fn settle(&self, settlement: Settlement, _: &Envelope) -> SettleFuture {
        let (channel, delivery_tag) = (&self.channel, self.delivery_tag);
        let settle = match settlement {
            // Before an at-most-once run: the ack must have left the
            // process, or a crash during the run would bring the request
            // back to run again. Nothing of this request's is queued
            // before it, so it need not wait for the settler.
            Settlement::AckBeforeRun => {
                let channel = channel.clone();
                let slots = self.slots.clone();
                self.acked_early.store(true, Ordering::Release);
                return Box::pin(async move {
                    slots
                        .acquire(&channel)
                        .await
                        .map_err(|e| protocol("limit the channel's prefetch", e))?;
                    channel
                        .basic_ack(delivery_tag, BasicAckOptions::default())
                        .await
                        .map_err(|e| protocol("settle delivery", e))
                });
            }
            Settlement::Ack => Settle::Ack,
            Settlement::DeadLetter => Settle::DeadLetter,
            // Requeue, and anything newer we do not know: give it back.
            _ => Settle::Requeue,
        };
        // Queued behind the reply's write, without waiting for it
        // (settlements.rs). A channel already closed is reported: its
        // requests go back to the queue with it.
        if channel.status().connected() && self.settler.settle(delivery_tag, settle) {
            Box::pin(Settled)
        } else {
            Box::pin(std::future::ready(Err(TransportError::protocol(
                "settle delivery",
                std::io::Error::other("the request's channel is closed"),
            ))))
        }
    }
}
