//! Delivery tracking and replies: a handed-out request counts as unacked
//! until the server settles it, and its reply goes to the inbox it names.

use std::future;
use std::sync::Arc;

use rpc_core::Envelope;
use rpc_core::transport::{
    Delivery, DeliveryHandle, SendFuture, SettleFuture, Settled, Settlement,
};

use crate::broker::Broker;
use crate::last_inbox::LastInbox;
use crate::queue::{Queued, ServiceQueue};

/// Answers and settles one delivery of a [`ServiceQueue`].
///
/// It keeps no copy of the request: the delivery lends its envelope when it
/// is answered, settled or abandoned, and the queue copies it only to
/// requeue or dead-letter it. An abandoned delivery (dropped unsettled) is
/// requeued, as AMQP does when a channel closes.
pub(crate) struct MemDelivery {
    broker: Arc<Broker>,
    queue: Arc<ServiceQueue>,
    /// The inbox this stream's deliveries replied to last.
    last_inbox: LastInbox,
}

impl MemDelivery {
    /// The handle every delivery of `queue` shares: it needs nothing of
    /// one delivery but the envelope the delivery lends it.
    pub(crate) fn of(broker: Arc<Broker>, queue: Arc<ServiceQueue>) -> Arc<Self> {
        Arc::new(MemDelivery {
            broker,
            queue,
            last_inbox: LastInbox::default(),
        })
    }
}

/// A delivery of `queued` through `handle`, tracked until settled; marked
/// as the message's first unless it may have been handed out before
/// (requeued, or a copy made by a fault), so the server looks for an
/// answer only where one can be.
///
/// Every delivery can be settled for good: while the connection is up, an
/// ack or a dead-letter is final, and only then does the queue promise it.
pub(crate) fn tracked(handle: &Arc<MemDelivery>, queued: Queued) -> Delivery {
    let delivery = Delivery::shared(queued.envelope, handle.clone()).final_settlement();
    if queued.maybe_redelivered {
        delivery
    } else {
        delivery.first_delivery()
    }
}

impl DeliveryHandle for MemDelivery {
    fn reply(&self, request: &Envelope, reply: Envelope) -> SendFuture {
        // A request without an inbox (sent as oneway, or by a foreign
        // client that wants no answer) gets none.
        let Some(to) = &request.header.reply_to else {
            return Box::pin(Settled);
        };
        match self
            .broker
            .send_reply_via(to, reply, Some(&self.last_inbox))
        {
            Ok(()) => Box::pin(Settled),
            Err(error) => Box::pin(future::ready(Err(error))),
        }
    }

    fn settle(&self, settlement: Settlement, delivered: &Envelope) -> SettleFuture {
        match self.queue.settle(delivered, settlement) {
            Ok(()) => Box::pin(Settled),
            Err(error) => Box::pin(future::ready(Err(error))),
        }
    }

    fn settle_for_good(
        &self,
        settlement: Settlement,
        delivered: &Envelope,
    ) -> Option<SettleFuture> {
        self.queue
            .settle_for_good(delivered, settlement)
            .then(|| Box::pin(Settled) as SettleFuture)
    }

    fn abandon(&self, delivered: &Envelope) {
        let _ = self.queue.settle(delivered, Settlement::Requeue);
    }
}
