//! Ours: the `#[rpc_service]` client and server over `MemTransport`.
//!
//! Every call goes through the full runtime: the codec (bincode), the
//! envelope, the pending-call table, the server's concurrency limit and its
//! set of running calls (polled by the serve task, no task per request),
//! settlement.

use rpc_core::Server;
use rpc_transport_mem::MemTransport;

use super::Running;
use super::service::{AdderClient, AdderServer, Sum};
use crate::error::BenchError;
use crate::load::Caller;

/// Our generated client over the memory transport.
#[derive(Clone)]
pub(crate) struct OursMemCaller(AdderClient<MemTransport>);

impl Caller for OursMemCaller {
    const NAME: &'static str = "ours: memory";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        self.0
            .add(a, b)
            .await
            .map_err(|e| BenchError::call(Self::NAME, e))
    }
}

/// Starts a server with concurrency = `in_flight` on a fresh broker.
pub(crate) async fn start(in_flight: usize) -> Result<Running<OursMemCaller>, BenchError> {
    let transport = MemTransport::new();
    let server = Server::builder(transport.clone())
        .concurrency(in_flight)
        .serve(AdderServer::new(Sum))
        .await
        .map_err(|e| BenchError::setup_from(OursMemCaller::NAME, &e))?;
    let client = AdderClient::new(transport);
    Ok(Running::new(OursMemCaller(client), async move {
        server.shutdown().await;
    }))
}
