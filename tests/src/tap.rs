//! A transport wrapper that watches and perturbs traffic, for any transport.
//!
//! The conformance suite needs a few faults on every transport (duplicated
//! replies, requests that arrive late), and a view of what was sent (which
//! codec a reply used). Wrapping the transport gives both without asking each
//! transport for its own fault API.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use rpc_core::transport::{SendFuture, SettleFuture};
use rpc_core::{
    ContentType, Delivery, DeliveryHandle, Envelope, Kind, ReplySink, ServiceSpec, Settlement,
    Transport, TransportError,
};
use tokio::sync::Notify;

/// Wraps a transport; see the module docs.
#[derive(Clone, Debug)]
pub struct Tap<T> {
    inner: T,
    state: Arc<TapState>,
}

#[derive(Debug, Default)]
struct TapState {
    duplicate_replies: AtomicBool,
    failing_replies: AtomicU64,
    request_delay: Mutex<Option<Duration>>,
    sent: Mutex<Vec<(Kind, ContentType)>>,
    delayed_sent: AtomicU64,
    delayed_done: Notify,
    stall_requests: AtomicBool,
    stalled: AtomicU64,
    stalled_changed: Notify,
    release_stalled: Notify,
}

impl<T: Transport> Tap<T> {
    /// Wraps `inner`, passing everything through unchanged.
    pub fn new(inner: T) -> Self {
        Tap {
            inner,
            state: Arc::default(),
        }
    }

    /// Sends every reply twice.
    pub fn duplicate_replies(&self, on: bool) {
        self.state.duplicate_replies.store(on, Ordering::SeqCst);
    }

    /// Fails the sends of the next `n` replies with `ConnectionLost`, as a
    /// link that dropped between the handler's end and its reply would.
    pub fn fail_replies(&self, n: u64) {
        self.state.failing_replies.store(n, Ordering::SeqCst);
    }

    /// Holds every request back for `delay` before sending it, in a task
    /// of its own, so a caller that gives up does not cancel the send.
    pub fn delay_requests(&self, delay: Option<Duration>) {
        *self.state.request_delay.lock().unwrap() = delay;
    }

    /// Waits until `n` delayed requests have been handed to the inner transport.
    pub async fn wait_delayed_sent(&self, n: u64) {
        loop {
            let done = self.state.delayed_done.notified();
            if self.state.delayed_sent.load(Ordering::SeqCst) >= n {
                return;
            }
            done.await;
        }
    }

    /// Stalls the send of every request from now on until
    /// [`release_stalled`](Tap::release_stalled), then fails it with
    /// `NotSent`, as a transport that waited for a connection in vain does.
    pub fn stall_requests(&self) {
        self.state.stall_requests.store(true, Ordering::SeqCst);
    }

    /// Waits until `n` request sends are stalled.
    pub async fn wait_stalled(&self, n: u64) {
        loop {
            let changed = self.state.stalled_changed.notified();
            if self.state.stalled.load(Ordering::SeqCst) >= n {
                return;
            }
            changed.await;
        }
    }

    /// Ends every stalled send with `NotSent`.
    pub fn release_stalled(&self) {
        self.state.release_stalled.notify_waiters();
    }

    /// The kind and codec of every envelope sent so far.
    pub fn sent(&self) -> Vec<(Kind, ContentType)> {
        self.state.sent.lock().unwrap().clone()
    }
}

impl<T: Transport> Transport for Tap<T> {
    type Requests = TapRequests<T::Requests>;
    /// Shared, so a delayed request can be sent from a task of its own.
    type Inbox = Arc<T::Inbox>;

    fn open_inbox(
        &self,
        sink: ReplySink,
    ) -> impl Future<Output = Result<Self::Inbox, TransportError>> + Send {
        let opening = self.inner.open_inbox(sink);
        async move { opening.await.map(Arc::new) }
    }

    fn send_request(
        &self,
        inbox: &Self::Inbox,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.state.record(&envelope);
        let delay = *self.state.request_delay.lock().unwrap();
        let stall = self.state.stall_requests.load(Ordering::SeqCst);
        let (inner, state, inbox) = (self.inner.clone(), self.state.clone(), inbox.clone());
        async move {
            if stall {
                let released = state.release_stalled.notified();
                state.stalled.fetch_add(1, Ordering::SeqCst);
                state.stalled_changed.notify_waiters();
                released.await;
                return Err(TransportError::NotSent);
            }
            match delay {
                Some(delay) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = inner.send_request(&inbox, envelope).await;
                        state.delayed_sent.fetch_add(1, Ordering::SeqCst);
                        state.delayed_done.notify_waiters();
                    });
                    Ok(())
                }
                None => inner.send_request(&inbox, envelope).await,
            }
        }
    }

    fn send_oneway(
        &self,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.state.record(&envelope);
        self.inner.send_oneway(envelope)
    }

    fn serve(
        &self,
        service: &ServiceSpec,
    ) -> impl Future<Output = Result<Self::Requests, TransportError>> + Send {
        let (serving, state) = (self.inner.serve(service), self.state.clone());
        async move {
            Ok(TapRequests {
                inner: serving.await?,
                state,
            })
        }
    }
}

impl TapState {
    fn record(&self, envelope: &Envelope) {
        let header = &envelope.header;
        self.sent
            .lock()
            .unwrap()
            .push((header.kind, header.content_type));
    }
}

/// The request stream of a [`Tap`]: each delivery answers through the tap.
#[derive(Debug)]
pub struct TapRequests<R> {
    inner: R,
    state: Arc<TapState>,
}

impl<R: Stream<Item = Delivery> + Unpin> Stream for TapRequests<R> {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let state = self.state.clone();
        Pin::new(&mut self.inner).poll_next(cx).map(|delivery| {
            delivery.map(|delivery| {
                let (envelope, handle, unsettled) = delivery.into_parts();
                let handle = handle.map(|inner| {
                    Box::new(TapHandle {
                        inner,
                        state: state.clone(),
                    }) as Box<dyn DeliveryHandle>
                });
                Delivery::from_parts(envelope, handle, unsettled)
            })
        })
    }
}

/// Watches (and duplicates, when asked) the replies of one delivery.
struct TapHandle {
    inner: Box<dyn DeliveryHandle>,
    state: Arc<TapState>,
}

impl DeliveryHandle for TapHandle {
    fn reply(&self, request: &Envelope, reply: Envelope) -> SendFuture {
        let failing = &self.state.failing_replies;
        if failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Box::pin(async { Err(TransportError::ConnectionLost) });
        }
        self.state.record(&reply);
        if !self.state.duplicate_replies.load(Ordering::SeqCst) {
            return self.inner.reply(request, reply);
        }
        let first = self.inner.reply(request, reply.clone());
        let second = self.inner.reply(request, reply);
        Box::pin(async move {
            first.await?;
            second.await
        })
    }

    fn settle(&self, settlement: Settlement, delivered: &Envelope) -> SettleFuture {
        self.inner.settle(settlement, delivered)
    }

    fn abandon(&self, delivered: &Envelope) {
        self.inner.abandon(delivered)
    }
}
