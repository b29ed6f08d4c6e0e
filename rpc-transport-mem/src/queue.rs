//! One service's request queue: ready messages, consumers waiting for them,
//! dead letters.
//!
//! Competing consumers share one FIFO. A consumer only receives when it
//! polls (the server runtime polls only when it has a free permit), so the
//! next message goes to whoever is free, not to a fixed rotation. A consumer
//! that finds the queue empty leaves its waker; each new message wakes the
//! longest-waiting one, directly, from the sender's thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use rpc_core::TransportError;
use rpc_core::transport::Settlement;
use rpc_core::{Envelope, Name};

use crate::connection::{Connection, Link};
use rpc_core::transport::support::lock_unpoisoned;

/// A service's queue. Lives as long as the broker (or a delivery of it).
#[derive(Debug)]
pub(crate) struct ServiceQueue {
    name: Name,
    connection: Arc<Connection>,
    state: Mutex<QueueState>,
    /// Deliveries handed out and not settled yet.
    unacked: AtomicUsize,
}

#[derive(Debug, Default)]
struct QueueState {
    ready: VecDeque<Queued>,
    /// Consumers that found the queue empty, longest-waiting first.
    waiting: VecDeque<(u64, Waker)>,
    consumers: usize,
    next_consumer: u64,
    dead_letters: Vec<Envelope>,
}

/// A message in the queue.
#[derive(Debug)]
pub(crate) struct Queued {
    pub(crate) envelope: Envelope,
    /// Handed out before, or one of several copies (a fault's duplicate, a
    /// message delayed or held by a fault): the server must look for an
    /// answer it already sent.
    pub(crate) maybe_redelivered: bool,
}

/// What a consumer's poll found.
#[expect(
    clippy::large_enum_variant,
    reason = "a message is the usual answer, moved once; boxing it would allocate per call"
)]
pub(crate) enum Take {
    /// The next message, now this consumer's, and whether it may have been
    /// handed out before. Handed out as it was queued: a message is moved
    /// as rarely as it can be.
    Message(Queued),
    /// Nothing yet; the consumer's waker is registered.
    Wait,
    /// The broker was closed.
    Closed,
}

/// Where a message goes in the queue.
#[derive(Clone, Copy, PartialEq, Eq)]
enum End {
    Back,
    Front,
}

impl ServiceQueue {
    pub(crate) fn new(name: Name, connection: Arc<Connection>) -> Self {
        ServiceQueue {
            name,
            connection,
            state: Mutex::default(),
            unacked: AtomicUsize::new(0),
        }
    }

    pub(crate) fn name(&self) -> &Name {
        &self.name
    }

    pub(crate) fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Queues a new message, failing fast when nobody consumes the queue.
    #[inline]
    pub(crate) fn publish(&self, envelope: Envelope) -> Result<(), TransportError> {
        self.push(envelope, End::Back, true, false)
            .map_err(|()| self.no_route())
    }

    /// Queues a message that was already accepted (delayed by a fault):
    /// the queue holds it even if its consumers left meanwhile. Such a
    /// message may be one of several copies, so it counts as possibly
    /// redelivered.
    pub(crate) fn enqueue(&self, envelope: Envelope) {
        let _always_accepted = self.push(envelope, End::Back, false, true);
    }

    /// The error a send to this queue gets when it has no consumer.
    pub(crate) fn no_route(&self) -> TransportError {
        TransportError::NoRoute {
            address: self.name.to_string(),
        }
    }

    /// Registers a consumer; returns its id.
    pub(crate) fn add_consumer(&self) -> u64 {
        let mut state = self.lock();
        state.consumers += 1;
        state.next_consumer += 1;
        state.next_consumer
    }

    /// Unregisters a consumer. Messages it never received stay queued; if a
    /// wakeup meant for it may have been spent, another waiter gets one.
    pub(crate) fn remove_consumer(&self, id: u64) {
        let wake = {
            let mut state = self.lock();
            state.consumers -= 1;
            state.waiting.retain(|(waiter, _)| *waiter != id);
            if state.ready.is_empty() {
                None
            } else {
                state.waiting.pop_front()
            }
        };
        if let Some((_, waker)) = wake {
            waker.wake();
        }
    }

