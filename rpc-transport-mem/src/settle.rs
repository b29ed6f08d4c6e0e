//! Delivery tracking: a handed-out request counts as unacked until the
//! server settles it.

use std::future;
use std::sync::Arc;

use rpc_core::Envelope;
use rpc_core::transport::{Delivery, Settle, SettleFuture, Settled, Settlement};

use crate::queue::ServiceQueue;

/// Settles one delivery of a [`ServiceQueue`].
///
/// It keeps no copy of the request: the delivery lends its envelope when it
/// is settled or abandoned, and the queue copies it only to requeue or
/// dead-letter it. An abandoned delivery (dropped unsettled) is requeued, as
/// AMQP does when a channel closes.
pub(crate) struct MemSettle {
    queue: Arc<ServiceQueue>,
}

/// Wraps a taken message into a tracked delivery.
pub(crate) fn tracked(queue: &Arc<ServiceQueue>, envelope: Envelope) -> Delivery {
    let settle = MemSettle {
        queue: queue.clone(),
    };
    Delivery::new(envelope, Box::new(settle))
}

impl Settle for MemSettle {
    fn settle(self: Box<Self>, settlement: Settlement, delivered: &Envelope) -> SettleFuture {
        match self.queue.settle(delivered, settlement) {
            // `Settled` is zero-sized, so boxing it does not allocate: the
            // common path of every request stays allocation-free here.
            Ok(()) => Box::pin(Settled),
            Err(error) => Box::pin(future::ready(Err(error))),
        }
    }

    fn abandon(self: Box<Self>, delivered: &Envelope) {
        // The error only says the message was requeued or the broker
        // closed; an abandoned delivery has nobody to tell.
        let _ = self.queue.settle(delivered, Settlement::Requeue);
    }
}
