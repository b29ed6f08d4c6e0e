//! The table of calls waiting for their reply, as every hand-written
//! baseline keeps it: a call's id mapped to the oneshot its caller awaits,
//! filled by the task that reads replies.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rpc_core::transport::support::lock_unpoisoned;
use tokio::sync::oneshot;

use crate::error::BenchError;

/// How long a call waits for its reply (our client's default deadline):
/// bounded, like every call of ours, so a lost reply fails the run instead
/// of hanging it.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls waiting for their reply, by id.
#[derive(Debug, Default)]
pub(crate) struct Waiters(Mutex<HashMap<u64, oneshot::Sender<u64>>>);

impl Waiters {
    /// Registers call `id`; its answer arrives on the receiver.
    pub(crate) fn register(&self, id: u64) -> oneshot::Receiver<u64> {
        let (sender, receiver) = oneshot::channel();
        lock_unpoisoned(&self.0).insert(id, sender);
        receiver
    }

    /// Takes call `id`'s waiter, for the reader to answer (or to drop,
    /// which fails the call); `None` for a late or unknown reply.
    pub(crate) fn take(&self, id: u64) -> Option<oneshot::Sender<u64>> {
        lock_unpoisoned(&self.0).remove(&id)
    }

    /// Answers call `id` with `sum`, if it still waits.
    pub(crate) fn answer(&self, id: u64, sum: u64) {
        if let Some(waiter) = self.take(id) {
            let _ = waiter.send(sum);
        }
    }

    /// Forgets call `id` and fails it as `system`'s call with `error`: for
    /// a send that failed.
    pub(crate) fn fail(
        &self,
        system: &'static str,
        id: u64,
        error: impl std::fmt::Display,
    ) -> BenchError {
        self.take(id);
        BenchError::call(system, error)
    }

    /// Waits for call `id`'s answer for at most [`CALL_TIMEOUT`].
    pub(crate) async fn wait(
        &self,
        system: &'static str,
        id: u64,
        answer: oneshot::Receiver<u64>,
    ) -> Result<u64, BenchError> {
        match tokio::time::timeout(CALL_TIMEOUT, answer).await {
            Ok(Ok(sum)) => Ok(sum),
            Ok(Err(_)) => Err(BenchError::call(
                system,
                "no answer: the fabric said nobody serves it, or the reply reader stopped",
            )),
            Err(_) => Err(self.fail(system, id, "no reply within 30 s")),
        }
    }
}
