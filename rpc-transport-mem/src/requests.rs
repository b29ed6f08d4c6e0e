//! The stream of requests one `serve` call receives.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use rpc_core::transport::Delivery;

use crate::broker::Broker;
use crate::connection::Link;
use crate::queue::{ServiceQueue, Take};
use crate::settle::{self, MemDelivery};

/// Requests for one served service: one competing consumer of its queue.
///
/// Receives only when polled, so a server that polls only when it has a
/// free slot never holds more than it can run. Pauses (stays pending) while
/// the transport is disconnected and ends when it is closed. Dropping it
/// leaves unreceived requests queued for the service's other consumers;
/// deliveries already handed out stay valid.
pub struct MemRequests {
    queue: Arc<ServiceQueue>,
    /// Shared by every delivery this stream yields.
    handle: Arc<MemDelivery>,
    consumer: u64,
}

impl MemRequests {
    pub(crate) fn new(broker: Arc<Broker>, queue: Arc<ServiceQueue>) -> Self {
        let consumer = queue.add_consumer();
        MemRequests {
            handle: MemDelivery::of(broker, queue.clone()),
            queue,
            consumer,
        }
    }

    /// The service this stream consumes.
    pub fn service(&self) -> &str {
        self.queue.name()
    }
}

impl Stream for MemRequests {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let this = self.get_mut();
        let waker = cx.waker();
        match this.queue.connection().park_unless_up(waker) {
            Link::Up => {}
            Link::Down => return Poll::Pending,
            Link::Closed => return Poll::Ready(None),
        }
        match this.queue.take_or_wait(this.consumer, waker) {
            Take::Message(queued) => Poll::Ready(Some(settle::tracked(&this.handle, queued))),
            Take::Wait => Poll::Pending,
            Take::Closed => Poll::Ready(None),
        }
    }
}

impl Drop for MemRequests {
    fn drop(&mut self) {
        self.queue.remove_consumer(self.consumer);
    }
}

impl fmt::Debug for MemRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemRequests")
            .field("service", &self.service())
            .field("consumer", &self.consumer)
            .finish()
    }
}
