//! The `add` service as our users declare it, shared by both of our systems.

use rpc_core::rpc_service;

/// Adds two numbers: the smallest call that still encodes arguments and a
/// reply, so the figures show the RPC machinery, not the work.
#[rpc_service(name = "rpc-bench.adder")]
pub(crate) trait Adder {
    /// `a + b`, wrapping.
    async fn add(&self, a: u64, b: u64) -> u64;
}

/// The server implementation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sum;

impl Adder for Sum {
    async fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
}
