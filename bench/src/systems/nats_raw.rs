//! Baseline: a hand-written async-nats request/reply loop, the way one
//! would write it without a framework, on the same server and client
//! library as our NATS transport.
//!
//! The shape our transport also has, and that async-nats' own `request`
//! lacks (it subscribes per request): one wildcard inbox subscription per
//! client, the correlation id as the reply subject's last token, a table
//! of waiting calls; the server is a queue-group subscriber answering each
//! message on its reply subject. Server and client each have their own
//! connection, as two processes would. The payload is 16 raw bytes in, 8
//! out: no envelope, no codec.
//!
//! In its plain form the loop's reply subjects are `<inbox>.<id>`. With
//! [`Headers::Ours`] it carries what our transport's messages carry
//! (docs/wire.md): a request states its deadline, a `traceparent` and its
//! codec (bincode) as tokens of its reply subject, which the server reads
//! and checks; neither a request nor a reply carries headers. So this form
//! is the like-for-like baseline and the plain one the floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::{Client, StatusCode};
use bytes::Bytes;
use futures_util::StreamExt;

use rpc_core::trace::TraceContext;
use rpc_core::{ContentType, Header, Name};
use rpc_transport_nats::headers::{ReplyTokens, reply_subject, reply_tokens};

use super::Running;
use super::waiters::Waiters;
use crate::error::BenchError;
use crate::load::Caller;

/// Which headers the raw loop's messages carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Headers {
    /// None: payload only.
    None,
    /// The fields our transport sends: deadline, `traceparent` and codec
    /// in a request's reply subject; nothing on a reply.
    Ours,
}

/// A raw async-nats client: one inbox subscription, a correlation table.
#[derive(Clone)]
pub(crate) struct NatsRawCaller {
    client: Client,
    headers: Headers,
    subject: Arc<str>,
    inbox: Arc<str>,
    waiters: Arc<Waiters>,
    next_id: Arc<AtomicU64>,
}

impl Caller for NatsRawCaller {
    const NAME: &'static str = "raw async-nats";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let answer = self.waiters.register(id);
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&a.to_le_bytes());
        payload[8..].copy_from_slice(&b.to_le_bytes());
        let subject = self.subject.to_string();
        let reply = match self.headers {
            Headers::None => format!("{}.{id}", self.inbox),
            Headers::Ours => request_reply_subject(&self.inbox, id),
        };
        let payload = Bytes::copy_from_slice(&payload);
        let sent = self
            .client
            .publish_with_reply(subject, reply, payload)
            .await;
        if let Err(error) = sent {
            return Err(self.waiters.fail(Self::NAME, id, error));
        }
        self.waiters.wait(Self::NAME, id, answer).await
    }
}

static NEXT_SUBJECT: AtomicU64 = AtomicU64::new(0);

/// Starts a queue-group server on a fresh subject and connects a client.
pub(crate) async fn start(
    _in_flight: usize,
    url: &str,
    headers: Headers,
) -> Result<Running<NatsRawCaller>, BenchError> {
    let setup = |e: &dyn std::fmt::Display| BenchError::setup(NatsRawCaller::NAME, e);
    let n = NEXT_SUBJECT.fetch_add(1, Ordering::Relaxed);
    let subject = format!("rpc-bench.nats-raw.{}.{n}.add", std::process::id());

    let server = async_nats::connect(url).await.map_err(|e| setup(&e))?;
    let mut requests = server
        .queue_subscribe(subject.clone(), "servers".to_owned())
        .await
        .map_err(|e| setup(&e))?;
    server.flush().await.map_err(|e| setup(&e))?;
    let replier = server.clone();
    let serving = tokio::spawn(async move {
        while let Some(message) = requests.next().await {
            let (Some(reply), Some(a), Some(b)) = (
                message.reply,
                message.payload.get(..8),
                message.payload.get(8..16),
            ) else {
                continue;
            };
            if headers == Headers::Ours && !request_readable(reply.as_str()) {
                continue;
            }
            let sum = u64::from_le_bytes(a.try_into().unwrap_or_default())
                .wrapping_add(u64::from_le_bytes(b.try_into().unwrap_or_default()));
            let answer = Bytes::copy_from_slice(&sum.to_le_bytes());
            let _ = replier.publish(reply, answer).await;
        }
    });

    let client = async_nats::connect(url).await.map_err(|e| setup(&e))?;
    // Replies come to `<inbox>.<id>`, or as to ours, to
    // `<inbox>.<call token>` (the id, codec, deadline and trace in one
    // token; docs/wire.md).
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(format!("{inbox}.>"))
        .await
        .map_err(|e| setup(&e))?;
    let waiters: Arc<Waiters> = Arc::default();
    let table = waiters.clone();
    let reading = tokio::spawn(async move {
        while let Some(message) = replies.next().await {
            let id = match headers {
                Headers::None => message
                    .subject
                    .rsplit('.')
                    .next()
                    .and_then(|t| t.parse::<u64>().ok()),
                Headers::Ours => reply_tokens(message.subject.as_str())
                    .ok()
                    .and_then(|tokens| tokens.correlation_id),
            };
            let Some(waiter) = id.and_then(|id| table.take(id)) else {
                continue;
            };
            if message.status == Some(StatusCode::NO_RESPONDERS) {
                continue; // Dropping the waiter fails the call.
            }
            if let Some(sum) = message.payload.get(..8) {
                let _ = waiter.send(u64::from_le_bytes(sum.try_into().unwrap_or_default()));
            }
        }
    });
    let caller = NatsRawCaller {
        client: client.clone(),
        headers,
        subject: subject.into(),
        inbox: inbox.into(),
        waiters,
        next_id: Arc::new(AtomicU64::new(1)),
    };
    Ok(Running::new(caller, async move {
        reading.abort();
        serving.abort();
        let _ = client.drain().await;
        let _ = server.drain().await;
    }))
}

/// A request's reply subject as ours makes it: an absolute deadline 30 s
/// out, a `traceparent` of the call's own and the codec, before the id
/// (made by our mapping's own function, so that the comparison measures
/// what the fields cost, not how they are formatted).
fn request_reply_subject(inbox: &str, id: u64) -> String {
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(30);
    let mut header = Header::request(
        Name::from_static("nats-raw"),
        Name::from_static("add"),
        ContentType::Bincode,
    );
    header.correlation_id = id;
    header.deadline_ms = deadline.as_millis() as u64;
    header.trace = Some(TraceContext {
        trace_id: u128::from(id),
        span_id: id,
        sampled: true,
    });
    reply_subject(inbox, &header)
}

/// What a server that honours deadlines reads of a request: its deadline
/// and its codec (ours), from its reply subject.
fn request_readable(reply: &str) -> bool {
    matches!(
        reply_tokens(reply),
        Ok(ReplyTokens {
            deadline_ms: Some(_),
            codec: Some(ContentType::Bincode),
            trace: Some(_),
            ..
        })
    )
}

/// Whether a NATS server answers at `url` within `wait`.
pub(crate) async fn server_reachable(url: &str, wait: Duration) -> Result<(), String> {
    match tokio::time::timeout(wait, async_nats::connect(url)).await {
        Ok(Ok(client)) => {
            let _ = client.drain().await;
            Ok(())
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {wait:?}")),
    }
}
