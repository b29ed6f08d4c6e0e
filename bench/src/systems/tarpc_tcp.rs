//! Baseline: tarpc over TCP loopback with its bincode serde transport.
//!
//! One connection, server and client in this process: the cost of a socket
//! pair, framing and bincode, without a broker in between.

use futures_util::StreamExt;
use tarpc::serde_transport::tcp;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context};

use super::Running;
use super::tarpc_service::{AddService, Adder, AdderClient, spawn};
use crate::error::BenchError;
use crate::load::Caller;

/// A tarpc client over a loopback TCP connection.
#[derive(Clone)]
pub(crate) struct TarpcTcpCaller(AdderClient);

impl Caller for TarpcTcpCaller {
    const NAME: &'static str = "tarpc tcp";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        self.0
            .add(context::current(), a, b)
            .await
            .map_err(|e| BenchError::call(Self::NAME, e))
    }
}

/// Listens on an ephemeral loopback port, connects one client to it.
pub(crate) async fn start(in_flight: usize) -> Result<Running<TarpcTcpCaller>, BenchError> {
    let setup = |e| BenchError::setup(TarpcTcpCaller::NAME, e);
    let mut listener = tcp::listen("127.0.0.1:0", Bincode::default)
        .await
        .map_err(setup)?;
    let address = listener.local_addr();
    let server = tokio::spawn(async move {
        // One client connects; serve it until it goes.
        if let Some(Ok(transport)) = listener.next().await {
            BaseChannel::with_defaults(transport)
                .execute(Adder.serve())
                .for_each(spawn)
                .await;
        }
    });
    let transport = tcp::connect(address, Bincode::default)
        .await
        .map_err(setup)?;
    let mut config = client::Config::default();
    config.max_in_flight_requests = in_flight.max(1000);
    let client = AdderClient::new(config, transport).spawn();
    Ok(Running::new(TarpcTcpCaller(client), async move {
        server.abort();
        let _ = server.await;
    }))
}
