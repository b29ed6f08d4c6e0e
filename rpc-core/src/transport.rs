//! The contract between the runtimes and a message fabric.
//!
//! A transport moves [`Envelope`]s. It does not know about codecs, deadlines
//! or pending calls: those belong to the client and server runtimes. What it
//! owns is addressing, native message properties, delivery settlement
//! (ack / reject), fast "nobody serves that" detection and connection
//! recovery.
//!
//! The contract has two halves, and nothing in it routes on an envelope's
//! [`Kind`](crate::Kind):
//!
//! - **Client half.** [`Transport::open_inbox`] opens a reply inbox (a typed
//!   value of the transport's own: a reply queue, an inbox subject, a socket,
//!   a reply partition), [`Transport::send_request`] sends a request whose
//!   reply comes back to that inbox, and [`Transport::send_oneway`] sends a
//!   call nobody answers.
//! - **Server half.** [`Transport::serve`] yields [`Delivery`]s. Each carries
//!   the capability to answer it ([`Delivery::reply`]) and to settle it
//!   ([`Delivery::settle`]), through the transport's [`DeliveryHandle`]. The
//!   reply goes wherever the fabric says the request came from (a reply
//!   queue, a reply subject, the connection it arrived on, a reply topic),
//!   so no address is ever written to a string and parsed back in the same
//!   process.
//!
//! # The rules, and what each kind of fabric does for them
//!
//! Every rule below has a case in the conformance suite (`rpc-tests`'
//! `conformance` module), which is this contract's executable form; a new
//! transport runs the whole suite by implementing its `Fixture`.
//! `docs/transports.md` is the guide for transport authors.
//!
//! | rule | queue broker (AMQP) | subject broker (NATS) | brokerless sockets (ZeroMQ) | log (Kafka) |
//! |---|---|---|---|---|
//! | **competing consumers**: each request reaches exactly one of a service's `serve` streams | one queue per service, every server consumes it | a queue group per service | the client picks one connected server that has credit | one consumer group per service, partitions spread |
//! | **no route**: a request or oneway call to a service nobody serves fails with [`TransportError::NoRoute`] fast, never by timeout | `mandatory` publish returned by the broker | the "no responders" status | no server connected | metadata: the request topic does not exist |
//! | **reply**: [`Delivery::reply`] reaches the inbox of the client that sent the request, and no other | publish to the request's `reply_to` queue | publish to the request's reply subject | send on the connection the request came in on | produce to the client's reply topic/partition named in the request |
//! | **settlement**: [`Settlement::Ack`] forgets, `Requeue` redelivers, `DeadLetter` moves aside; `AckBeforeRun` has left the process when it resolves | basic.ack / basic.nack(requeue) / nack to the dead-letter exchange | core mode: nothing to settle; durable mode: JetStream ack / nak / term + dead-letter subject | nothing to settle: at-most-once by nature | commit the offset / do not commit / produce to `<service>.dlq` and commit |
//! | **abandon**: a delivery dropped unsettled goes back for another server | the channel's close redelivers it | durable mode: ack wait expires; core mode: lost | lost (the caller gets `ConnectionLost` or its deadline) | uncommitted: redelivered after a rebalance |
//! | **connection loss**: every open inbox gets [`ReplySink::connection_lost`] at once; the transport reconnects by itself and resumes every `serve` stream and inbox | yes | yes | per server: heartbeats tell a dead peer, calls it held fail | yes |
//! | **close**: after [`ReplySink::closed`] nothing more is delivered; `serve` streams end | yes | yes | yes | yes |
//!
//! A transport that cannot keep a rule says so in its crate docs and in
//! `docs/transports.md`; the fixture declares it (`Fabric` in the suite)
//! so the suite checks what the fabric promises instead.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_core::Stream;

use crate::envelope::Envelope;
use crate::error::TransportError;
use crate::name::Name;

pub mod support;

