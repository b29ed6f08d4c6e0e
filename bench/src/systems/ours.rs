//! What every `ours_*` system shares: our generated client as a
//! [`Caller`], and the server every one of them starts. Each `ours_*`
//! module adds only what its transport needs: how to connect, and what to
//! tear down.

use futures_util::TryFutureExt;
use rpc_core::{Client, ClientConfig, Server, ServerHandle, Transport};

use super::service::{AdderClient, AdderServer, Sum};
use crate::error::BenchError;
use crate::load::Caller;

/// A transport we benchmark our runtime over, and the system's name.
pub(crate) trait OursTransport: Transport {
    /// The system's name, for errors and reports.
    const NAME: &'static str;
}

/// Our generated client over `T`.
#[derive(Clone)]
pub(crate) struct OursCaller<T: Transport>(AdderClient<T>);

impl<T: OursTransport> OursCaller<T> {
    /// A client over `transport`.
    pub(crate) fn new(transport: T) -> Self {
        OursCaller(AdderClient::new(transport))
    }

    /// A client over `transport` configured as `config`.
    pub(crate) fn with_config(transport: T, config: ClientConfig) -> Self {
        OursCaller(AdderClient::from_client(Client::with_config(
            transport, config,
        )))
    }
}

impl<T: OursTransport> Caller for OursCaller<T> {
    const NAME: &'static str = T::NAME;

    /// The client's call future, its error mapped: no `async` layer of its
    /// own, which would copy the whole call future into itself when first
    /// polled (and the worker copies it once more) on every call.
    fn add(&self, a: u64, b: u64) -> impl Future<Output = Result<u64, BenchError>> + Send {
        self.0
            .add(a, b)
            .map_err(|e| BenchError::call(Self::NAME, e))
    }
}

/// Serves the adder over `transport` with concurrency `in_flight`.
pub(crate) async fn serve<T: OursTransport>(
    in_flight: usize,
    transport: T,
) -> Result<ServerHandle, BenchError> {
    serve_metered(in_flight, transport, true).await
}

/// [`serve`], reporting to the `metrics` facade or not.
pub(crate) async fn serve_metered<T: OursTransport>(
    in_flight: usize,
    transport: T,
    metrics: bool,
) -> Result<ServerHandle, BenchError> {
    Server::builder(transport)
        .concurrency(in_flight)
        .metrics(metrics)
        .serve(AdderServer::new(Sum))
        .await
        .map_err(|e| setup_error::<T>(&e))
}

/// A setup failure of the system over `T`.
pub(crate) fn setup_error<T: OursTransport>(error: &dyn std::error::Error) -> BenchError {
    BenchError::setup_from(T::NAME, error)
}
