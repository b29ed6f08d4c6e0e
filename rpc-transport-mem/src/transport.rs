//! [`MemTransport`]: the `Transport` implementation and its inspection API.

use std::fmt;
use std::future::{self, Future};
use std::sync::Arc;

use rpc_core::TransportError;
use rpc_core::transport::{ReplySink, ServiceSpec};
use rpc_core::{Envelope, FrameLimits, Transport};

use crate::broker::{Broker, Config};
use crate::connection::Link;
use crate::faults::{Direction, Faults};
use crate::inbox::MemInbox;
use crate::requests::MemRequests;

/// An in-process broker. Cheap to clone: clones share one broker, and each
/// [`MemTransport::new`] is a broker of its own, isolated from every other.
///
/// See the [crate docs](crate) for routing, settlement and faults.
#[derive(Clone)]
pub struct MemTransport {
    broker: Arc<Broker>,
}

impl MemTransport {
    /// A new, empty broker with default options.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// Options for a new broker.
    pub fn builder() -> MemTransportBuilder {
        MemTransportBuilder {
            max_message_size: FrameLimits::default().max_message_size,
            frame_round_trip: false,
        }
    }

    /// The fault-injection handle of this broker.
    pub fn faults(&self) -> Faults {
        Faults {
            broker: self.broker.clone(),
        }
    }

    /// Closes the broker for good, for every clone: open inboxes' sinks get
    /// [`closed`](ReplySink::closed), request streams end, and every later
    /// operation fails with `TransportError::Closed`.
    pub fn close(&self) {
        if self.broker.connection.set(Link::Closed) == Link::Closed {
            return;
        }
        for queue in self.broker.queues() {
            queue.wake_all();
        }
        for sink in self.broker.sinks() {
            sink.closed();
        }
    }

    /// Requests waiting in `service`'s queue (not counting those handed out
    /// and not settled yet; see [`unacked`](Self::unacked)).
    pub fn queue_depth(&self, service: &str) -> usize {
        self.broker.queue(service).map_or(0, |q| q.depth())
    }

    /// Live `serve` streams of `service`.
    pub fn consumers(&self, service: &str) -> usize {
        self.broker.queue(service).map_or(0, |q| q.consumers())
    }

    /// Deliveries of `service` handed out and not settled yet.
    pub fn unacked(&self, service: &str) -> usize {
        self.broker.queue(service).map_or(0, |q| q.unacked())
    }

    /// Copies of the requests of `service` settled with
    /// [`Settlement::DeadLetter`](rpc_core::Settlement::DeadLetter), oldest first.
    pub fn dead_letters(&self, service: &str) -> Vec<Envelope> {
        self.broker
            .queue(service)
            .map_or_else(Vec::new, |q| q.dead_letters())
    }

    /// Removes and returns the dead letters of `service`.
    pub fn take_dead_letters(&self, service: &str) -> Vec<Envelope> {
        self.broker
            .queue(service)
            .map_or_else(Vec::new, |q| q.take_dead_letters())
    }

    /// Puts a request or oneway call on the fabric as a foreign client
    /// would: to the service its header names, with whatever reply address
    /// it carries. For tests of the fabric itself; programs call through a
    /// [`Client`](rpc_core::Client).
    pub fn publish(&self, envelope: Envelope) -> Result<(), TransportError> {
        self.broker.send_call(envelope)
    }

    /// Puts a reply on the fabric as a foreign server would: to the inbox at
    /// `to`. For tests of the fabric itself; servers answer through their
    /// [`Delivery`](rpc_core::Delivery).
    pub fn publish_reply(
        &self,
        to: &rpc_core::Address,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.broker.send_reply(to, envelope)
    }

    /// Reply inboxes open right now.
    pub fn open_inboxes(&self) -> usize {
        self.broker.open_inboxes()
    }

    /// Counters of this broker.
    pub fn stats(&self) -> MemStats {
        MemStats {
            undeliverable_replies: self.broker.undeliverable_replies(),
            dropped_requests: self.broker.faults.dropped(Direction::Requests),
            dropped_replies: self.broker.faults.dropped(Direction::Replies),
        }
    }
}

