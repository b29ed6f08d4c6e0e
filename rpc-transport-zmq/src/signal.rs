//! [`Signal`]: a flag one task waits on beside its socket.
//!
//! The router and link tasks wait for their socket and, in the same
//! `select`, for a few rare events (the services changed, a send failed,
//! the transport closed). They poll those waits again every time they go
//! back to sleep, once or more per message. A `tokio::sync::Notify` takes
//! its waiter list's lock on each of those polls; a [`Signal`] costs an
//! atomic load and, while its waiter stays the same task, a
//! compare-and-swap.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// A flag raised by anyone and waited for by one task at a time (a second
/// waiter replaces the first).
#[derive(Debug, Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Raises the flag and wakes the waiting task. The flag stays raised
    /// until [`take`](Self::take) lowers it, so a raise with nobody
    /// waiting is seen by the next wait.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Waits until the flag is raised; leaves it raised.
    pub(crate) fn raised(&self) -> Raised<'_> {
        Raised {
            signal: self,
            take: false,
        }
    }

    /// Waits until the flag is raised and lowers it: each raise (or run of
    /// raises before the wait sees them) ends one wait.
    pub(crate) fn take(&self) -> Raised<'_> {
        Raised {
            signal: self,
            take: true,
        }
    }

    fn check(&self, take: bool) -> bool {
        if take {
            // Loaded first: the usual answer is no, and a load does not
            // take the cache line from other cores as a swap would.
            self.raised.load(Ordering::Acquire) && self.raised.swap(false, Ordering::AcqRel)
        } else {
            self.raised.load(Ordering::Acquire)
        }
    }

    fn poll_raised(&self, take: bool, cx: &mut Context<'_>) -> Poll<()> {
        if self.check(take) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // Checked again after registering: a raise between the first check
        // and the registration woke the waker before this one.
        if self.check(take) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// The future of [`Signal::raised`] and [`Signal::take`]. Made once and
/// polled again across turns of a loop: it holds no state of its own.
#[derive(Debug)]
pub(crate) struct Raised<'a> {
    signal: &'a Signal,
    take: bool,
}

impl Future for Raised<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.signal.poll_raised(self.take, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::task::Waker;

    fn poll(future: &mut Raised<'_>) -> Poll<()> {
        Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn raised_stays_raised_and_take_lowers_it() {
        let signal = Signal::default();
        assert!(poll(&mut signal.raised()).is_pending());
        assert!(poll(&mut signal.take()).is_pending());
        signal.raise();
        assert!(poll(&mut signal.raised()).is_ready());
        assert!(poll(&mut signal.raised()).is_ready());
        let mut take = signal.take();
        assert!(poll(&mut take).is_ready());
        // Taken: the same future waits again for the next raise.
        assert!(poll(&mut take).is_pending());
        signal.raise();
        signal.raise();
        assert!(poll(&mut take).is_ready());
        assert!(poll(&mut take).is_pending());
    }

    #[tokio::test]
    async fn a_raise_wakes_the_waiting_task() {
        let signal = Arc::new(Signal::default());
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.take().await }
        });
        // The waiter may or may not be waiting yet: either way the raise
        // ends its wait, now or when it first looks.
        signal.raise();
        waiter.await.unwrap();
    }
}
