//! The request stream of one served service: in core mode a queue-group
//! subscription polled directly by the server runtime (no task hop); in
//! durable mode what the JetStream puller (`durable.rs`) hands over.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use async_nats::{Message, Subject, Subscriber};
use futures_core::Stream;
use futures_util::StreamExt;
use rpc_core::transport::{
    Delivery, DeliveryHandle, SendFuture, ServiceSpec, SettleFuture, Settled, Settlement,
};
use rpc_core::{
    ContentType, Envelope, ErrorKind, Header, Kind, KnownNames, Name, Status, TransportError,
};
use tokio::sync::mpsc;

use crate::config::Mode;
use crate::durable;
use crate::headers::{self, Arrival, HeadersError};
use crate::transport::{Shared, lock};

/// Requests for one service, as [`Transport::serve`](rpc_core::Transport::serve)
/// hands them out. Dropping it unsubscribes (core mode; requests it had
/// received but not yielded are lost) or stops pulling (durable mode;
/// they are delivered again).
pub struct NatsRequests {
    shared: Arc<Shared>,
    spec: ServiceSpec,
    source: Source,
    /// The method names requests have spelled, so that each costs no
    /// allocation after its first request (core mode).
    methods: KnownNames,
}

enum Source {
    Core(Subscriber),
    Durable(mpsc::Receiver<Delivery>),
}

impl NatsRequests {
    pub(crate) async fn open(
        shared: Arc<Shared>,
        spec: ServiceSpec,
    ) -> Result<Self, TransportError> {
        shared.connected().await?;
        let source = match shared.config.mode {
            Mode::Core => {
                let subjects = shared.config.service_subjects(&spec.name);
                // The group is the service: its servers compete, and another
                // service's servers never take its requests.
                let group = format!("{}{}", shared.config.subject_prefix, spec.name);
                let subscriber = shared
                    .client
                    .queue_subscribe(subjects, group)
                    .await
                    .map_err(|e| TransportError::protocol("subscribe to requests", e))?;
                // The subscription is live on the server once this returns:
                // a call made right after `serve`, on another connection,
                // finds a responder.
                shared.round_trip().await?;
                Source::Core(subscriber)
            }
            Mode::Durable => Source::Durable(durable::serve(shared.clone(), spec.clone()).await?),
        };
        Ok(NatsRequests {
            shared,
            spec,
            source,
            methods: KnownNames::new(),
        })
    }

    /// The service these requests are for.
    pub fn service(&self) -> &str {
        &self.spec.name
    }
}

impl std::fmt::Debug for NatsRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsRequests")
            .field("service", &self.spec.name)
            .finish_non_exhaustive()
    }
}

impl Stream for NatsRequests {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        match &mut this.source {
            Source::Core(subscriber) => loop {
                match subscriber.poll_next_unpin(cx) {
                    Poll::Ready(Some(message)) => {
                        let accepted = accept(&this.shared, &this.spec, &mut this.methods, message);
                        if let Some(delivery) = accepted {
                            return Poll::Ready(Some(delivery));
                        }
                    }
                    // Unsubscribed: the transport was closed.
                    Poll::Ready(None) => return Poll::Ready(None),
                    Poll::Pending => return Poll::Pending,
                }
            },
            Source::Durable(receiver) => receiver.poll_recv(cx),
        }
    }
}

/// Turns a core NATS message into a delivery; one that cannot be read is
/// refused (answered with a decode error when it has a reply subject) and
/// counted, and the stream moves on.
fn accept(
    shared: &Arc<Shared>,
    spec: &ServiceSpec,
    methods: &mut KnownNames,
    message: Message,
) -> Option<Delivery> {
    let Message {
        subject,
        reply,
        headers,
        payload,
        ..
    } = message;
    let arrival = Arrival::Requests {
        service: &spec.name,
    };
    match headers::decode_with(
        &subject,
        reply.as_deref(),
        headers.as_ref(),
        // A copy of the payload alone: `Vec::from` would take over the whole
        // read buffer it is a slice of when it holds the last reference,
        // which async-nats then allocates again (and large) for the next read.
        payload.to_vec(),
        arrival,
        methods,
    ) {
        Ok(envelope) => {
            // The message's own reply subject when the envelope answers
            // there (a foreign inbox): no copy of it. A call token's reply
            // goes to the subject cut after its id (`call_token::cut_after_head`).
            let reply = match (&envelope.header.reply_to, reply) {
                (Some(to), Some(reply)) if to.as_str() == reply.as_str() => Some(reply),
                (Some(to), _) => Some(Subject::from(to.as_str())),
                (None, _) => None,
            };
            Some(Delivery::untracked(
                envelope,
                Box::new(CoreDelivery {
                    shared: shared.clone(),
                    reply: Mutex::new(reply),
                }),
            ))
        }
        Err(error) => {
            spec.refused();
            refuse(shared, reply, &error);
            None
        }
    }
}

/// Counts a request that could not be read and answers it, if it says where.
pub(crate) fn refuse(shared: &Arc<Shared>, reply: Option<Subject>, error: &HeadersError) {
    shared.refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%error, "refusing a request with unreadable headers");
    let Some(reply) = reply else { return };
    let reply = match crate::call_token::reply_target(&reply) {
        Some(target) => Subject::from(target),
        None => reply,
    };
    let answer = error_reply(
        headers::correlation_id(&reply).unwrap_or(0),
        ErrorKind::Decode,
        format!("request refused: {error}"),
    );
    let shared = shared.clone();
    tokio::spawn(async move {
        if let Err(error) = shared.publish_reply(reply, answer).await {
            tracing::debug!(%error, "could not answer a refused request");
        }
    });
}

/// An error reply built by the transport itself (JSON, like every reply a
/// foreign caller can read).
pub(crate) fn error_reply(correlation_id: u64, kind: ErrorKind, message: String) -> Envelope {
    let none = Name::from_static("");
    let mut header = Header::request(none.clone(), none, ContentType::Json);
    header.kind = Kind::Reply;
    header.correlation_id = correlation_id;
    header.status = Status::Error { kind, message };
    Envelope {
        header,
        body: Vec::new(),
    }
}

/// Answers a core delivery on its reply subject; there is nothing to settle.
struct CoreDelivery {
    shared: Arc<Shared>,
    /// The request's reply subject (its envelope's `reply_to`), taken by
    /// the first reply: a clone would make async-nats' subject shared, an
    /// allocation per request.
    reply: Mutex<Option<Subject>>,
}

impl DeliveryHandle for CoreDelivery {
    fn reply(&self, request: &Envelope, reply: Envelope) -> SendFuture {
        let taken = lock(&self.reply).take();
        // A second reply (none of the runtime's) goes where the first went.
        let to = taken.or_else(|| {
            let to = request.header.reply_to.as_ref()?;
            Some(Subject::from(to.as_str()))
        });
        let Some(to) = to else {
            return Box::pin(Settled);
        };
        Box::pin(self.shared.publish_reply(to, reply))
    }

    fn settle(&self, _: Settlement, _: &Envelope) -> SettleFuture {
        Box::pin(Settled)
    }
}
