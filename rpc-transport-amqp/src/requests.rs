//! The request stream of one served service: a consumer on its queue with
//! prefetch = concurrency and manual acks, re-established after a cancel
//! or a reconnect, polled directly by the server runtime (no task hop).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};
use rpc_core::transport::{Delivery, ServiceSpec, Settle, SettleFuture, Settlement};
use rpc_core::{Envelope, ErrorKind, TransportError};

use crate::error::protocol;
use crate::properties::{self, Arrival, PropertiesError, long};
use crate::session::Session;
use crate::topology;
use crate::transport::{Shared, short};

/// Requests for one service, as [`Transport::serve`](rpc_core::Transport::serve)
/// hands them out. Dropping it cancels the consumer; requests it had
/// received but not yielded go back to the queue.
pub struct AmqpRequests {
    shared: Arc<Shared>,
    spec: ServiceSpec,
    state: State,
}

enum State {
    Consuming(Subscription),
    Resubscribing(Pin<Box<dyn Future<Output = Result<Subscription, TransportError>> + Send>>),
    Done,
}

struct Subscription {
    session: Arc<Session>,
    channel: Arc<Channel>,
    consumer: Consumer,
}

impl AmqpRequests {
    pub(crate) async fn open(
        shared: Arc<Shared>,
        spec: ServiceSpec,
    ) -> Result<Self, TransportError> {
        let session = shared.session().await?;
        let subscription = subscribe(&shared, &spec, session).await?;
        Ok(AmqpRequests {
            shared,
            spec,
            state: State::Consuming(subscription),
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
                State::Consuming(subscription) => match subscription.consumer.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(delivery))) => {
                        if let Some(delivery) = accept(&this.spec, subscription, delivery) {
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
                },
                State::Resubscribing(future) => match future.as_mut().poll(cx) {
                    Poll::Ready(Ok(subscription)) => this.state = State::Consuming(subscription),
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
        )))
    }
}

impl Drop for AmqpRequests {
    fn drop(&mut self) {
        let State::Consuming(subscription) = &mut self.state else {
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
    subscription: &Subscription,
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
            Box::new(AmqpSettle {
                channel: subscription.channel.clone(),
                delivery_tag,
            }),
        )),
        Err(error) => {
            tracing::warn!(%error, service = %spec.name, "refusing a request with unreadable properties");
            tokio::spawn(refuse(
                subscription.session.clone(),
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
    session: Arc<Session>,
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
        let mut reply = BasicProperties::default()
            .with_content_type(ShortString::from(rpc_core::ContentType::Json.mime()))
            .with_headers(headers);
        if let Some(id) = request.correlation_id() {
            reply = reply.with_correlation_id(id.clone());
        }
        let published = session
            .publisher
            .basic_publish(
                "".into(),
                reply_to.clone(),
                BasicPublishOptions::default(),
                &[],
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
    let queue = topology::declare_service(&channel, shared, &spec.name).await?;
    let consumer = channel
        .basic_consume(
            short(&queue)?,
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| protocol("consume requests", e))?;
    Ok(Subscription {
        session,
        channel: Arc::new(channel),
        consumer,
    })
}

async fn resubscribe(
    shared: Arc<Shared>,
    spec: ServiceSpec,
) -> Result<Subscription, TransportError> {
    let mut delay = shared.config.reconnect_min;
    loop {
        let session = shared.live_session().await?;
        match subscribe(&shared, &spec, session.clone()).await {
            Ok(subscription) => {
                tracing::info!(service = %spec.name, "consuming requests again");
                return Ok(subscription);
            }
            Err(error) => {
                tracing::debug!(%error, service = %spec.name, "could not resubscribe");
                session.check();
                tokio::select! {
                    () = shared.closed() => return Err(TransportError::Closed),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(shared.config.reconnect_max);
            }
        }
    }
}

/// Settles one delivery on the channel it arrived on (straight on the
/// channel, not through lapin's `Acker`, which takes a detour through
/// lapin's internal task).
struct AmqpSettle {
    channel: Arc<Channel>,
    delivery_tag: u64,
}

impl Settle for AmqpSettle {
    fn settle(self: Box<Self>, settlement: Settlement, _: &Envelope) -> SettleFuture {
        let AmqpSettle {
            channel,
            delivery_tag,
        } = *self;
        let result = match settlement {
            // Before an at-most-once run: the ack must have left the
            // process, or a crash during the run would bring the request
            // back to run again.
            Settlement::AckBeforeRun => {
                return Box::pin(async move {
                    channel
                        .basic_ack(delivery_tag, BasicAckOptions::default())
                        .await
                        .map_err(|e| protocol("settle delivery", e))
                });
            }
            Settlement::Ack => queue(channel.basic_ack(delivery_tag, BasicAckOptions::default())),
            Settlement::DeadLetter => {
                queue(channel.basic_reject(delivery_tag, BasicRejectOptions { requeue: false }))
            }
            // Requeue, and anything newer we do not know: give it back.
            _ => {
                let options = BasicNackOptions {
                    multiple: false,
                    requeue: true,
                };
                queue(channel.basic_nack(delivery_tag, options))
            }
        };
        Box::pin(std::future::ready(
            result.map_err(|e| protocol("settle delivery", e)),
        ))
    }
}

/// Queues a settlement frame on its channel without waiting for lapin to
/// write it.
///
/// Awaiting the write cost a wake-up of the serving task per request, on
/// the path every call takes. The order is kept: lapin writes its frames in
/// the order they were queued, so the settlement leaves before anything
/// queued after it (the channel or connection close included), and the
/// broker answers none of them anyway. A channel already closed fails at
/// once, on the first poll, and is reported. What is given up is the
/// certainty that the frame reached the socket when the future resolves: a
/// process that dies in the moment between queueing and lapin's write
/// leaves the delivery unsettled, so the broker redelivers it, which
/// at-least-once allows. The ack before an at-most-once run
/// ([`Settlement::AckBeforeRun`]) is awaited instead: there a redelivery
/// would be a second run.
fn queue(settle: impl Future<Output = lapin::Result<()>>) -> lapin::Result<()> {
    // lapin queues the frame on the first poll; what is left is a promise
    // of the write, which may be dropped.
    std::pin::pin!(settle).now_or_never().unwrap_or(Ok(()))
}
