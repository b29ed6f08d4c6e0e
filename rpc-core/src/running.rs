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
use std::pin::Pin;
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

/// Polls `call` once, where it is taken; returns whether it finished (a
/// panic finishes it too, logged: it costs that call only, as it does
/// inside the set).
///
/// Most calls on a fast path finish on their first poll, and those never
/// enter the set: no task node, no queueing, no release. A call that has
/// not finished goes into the set, which polls it again at once with the
/// set's own waker; a wake-up meant for the first poll's waker (the serve
/// task's) is then at worst one spare poll of the serve task.
pub(crate) fn poll_first<X: Future<Output = ()>>(call: Pin<&mut X>, cx: &mut Context<'_>) -> bool {
    match std::panic::catch_unwind(AssertUnwindSafe(|| call.poll(cx))) {
        Ok(Poll::Ready(())) => true,
        Ok(Poll::Pending) => false,
        Err(panic) => {
            log_panic(Err(panic));
            true
        }
    }
}

/// A call's future in a box that can outlive it: the box of a call that
/// finished is emptied at once (what the call held is released, its span
/// closes) and kept for the next call.
pub(crate) struct CallBox<X>(Pin<Box<Option<X>>>);

impl<X: Future<Output = ()>> Future for CallBox<X> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.0.as_mut().as_pin_mut() {
            Some(call) => call.poll(cx),
            // Emptied: only a finished call's box is, and it is not polled again.
            None => Poll::Ready(()),
        }
    }
}

/// The box of a call that finished on its first poll, kept for the next
/// call: a call's future is larger than the allocator's per-thread caches
/// hold, so a fresh box per call costs a trip through the allocator's
/// shared bins, and the box of a call that finished at once is free again.
pub(crate) struct SpareBox<X> {
    spare: Option<CallBox<X>>,
}

impl<X> SpareBox<X> {
    pub(crate) fn new() -> Self {
        SpareBox { spare: None }
    }

    /// `call`, boxed: in the kept box if there is one, else in a new one.
    pub(crate) fn boxed(&mut self, call: X) -> CallBox<X> {
        match self.spare.take() {
            Some(mut spare) => {
                spare.0.set(Some(call));
                spare
            }
            None => CallBox(Box::pin(Some(call))),
        }
    }

    /// Keeps the box of a finished call for the next one. The call's
    /// future is dropped now, as the set drops a call that finishes there.
    #[inline]
    pub(crate) fn keep(&mut self, mut finished: CallBox<X>) {
        finished.0.set(None);
        self.spare = Some(finished);
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
    async fn a_call_polled_first_enters_the_set_only_if_it_waits() {
        let mut running = RunningCalls::new();
        let mut spare = SpareBox::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let (open, gate) = oneshot::channel::<()>();
        let finished = Arc::new(AtomicUsize::new(0));
        let call = |gate: Option<oneshot::Receiver<()>>| {
            let finished = finished.clone();
            async move {
                if let Some(gate) = gate {
                    let _ = gate.await;
                }
                finished.fetch_add(1, Ordering::Relaxed);
            }
        };
        let mut at_once = spare.boxed(call(None));
        assert!(poll_first(Pin::new(&mut at_once), &mut cx));
        spare.keep(at_once);
        let mut waits = spare.boxed(call(Some(gate)));
        assert!(spare.spare.is_none(), "the kept box is used again");
        assert!(!poll_first(Pin::new(&mut waits), &mut cx));
        running.push(waits);
        assert_eq!((finished.load(Ordering::Relaxed), running.len()), (1, 1));
        open.send(()).unwrap();
        running.finish().await;
        assert_eq!(finished.load(Ordering::Relaxed), 2);
        let mut panics = Box::pin(async { panic!("this call panics") });
        assert!(
            poll_first(panics.as_mut(), &mut cx),
            "a panic ends the call"
        );
    }

    /// A finished future that still holds something, as a finished
    /// `Instrumented` call holds its span.
    struct Holds {
        _held: oneshot::Sender<()>,
    }

    impl Future for Holds {
        type Output = ();

        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
            Poll::Ready(())
        }
    }

    #[test]
    fn a_kept_box_releases_what_its_call_held() {
        let mut spare = SpareBox::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let (held, mut released) = oneshot::channel::<()>();
        let mut call = spare.boxed(Holds { _held: held });
        assert!(poll_first(Pin::new(&mut call), &mut cx));
        assert!(matches!(
            released.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        spare.keep(call);
        assert!(matches!(
            released.try_recv(),
            Err(oneshot::error::TryRecvError::Closed)
        ));
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
