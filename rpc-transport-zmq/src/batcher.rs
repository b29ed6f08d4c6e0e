//! Requests gathered while a link has calls in flight, written to its
//! server as one `REQ` of several (tag, envelope) pairs.
//!
//! zeromq's cost is per message, not per byte: a send looks its peer up,
//! queues the message on the peer's channel and wakes its writer, and the
//! server's ROUTER does as much again to read it. So a request routed to a
//! link that holds more than `batch_above` calls (default: any) is queued
//! here, and the calls made in the same turn of the runtime go together.
//!
//! The call that finds the queue empty flushes it ([`Flush`]): it lets the
//! tasks that are ready run once (a wake of its own task, which queues it
//! behind them, with no poll of the I/O driver in between), then sends what
//! gathered. The calls whose replies came in one read make their next
//! requests in that turn, so requests travel in the waves replies come in,
//! one message a wave, as zeromq's own writer sends the messages queued in
//! one turn with one system call. A lone call's batch is one pair: a plain
//! `REQ`, the same bytes as unbatched.
//!
//! A flush dropped before it took the queue (its call was cancelled) hands
//! the queue to the link's writer task; one dropped while sending a batch
//! of several finishes that send in a task of its own: no other call's
//! request is lost with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use rpc_core::TransportError;
use zeromq::SocketSend;

use crate::client::Sender;
use crate::signal::Signal;
use crate::stats::Counters;
use crate::wire;
use rpc_core::transport::support::lock_unpoisoned;

/// One link's requests waiting to be sent.
#[derive(Default)]
pub(crate) struct Batch {
    /// (tag, envelope) frames, in the order the calls were routed.
    pairs: Mutex<Vec<Bytes>>,
    /// Raised when a flush is dropped before it took the queue.
    orphaned: Signal,
}

impl Batch {
    /// Queues a request's tag and envelope frames; true when the queue was
    /// empty, so that this call flushes it.
    pub(crate) fn push(&self, tag: Bytes, envelope: Bytes) -> bool {
        let mut pairs = lock_unpoisoned(&self.pairs);
        let first = pairs.is_empty();
        pairs.extend([tag, envelope]);
        first
    }

    fn take(&self) -> Vec<Bytes> {
        std::mem::take(&mut *lock_unpoisoned(&self.pairs))
    }
}

/// What a link's batches are written with.
#[derive(Clone)]
pub(crate) struct Link {
    pub(crate) batch: Arc<Batch>,
    pub(crate) sender: Sender,
    /// Raised when a write fails: the link task then fails the calls the
    /// link held.
    pub(crate) stop: Arc<Signal>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) max_size: usize,
}

/// The send of the call that found its link's queue empty: lets the tasks
/// ready now run once, then writes what gathered.
pub(crate) async fn flush(link: Link) -> Result<(), TransportError> {
    let orphan = OrphanGuard(Some(&link.batch));
    YieldOnce(false).await;
    let pairs = link.batch.take();
    orphan.disarm();
    if pairs.len() == 2 {
        // Its own request alone: written as unbatched, and a drop from here
        // on loses no other call's request.
        let mut frames = Vec::with_capacity(3);
        frames.push(Bytes::from_static(wire::REQ));
        frames.extend(pairs);
        return send(&link.sender, &link.stop, wire::message(frames)).await;
    }
    HandOff(Some(Box::pin(write(link, pairs)))).await
}

/// Sends one message on a link; a failed send raises `stop`.
pub(crate) async fn send(
    sender: &Sender,
    stop: &Signal,
    message: zeromq::ZmqMessage,
) -> Result<(), TransportError> {
    // The lock taken at once when it is free, as it usually is: waiting for
    // it makes, polls and drops an acquire future. `try_lock` never takes
    // it from a task queued for it.
    let sent = match sender.try_lock() {
        Ok(mut sender) => sender.send(message).await,
        Err(_) => sender.lock().await.send(message).await,
    };
    sent.map_err(|_| {
        stop.raise();
        TransportError::ConnectionLost
    })
}

/// Writes `pairs` as `REQ`s of several.
async fn write(link: Link, pairs: Vec<Bytes>) -> Result<(), TransportError> {
    Counters::add(&link.counters.batched_requests, (pairs.len() / 2) as u64);
    for frames in wire::batches(None, wire::REQ, pairs, link.max_size) {
        Counters::bump(&link.counters.batch_messages);
        send(&link.sender, &link.stop, wire::message(frames)).await?;
    }
    Ok(())
}

/// Pending once, having woken its task: tokio queues a task that woke
/// itself behind the tasks already ready (on either runtime), and polls it
/// again without polling the I/O driver first, as `yield_now` would.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Hands the queue to the link's writer task if the flush is dropped
/// before it took it.
struct OrphanGuard<'a>(Option<&'a Batch>);