    /// The next message for consumer `id`, or registers `waker` for the
    /// next push.
    pub(crate) fn take_or_wait(&self, id: u64, waker: &Waker) -> Take {
        let mut state = self.lock();
        // Read under the lock: `close` sets the state first and then wakes
        // each queue's waiters under this lock, so either we see `Closed`
        // here or our waker is registered before that pass.
        if self.connection.link() == Link::Closed {
            return Take::Closed;
        }
        let position = state.waiting.iter().position(|(waiter, _)| *waiter == id);
        if !state.ready.is_empty() {
            // Polled for another reason while still registered: a later
            // push must not spend its wakeup on a consumer that may no
            // longer be waiting.
            if let Some(position) = position {
                state.waiting.remove(position);
            }
        }
        match state.ready.pop_front() {
            Some(queued) => {
                self.unacked.fetch_add(1, Ordering::Relaxed);
                Take::Message(queued)
            }
            None => {
                match position {
                    Some(position) => {
                        let registered = &mut state.waiting[position].1;
                        if !registered.will_wake(waker) {
                            registered.clone_from(waker);
                        }
                    }
                    None => state.waiting.push_back((id, waker.clone())),
                }
                Take::Wait
            }
        }
    }

    /// Settles a delivery of this queue (see the crate docs for the rules).
    /// `delivered` is copied only where the message is kept: requeued or
    /// dead-lettered.
    pub(crate) fn settle(
        &self,
        delivered: &Envelope,
        settlement: Settlement,
    ) -> Result<(), TransportError> {
        match self.connection.link() {
            // Like a channel closing under an AMQP consumer: what was not
            // acked before the connection dropped is redelivered.
            Link::Down => {
                self.unacked.fetch_sub(1, Ordering::Relaxed);
                self.requeue(delivered.clone());
                Err(TransportError::ConnectionLost)
            }
            Link::Closed => {
                self.unacked.fetch_sub(1, Ordering::Relaxed);
                Err(TransportError::Closed)
            }
            Link::Up => {
                // Requeue, and any settlement added later: giving the
                // message back never loses it.
                if !self.settle_final(delivered, settlement) {
                    self.unacked.fetch_sub(1, Ordering::Relaxed);
                    self.requeue(delivered.clone());
                }
                Ok(())
            }
        }
    }

    /// Settles a delivery of this queue with `settlement` only if that is
    /// final: an ack or a dead-letter while the connection is up, which no
    /// later event hands out again. Returns whether it settled; if not,
    /// nothing changed (settle it with [`settle`](Self::settle)).
    pub(crate) fn settle_for_good(&self, delivered: &Envelope, settlement: Settlement) -> bool {
        // Read once, as `settle` reads it: a disconnect after this read
        // comes after the settlement, as it would after an ack that got
        // through.
        self.connection.link() == Link::Up && self.settle_final(delivered, settlement)
    }

    /// With the connection up: an ack or a dead-letter settles the delivery
    /// for good (true); anything else is left to the caller (false).
    fn settle_final(&self, delivered: &Envelope, settlement: Settlement) -> bool {
        match settlement {
            Settlement::Ack | Settlement::AckBeforeRun => {}
            Settlement::DeadLetter => self.lock().dead_letters.push(delivered.clone()),
            _ => return false,
        }
        self.unacked.fetch_sub(1, Ordering::Relaxed);
        true
    }

    /// Puts a message back at the head of the queue.
    pub(crate) fn requeue(&self, envelope: Envelope) {
        let _always_accepted = self.push(envelope, End::Front, false, true);
    }

    /// Wakes every waiting consumer (the broker is closing).
    pub(crate) fn wake_all(&self) {
        let waiting = std::mem::take(&mut self.lock().waiting);
        for (_, waker) in waiting {
            waker.wake();
        }
    }

    pub(crate) fn depth(&self) -> usize {
        self.lock().ready.len()
    }

    pub(crate) fn consumers(&self) -> usize {
        self.lock().consumers
    }

    pub(crate) fn unacked(&self) -> usize {
        self.unacked.load(Ordering::Relaxed)
    }

