//! The broker every clone of one [`MemTransport`](crate::MemTransport)
//! shares: service queues, reply inboxes, routing, counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rpc_core::TransportError;
use rpc_core::transport::ReplySink;
use rpc_core::{Address, Envelope, Name};

use crate::connection::{Connection, Link};
use crate::directory::Directory;
use crate::faults::{Direction, FaultPlan, Route};
use crate::last_inbox::LastInbox;
use crate::queue::ServiceQueue;
use crate::wire;

/// Options fixed when the broker is built.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The largest body accepted, in bytes.
    pub(crate) max_message_size: usize,
    /// Whether every envelope goes through frame encoding and back.
    pub(crate) frame_round_trip: bool,
}

/// Shared state behind every clone of a transport.
#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) config: Config,
    pub(crate) connection: Arc<Connection>,
    pub(crate) faults: FaultPlan,
    // Read on every message without a lock; written by `serve` and by
    // inboxes opening and closing.
    services: Directory<Arc<ServiceQueue>>,
    inboxes: Directory<ReplySink>,
    next_inbox: AtomicU64,
    undeliverable_replies: AtomicU64,
    pub(crate) broadcasts: crate::broadcast::Broadcasts,
    /// Used when `config.frame_round_trip` is on.
    round_trip: wire::RoundTrip,
}

impl Broker {
    pub(crate) fn new(config: Config) -> Self {
        Broker {
            config,
            connection: Arc::new(Connection::new()),
            faults: FaultPlan::default(),
            services: Directory::new(),
            inboxes: Directory::new(),
            next_inbox: AtomicU64::new(0),
            undeliverable_replies: AtomicU64::new(0),
            broadcasts: Default::default(),
            round_trip: wire::RoundTrip::default(),
        }
    }

    /// Routes a request or oneway call to its service's queue.
    ///
    /// This and the other steps of a message's way through the broker are
    /// `#[inline]`: each call boundary left between them moves the
    /// envelope once more, and the way is short enough to inline whole
    /// (this one always: left to itself, the compiler keeps it apart).
    #[inline(always)]
    pub(crate) fn send_call(
        self: &Arc<Self>,
        mut envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.admit(&mut envelope)?;
        let to = &envelope.header.service;
        if self.faults.is_active() {
            if self.faults.hides_consumers_of(to) {
                return Err(no_route(to));
            }
            let queue = self.queue_with_consumer(to)?;
            self.faults
                .apply(self, Direction::Requests, Route::Queue(queue), envelope);
            return Ok(());
        }
        match self.services.read().get(to.as_str()) {
            Some(queue) => queue.publish(envelope),
            None => Err(no_route(to)),
        }
    }

    /// Routes a reply to the inbox at `to`.
    #[inline]
    pub(crate) fn send_reply(
        self: &Arc<Self>,
        to: &Address,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.send_reply_via(to, envelope, None)
    }

    /// [`send_reply`](Self::send_reply), finding the inbox through `last`
    /// (a serve stream's last inbox) where given.
    #[inline]
    pub(crate) fn send_reply_via(
        self: &Arc<Self>,
        to: &Address,
        mut envelope: Envelope,
        last: Option<&LastInbox>,
    ) -> Result<(), TransportError> {
        self.admit(&mut envelope)?;
        if self.faults.is_active() {
            let route = Route::Inbox(to.clone());
            self.faults.apply(self, Direction::Replies, route, envelope);
            return Ok(());
        }
        let sink = match last {
            Some(last) => last.sink(to, &self.inboxes),
            None => self.inbox(to),
        };
        match sink {
            Some(sink) => sink.deliver(envelope),
            None => self.count_undeliverable(to, &envelope),
        }
        Ok(())
    }

    /// The sink of the open inbox at `to`, cloned out of the directory: the
    /// sink runs caller code, which must be free to open or close inboxes.
    #[inline]
    fn inbox(&self, to: &Address) -> Option<ReplySink> {
        self.inboxes.read().get(to.as_str()).cloned()
    }

