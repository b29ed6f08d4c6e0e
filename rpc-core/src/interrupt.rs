//! Cutting a handler short: at its call's deadline, or when its caller
//! cancels.
//!
//! A handler runs inside [`interruptible`], which drops the handler's
//! future at the deadline or when a [`Kind::Cancel`](crate::Kind::Cancel)
//! for its call arrives ([`RunningHandlers::cancel`]). Methods marked
//! `#[rpc(run_to_completion)]` run without it.
//!
//! Nothing is paid until a handler first waits: a handler that finishes on
//! its first poll (most do, on a fast path) never arms a timer nor enters
//! the table of running handlers; one that waits is armed then, once.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::time::{Instant, Sleep};

use crate::envelope::Header;
use crate::transport::support::lock_unpoisoned;

/// Cancels that found no armed handler, remembered in case the handler arms
/// just after (its first poll racing the cancel); older ones are forgotten.
const EARLY_CANCELS: usize = 1024;

/// Why a handler's future was dropped before it finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// The call's deadline passed.
    Deadline,
    /// The caller cancelled the call.
    Cancelled,
}

/// Names one call among a server's running handlers: its correlation id
/// and deadline, both of which the client copies into the cancel.
///
/// Correlation ids are unique per client inbox only; clients start their
/// ids at a random point of the 64-bit space (see `pending.rs`), so ids of
/// two clients do not meet in practice, and the deadline must match too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CallKey {
    correlation_id: u64,
    deadline_ms: u64,
}

impl CallKey {
    /// The key of the call `header` belongs to (a request or its cancel).
    pub(crate) fn of(header: &Header) -> Self {
        CallKey {
            correlation_id: header.correlation_id,
            deadline_ms: header.deadline_ms,
        }
    }
}

/// The handlers of one server that are waiting, by call.
#[derive(Debug, Default)]
pub(crate) struct RunningHandlers {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    armed: FxHashMap<CallKey, Arc<CancelSignal>>,
    early: FxHashSet<CallKey>,
    early_order: VecDeque<CallKey>,
}

impl RunningHandlers {
    /// Cancels the handler of `key` if it is running here; otherwise keeps
    /// the cancel a while for a handler about to arm. Returns whether a
    /// running handler was found.
    pub(crate) fn cancel(&self, key: CallKey) -> bool {
        let mut table = self.lock();
        if let Some(signal) = table.armed.remove(&key) {
            drop(table);
            signal.fire();
            return true;
        }
        if table.early.insert(key) {
            table.early_order.push_back(key);
            if table.early_order.len() > EARLY_CANCELS
                && let Some(oldest) = table.early_order.pop_front()
            {
                table.early.remove(&oldest);
            }
        }
        false
    }

    /// Enters a handler that is about to wait; `None` when a cancel for it
    /// already came.
    fn arm(&self, key: CallKey) -> Option<Arc<CancelSignal>> {
        let mut table = self.lock();
        if table.early.remove(&key) {
            table.early_order.retain(|early| *early != key);
            return None;
        }
        let signal = Arc::new(CancelSignal::default());
        table.armed.insert(key, signal.clone());
        Some(signal)
    }

    fn disarm(&self, key: CallKey) {
        self.lock().armed.remove(&key);
    }

    /// Handlers armed right now (for tests).
    #[cfg(test)]
    fn armed(&self) -> usize {
        self.lock().armed.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every critical section is a few map calls that cannot leave the
        // table half-updated, so a poisoned lock is still sound.
        lock_unpoisoned(&self.table)
    }
}

/// Set once by a cancel; wakes the handler's task so it sees it.
#[derive(Debug, Default)]
struct CancelSignal {
    fired: AtomicBool,
    waker: AtomicWaker,
}

impl CancelSignal {
    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A fire between the load and the register would be missed without
        // this second look.
        if self.fired.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// What stops a waiting handler: its timer and its cancel signal.
struct Armed<'a> {
    sleep: Option<Pin<Box<Sleep>>>,
    signal: Option<Arc<CancelSignal>>,
    handlers: &'a RunningHandlers,
    key: CallKey,
}

impl Armed<'_> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Interrupted> {
        let Some(signal) = &self.signal else {
            // Cancelled before it armed.
            return Poll::Ready(Interrupted::Cancelled);
        };
        if signal.poll(cx).is_ready() {
            return Poll::Ready(Interrupted::Cancelled);
        }
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().poll(cx).map(|()| Interrupted::Deadline),
            None => Poll::Pending,
        }
    }
}

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        if self.signal.is_some() {
            self.handlers.disarm(self.key);
        }
    }
}

pin_project_lite::pin_project! {
    /// The future [`interruptible`] returns: the handler's future, held
    /// once and polled in place, and what stops it once it waits.
    pub(crate) struct Interruptible<'a, F> {
        // Before the handler: it disarms before the handler's future is
        // dropped, as when the call is cut short.
        armed: Option<Armed<'a>>,
        #[pin]
        handler: F,
        deadline: Option<Instant>,
        // `None`: the handler runs to completion, never cut short.
        handlers: Option<&'a RunningHandlers>,
        key: CallKey,
    }
}

