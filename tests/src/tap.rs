//! A transport wrapper that watches and perturbs traffic, for any transport.
//!
//! The conformance suite needs a few faults on every transport (duplicated
//! replies, requests that arrive late), and a view of what was sent (which
//! codec a reply used). Wrapping the transport gives both without asking each
//! transport for its own fault API.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{
    Address, ContentType, Envelope, Kind, ReplySink, ServiceSpec, Transport, TransportError,
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
    request_delay: Mutex<Option<Duration>>,
    sent: Mutex<Vec<(Kind, ContentType)>>,
    delayed_sent: AtomicU64,
    delayed_done: Notify,
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

    /// The kind and codec of every envelope sent so far.
    pub fn sent(&self) -> Vec<(Kind, ContentType)> {
        self.state.sent.lock().unwrap().clone()
    }
}

impl<T: Transport> Transport for Tap<T> {
    type Requests = T::Requests;
    type Inbox = T::Inbox;

    fn open_inbox(
        &self,
        sink: ReplySink,
    ) -> impl Future<Output = Result<(Address, Self::Inbox), TransportError>> + Send {
        self.inner.open_inbox(sink)
    }

    fn send(
        &self,
        to: &Address,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        let (inner, state, to) = (self.inner.clone(), self.state.clone(), to.clone());
        async move {
            let header = &envelope.header;
            state
                .sent
                .lock()
                .unwrap()
                .push((header.kind, header.content_type));
            let delay = *state.request_delay.lock().unwrap();
            match (header.kind, delay) {
                (Kind::Request, Some(delay)) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = inner.send(&to, envelope).await;
                        state.delayed_sent.fetch_add(1, Ordering::SeqCst);
                        state.delayed_done.notify_waiters();
                    });
                    Ok(())
                }
                (Kind::Reply, _) if state.duplicate_replies.load(Ordering::SeqCst) => {
                    inner.send(&to, envelope.clone()).await?;
                    inner.send(&to, envelope).await
                }
                _ => inner.send(&to, envelope).await,
            }
        }
    }

    fn serve(
        &self,
        service: &ServiceSpec,
    ) -> impl Future<Output = Result<Self::Requests, TransportError>> + Send {
        self.inner.serve(service)
    }
}
