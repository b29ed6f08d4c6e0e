//! Baseline: a hand-written lapin request/reply loop, the way one would
//! write it without a framework, on the same broker and client library as
//! our AMQP transport.
//!
//! Settings are the fast, safe shape for this broker and client library:
//! transient messages on a classic queue, server prefetch = calls in
//! flight, one task per delivery, the reply publish awaited before the ack.
//! Server and client each have their own connection, as two processes would.
//! The payload is 16 raw bytes in, 8 out: no envelope, no codec.
//!
//! With `confirms` both sides publish in confirm mode, as our transport
//! does by default: the client publishes every request `mandatory` and
//! awaits its confirm (what a fail-fast "no such service" costs a
//! hand-written loop), the server acks a request once its reply is
//! confirmed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::waiters::Waiters;
use super::{ReplyMode, Running};
use crate::error::BenchError;
use crate::load::Caller;

/// How long closing a connection may take before it is dropped instead.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The broker's pseudo-queue for direct reply-to.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// A raw lapin client: one channel, a correlation table, one reply reader.
#[derive(Clone)]
pub(crate) struct LapinCaller {
    channel: Channel,
    queue: ShortString,
    reply_to: ShortString,
    waiters: Arc<Waiters>,
    next_id: Arc<AtomicU64>,
    /// Whether requests are published mandatory and their confirms awaited.
    confirms: bool,
    /// Held so the reply consumer's channel lives as long as the client.
    _reply_channel: Channel,
}

impl Caller for LapinCaller {
    const NAME: &'static str = "raw lapin";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let answer = self.waiters.register(id);
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&a.to_le_bytes());
        payload[8..].copy_from_slice(&b.to_le_bytes());
        let properties = BasicProperties::default()
            .with_correlation_id(id.to_string().into())
            .with_reply_to(self.reply_to.clone());
        let options = BasicPublishOptions {
            mandatory: self.confirms,
            ..BasicPublishOptions::default()
        };
        let sent = self
            .channel
            .basic_publish(
                ShortString::from(""),
                self.queue.clone(),
                options,
                &payload,
                properties,
            )
            .await;
        let sent = match sent {
            Ok(confirm) if self.confirms => match confirm.await {
                Ok(Confirmation::Ack(None)) => Ok(()),
                Ok(refused) => Err(format!("broker refused the request: {refused:?}")),
                Err(error) => Err(error.to_string()),
            },
            Ok(_) => Ok(()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = sent {
            return Err(self.waiters.fail(Self::NAME, id, error));
        }
        self.waiters.wait(Self::NAME, id, answer).await
    }
}

static NEXT_QUEUE: AtomicU64 = AtomicU64::new(0);