/// Runs `handler` until it finishes, its `deadline` passes, or a cancel for
/// `key` reaches `handlers`; the handler's future is dropped in the last two
/// cases, before this resolves.
///
/// The deadline timer and the table entry are made only if the handler
/// waits (see the module docs). A future of its own rather than an `async
/// fn`: an `async fn` keeps its argument and the pinned local it moves into
/// side by side, twice the handler's size in every call's future.
pub(crate) fn interruptible<F: Future>(
    handler: F,
    deadline: Option<Instant>,
    handlers: &RunningHandlers,
    key: CallKey,
) -> Interruptible<'_, F> {
    Interruptible {
        armed: None,
        handler,
        deadline,
        handlers: Some(handlers),
        key,
    }
}

/// Runs `handler` to its end, whatever its call's deadline or a cancel
/// (methods marked `#[rpc(run_to_completion)]`): the same type as an
/// [`interruptible`] handler, so a server's call future has one shape for
/// both.
pub(crate) fn to_completion<F: Future>(handler: F) -> Interruptible<'static, F> {
    Interruptible {
        armed: None,
        handler,
        deadline: None,
        handlers: None,
        // Never looked at: such a handler never arms.
        key: CallKey {
            correlation_id: 0,
            deadline_ms: 0,
        },
    }
}

impl<F: Future> Future for Interruptible<'_, F> {
    type Output = Result<F::Output, Interrupted>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(armed) = this.armed.as_mut()
            && let Poll::Ready(why) = armed.poll(cx)
        {
            return Poll::Ready(Err(why));
        }
        if let Poll::Ready(output) = this.handler.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if this.armed.is_none()
            && let Some(handlers) = *this.handlers
        {
            let now = this.armed.insert(Armed {
                sleep: (this.deadline).map(|at| Box::pin(tokio::time::sleep_until(at))),
                signal: handlers.arm(*this.key),
                handlers,
                key: *this.key,
            });
            // Registers the timer and the signal's waker, or finds the
            // deadline already passed or the call cancelled.
            if let Poll::Ready(why) = now.poll(cx) {
                return Poll::Ready(Err(why));
            }
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(id: u64) -> CallKey {
        CallKey {
            correlation_id: id,
            deadline_ms: 7,
        }
    }

    #[tokio::test]
    async fn a_handler_that_finishes_at_once_never_arms() {
        let handlers = RunningHandlers::default();
        let done = interruptible(async { 5 }, Some(Instant::now()), &handlers, key(1)).await;
        assert_eq!(done, Ok(5), "the handler is polled before the deadline");
        assert_eq!(handlers.armed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_drops_a_waiting_handler() {
        let handlers = RunningHandlers::default();
        let deadline = Instant::now() + Duration::from_millis(50);
        let (dropped, was_dropped) = tokio::sync::oneshot::channel::<()>();
        let handler = async move {
            let _dropped = dropped;
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        let ended = interruptible(handler, Some(deadline), &handlers, key(1)).await;
        assert_eq!(ended, Err(Interrupted::Deadline));
        assert_eq!(Instant::now(), deadline);
        assert!(
            was_dropped.await.is_err(),
            "the handler's future was dropped"
        );
        assert_eq!(handlers.armed(), 0);
    }

    #[tokio::test]
    async fn a_cancel_drops_a_waiting_handler_and_only_it() {
        let handlers = Arc::new(RunningHandlers::default());
        let (started, has_started) = tokio::sync::oneshot::channel();
        let running = {
            let handlers = handlers.clone();
            tokio::spawn(async move {
                let handler = async {
                    let _ = started.send(());
                    std::future::pending::<()>().await
                };
                interruptible(handler, None, &handlers, key(1)).await
            })
        };
        has_started.await.unwrap();
        while handlers.armed() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(!handlers.cancel(key(2)), "another call");
        assert!(handlers.cancel(key(1)));
        assert_eq!(running.await.unwrap(), Err(Interrupted::Cancelled));
        assert_eq!(handlers.armed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_run_to_completion_is_neither_armed_nor_cut() {
        let handlers = RunningHandlers::default();
        let start = Instant::now();
        let handler = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            5
        };
        assert!(!handlers.cancel(key(0)), "nothing to cancel");
        assert_eq!(to_completion(handler).await, Ok(5));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        assert_eq!(handlers.armed(), 0);
    }

    #[tokio::test]
    async fn a_cancel_that_comes_before_the_handler_waits_still_counts() {
        let handlers = RunningHandlers::default();
        assert!(!handlers.cancel(key(3)));
        let ended = interruptible(std::future::pending::<()>(), None, &handlers, key(3)).await;
        assert_eq!(ended, Err(Interrupted::Cancelled));
        assert_eq!(handlers.armed(), 0);
        assert!(handlers.lock().early.is_empty(), "used up");
    }

    #[test]
    fn early_cancels_are_bounded() {
        let handlers = RunningHandlers::default();
        for id in 0..(EARLY_CANCELS as u64 + 10) {
            handlers.cancel(key(id));
        }
        let table = handlers.lock();
        assert_eq!(table.early.len(), EARLY_CANCELS);
        assert!(!table.early.contains(&key(0)), "the oldest went first");
    }
}
