//! Durable mode: requests wait in a JetStream work-queue stream per service
//! (`RPC_<prefix><service>`, subjects `<prefix><service>.*`), and one durable
//! pull consumer hands them to every server of the service.
//!
//! A server pulls no more requests than it has free slots (its concurrency),
//! so servers share the load the way AMQP prefetch does. It acknowledges a
//! request once the reply is sent, or before the run for an at-most-once
//! method (awaiting the server's confirmation). A request delivered more
//! than `max_deliveries` times is answered with an error and moved to the
//! dead-letter stream (`<prefix>dead.<service>.<method>`), as is a request
//! the server refuses.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, AckKind, stream};
use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use rpc_core::transport::{
    Delivery, DeliveryHandle, SendFuture, ServiceSpec, SettleFuture, Settled, Settlement,
};
use rpc_core::{Envelope, ErrorKind, TransportError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::headers::{self, Arrival};
use crate::requests::{error_reply, refuse};
use crate::transport::{Shared, lock};

/// How long one pull waits for requests before it is renewed. Short, so a
/// pull lost with a connection is replaced soon after the reconnect.
const PULL_EXPIRY: Duration = Duration::from_secs(2);

/// How many requests a dead-letter stream keeps before dropping its oldest.
pub(crate) const DEAD_LETTER_MAX_MESSAGES: i64 = 100_000;

/// The durable consumer's name on each service stream.
const CONSUMER: &str = "servers";

/// Publishes a call into its service's stream and waits for the stream's ack.
pub(crate) async fn publish(
    shared: &Shared,
    subject: Subject,
    headers: HeaderMap,
    payload: Bytes,
    service: &str,
) -> Result<(), TransportError> {
    let size = payload.len();
    let ack = shared
        .jetstream
        .publish_with_headers(subject, headers, payload)
        .await
        .map_err(|e| publish_error(e, shared, service, size))?;
    ack.await
        .map(drop)
        .map_err(|e| publish_error(e, shared, service, size))
}

fn publish_error(
    error: jetstream::context::PublishError,
    shared: &Shared,
    service: &str,
    size: usize,
) -> TransportError {
    match error.kind() {
        // Nobody serves it: no server ever created its stream.
        PublishErrorKind::StreamNotFound => TransportError::NoRoute {
            address: service.to_owned(),
        },
        PublishErrorKind::MaxPayloadExceeded => TransportError::TooLarge {
            size,
            limit: shared.client.server_info().max_payload,
        },
        PublishErrorKind::BrokenPipe | PublishErrorKind::TimedOut if shared.is_closed() => {
            TransportError::Closed
        }
        PublishErrorKind::BrokenPipe | PublishErrorKind::TimedOut => TransportError::ConnectionLost,
        _ => TransportError::protocol("publish to JetStream", error),
    }
}

/// Creates (or finds) the service's streams and consumer and starts the
/// puller; the receiver yields its deliveries.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    spec: ServiceSpec,
) -> Result<mpsc::Receiver<Delivery>, TransportError> {
    let consumer = declare(&shared, &spec.name).await?;
    let (sender, receiver) = mpsc::channel(spec.concurrency);
    tokio::spawn(pull_loop(shared, spec, consumer, sender));
    Ok(receiver)
}

