//! How long the outbox's writer lets replies gather before it takes them
//! (`outbox.rs`).
//!
//! The writer is woken by the first reply queued. On a multi-thread runtime
//! tokio runs a task woken from a worker next (its LIFO slot), before the
//! tasks that were already ready, so the writer yields once to let those
//! add theirs. On a current-thread runtime a woken task already runs after
//! every task that was ready before it, and a server's stream runs the
//! calls it was handed in one poll, so they have all queued their replies
//! when the writer runs: it takes them at once.

use tokio::runtime::{Handle, RuntimeFlavor};

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
    async fn on_a_current_thread_runtime_the_writer_takes_replies_at_once() {
        assert!(at_once(Gather::here().before_replies()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_multi_thread_runtime_the_writer_yields() {
        assert!(!at_once(Gather::here().before_replies()));
    }
}