/// A connection to a message fabric, shared by clients and servers. Cheap to clone.
///
/// See the [module docs](self) for the rules every implementation keeps.
/// Dropping a future returned here abandons the operation; the envelope may
/// or may not have been sent.
pub trait Transport: Clone + Send + Sync + 'static {
    /// Requests for one served service.
    type Requests: Stream<Item = Delivery> + Send + Unpin + 'static;
    /// A reply inbox: where replies to this client's requests arrive, and
    /// the guard that keeps it open (dropping it closes the inbox).
    type Inbox: Send + Sync + 'static;

    /// Opens a reply inbox and pushes every reply that arrives there into
    /// `sink`, synchronously, from the transport's receive path: no extra
    /// task hop per reply.
    fn open_inbox(
        &self,
        sink: ReplySink,
    ) -> impl Future<Output = Result<Self::Inbox, TransportError>> + Send;

    /// Sends a request to the service its header names; its reply comes back
    /// to `inbox`. The transport writes the reply address it needs into the
    /// message itself. Resolves once the envelope is handed to the fabric; a
    /// broker's later word against it (a return: no queue; a nack; a lost
    /// connection before its confirm) fails the call through `inbox`, so
    /// the reply itself is what proves the broker took the request.
    fn send_request(
        &self,
        inbox: &Self::Inbox,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Sends a call nobody answers to the service its header names.
    fn send_oneway(
        &self,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Starts receiving the requests of a service. Several streams of one
    /// service, in this process or others, compete: each request goes to
    /// exactly one. Dropping the stream stops receiving; requests not yet
    /// yielded go back to the fabric for other servers (or are lost, for
    /// fabrics without queues).
    fn serve(
        &self,
        service: &ServiceSpec,
    ) -> impl Future<Output = Result<Self::Requests, TransportError>> + Send;

    /// Starts receiving the broadcasts to a service: requests sent with
    /// [`send_broadcast`](Self::send_broadcast) to its name or to
    /// [`EVERY_SERVICE`]. Unlike [`serve`](Self::serve), every stream gets
    /// its own copy (a fanout: on AMQP a queue of its own bound to the
    /// broadcast exchange; on memory, every subscriber). Servers answer
    /// introspection through it (docs/wire.md). The default says
    /// [`TransportError::Unsupported`]: servers then answer introspection
    /// only one at a time, through their request queue.
    fn serve_broadcast(
        &self,
        service: &ServiceSpec,
    ) -> impl Future<Output = Result<Self::Requests, TransportError>> + Send {
        let _ = service;
        std::future::ready(Err(TransportError::Unsupported {
            operation: "broadcast",
        }))
    }

    /// Sends a request to every `serve_broadcast` stream of the service its
    /// header names (of every service, for [`EVERY_SERVICE`]); each answer
    /// comes back to `inbox`. Nobody listening is not an error: no answer
    /// comes. The default says [`TransportError::Unsupported`].
    fn send_broadcast(
        &self,
        inbox: &Self::Inbox,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        let _ = (inbox, envelope);
        std::future::ready(Err(TransportError::Unsupported {
            operation: "broadcast",
        }))
    }
}

/// The service name a broadcast to every service is addressed to.
pub const EVERY_SERVICE: &str = "*";

/// What a server asks of the transport for one service.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServiceSpec {
    /// The service's wire name.
    pub name: Name,
    /// How many requests the server runs at once; transports with
    /// prefetch or credit (AMQP, JetStream, ZeroMQ) hold no more than this.
    pub concurrency: usize,
    /// Requests the transport refused before they became deliveries.
    refusals: RefusalCount,
}

impl ServiceSpec {
    /// A spec for `name` with the given concurrency.
    pub fn new(name: impl Into<Name>, concurrency: usize) -> Self {
        ServiceSpec {
            name: name.into(),
            concurrency: concurrency.max(1),
            refusals: RefusalCount::default(),
        }
    }

