//! Delivery tracking: the broker's copy of a handed-out request, kept until
//! the server settles it.

use std::future::{self, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rpc_core::Envelope;
use rpc_core::TransportError;
use rpc_core::transport::{Delivery, Settle, SettleFuture, Settlement};

use crate::queue::ServiceQueue;

/// Settles one delivery of a [`ServiceQueue`]. Holds the broker's copy of
/// the request, so a requeue or dead-letter has something to keep; dropped
/// unsettled, it requeues (as AMQP does when a channel closes).
pub(crate) struct MemSettle {
    queue: Arc<ServiceQueue>,
    envelope: Option<Envelope>,
}

/// Wraps a taken message into a tracked delivery.
pub(crate) fn tracked(queue: &Arc<ServiceQueue>, envelope: Envelope) -> Delivery {
    let copy = envelope.clone();
    let settle = MemSettle {
        queue: queue.clone(),
        envelope: Some(copy),
    };
    Delivery::new(envelope, Box::new(settle))
}

impl Settle for MemSettle {
    fn settle(mut self: Box<Self>, settlement: Settlement) -> SettleFuture {
        let Some(envelope) = self.envelope.take() else {
            return Box::pin(Settled);
        };
        match self.queue.settle(envelope, settlement) {
            // `Settled` is zero-sized, so boxing it does not allocate: the
            // common path of every request stays allocation-free here.
            Ok(()) => Box::pin(Settled),
            Err(error) => Box::pin(future::ready(Err(error))),
        }
    }
}

impl Drop for MemSettle {
    fn drop(&mut self) {
        if let Some(envelope) = self.envelope.take() {
            // The error only says the message was requeued or the broker
            // closed; a drop has nobody to tell.
            let _ = self.queue.settle(envelope, Settlement::Requeue);
        }
    }
}

/// A settlement that already succeeded.
struct Settled;

impl Future for Settled {
    type Output = Result<(), TransportError>;

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(Ok(()))
    }
}