/// Declares a fresh request queue, starts a server on it and connects a
/// client, with replies as `mode` says and requests confirmed or not.
pub(crate) async fn start(
    in_flight: usize,
    url: &str,
    mode: ReplyMode,
    confirms: bool,
) -> Result<Running<LapinCaller>, BenchError> {
    let setup = |e: lapin::Error| BenchError::setup(LapinCaller::NAME, e);
    let n = NEXT_QUEUE.fetch_add(1, Ordering::Relaxed);
    let queue = ShortString::from(format!("rpc-bench.lapin.{}.{n}", std::process::id()));

    // Server side.
    let server_connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(setup)?;
    let server_channel = open_channel(&server_connection, confirms)
        .await
        .map_err(setup)?;
    let declare = QueueDeclareOptions {
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    server_channel
        .queue_declare(queue.clone(), declare, FieldTable::default())
        .await
        .map_err(setup)?;
    let prefetch = u16::try_from(in_flight).unwrap_or(u16::MAX);
    server_channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(setup)?;
    let mut requests = server_channel
        .basic_consume(
            queue.clone(),
            ShortString::from("rpc-bench-server"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(setup)?;
    let server = tokio::spawn(async move {
        while let Some(Ok(delivery)) = requests.next().await {
            tokio::spawn(serve_one(server_channel.clone(), delivery, confirms));
        }
    });

    // Client side.
    let client_connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .map_err(setup)?;
    let channel = open_channel(&client_connection, confirms)
        .await
        .map_err(setup)?;
    // Direct reply-to needs its consumer on the publishing channel, before
    // the first publish. A reply queue gets a channel of its own: sharing
    // the publishing channel is several times slower at 1 in flight.
    let (reply_channel, reply_to) = match mode {
        ReplyMode::DirectReplyTo => (channel.clone(), ShortString::from(DIRECT_REPLY_TO)),
        ReplyMode::ExclusiveQueue => {
            let reply_channel = client_connection.create_channel().await.map_err(setup)?;
            let name =
                ShortString::from(format!("rpc-bench.lapin.reply.{}.{n}", std::process::id()));
            let exclusive = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            reply_channel
                .queue_declare(name.clone(), exclusive, FieldTable::default())
                .await
                .map_err(setup)?;
            (reply_channel, name)
        }
    };
    let mut replies = reply_channel
        .basic_consume(
            reply_to.clone(),
            ShortString::from("rpc-bench-replies"),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(setup)?;
    let waiters: Arc<Waiters> = Arc::default();
    let reader = tokio::spawn({
        let waiters = waiters.clone();
        async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let id = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|id| id.as_str().parse::<u64>().ok());
                let sum = decode_u64(&delivery.data);
                if let (Some(id), Some(sum)) = (id, sum) {
                    waiters.answer(id, sum);
                }
            }
        }
    });

    let caller = LapinCaller {
        channel,
        queue,
        reply_to,
        waiters,
        next_id: Arc::default(),
        confirms,
        _reply_channel: reply_channel,
    };
    Ok(Running::new(caller, async move {
        reader.abort();
        server.abort();
        // A close can wait forever on a channel lapin still thinks busy
        // (seen after 256 in flight); dropping the connection ends it too.
        for connection in [client_connection, server_connection] {
            let close = connection.close(200, ShortString::from("done"));
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, close).await;
        }
    }))
}

/// A channel on `connection`, in confirm mode if `confirms`.
async fn open_channel(connection: &Connection, confirms: bool) -> lapin::Result<Channel> {
    let channel = connection.create_channel().await?;
    if confirms {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
    }
    Ok(channel)
}

/// Answers one request: publish the reply, wait until it is written (and
/// confirmed, with `confirms`), then ack.
async fn serve_one(channel: Channel, delivery: lapin::message::Delivery, confirms: bool) {
    let data = &delivery.data;
    let (Some(a), Some(b)) = (decode_u64(data), data.get(8..).and_then(decode_u64)) else {
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        return;
    };
    let Some(reply_to) = delivery.properties.reply_to().clone() else {
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
        return;
    };
    let mut properties = BasicProperties::default();
    if let Some(id) = delivery.properties.correlation_id().clone() {
        properties = properties.with_correlation_id(id);
    }
    let published = channel
        .basic_publish(
            ShortString::from(""),
            reply_to,
            BasicPublishOptions::default(),
            &a.wrapping_add(b).to_le_bytes(),
            properties,
        )
        .await;
    let answered = match published {
        Ok(confirm) if confirms => confirm.await.is_ok_and(|c| c.is_ack()),
        Ok(_) => true,
        Err(_) => false,
    };
    if answered {
        let _ = delivery.acker.ack(BasicAckOptions::default()).await;
    }
}

fn decode_u64(bytes: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// Whether a broker answers at `url` within `within`; the error otherwise.
pub(crate) async fn broker_reachable(url: &str, within: std::time::Duration) -> Result<(), String> {
    let connect = Connection::connect(url, ConnectionProperties::default());
    match tokio::time::timeout(within, connect).await {
        Ok(Ok(connection)) => {
            let _ = connection.close(200, ShortString::from("probe")).await;
            Ok(())
        }
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {within:?}")),
    }
}