    /// What every message passes on its way in: the connection, the size
    /// limit, and the frame encoding when the broker round-trips frames.
    /// Checked in place: a message is moved as rarely as it can be.
    fn admit(&self, envelope: &mut Envelope) -> Result<(), TransportError> {
        // Refused before anything left: the caller may retry safely.
        self.connection.check().map_err(|error| match error {
            TransportError::ConnectionLost => TransportError::NotSent,
            other => other,
        })?;
        let size = envelope.body.len();
        if size > self.config.max_message_size {
            return Err(TransportError::TooLarge {
                size,
                limit: self.config.max_message_size,
            });
        }
        if self.config.frame_round_trip {
            *envelope = self.round_trip.run(envelope)?;
        }
        Ok(())
    }

    /// Hands a reply to its inbox's sink, synchronously; counts replies to
    /// inboxes that are not (or no longer) open.
    #[inline]
    pub(crate) fn deliver_reply(&self, to: &Address, envelope: Envelope) {
        match self.inbox(to) {
            Some(sink) => sink.deliver(envelope),
            None => self.count_undeliverable(to, &envelope),
        }
    }

    /// Delivers a message the fault plan let through (possibly late).
    pub(crate) fn deliver_routed(&self, route: Route, envelope: Envelope) {
        match route {
            // A queue keeps what it accepted, whatever happened since.
            Route::Queue(queue) => queue.enqueue(envelope),
            Route::Inbox(to) => {
                if self.connection.link() == Link::Up {
                    self.deliver_reply(&to, envelope);
                } else {
                    self.count_undeliverable(&to, &envelope);
                }
            }
        }
    }

    fn count_undeliverable(&self, to: &Address, envelope: &Envelope) {
        self.undeliverable_replies.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            inbox = %to,
            correlation_id = envelope.header.correlation_id,
            "dropped a reply to an inbox that is not open"
        );
    }

    fn queue_with_consumer(&self, to: &Name) -> Result<Arc<ServiceQueue>, TransportError> {
        match self.services.read().get(to.as_str()) {
            Some(queue) if queue.consumers() > 0 => Ok(queue.clone()),
            _ => Err(no_route(to)),
        }
    }

    /// The queue of `service`, created on first use.
    pub(crate) fn declare(&self, service: &Name) -> Arc<ServiceQueue> {
        if let Some(queue) = self.services.read().get(service.as_str()) {
            return queue.clone();
        }
        self.services.update(|services| {
            services
                .entry(service.clone())
                .or_insert_with(|| {
                    Arc::new(ServiceQueue::new(service.clone(), self.connection.clone()))
                })
                .clone()
        })
    }

    /// The queue of `service`, if anyone ever served it.
    pub(crate) fn queue(&self, service: &str) -> Option<Arc<ServiceQueue>> {
        self.services.read().get(service).cloned()
    }

    pub(crate) fn queues(&self) -> Vec<Arc<ServiceQueue>> {
        self.services
            .read_between_writes(|services| services.values().cloned().collect())
    }

    /// Registers a reply inbox under a fresh address.
    pub(crate) fn open_inbox(&self, sink: ReplySink) -> Result<Address, TransportError> {
        let n = self.next_inbox.fetch_add(1, Ordering::Relaxed) + 1;
        let address = Address::new(format!("mem.inbox.{n}"));
        self.inboxes.update(|inboxes| {
            // Checked while no other writer runs, and `disconnect` and
            // `close` read the inboxes between writes: a new inbox is either
            // refused or told of the loss.
            self.connection.check()?;
            inboxes.insert(address.name().clone(), sink);
            Ok(address)
        })
    }

    pub(crate) fn close_inbox(&self, address: &Address) {
        self.inboxes
            .update(|inboxes| inboxes.remove(address.as_str()));
    }

    pub(crate) fn open_inboxes(&self) -> usize {
        self.inboxes.read().len()
    }

    /// The sinks of every open inbox, read between writes after a
    /// connection change (see [`open_inbox`](Self::open_inbox)).
    pub(crate) fn sinks(&self) -> Vec<ReplySink> {
        self.inboxes
            .read_between_writes(|inboxes| inboxes.values().cloned().collect())
    }

    pub(crate) fn undeliverable_replies(&self) -> u64 {
        self.undeliverable_replies.load(Ordering::Relaxed)
    }
}

fn no_route(to: &str) -> TransportError {
    TransportError::NoRoute {
        address: to.to_owned(),
    }
}
