//! How long a batch's writer lets requests or replies gather before it
//! takes them (`batcher.rs`, `outbox.rs`).
//!
//! A writer is woken by the first request or reply queued. On a
//! multi-thread runtime tokio runs a task woken from a worker next (its
//! LIFO slot), before the tasks that were already ready, so a writer yields
//! once to let those add theirs. On a current-thread runtime a woken task
//! already runs after every task that was ready before it, and a yield adds
//! a poll of the I/O driver, which reads what arrived meanwhile: the writer
//! then also waits for the calls that read wakes. That gathers bigger
//! batches of requests while a link has few calls in flight; with many,
//! tasks are always ready and the extra polls only split the reads and
//! writes that tokio and zeromq would otherwise make in bulk. A server's
//! replies need no yield there: its stream runs the calls it was handed in
//! one poll, so they have all queued their replies when the writer runs.
//!
//! Callgrind, ours on `current_thread` (`RPC_BENCH_ARGS="--system ours-zmq"
//! IN_FLIGHT=k bench/instructions.sh 3000`), instructions per call with
//! both writers always yielding, then as here: 24,214 and 24,178 at 40 in
//! flight, 21,606 and 21,548 at 64, 21,862 and 20,388 at 80, 22,144 and
//! 20,754 at 96, 21,230 and 19,636 at 128, 19,147 and 17,983 at 256. The
//! request writer never yielding cost 23,283 at 64.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Calls in flight on a client's link from which its request writer on a
/// current-thread runtime no longer yields.
pub(crate) const YIELD_BELOW: usize = 96;

/// A writer's way of waiting, fixed by the runtime it runs on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gather {
    current_thread: bool,
}

impl Gather {
    /// For a writer on the runtime it is called from.
    pub(crate) fn here() -> Self {
        Gather {
            current_thread: Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread,
        }
    }

    /// Lets the calls that are ready add their requests to a link that
    /// holds `in_flight` calls.
    pub(crate) async fn before_requests(self, in_flight: usize) {
        if !self.current_thread || in_flight < YIELD_BELOW {
            tokio::task::yield_now().await;
        }
    }

    /// Lets the calls that are ready add their replies.
    pub(crate) async fn before_replies(self) {
        if !self.current_thread {
            tokio::task::yield_now().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Whether `future` finishes on its first poll (no yield).
    fn at_once(future: impl Future<Output = ()>) -> bool {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        future.as_mut().poll(&mut cx) == Poll::Ready(())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn on_a_current_thread_runtime_only_a_shallow_link_yields() {
        let gather = Gather::here();
        assert!(!at_once(gather.before_requests(1)));
        assert!(!at_once(gather.before_requests(YIELD_BELOW - 1)));
        assert!(at_once(gather.before_requests(YIELD_BELOW)));
        assert!(at_once(gather.before_replies()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_thread_runtime_every_writer_yields() {
        let gather = Gather::here();
        assert!(!at_once(gather.before_requests(1)));
        assert!(!at_once(gather.before_requests(10 * YIELD_BELOW)));
        assert!(!at_once(gather.before_replies()));
    }
}