    /// Counts a request the transport refused itself, before dispatch (its
    /// headers or properties could not be read, so no [`Delivery`] could
    /// be made of it). The server's
    /// [`ServerStats::rejected`](crate::ServerStats::rejected) includes
    /// these, so it counts every request the server did not run, whoever
    /// refused it. Clones of a spec share one count.
    pub fn refused(&self) {
        self.refusals.add();
    }

    /// The count [`refused`](Self::refused) adds to, shared with the
    /// server's stats.
    pub(crate) fn refusals(&self) -> RefusalCount {
        self.refusals.clone()
    }
}

/// A count shared by a [`ServiceSpec`] (and its clones, held by the
/// transport) and the server's stats.
#[derive(Clone, Debug, Default)]
pub(crate) struct RefusalCount(Arc<AtomicU64>);

impl RefusalCount {
    fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The requests counted so far.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
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
    /// One call will get no reply: the peer that held it died (a
    /// brokerless fabric loses calls per server, not per connection). The
    /// default fails every call, as [`connection_lost`](Self::connection_lost)
    /// does, which is correct if coarse.
    fn call_lost(&self, correlation_id: u64) {
        let _ = correlation_id;
        self.connection_lost();
    }
    /// The transport closed for good.
    fn closed(&self);
    /// A reply for the call `correlation_id` arrived but cannot be read (no
    /// content type, an unknown status): fail that one call now with
    /// `error` instead of leaving it to its deadline. The default drops it
    /// (the call then ends by its deadline).
    fn fail(&self, correlation_id: u64, error: crate::RpcError) {
        let _ = (correlation_id, error);
    }
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

    /// The call with this correlation id will get no reply.
    pub fn call_lost(&self, correlation_id: u64) {
        self.0.call_lost(correlation_id)
    }

    /// The transport closed for good.
    pub fn closed(&self) {
        self.0.closed()
    }

    /// A reply for `correlation_id` arrived unreadable: fail that call.
    pub fn fail(&self, correlation_id: u64, error: crate::RpcError) {
        self.0.fail(correlation_id, error)
    }
}

impl fmt::Debug for ReplySink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplySink")
    }
}

/// A received request, the capability to answer it, and the right to
/// settle it, once.
///
/// Answer it with [`reply`](Delivery::reply), settle it with
/// [`settle`](Delivery::settle). Dropped unsettled, it goes back to the
/// fabric through [`DeliveryHandle::abandon`]: the memory transport
/// requeues it at once, AMQP redelivers it when the channel closes.
///
/// The delivery owns its envelope, and lends it to the transport when it
/// replies or settles: a fabric that keeps no copy of its own (the memory
/// transport) copies it only to requeue or dead-letter it.
pub struct Delivery {
    envelope: Envelope,
    handle: Option<Handle>,
    /// Tracked by the fabric and not settled yet.
    unsettled: bool,
    /// The fabric may have handed out this message, or a copy of it, before.
    maybe_redelivered: bool,
    /// The handle may settle it for good ([`DeliveryHandle::settle_for_good`]).
    final_settlement: bool,
}

impl Delivery {
    /// A delivery the fabric tracks: answered and settled through `handle`.
    pub fn new(envelope: Envelope, handle: Box<dyn DeliveryHandle>) -> Self {
        Delivery {
            envelope,
            handle: Some(Handle::Owned(handle)),
            unsettled: true,
            maybe_redelivered: true,
            final_settlement: false,
        }
    }

    /// A delivery the fabric tracks, answered and settled through a handle
    /// it shares with other deliveries: for a fabric whose handle needs
    /// nothing of one delivery (the memory transport's is its queue), so
    /// a delivery costs a reference count, not an allocation.
    pub fn shared(envelope: Envelope, handle: Arc<dyn DeliveryHandle>) -> Self {
        Delivery {
            envelope,
            handle: Some(Handle::Shared(handle)),
            unsettled: true,
            maybe_redelivered: true,
            final_settlement: false,
        }
    }

