//! The contract between the runtimes and a message fabric.
//!
//! A transport moves [`Envelope`]s. It does not know about codecs, deadlines
//! or pending calls: those belong to the client and server runtimes. What it
//! owns is addressing, native message properties, delivery settlement
//! (ack / reject), fast "nobody serves that" detection and connection
//! recovery.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use futures_core::Stream;

use crate::envelope::Envelope;
use crate::error::TransportError;
use crate::name::{Address, Name};

/// A connection to a message fabric, shared by clients and servers. Cheap to clone.
///
/// # Contract
///
/// - **Requests.** [`serve`](Transport::serve) starts receiving the requests
///   of one service. Several `serve` streams of one service, in this process
///   or others, compete: each request goes to exactly one of them. Dropping
///   the stream stops receiving; requests not yet yielded go back to the
///   fabric for other servers (or are lost, for fabrics without queues).
/// - **Replies.** [`open_inbox`](Transport::open_inbox) opens a reply inbox and
///   pushes every envelope that arrives there into the given [`ReplySink`],
///   synchronously, from the transport's receive path: no extra task hop per
///   reply. The inbox lives as long as the returned guard.
/// - **Sending.** [`send`](Transport::send) resolves once the fabric has taken
///   the envelope (for brokers with confirms: once confirmed). Sending a
///   request or oneway call to a service that nobody serves fails with
///   [`TransportError::NoRoute`], fast, never by timeout.
/// - **Connection loss.** When the connection drops, the transport calls
///   [`ReplySink::connection_lost`] on every open inbox, so calls in flight
///   end at once, then reconnects on its own and resumes every `serve`
///   stream and inbox. A transport that cannot recover ends its streams and
///   calls [`ReplySink::closed`].
/// - **Cancellation.** Dropping a future returned here abandons the operation;
///   the envelope may or may not have been sent.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Requests for one served service.
    type Requests: Stream<Item = Delivery> + Send + Unpin + 'static;
    /// Keeps a reply inbox open; dropping it closes the inbox.
    type Inbox: Send + Sync + 'static;

    /// Opens a reply inbox. Its address goes into every request's `reply_to`.
    fn open_inbox(
        &self,
        sink: ReplySink,
    ) -> impl Future<Output = Result<(Address, Self::Inbox), TransportError>> + Send;

    /// Sends an envelope to a service (requests, oneway calls) or to a reply
    /// address (replies). The envelope's kind tells which.
    fn send(
        &self,
        to: &Address,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Starts receiving the requests of a service.
    fn serve(
        &self,
        service: &ServiceSpec,
    ) -> impl Future<Output = Result<Self::Requests, TransportError>> + Send;
}

/// What a server asks of the transport for one service.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServiceSpec {
    /// The service's wire name.
    pub name: Name,
    /// How many requests the server runs at once; transports with
    /// prefetch (AMQP) set it to this.
    pub concurrency: usize,
}

impl ServiceSpec {
    /// A spec for `name` with the given concurrency.
    pub fn new(name: impl Into<Name>, concurrency: usize) -> Self {
        ServiceSpec {
            name: name.into(),
            concurrency: concurrency.max(1),
        }
    }

    /// The service's address (where requests to it are sent).
    pub fn address(&self) -> Address {
        Address::new(self.name.clone())
    }
}

/// Where a transport pushes what arrives at a reply inbox.
///
/// The client runtime implements this over its pending-call table.
/// Implementations must be fast and must not block: transports call them
/// from their receive path.
pub trait ReplyHandler: Send + Sync + 'static {
    /// An envelope arrived at the inbox. Unknown or duplicate replies are
    /// the handler's to drop (and count).
    fn deliver(&self, envelope: Envelope);
    /// The connection dropped: calls in flight will get no reply.
    fn connection_lost(&self);
    /// The transport closed for good.
    fn closed(&self);
}

/// A shared handle to a [`ReplyHandler`], handed to [`Transport::open_inbox`].
#[derive(Clone)]
pub struct ReplySink(Arc<dyn ReplyHandler>);

impl ReplySink {
    /// A sink that forwards to `handler`.
    pub fn new(handler: Arc<dyn ReplyHandler>) -> Self {
        ReplySink(handler)
    }

    /// An envelope arrived at the inbox.
    pub fn deliver(&self, envelope: Envelope) {
        self.0.deliver(envelope)
    }