impl OrphanGuard<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for OrphanGuard<'_> {
    fn drop(&mut self) {
        if let Some(batch) = self.0 {
            batch.orphaned.raise();
        }
    }
}

/// A write of several calls' requests: dropped unfinished, it finishes in
/// a task of its own.
struct HandOff(Option<Writing>);

/// A write under way, boxed so that it can move to a task of its own.
type Writing = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send>>;

impl Future for HandOff {
    type Output = Result<(), TransportError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(writing) = self.0.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = std::task::ready!(writing.as_mut().poll(cx));
        self.0 = None;
        Poll::Ready(result)
    }
}

impl Drop for HandOff {
    fn drop(&mut self) {
        if let Some(writing) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = writing.await;
            });
        }
    }
}

/// The link's writer: sends the queues of flushes dropped before they took
/// them, until `stop` is raised (the link went down, or a write failed:
/// the link task then fails the calls the link held, these among them).
pub(crate) async fn write_orphans(link: Link) {
    loop {
        tokio::select! {
            biased;
            () = link.stop.raised() => return,
            () = link.batch.orphaned.take() => {}
        }
        let pairs = link.batch.take();
        if !pairs.is_empty() && write(link.clone(), pairs).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Waker;

    use zeromq::prelude::*;
    use zeromq::{DealerSocket, RouterSocket};

    use super::*;

    /// A link on a DEALER connected to a ROUTER the test reads.
    async fn link_to_router() -> (Link, RouterSocket) {
        let mut router = RouterSocket::new();
        let endpoint = router.bind("tcp://127.0.0.1:0").await.unwrap();
        let mut dealer = DealerSocket::new();
        dealer.connect(&endpoint.to_string()).await.unwrap();
        let (send, _receive) = dealer.split();
        let link = Link {
            batch: Arc::default(),
            sender: Arc::new(tokio::sync::Mutex::new(send)),
            stop: Arc::default(),
            counters: Arc::default(),
            max_size: 1 << 20,
        };
        (link, router)
    }

    /// The frames of the next message the router reads, its peer's
    /// identity left out.
    async fn next_frames(router: &mut RouterSocket) -> Vec<Bytes> {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), router.recv())
            .await
            .expect("a message within 5 s")
            .unwrap();
        message.into_vec().split_off(1)
    }

    fn pair(i: u8) -> (Bytes, Bytes) {
        (Bytes::from(vec![i]), Bytes::from(vec![b'e', i]))
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_requests_queued_before_the_flush_runs_go_in_one_message() {
        let (link, mut router) = link_to_router().await;
        let (tag, envelope) = pair(0);
        assert!(link.batch.push(tag, envelope), "the first flushes");
        let mut flush = pin!(flush(link.clone()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(flush.as_mut().poll(&mut cx).is_pending(), "it yields first");
        for i in 1..3 {
            let (tag, envelope) = pair(i);
            assert!(!link.batch.push(tag, envelope), "queued behind the flush");
        }
        flush.await.unwrap();

        let frames = next_frames(&mut router).await;
        let expected: Vec<Bytes> = std::iter::once(Bytes::from_static(wire::REQ))
            .chain((0..3).flat_map(|i| <[Bytes; 2]>::from(pair(i))))
            .collect();
        assert_eq!(frames, expected);
        let stats = link.counters.snapshot();
        assert_eq!((stats.batched_requests, stats.batch_messages), (3, 1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_request_that_gathered_no_other_goes_as_a_plain_req() {
        let (link, mut router) = link_to_router().await;
        let (tag, envelope) = pair(7);
        assert!(link.batch.push(tag.clone(), envelope.clone()));
        flush(link.clone()).await.unwrap();
        assert_eq!(
            next_frames(&mut router).await,
            vec![Bytes::from_static(wire::REQ), tag, envelope]
        );
        assert_eq!(link.counters.snapshot().batch_messages, 0);
    }

    /// A flush dropped after it yielded (its call was cancelled) leaves the
    /// queue, its own request and those behind it, to the link's writer.
    #[tokio::test(flavor = "current_thread")]
    async fn a_flush_dropped_before_it_took_the_queue_leaves_it_to_the_writer() {
        let (link, mut router) = link_to_router().await;
        let writer = tokio::spawn(write_orphans(link.clone()));
        let (tag, envelope) = pair(0);
        assert!(link.batch.push(tag, envelope));
        let mut flush = Box::pin(flush(link.clone()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(flush.as_mut().poll(&mut cx).is_pending());
        let (tag, envelope) = pair(1);
        assert!(!link.batch.push(tag, envelope));
        drop(flush);

        let frames = next_frames(&mut router).await;
        assert_eq!(frames.len(), 5, "both requests in one REQ: {frames:?}");
        assert_eq!(
            (frames[1].as_ref(), frames[3].as_ref()),
            (&[0][..], &[1][..])
        );
        link.stop.raise();
        writer.await.unwrap();
    }
}