    /// A delivery the fabric does not track (settling it does nothing), still
    /// answered through `handle`: a fabric without acknowledgements.
    pub fn untracked(envelope: Envelope, handle: Box<dyn DeliveryHandle>) -> Self {
        Delivery {
            envelope,
            handle: Some(Handle::Owned(handle)),
            unsettled: false,
            maybe_redelivered: true,
            final_settlement: false,
        }
    }

    /// A request built in this process, with nobody to answer and nothing to
    /// settle (a handler called directly, in tests).
    pub fn detached(envelope: Envelope) -> Self {
        Delivery {
            envelope,
            handle: None,
            unsettled: false,
            maybe_redelivered: true,
            final_settlement: false,
        }
    }

    /// Marks the delivery as the first the fabric makes of its message: it
    /// has handed out neither this message nor a copy of it before (not
    /// requeued, not redelivered after a lost connection, not duplicated).
    /// The server then does not look the request up in its replay cache,
    /// where it cannot be; it still keeps the answer, for a redelivery that
    /// may come later (unless the delivery can be settled for good:
    /// [`final_settlement`](Self::final_settlement)). Only a fabric that knows this for certain marks its
    /// deliveries (the memory transport does); unmarked, a delivery counts
    /// as possibly redelivered.
    pub fn first_delivery(mut self) -> Self {
        self.maybe_redelivered = false;
        self
    }

    /// Marks a delivery whose handle implements
    /// [`DeliveryHandle::settle_for_good`]: when the fabric can, at the
    /// moment of settling, promise not to hand the message out again, it
    /// settles it so. For a delivery that is also the
    /// [`first_delivery`](Self::first_delivery) of its message, the server
    /// then keeps no answer for a redelivery unless one can still come:
    /// after its reply is out it tries to settle the delivery for good, and
    /// keeps the answer (then settles as usual) only if the reply failed or
    /// the fabric would not promise. Mark only a delivery the fabric hands
    /// out again through its settlement alone (a requeue, a settlement that
    /// fails, or the delivery dropped unsettled), never while its reply is
    /// being sent. A delivery put back together with
    /// [`from_parts`](Self::from_parts) is unmarked.
    pub fn final_settlement(mut self) -> Self {
        self.final_settlement = true;
        self
    }

    /// Whether the server may skip keeping this delivery's answer: the
    /// fabric's first delivery of the message, settled for good when it can
    /// be ([`final_settlement`](Self::final_settlement)).
    pub(crate) fn answer_kept_only_if_needed(&self) -> bool {
        self.final_settlement && !self.maybe_redelivered && self.unsettled
    }

    /// Settles the delivery for good, if its fabric can promise now that it
    /// will not hand the message out again: `None`, with nothing done, when
    /// it cannot (or was not marked with
    /// [`final_settlement`](Self::final_settlement)); settle it as usual
    /// then.
    pub(crate) fn settle_for_good(&mut self, settlement: Settlement) -> Option<SettleFuture> {
        if !self.unsettled || !self.final_settlement {
            return None;
        }
        let handle = self.handle.as_ref()?;
        let settling = handle.get().settle_for_good(settlement, &self.envelope)?;
        self.unsettled = false;
        Some(settling)
    }

    /// Whether the fabric may have handed out this message, or a copy of
    /// it, before: true unless the transport marked it with
    /// [`first_delivery`](Self::first_delivery). A delivery put back
    /// together with [`from_parts`](Self::from_parts) counts as possibly
    /// redelivered.
    pub fn may_be_redelivered(&self) -> bool {
        self.maybe_redelivered
    }

    /// The request.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Whether it still needs settling: tracked by the fabric and not
    /// settled yet.
    pub fn is_tracked(&self) -> bool {
        self.unsettled
    }

    /// Sends `reply` back to whoever sent this request. The returned future
    /// owns what it needs.
    pub fn reply(&self, reply: Envelope) -> SendFuture {
        match &self.handle {
            Some(handle) => handle.get().reply(&self.envelope, reply),
            None => Box::pin(Settled),
        }
    }

