//! Ours: the `#[rpc_service]` client and server over `NatsTransport` in
//! its default (core) mode. Server and client each get their own
//! transport (their own connection), as two processes would.

use rpc_transport_nats::NatsTransport;

use super::Running;
use super::ours::{OursCaller, OursTransport, serve, setup_error};
use crate::error::BenchError;

impl OursTransport for NatsTransport {
    const NAME: &'static str = "ours: nats";
}

/// Connects a server (concurrency = `in_flight`) and a client, under this
/// process's own subject prefix.
pub(crate) async fn start(
    in_flight: usize,
    url: &str,
) -> Result<Running<OursCaller<NatsTransport>>, BenchError> {
    let prefix = format!("rpc-bench.{}.", std::process::id());
    let connect = || async {
        NatsTransport::builder(url)
            .subject_prefix(prefix.clone())
            .connect()
            .await
            .map_err(|e| setup_error::<NatsTransport>(&e))
    };
    let server_transport = connect().await?;
    let server = serve(in_flight, server_transport.clone()).await?;
    let client_transport = connect().await?;
    let client = OursCaller::new(client_transport.clone());
    Ok(Running::new(client, async move {
        server.shutdown().await;
        client_transport.close().await;
        server_transport.close().await;
    }))
}