    /// The connection dropped.
    pub fn connection_lost(&self) {
        self.0.connection_lost()
    }

    /// The transport closed for good.
    pub fn closed(&self) {
        self.0.closed()
    }
}

impl fmt::Debug for ReplySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplySink")
    }
}

/// A received request and the right to settle it, once.
///
/// Settle it with [`settle`](Delivery::settle). Dropped unsettled, it goes
/// back to the fabric through [`Settle::abandon`]: the memory transport
/// requeues it at once, AMQP redelivers it when the channel closes.
///
/// The delivery owns its envelope until it is settled, and settling lends
/// the envelope to the transport: a fabric that keeps no copy of its own
/// (the memory transport) copies it only to requeue or dead-letter it.
pub struct Delivery {
    envelope: Envelope,
    settle: Option<Box<dyn Settle>>,
}

impl Delivery {
    /// A delivery that needs settling through `settle`.
    pub fn new(envelope: Envelope, settle: Box<dyn Settle>) -> Self {
        Delivery {
            envelope,
            settle: Some(settle),
        }
    }

    /// A delivery the fabric does not track (settling it does nothing).
    pub fn unacknowledged(envelope: Envelope) -> Self {
        Delivery {
            envelope,
            settle: None,
        }
    }

    /// The request.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Whether it still needs settling: tracked by the fabric and not
    /// settled yet.
    pub fn is_tracked(&self) -> bool {
        self.settle.is_some()
    }

    /// Settles the delivery. The returned future owns what it needs: the
    /// settlement is under way however long the delivery lives.
    pub fn settle(mut self, settlement: Settlement) -> SettleFuture {
        self.settle_keeping_envelope(settlement)
    }

    /// Settles the delivery now and keeps its envelope readable (for an ack
    /// before an at-most-once run). Later settlements do nothing.
    pub fn settle_keeping_envelope(&mut self, settlement: Settlement) -> SettleFuture {
        match self.settle.take() {
            Some(settle) => settle.settle(settlement, &self.envelope),
            None => Box::pin(Settled),
        }
    }

    /// Takes the envelope out. A delivery still tracked is abandoned first
    /// (handed back to the fabric), as if it had been dropped.
    pub fn into_envelope(mut self) -> Envelope {
        if let Some(settle) = self.settle.take() {
            settle.abandon(&self.envelope);
        }
        std::mem::replace(&mut self.envelope, Envelope::empty())
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle.abandon(&self.envelope);
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("tracked", &self.is_tracked())
            .finish()
    }
}

/// A settlement with nothing to wait for. Zero-sized, so boxing it as a
/// [`SettleFuture`] does not allocate.
#[derive(Debug)]
pub struct Settled;

impl Future for Settled {
    type Output = Result<(), TransportError>;

    fn poll(self: Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// How a delivery is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Settlement {
    /// Done with; the fabric forgets it.
    Ack,
    /// Done with, before the work it asks for starts (at-most-once): the
    /// fabric forgets it, and the settlement has left this process when the
    /// future resolves, so a crash after it cannot bring the delivery back.
    /// Plain [`Ack`](Settlement::Ack) may instead be queued and sent later.
    AckBeforeRun,
    /// Give it back to be delivered again (to this or another server).
    Requeue,
    /// Refuse it for good: it goes to the dead-letter queue where there is one.
    DeadLetter,
}

/// The boxed future a [`Settle`] implementation returns.
pub type SettleFuture = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send>>;

/// A transport's way of settling one delivery.
///
/// [`Delivery`] calls exactly one of the two methods, exactly once, and
/// lends the delivery's envelope to it. `Sync` because a handler borrows
/// the request (and with it the delivery) across its awaits.
pub trait Settle: Send + Sync + 'static {
    /// Settles the delivery whose envelope is `delivered`.
    fn settle(self: Box<Self>, settlement: Settlement, delivered: &Envelope) -> SettleFuture;

    /// The delivery was dropped unsettled. The default does nothing, for
    /// fabrics that redeliver what a consumer never settled (AMQP, when the
    /// channel closes); a fabric that keeps no copy of its deliveries
    /// requeues `delivered` here.
    fn abandon(self: Box<Self>, delivered: &Envelope) {
        let _ = delivered;
    }
}