    /// Settles the delivery. The returned future owns what it needs: the
    /// settlement is under way however long the delivery lives.
    pub fn settle(mut self, settlement: Settlement) -> SettleFuture {
        self.settle_keeping_envelope(settlement)
    }

    /// Settles the delivery now and keeps its envelope readable (for an ack
    /// before an at-most-once run) and answerable. Later settlements do
    /// nothing.
    pub fn settle_keeping_envelope(&mut self, settlement: Settlement) -> SettleFuture {
        match (&self.handle, std::mem::take(&mut self.unsettled)) {
            (Some(handle), true) => handle.get().settle(settlement, &self.envelope),
            _ => Box::pin(Settled),
        }
    }

    /// Takes the envelope out. A delivery still tracked is abandoned first
    /// (handed back to the fabric), as if it had been dropped.
    pub fn into_envelope(mut self) -> Envelope {
        self.abandon();
        std::mem::replace(&mut self.envelope, Envelope::empty())
    }

    /// Takes the delivery apart: its envelope, its handle, and whether it is
    /// still unsettled. Nothing is abandoned; for wrappers that put a
    /// delivery back together with [`Delivery::from_parts`].
    pub fn into_parts(mut self) -> (Envelope, Option<Box<dyn DeliveryHandle>>, bool) {
        let envelope = std::mem::replace(&mut self.envelope, Envelope::empty());
        let unsettled = std::mem::take(&mut self.unsettled);
        (envelope, self.handle.take().map(Handle::boxed), unsettled)
    }

    /// Puts a delivery back together from [`Delivery::into_parts`].
    pub fn from_parts(
        envelope: Envelope,
        handle: Option<Box<dyn DeliveryHandle>>,
        unsettled: bool,
    ) -> Self {
        Delivery {
            envelope,
            unsettled: unsettled && handle.is_some(),
            handle: handle.map(Handle::Owned),
            maybe_redelivered: true,
            final_settlement: false,
        }
    }

    fn abandon(&mut self) {
        if std::mem::take(&mut self.unsettled)
            && let Some(handle) = &self.handle
        {
            handle.get().abandon(&self.envelope);
        }
    }
}

/// A delivery's handle: its own, or one it shares with other deliveries.
enum Handle {
    Owned(Box<dyn DeliveryHandle>),
    Shared(Arc<dyn DeliveryHandle>),
}

impl Handle {
    fn get(&self) -> &dyn DeliveryHandle {
        match self {
            Handle::Owned(handle) => handle.as_ref(),
            Handle::Shared(handle) => handle.as_ref(),
        }
    }

    /// The handle as [`Delivery::into_parts`] hands it out.
    fn boxed(self) -> Box<dyn DeliveryHandle> {
        match self {
            Handle::Owned(handle) => handle,
            Handle::Shared(handle) => Box::new(SharedHandle(handle)),
        }
    }
}

/// A shared handle, boxed for [`Delivery::into_parts`].
struct SharedHandle(Arc<dyn DeliveryHandle>);

impl DeliveryHandle for SharedHandle {
    fn reply(&self, request: &Envelope, reply: Envelope) -> SendFuture {
        self.0.reply(request, reply)
    }

    fn settle(&self, settlement: Settlement, delivered: &Envelope) -> SettleFuture {
        self.0.settle(settlement, delivered)
    }

    fn settle_for_good(
        &self,
        settlement: Settlement,
        delivered: &Envelope,
    ) -> Option<SettleFuture> {
        self.0.settle_for_good(settlement, delivered)
    }

    fn abandon(&self, delivered: &Envelope) {
        self.0.abandon(delivered)
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope", &self.envelope)
            .field("tracked", &self.is_tracked())
            .field("maybe_redelivered", &self.maybe_redelivered)
            .field("final_settlement", &self.final_settlement)
            .finish()
    }
}

/// A settlement or send with nothing to wait for. Zero-sized, so boxing it
/// as a [`SettleFuture`] does not allocate.
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

/// The boxed future a [`DeliveryHandle`] returns for a settlement.
pub type SettleFuture = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send>>;

