//! Baseline: tarpc over its in-memory channel transport.
//!
//! tarpc's own recommended shape: `BaseChannel::execute` with one spawned
//! task per request, the client dispatch spawned on the same runtime.

use futures_util::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::{client, context};

use super::Running;
use super::tarpc_service::{AddService, Adder, AdderClient, spawn};
use crate::error::BenchError;
use crate::load::Caller;

/// A tarpc client over the in-memory channel.
#[derive(Clone)]
pub(crate) struct TarpcMemCaller(AdderClient);

impl Caller for TarpcMemCaller {
    const NAME: &'static str = "tarpc channel";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        self.0
            .add(context::current(), a, b)
            .await
            .map_err(|e| BenchError::call(Self::NAME, e))
    }
}

/// Starts a tarpc server and client joined by an unbounded channel pair.
pub(crate) async fn start(in_flight: usize) -> Result<Running<TarpcMemCaller>, BenchError> {
    let (client_side, server_side) = tarpc::transport::channel::unbounded();
    let server = tokio::spawn(
        BaseChannel::with_defaults(server_side)
            .execute(Adder.serve())
            .for_each(spawn),
    );
    let mut config = client::Config::default();
    // The default (1000) is above every level measured; set it anyway so the
    // cap never silently queues calls.
    config.max_in_flight_requests = in_flight.max(1000);
    let client = AdderClient::new(config, client_side).spawn();
    Ok(Running::new(TarpcMemCaller(client), async move {
        server.abort();
        let _ = server.await;
    }))
}
