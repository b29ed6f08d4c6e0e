//! Ours: the `#[rpc_service]` client and server over `AmqpTransport`,
//! in its default configuration (publisher confirms on, exclusive reply
//! queue, classic durable request queue, transient messages), and once more
//! with confirms off, the one setting in which the raw lapin baseline
//! differs, so the cost of confirms shows apart from the rest.
//!
//! Server and client each get their own transport (their own connection),
//! as two processes would.

use rpc_core::Server;
use rpc_transport_amqp::AmqpTransport;

use super::Running;
use super::service::{AdderClient, AdderServer, Sum};
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
/// with publisher confirms on or off.
pub(crate) async fn start(
    in_flight: usize,
    url: &str,
    confirms: bool,
) -> Result<Running<OursAmqpCaller>, BenchError> {
    let connect = || async {
        AmqpTransport::builder(url)
            .queue_prefix("rpc-bench.")
            .publisher_confirms(confirms)
            .connect()
            .await
            .map_err(|e| BenchError::setup(OursAmqpCaller::NAME, e))
    };
    let server = Server::builder(connect().await?)
        .concurrency(in_flight)
        .serve(AdderServer::new(Sum))
        .await
        .map_err(|e| BenchError::setup(OursAmqpCaller::NAME, e))?;
    let client = AdderClient::new(connect().await?);
    Ok(Running::new(OursAmqpCaller(client), async move {
        server.shutdown().await;
    }))
}