/// The boxed future a [`DeliveryHandle`] returns for a reply.
pub type SendFuture = SettleFuture;

/// A transport's handle on one received request: how to answer it, how to
/// settle it.
///
/// [`Delivery`] lends the request's envelope to every call. It calls
/// [`settle`](DeliveryHandle::settle) or [`abandon`](DeliveryHandle::abandon)
/// at most once between them, and only for a tracked delivery;
/// [`reply`](DeliveryHandle::reply) may come before or after the settlement
/// (an at-most-once request is settled before it runs). `Sync` because a
/// handler borrows the request (and with it the delivery) across its awaits.
pub trait DeliveryHandle: Send + Sync + 'static {
    /// Sends `reply` to whoever sent `request`: the reply queue, subject,
    /// connection or topic the fabric received it with.
    fn reply(&self, request: &Envelope, reply: Envelope) -> SendFuture;

    /// Settles the delivery whose envelope is `delivered`.
    fn settle(&self, settlement: Settlement, delivered: &Envelope) -> SettleFuture;

    /// Settles the delivery whose envelope is `delivered` only if the
    /// fabric can promise, as it settles, never to hand the message out
    /// again (a memory broker whose connection is up acks for good; one
    /// that is down would requeue). Returns `None`, having done nothing,
    /// when it cannot; the default, for fabrics that never promise this.
    /// Called only for deliveries marked with
    /// [`Delivery::final_settlement`], in place of
    /// [`settle`](DeliveryHandle::settle), with `Ack` or `DeadLetter`.
    fn settle_for_good(
        &self,
        settlement: Settlement,
        delivered: &Envelope,
    ) -> Option<SettleFuture> {
        let _ = (settlement, delivered);
        None
    }

    /// The delivery was dropped unsettled. The default does nothing, for
    /// fabrics that redeliver what a consumer never settled (AMQP, when the
    /// channel closes); a fabric that keeps no copy of its deliveries
    /// requeues `delivered` here.
    fn abandon(&self, delivered: &Envelope) {
        let _ = delivered;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::codec::ContentType;
    use crate::envelope::Header;

    /// A handle that notes what each delivery asked of it.
    #[derive(Default)]
    struct Recording(Mutex<Vec<(u64, &'static str)>>);

    impl Recording {
        fn note(&self, envelope: &Envelope, what: &'static str) {
            let id = envelope.header.correlation_id;
            self.0.lock().unwrap().push((id, what));
        }
    }

    impl DeliveryHandle for Recording {
        fn reply(&self, request: &Envelope, _reply: Envelope) -> SendFuture {
            self.note(request, "reply");
            Box::pin(Settled)
        }

        fn settle(&self, _settlement: Settlement, delivered: &Envelope) -> SettleFuture {
            self.note(delivered, "settle");
            Box::pin(Settled)
        }

        fn abandon(&self, delivered: &Envelope) {
            self.note(delivered, "abandon");
        }
    }

    fn envelope(id: u64) -> Envelope {
        let mut header = Header::request("s".into(), "m".into(), ContentType::Json);
        header.correlation_id = id;
        Envelope {
            header,
            body: Vec::new(),
        }
    }

    #[test]
    fn deliveries_sharing_a_handle_each_reach_it_with_their_own_envelope() {
        let handle = Arc::new(Recording::default());
        let first = Delivery::shared(envelope(1), handle.clone());
        let second = Delivery::shared(envelope(2), handle.clone());
        assert!(first.is_tracked() && first.may_be_redelivered());
        drop(first.reply(envelope(1)));
        drop(first.settle(Settlement::Ack));
        // Taken apart and put back together, it still reaches the handle.
        let (taken, boxed, unsettled) = second.into_parts();
        drop(Delivery::from_parts(taken, boxed, unsettled));
        assert_eq!(
            *handle.0.lock().unwrap(),
            [(1, "reply"), (1, "settle"), (2, "abandon")]
        );
    }
}
