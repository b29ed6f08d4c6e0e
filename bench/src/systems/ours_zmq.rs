//! Ours: the `#[rpc_service]` client and server over `ZmqTransport`: a
//! server transport bound to a loopback port, a client transport connected
//! to it, default settings (credit, heartbeats every second).

use rpc_transport_zmq::ZmqTransport;

use super::Running;
use super::ours::{OursCaller, OursTransport, serve, setup_error};
use crate::error::BenchError;

impl OursTransport for ZmqTransport {
    const NAME: &'static str = "ours: zeromq";
}

/// Serves with concurrency = `in_flight` on a loopback port, connects a client.
pub(crate) async fn start(
    in_flight: usize,
) -> Result<Running<OursCaller<ZmqTransport>>, BenchError> {
    let setup = |e: &rpc_core::TransportError| setup_error::<ZmqTransport>(e);
    let server_transport = ZmqTransport::builder()
        .bind("tcp://127.0.0.1:0")
        .build()
        .await
        .map_err(|e| setup(&e))?;
    let server = serve(in_flight, server_transport.clone()).await?;
    let client_transport = ZmqTransport::builder()
        .connect(server_transport.endpoints()[0].clone())
        .build()
        .await
        .map_err(|e| setup(&e))?;
    let client = OursCaller::new(client_transport);
    Ok(Running::new(client, async move {
        server.shutdown().await;
        server_transport.close();
    }))
}
