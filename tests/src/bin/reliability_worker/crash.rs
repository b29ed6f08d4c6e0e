//! The service crash tests run in worker processes. Shared by the worker
//! binary and `tests/reliability_crash.rs` (which includes this file), so
//! both sides are built from one definition.

use rpc_core::rpc_service;

/// Work that a worker either blocks in (to be killed mid-handler) or
/// answers, depending on how the worker was started.
#[rpc_service(name = "reliability.crash")]
pub trait Crash {
    /// At-least-once (the default): acknowledged after the reply, so a
    /// worker killed mid-handler leaves it to be redelivered.
    async fn work(&self, n: u64) -> String;
    /// At-most-once: acknowledged before it runs, so it never runs twice.
    #[rpc(at_most_once)]
    async fn charge(&self, n: u64) -> String;
    /// Answers the worker's name at once.
    async fn ping(&self) -> String;
}
