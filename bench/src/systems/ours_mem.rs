//! Ours: the `#[rpc_service]` client and server over `MemTransport`.
//!
//! Every call goes through the full runtime: the codec (bincode), the
//! envelope, the pending-call table, the server's concurrency limit and its
//! set of running calls (polled by the serve task, no task per request),
//! settlement.

use rpc_core::ClientConfig;
use rpc_transport_mem::MemTransport;

use super::Running;
use super::ours::{OursCaller, OursTransport, serve, serve_metered};
use crate::error::BenchError;

impl OursTransport for MemTransport {
    const NAME: &'static str = "ours: memory";
}

/// Starts a server with concurrency = `in_flight` on a fresh broker.
pub(crate) async fn start(
    in_flight: usize,
) -> Result<Running<OursCaller<MemTransport>>, BenchError> {
    let transport = MemTransport::new();
    let server = serve(in_flight, transport.clone()).await?;
    let client = OursCaller::new(transport);
    Ok(Running::new(client, async move {
        server.shutdown().await;
    }))
}

/// [`start`] with client and server reporting to no `metrics` facade: the
/// control that prices the facade's handles when no recorder is installed.
pub(crate) async fn start_without_metrics(
    in_flight: usize,
) -> Result<Running<OursCaller<MemTransport>>, BenchError> {
    let transport = MemTransport::new();
    let server = serve_metered(in_flight, transport.clone(), false).await?;
    let client = OursCaller::with_config(transport, ClientConfig::default().metrics(false));
    Ok(Running::new(client, async move {
        server.shutdown().await;
    }))
}