impl Default for MemTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemTransport")
            .field("link", &self.broker.connection.link())
            .field("open_inboxes", &self.open_inboxes())
            .finish_non_exhaustive()
    }
}

impl Transport for MemTransport {
    type Requests = MemRequests;
    type Inbox = MemInbox;

    async fn open_inbox(&self, sink: ReplySink) -> Result<MemInbox, TransportError> {
        let address = self.broker.open_inbox(sink)?;
        Ok(MemInbox::new(self.broker.clone(), address))
    }

    /// Routes the envelope at once, before returning: the returned future
    /// only carries the result. Keeping the envelope out of the future's
    /// state saves copying it in and out on every call. Inlined into the
    /// caller, with the routing, for the same reason.
    #[inline]
    fn send_request(
        &self,
        inbox: &MemInbox,
        mut envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        // This broker authenticates nobody, so nothing under the reserved
        // keys (the caller, above all) is taken from a sender.
        envelope.header.metadata.remove_reserved();
        // The inbox's name travels in the message, as a broker's reply-to
        // property does; the server answers it through its delivery.
        envelope.header.reply_to = Some(inbox.address().clone());
        future::ready(self.broker.send_call(envelope))
    }

    /// Routes the envelope at once, as [`send_request`](Self::send_request) does.
    fn send_oneway(
        &self,
        mut envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        envelope.header.metadata.remove_reserved();
        envelope.header.reply_to = None;
        future::ready(self.broker.send_call(envelope))
    }

    async fn serve(&self, service: &ServiceSpec) -> Result<MemRequests, TransportError> {
        self.broker.connection.check()?;
        let queue = self.broker.declare(&service.name);
        Ok(MemRequests::new(self.broker.clone(), queue))
    }

    /// Every stream has a private queue; a broadcast is copied into each.
    async fn serve_broadcast(&self, service: &ServiceSpec) -> Result<MemRequests, TransportError> {
        self.broker.connection.check()?;
        let broadcasts = &self.broker.broadcasts;
        let queue = self.broker.declare(&broadcasts.queue_name(&service.name));
        let requests = MemRequests::new(self.broker.clone(), queue.clone());
        broadcasts.subscribe(service.name.clone(), queue);
        Ok(requests)
    }

    async fn send_broadcast(
        &self,
        inbox: &MemInbox,
        mut envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.broker.connection.check()?;
        envelope.header.metadata.remove_reserved();
        envelope.header.reply_to = Some(inbox.address().clone());
        self.broker.broadcasts.send(&envelope);
        Ok(())
    }
}

/// Options for a [`MemTransport`]: `MemTransport::builder()...build()`.
#[derive(Clone, Debug)]
pub struct MemTransportBuilder {
    max_message_size: usize,
    frame_round_trip: bool,
}

impl MemTransportBuilder {
    /// The largest envelope body accepted, in bytes (default 16 MiB, the
    /// default frame limit). Larger sends fail with
    /// `TransportError::TooLarge`, so tests see what a real broker's limit
    /// would do.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Sends every envelope through `rpc_core::frame` encoding and back
    /// (default off), so a test exercises the binary envelope encoding on
    /// every call. Envelopes the encoding refuses fail to send with
    /// `TransportError::Protocol` (or `TooLarge`).
    pub fn frame_round_trip(mut self, on: bool) -> Self {
        self.frame_round_trip = on;
        self
    }

    /// Builds a new, empty broker.
    pub fn build(self) -> MemTransport {
        MemTransport {
            broker: Arc::new(Broker::new(Config {
                max_message_size: self.max_message_size,
                frame_round_trip: self.frame_round_trip,
            })),
        }
    }
}

/// Counters of one broker, from [`MemTransport::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemStats {
    /// Replies sent to inboxes that were not open (never opened, closed, or
    /// a delayed reply arriving while disconnected); dropped.
    pub undeliverable_replies: u64,
    /// Requests discarded by [`Faults::drop_next`].
    pub dropped_requests: u64,
    /// Replies discarded by [`Faults::drop_next`].
    pub dropped_replies: u64,
}

impl MemStats {
    /// Every reply the broker did not deliver, whatever the reason.
    pub fn lost_replies(&self) -> u64 {
        self.undeliverable_replies + self.dropped_replies
    }
}
