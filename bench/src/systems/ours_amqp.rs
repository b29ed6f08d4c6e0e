//! Ours: the `#[rpc_service]` client and server over `AmqpTransport`,
//! in its default configuration (publisher confirms on, exclusive reply
//! queue, classic durable request queue, transient messages); once more
//! with confirms off, the one setting in which the raw reply-queue loop
//! differs, so the cost of confirms shows apart from the rest; and once in
//! the direct reply-to loop's settings (direct reply-to, no confirms).
//! And once in the default configuration with a quorum request queue, on a
//! node of the three-node test cluster, for the price of replication.
//!
//! Server and client each get their own transport (their own connection),
//! as two processes would.

use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use lapin::{Connection, ConnectionProperties};
use rpc_transport_amqp::{AmqpTransport, QueueKind};

use super::ours::{OursCaller, OursTransport, serve, setup_error};
use super::service::ADDER_DESCRIPTOR;
use super::{ReplyMode, Running};
use crate::error::BenchError;

impl OursTransport for AmqpTransport {
    const NAME: &'static str = "ours: amqp";
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
) -> Result<Running<OursCaller<AmqpTransport>>, BenchError> {
    start_with(in_flight, url, confirms, replies, QueueKind::Classic).await
}

/// [`start`] in the default settings with a quorum request queue. Server
/// and client connect to the same node (the first of the cluster), so the
/// queue's leader is local and the difference to [`start`] on one node is
/// the replication to the other two.
pub(crate) async fn start_quorum(
    in_flight: usize,
    url: &str,
) -> Result<Running<OursCaller<AmqpTransport>>, BenchError> {
    start_with(
        in_flight,
        url,
        true,
        ReplyMode::ExclusiveQueue,
        QueueKind::Quorum,
    )
    .await
}

async fn start_with(
    in_flight: usize,
    url: &str,
    confirms: bool,
    replies: ReplyMode,
    queue_kind: QueueKind,
) -> Result<Running<OursCaller<AmqpTransport>>, BenchError> {
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
            .queue_kind(queue_kind)
            .connect()
            .await
            .map_err(|e| setup_error::<AmqpTransport>(&e))
    };
    let server = serve(in_flight, connect().await?).await?;
    let client = OursCaller::new(connect().await?);
    let url = url.to_owned();
    Ok(Running::new(client, async move {
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
