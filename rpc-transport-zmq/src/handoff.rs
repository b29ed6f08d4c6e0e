//! [`Handoff`]: the queue from the router task to one `serve` stream.
//!
//! One producer (the router task) and one consumer (the stream's task), a
//! few deliveries at a time: a locked deque and a waker. A tokio channel
//! does the same in its block list with more atomics per message, a
//! sizeable share of what handing over a small call cost.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use rpc_core::Delivery;
use rpc_core::transport::support::lock_unpoisoned;

/// Deliveries on their way to a stream.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    state: Mutex<State>,
    waker: AtomicWaker,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Delivery>,
    /// No more deliveries: the transport closed, or the stream went.
    closed: bool,
}

impl Handoff {
    /// Queues `delivery` for the stream. Once closed, the delivery is
    /// dropped instead (after the lock: dropping one tells its client).
    pub(crate) fn push(&self, delivery: Delivery) {
        let mut state = lock_unpoisoned(&self.state);
        if state.closed {
            drop(state);
            drop(delivery);
            return;
        }
        state.queue.push_back(delivery);
        drop(state);
        self.waker.wake();
    }

    /// Ends the stream once it has taken what is queued.
    pub(crate) fn close(&self) {
        lock_unpoisoned(&self.state).closed = true;
        self.waker.wake();
    }

    /// Ends the stream now: what is queued is dropped (the stream went).
    pub(crate) fn close_and_drop_queued(&self) {
        let queued = {
            let mut state = lock_unpoisoned(&self.state);
            state.closed = true;
            std::mem::take(&mut state.queue)
        };
        drop(queued);
    }

    /// The next delivery; `None` once closed and empty.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if let Some(ready) = self.take() {
            return ready;
        }
        // Registered before looking again, so a push between the two looks
        // wakes this task.
        self.waker.register(cx.waker());
        self.take().unwrap_or(Poll::Pending)
    }

    fn take(&self) -> Option<Poll<Option<Delivery>>> {
        let mut state = lock_unpoisoned(&self.state);
        match state.queue.pop_front() {
            Some(delivery) => Some(Poll::Ready(Some(delivery))),
            None if state.closed => Some(Poll::Ready(None)),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Waker;

    use rpc_core::transport::{DeliveryHandle, SendFuture, SettleFuture, Settled, Settlement};
    use rpc_core::{ContentType, Envelope, Header};

    use super::*;

    /// Counts the deliveries dropped (a dropped ZeroMQ delivery sends `DONE`).
    struct Counted(Arc<AtomicUsize>);

    impl DeliveryHandle for Counted {
        fn reply(&self, _request: &Envelope, _reply: Envelope) -> SendFuture {
            Box::pin(Settled)
        }
        fn settle(&self, _settlement: Settlement, _delivered: &Envelope) -> SettleFuture {
            Box::pin(Settled)
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn delivery(id: u64, dropped: &Arc<AtomicUsize>) -> Delivery {
        let mut header = Header::request("svc".into(), "m".into(), ContentType::Json);
        header.correlation_id = id;
        let envelope = Envelope {
            header,
            body: Vec::new(),
        };
        Delivery::untracked(envelope, Box::new(Counted(dropped.clone())))
    }

    fn next(handoff: &Handoff) -> Poll<Option<u64>> {
        let mut cx = Context::from_waker(Waker::noop());
        handoff
            .poll_next(&mut cx)
            .map(|d| d.map(|d| d.envelope().header.correlation_id))
    }

    /// Counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn deliveries_come_in_order_and_a_push_wakes_the_waiting_stream() {
        let dropped = Arc::default();
        let handoff = Handoff::default();
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        assert!(
            handoff
                .poll_next(&mut Context::from_waker(&waker))
                .is_pending()
        );
        handoff.push(delivery(1, &dropped));
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        handoff.push(delivery(2, &dropped));
        assert_eq!(next(&handoff), Poll::Ready(Some(1)));
        assert_eq!(next(&handoff), Poll::Ready(Some(2)));
        assert_eq!(next(&handoff), Poll::Pending);
    }

    #[test]
    fn closed_the_stream_takes_what_is_queued_then_ends_and_later_pushes_are_dropped() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let handoff = Handoff::default();
        handoff.push(delivery(1, &dropped));
        handoff.close();
        handoff.push(delivery(2, &dropped));
        assert_eq!(dropped.load(Ordering::SeqCst), 1, "the push after close");
        assert_eq!(next(&handoff), Poll::Ready(Some(1)));
        assert_eq!(next(&handoff), Poll::Ready(None));
    }

    #[test]
    fn a_stream_that_goes_drops_what_it_had_not_taken() {
        let dropped = Arc::new(AtomicUsize::new(0));
        let handoff = Handoff::default();
        handoff.push(delivery(1, &dropped));
        handoff.push(delivery(2, &dropped));
        handoff.close_and_drop_queued();
        assert_eq!(dropped.load(Ordering::SeqCst), 2);
        handoff.push(delivery(3, &dropped));
        assert_eq!(dropped.load(Ordering::SeqCst), 3);
        assert_eq!(next(&handoff), Poll::Ready(None));
    }
}