    pub(crate) fn dead_letters(&self) -> Vec<Envelope> {
        self.lock().dead_letters.clone()
    }

    pub(crate) fn take_dead_letters(&self) -> Vec<Envelope> {
        std::mem::take(&mut self.lock().dead_letters)
    }

    #[inline]
    fn push(
        &self,
        envelope: Envelope,
        end: End,
        need_consumer: bool,
        maybe_redelivered: bool,
    ) -> Result<(), ()> {
        let wake = {
            let mut state = self.lock();
            if need_consumer && state.consumers == 0 {
                return Err(());
            }
            // Made where it is pushed: a message is moved as rarely as it can be.
            match end {
                End::Back => state.ready.push_back(Queued {
                    envelope,
                    maybe_redelivered,
                }),
                End::Front => state.ready.push_front(Queued {
                    envelope,
                    maybe_redelivered,
                }),
            }
            state.waiting.pop_front()
        };
        // Wake outside the lock: the woken consumer's first act is to take it.
        if let Some((_, waker)) = wake {
            waker.wake();
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // Every critical section is a few collection calls that cannot leave
        // the state inconsistent, so poisoning carries no information.
        lock_unpoisoned(&self.state)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    use rpc_core::{ContentType, Header};

    use super::*;

    /// A waker that counts how often it was woken.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl CountingWaker {
        fn woken(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    fn queue() -> ServiceQueue {
        ServiceQueue::new(Name::from_static("svc"), Arc::new(Connection::new()))
    }

    fn message(id: u64) -> Envelope {
        let mut header = Header::request("svc".into(), "m".into(), ContentType::Json);
        header.correlation_id = id;
        Envelope {
            header,
            body: Vec::new(),
        }
    }

    fn taken(take: Take) -> Option<u64> {
        match take {
            Take::Message(queued) => Some(queued.envelope.header.correlation_id),
            Take::Wait | Take::Closed => None,
        }
    }

    #[test]
    fn publish_needs_a_consumer() {
        let q = queue();
        assert!(
            matches!(q.publish(message(1)), Err(TransportError::NoRoute { address }) if address == "svc")
        );
        q.add_consumer();
        assert!(q.publish(message(1)).is_ok());
        assert_eq!(q.depth(), 1);
    }

    #[test]
    fn a_push_wakes_the_longest_waiting_consumer_only() {
        let q = queue();
        let (a, b) = (q.add_consumer(), q.add_consumer());
        let (wa, wb) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        assert!(taken(q.take_or_wait(a, &wa.clone().into())).is_none());
        assert!(taken(q.take_or_wait(b, &wb.clone().into())).is_none());
        q.publish(message(1)).unwrap();
        assert_eq!((wa.woken(), wb.woken()), (1, 0));
        q.publish(message(2)).unwrap();
        assert_eq!((wa.woken(), wb.woken()), (1, 1));
    }

    #[test]
    fn repolling_does_not_register_twice() {
        let q = queue();
        let a = q.add_consumer();
        let w = Arc::new(CountingWaker::default());
        let waker: Waker = w.clone().into();
        q.take_or_wait(a, &waker);
        q.take_or_wait(a, &waker);
        q.publish(message(1)).unwrap();
        q.publish(message(2)).unwrap();
        assert_eq!(w.woken(), 1);
    }

    #[test]
    fn a_consumer_that_takes_a_message_stops_waiting() {
        let q = queue();
        let (a, b) = (q.add_consumer(), q.add_consumer());
        let (wa, wb) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        q.take_or_wait(a, &wa.clone().into());
        q.take_or_wait(b, &wb.clone().into());
        q.publish(message(1)).unwrap(); // wakes a
        // b is polled first (spuriously) and takes the message.
        assert_eq!(taken(q.take_or_wait(b, &wb.clone().into())), Some(1));
        // a finds nothing and waits again; the next push must wake a, not b.
        assert!(taken(q.take_or_wait(a, &wa.clone().into())).is_none());
        q.publish(message(2)).unwrap();
        assert_eq!((wa.woken(), wb.woken()), (2, 0));
    }

    #[test]
    fn removing_a_woken_consumer_passes_the_wakeup_on() {
        let q = queue();
        let (a, b) = (q.add_consumer(), q.add_consumer());
        let (wa, wb) = (
            Arc::new(CountingWaker::default()),
            Arc::new(CountingWaker::default()),
        );
        q.take_or_wait(a, &wa.clone().into());
        q.take_or_wait(b, &wb.clone().into());
        q.publish(message(1)).unwrap(); // wakes a, which goes away without polling
        q.remove_consumer(a);
        assert_eq!(wb.woken(), 1);
        assert_eq!(taken(q.take_or_wait(b, &wb.clone().into())), Some(1));
        assert_eq!(q.consumers(), 1);
    }

    #[test]
    fn settlement_moves_messages() {
        let q = queue();
        let a = q.add_consumer();
        let w: Waker = Arc::new(CountingWaker::default()).into();
        for id in 1..=3 {
            q.publish(message(id)).unwrap();
        }
        let first = match q.take_or_wait(a, &w) {
            Take::Message(Queued {
                envelope,
                maybe_redelivered: false,
            }) => envelope,
            _ => panic!("a message is ready"),
        };
        assert_eq!(q.unacked(), 1);
        q.settle(&first, Settlement::Requeue).unwrap();
        assert_eq!((q.unacked(), q.depth()), (0, 3));
        assert!(
            matches!(q.take_or_wait(a, &w), Take::Message(Queued { envelope, maybe_redelivered: true }) if envelope.header.correlation_id == 1),
            "requeued at the front, marked as handed out before"
        );

        let second = match q.take_or_wait(a, &w) {
            Take::Message(Queued {
                envelope,
                maybe_redelivered: false,
            }) => envelope,
            _ => panic!("a message is ready"),
        };
        q.settle(&second, Settlement::DeadLetter).unwrap();
        assert_eq!(q.dead_letters().len(), 1);
        assert_eq!(q.take_dead_letters()[0].header.correlation_id, 2);
        assert!(q.dead_letters().is_empty());
    }

    #[test]
    fn settling_for_good_only_acks_or_dead_letters_while_up() {
        let connection = Arc::new(Connection::new());
        let q = ServiceQueue::new(Name::from_static("svc"), connection.clone());
        let a = q.add_consumer();
        let w: Waker = Arc::new(CountingWaker::default()).into();
        for id in 1..=3 {
            q.publish(message(id)).unwrap();
        }
        let take = || match q.take_or_wait(a, &w) {
            Take::Message(Queued { envelope, .. }) => envelope,
            _ => panic!("a message is ready"),
        };
        let (first, second, third) = (take(), take(), take());
        assert!(q.settle_for_good(&first, Settlement::Ack));
        assert!(q.settle_for_good(&second, Settlement::DeadLetter));
        assert_eq!((q.unacked(), q.dead_letters().len()), (1, 1));
        assert!(
            !q.settle_for_good(&third, Settlement::Requeue),
            "a requeue hands the message out again"
        );
        connection.set(Link::Down);
        assert!(
            !q.settle_for_good(&third, Settlement::Ack),
            "settling while down requeues"
        );
        assert_eq!((q.unacked(), q.depth()), (1, 0), "refused: nothing changed");
        assert!(matches!(
            q.settle(&third, Settlement::Ack),
            Err(TransportError::ConnectionLost)
        ));
        assert_eq!((q.unacked(), q.depth()), (0, 1));
    }

    #[test]
    fn settling_while_down_requeues() {
        let connection = Arc::new(Connection::new());
        let q = ServiceQueue::new(Name::from_static("svc"), connection.clone());
        let a = q.add_consumer();
        q.publish(message(1)).unwrap();
        let w: Waker = Arc::new(CountingWaker::default()).into();
        let Take::Message(Queued { envelope, .. }) = q.take_or_wait(a, &w) else {
            panic!("a message is ready")
        };
        connection.set(Link::Down);
        assert!(matches!(
            q.settle(&envelope, Settlement::Ack),
            Err(TransportError::ConnectionLost)
        ));
        assert_eq!(q.depth(), 1);
    }
}
