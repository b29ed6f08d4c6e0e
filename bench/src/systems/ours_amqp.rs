//! Ours: the `#[rpc_service]` client and server over `AmqpTransport`,
//! in its default configuration (publisher confirms on, exclusive reply
//! queue, classic durable request queue, transient messages); once more
//! with confirms off, the one setting in which the raw reply-queue loop
//! differs, so the cost of confirms shows apart from the rest; and once in
//! the direct reply-to loop's settings (direct reply-to, no confirms).
//!
//! Server and client each get their own transport (their own connection),
//! as two processes would.

use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use rpc_core::Server;
use rpc_transport_amqp::AmqpTransport;

use super::service::{ADDER_DESCRIPTOR, AdderClient, AdderServer, Sum};
use super::{ReplyMode, Running};
use crate::error::BenchError;
use crate::load::Caller;

/// Our generated client over AMQP.
#[derive(Clone)]
pub(crate) struct OursAmqpCaller(AdderClient<AmqpTransport>);

impl Caller for OursAmqpCaller {
    const NAME: &'static str = "ours: amqp";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        self.0
            .add(a, b)
            .await
            .map_err(|e| BenchError::call(Self::NAME, e))
    }
}

/// Connects a server (concurrency = prefetch = `in_flight`) and a client,
/// with publisher confirms on or off and replies as given.
///
/// Queues get this process's own prefix, so a queue left by an older build
/// with other arguments cannot fail the declaration; they are deleted again
/// at the end.
pub(crate) async fn start(
    in_flight: usize,
    url: &str,
    confirms: bool,
    replies: ReplyMode,
) -> Result<Running<OursAmqpCaller>, BenchError> {
    let reply_mode = match replies {
        ReplyMode::ExclusiveQueue => rpc_transport_amqp::ReplyMode::ExclusiveQueue,
        ReplyMode::DirectReplyTo => rpc_transport_amqp::ReplyMode::DirectReplyTo,
    };
    let prefix = format!("rpc-bench.{}.", std::process::id());
    let connect = || async {
        AmqpTransport::builder(url)
            .queue_prefix(prefix.clone())
            .publisher_confirms(confirms)
            .reply_mode(reply_mode)
            .connect()
            .await
            .map_err(|e| BenchError::setup_from(OursAmqpCaller::NAME, &e))
    };
    let server = Server::builder(connect().await?)
        .concurrency(in_flight)
        .serve(AdderServer::new(Sum))
        .await
        .map_err(|e| BenchError::setup_from(OursAmqpCaller::NAME, &e))?;
    let client = AdderClient::new(connect().await?);
    let url = url.to_owned();
    Ok(Running::new(OursAmqpCaller(client), async move {
        server.shutdown().await;
        let queue = format!("{prefix}{}", ADDER_DESCRIPTOR.name);
        delete_queues(&url, &[format!("{queue}.dlq"), queue]).await;
    }))
}

/// Deletes `queues`, best effort: a queue left behind costs nothing but
/// clutter, so failures are ignored, and it all gives up after 5 s.
async fn delete_queues(url: &str, queues: &[String]) {
    let delete = async {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        connection.close(200, "done".into()).await
    };
    let _: Result<Result<(), lapin::Error>, _> =
        tokio::time::timeout(Duration::from_secs(5), delete).await;
}