async fn declare(shared: &Shared, service: &str) -> Result<PullConsumer, TransportError> {
    let config = &shared.config;
    let dead_name = config.stream_name(service, "_DEAD");
    shared
        .jetstream
        .get_or_create_stream(stream::Config {
            name: dead_name.clone(),
            subjects: vec![config.dead_letter_subjects(service)],
            max_messages: DEAD_LETTER_MAX_MESSAGES,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| TransportError::protocol("create the dead-letter stream", e))?;
    lock(&shared.streams).insert(dead_name);
    let name = config.stream_name(service, "");
    let requests = shared
        .jetstream
        .get_or_create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![config.service_subjects(service)],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| TransportError::protocol("create the request stream", e))?;
    lock(&shared.streams).insert(name);
    let max_deliver = i64::from(config.max_deliveries) + 1;
    requests
        .get_or_create_consumer(
            CONSUMER,
            pull::Config {
                durable_name: Some(CONSUMER.to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: config.ack_wait,
                // One more than the limit: the extra delivery is the one on
                // which the request is answered and moved aside.
                max_deliver,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| TransportError::protocol("create the durable consumer", e))
}

/// Pulls as many requests as there are free slots, for as long as the
/// request stream is held and the transport open.
async fn pull_loop(
    shared: Arc<Shared>,
    spec: ServiceSpec,
    consumer: PullConsumer,
    sender: mpsc::Sender<Delivery>,
) {
    let slots = Arc::new(Semaphore::new(spec.concurrency));
    let mut failures = 0usize;
    loop {
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = sender.closed() => return,
        };
        if shared.is_closed() {
            return;
        }
        if shared.live().await.is_err() {
            return;
        }
        let mut permits = vec![first];
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            permits.push(permit);
        }
        let batch = consumer
            .batch()
            .max_messages(permits.len())
            .expires(PULL_EXPIRY)
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(error) => {
                failures += 1;
                tracing::debug!(%error, service = %spec.name, "could not pull requests");
                let wait = crate::transport::backoff(
                    failures + 1,
                    shared.config.reconnect_min,
                    shared.config.reconnect_max,
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        failures = 0;
        // A pull dies with its connection without a word: renew it on any
        // connection change rather than wait out its expiry.
        let mut connection = shared.events.state.subscribe();
        loop {
            let item = tokio::select! {
                item = batch.next() => item,
                () = sender.closed() => return,
                _ = connection.changed() => break,
            };
            let Some(item) = item else { break };
            let message = match item {
                Ok(message) => message,
                Err(error) => {
                    tracing::debug!(%error, service = %spec.name, "pull ended");
                    break;
                }
            };
            let Some(permit) = permits.pop() else { break };
            if let Some(delivery) = accept(&shared, &spec, message, permit).await
                && sender.send(delivery).await.is_err()
            {
                return;
            }
        }
    }
}

/// A delivery for the runtime, or `None` when the transport dealt with the
/// message itself (past the delivery limit, unreadable).
async fn accept(
    shared: &Arc<Shared>,
    spec: &ServiceSpec,
    message: jetstream::Message,
    permit: OwnedSemaphorePermit,
) -> Option<Delivery> {
    let delivered = message.info().map_or(1, |info| info.delivered);
    let reply = message
        .headers
        .as_ref()
        .and_then(|h| h.get(headers::REPLY_TO_HEADER))
        .map(|v| Subject::from(v.as_str()));
    if delivered > i64::from(shared.config.max_deliveries) {
        shared.refused.fetch_add(1, Ordering::Relaxed);
        // Moved first, so the answer that says so is true when it arrives.
        let _ = dead_letter(shared, &message).await;
        if let Some(reply) = reply {
            let answer = error_reply(
                headers::correlation_id(&reply).unwrap_or(0),
                ErrorKind::Remote,
                format!(
                    "delivered {} times without an answer; moved to the dead letters",
                    delivered - 1
                ),
            );
            let _ = shared.publish_reply(reply, answer).await;
        }
        return None;
    }
    let arrival = Arrival::Requests {
        service: &spec.name,
    };
    let decoded = headers::decode(
        &message.subject,
        None,
        message.headers.as_ref(),
        message.payload.to_vec(),
        arrival,
    );
    match decoded {
        Ok(envelope) => Some(Delivery::new(
            envelope,
            Box::new(DurableDelivery {
                shared: shared.clone(),
                message,
                _slot: permit,
            }),
        )),
        Err(error) => {
            spec.refused();
            refuse(shared, reply, &error);
            let _ = dead_letter(shared, &message).await;
            None
        }
    }
}

/// Copies `message` to the service's dead-letter subject, then removes it
/// from the work queue.
async fn dead_letter(shared: &Shared, message: &jetstream::Message) -> Result<(), TransportError> {
    let method = message.subject.rsplit('.').next().unwrap_or("unknown");
    let prefix = &shared.config.subject_prefix;
    let service = message
        .subject
        .strip_prefix(prefix.as_str())
        .and_then(|rest| rest.rsplit_once('.'))
        .map_or("unknown", |(service, _)| service);
    let subject = format!("{prefix}dead.{service}.{method}");
    let headers = message.headers.clone().unwrap_or_default();
    let moved = async {
        shared
            .jetstream
            .publish_with_headers(subject, headers, message.payload.clone())
            .await?
            .await
    }
    .await;
    if let Err(error) = moved {
        tracing::warn!(%error, "could not move a request to the dead letters");
    } else {
        shared.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
    message.ack().await.map_err(|e| {
        TransportError::protocol("ack a dead-lettered request", StrError(e.to_string()))
    })
}

/// Answers a durable delivery at the reply subject its header names, and
/// settles it with JetStream acks. Holds one of its server's slots until
/// it is dropped.
struct DurableDelivery {
    shared: Arc<Shared>,
    message: jetstream::Message,
    _slot: OwnedSemaphorePermit,
}

impl DeliveryHandle for DurableDelivery {
    fn reply(&self, request: &Envelope, reply: Envelope) -> SendFuture {
        let Some(to) = &request.header.reply_to else {
            return Box::pin(Settled);
        };
        Box::pin(self.shared.publish_reply(Subject::from(to.as_str()), reply))
    }

    fn settle(&self, settlement: Settlement, _: &Envelope) -> SettleFuture {
        let message = self.message.clone();
        let shared = self.shared.clone();
        Box::pin(async move {
            let result = match settlement {
                Settlement::Ack => message.ack().await,
                // The server confirms it: a crash during the run cannot
                // bring the request back.
                Settlement::AckBeforeRun => message.double_ack().await,
                Settlement::DeadLetter => return dead_letter(&shared, &message).await,
                _ => message.ack_with(AckKind::Nak(None)).await,
            };
            result
                .map_err(|e| TransportError::protocol("settle a request", StrError(e.to_string())))
        })
    }

    fn abandon(&self, _: &Envelope) {
        // Given back at once, rather than after the ack wait.
        let message = self.message.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = message.ack_with(AckKind::Nak(None)).await;
            });
        }
    }
}

/// async-nats' ack errors are boxed `dyn Error` without `Sync`; their text
/// is what travels.
#[derive(Debug)]
struct StrError(String);

impl std::fmt::Display for StrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StrError {}
