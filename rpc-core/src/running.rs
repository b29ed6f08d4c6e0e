//! The set of calls one server is running, polled by the serve task itself.
//!
//! Running calls inside the serve task instead of spawning a task per request
//! saves the runtime's per-task work (allocation, scheduling, join handle):
//! at 64 and more calls in flight on the memory transport that work would be
//! most of what a call costs beyond the handler. A spawned call is in the set
//! too, as the future of its join handle (see `ServerBuilder::spawn_calls`).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::future::CatchUnwind;
use futures_util::stream::FuturesUnordered;

/// Completions one wake-up may take before the serve task yields, so a busy
/// server leaves its worker thread to the runtime's other tasks now and then.
pub(crate) const COMPLETIONS_PER_WAKE: usize = 128;

/// Calls in flight; each is one future that replies and settles by itself.
///
/// The futures run only while the set is polled: whoever owns it must keep
/// polling it (or hand it to [`finish_detached`](RunningCalls::finish_detached)).
pub(crate) struct RunningCalls<F> {
    calls: FuturesUnordered<CatchUnwind<AssertUnwindSafe<F>>>,
}

impl<F: Future<Output = ()>> RunningCalls<F> {
    pub(crate) fn new() -> Self {
        RunningCalls {
            calls: FuturesUnordered::new(),
        }
    }

    /// Calls still running.
    pub(crate) fn len(&self) -> usize {
        self.calls.len()
    }

    /// Starts `call`; it first runs on the next poll.
    pub(crate) fn push(&mut self, call: F) {
        // Handler panics are already turned into error replies inside the
        // call; this catches a panic anywhere else (a transport's send or
        // settle), which must cost that call only, not every call of the server.
        self.calls.push(AssertUnwindSafe(call).catch_unwind());
    }

    /// Runs the calls; `Ready(Some(()))` for each one that finished,
    /// `Ready(None)` when none is left.
    pub(crate) fn poll_next_finished(&mut self, cx: &mut Context<'_>) -> Poll<Option<()>> {
        self.calls
            .poll_next_unpin(cx)
            .map(|finished| finished.map(log_panic))
    }

    /// Resolves once every call has finished.
    pub(crate) async fn finish(&mut self) {
        while self.calls.next().await.is_some() {}
    }
}

impl<F: Future<Output = ()> + Send + 'static> RunningCalls<F> {
    /// Lets the calls finish in a task of their own, so that nothing taken
    /// from the transport is left without its reply and settlement when the
    /// serve task ends first.
    pub(crate) fn finish_detached(mut self) {
        if self.len() > 0 {
            tokio::spawn(async move { self.finish().await });
        }
    }
}

fn log_panic(finished: Result<(), Box<dyn Any + Send>>) {
    if finished.is_err() {
        tracing::error!("a call panicked outside its handler; its delivery is left to the fabric");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::{Notify, oneshot};

    use super::*;

    #[tokio::test]
    async fn a_panicking_call_costs_only_itself() {
        let finished = Arc::new(AtomicUsize::new(0));
        let mut running = RunningCalls::new();
        for n in 0..3 {
            let finished = finished.clone();
            running.push(async move {
                tokio::task::yield_now().await;
                assert_ne!(n, 1, "this call panics");
                finished.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(running.len(), 3);
        running.finish().await;
        assert_eq!(finished.load(Ordering::Relaxed), 2);
        assert_eq!(running.len(), 0);
    }

    #[tokio::test]
    async fn detached_calls_still_finish() {
        let gate = Arc::new(Notify::new());
        let (done, finished) = oneshot::channel();
        let mut running = RunningCalls::new();
        let opened = gate.clone();
        running.push(async move {
            opened.notified().await;
            let _ = done.send(());
        });
        running.finish_detached();
        gate.notify_one();
        finished.await.expect("the detached call ran to its end");
    }
}
