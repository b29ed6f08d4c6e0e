//! The `add` service as tarpc declares it, shared by both tarpc baselines.

#![allow(
    missing_docs,
    unreachable_pub,
    reason = "tarpc's macro generates undocumented public items"
)]

use std::future::Future;

use tarpc::context::Context;

/// Adds two numbers.
#[tarpc::service]
pub trait AddService {
    /// `a + b`, wrapping.
    async fn add(a: u64, b: u64) -> u64;
}

/// The server implementation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Adder;

impl AddService for Adder {
    async fn add(self, _: Context, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
}

/// The generated client, under the name the benchmark uses.
pub(crate) type AdderClient = AddServiceClient;

/// Runs one request on its own task, as tarpc's examples do.
pub(crate) async fn spawn(request: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(request);
}
