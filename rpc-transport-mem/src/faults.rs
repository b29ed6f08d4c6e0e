//! Fault injection: what tests use to make the broker misbehave on purpose.
//!
//! [`Faults`] is the handle tests hold; [`FaultPlan`] is the broker's side,
//! consulted on every send. With no fault configured the send path reads
//! one atomic flag and goes on, so faults cost nothing until used.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rpc_core::{Address, Envelope, Name};

use crate::broker::Broker;
use crate::connection::Link;
use crate::queue::ServiceQueue;
use rpc_core::transport::support::lock_unpoisoned;

/// Which way a message travels through the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Requests, oneway calls and cancels, on their way to a service queue.
    Requests,
    /// Replies, on their way to a client's inbox.
    Replies,
}

impl Direction {
    const fn index(self) -> usize {
        match self {
            Direction::Requests => 0,
            Direction::Replies => 1,
        }
    }
}

/// Injects faults into one broker (every clone of the transport it came
/// from). Cheap to clone. Each fault is described on its method; faults on
/// messages apply in this order: drop, reorder, duplicate, delay.
///
/// ```
/// use std::time::Duration;
/// use rpc_transport_mem::{Direction, MemTransport};
///
/// let transport = MemTransport::new();
/// let faults = transport.faults();
/// faults.drop_next(Direction::Replies, 1);
/// faults.delay(Direction::Requests, Duration::from_millis(5));
/// faults.clear();
/// ```
#[derive(Clone)]
pub struct Faults {
    pub(crate) broker: Arc<Broker>,
}

impl Faults {
    /// Silently discards the next `count` messages going `direction`. The
    /// send still succeeds (a lost message is not a send error); a route
    /// check happens first, so a send to an unserved service is still
    /// `NoRoute`. Counted in [`MemStats::dropped_requests`](crate::MemStats)
    /// or `dropped_replies`. Adds to a count already set, saturating:
    /// `usize::MAX` means every message.
    pub fn drop_next(&self, direction: Direction, count: usize) {
        self.broker.faults.update(|plan| {
            let lane = &mut plan.lanes[direction.index()];
            lane.drop = lane.drop.saturating_add(count)
        });
    }

    /// Delivers each of the next `count` messages going `direction` twice.
    /// Adds to a count already set, saturating: `usize::MAX` means every
    /// message.
    pub fn duplicate_next(&self, direction: Direction, count: usize) {
        self.broker.faults.update(|plan| {
            let lane = &mut plan.lanes[direction.index()];
            lane.duplicate = lane.duplicate.saturating_add(count)
        });
    }

    /// Swaps the next `count` pairs of messages going `direction`: a message
    /// is held back and released right after the one that follows it. A
    /// held message waits for as long as no other comes;
    /// [`release_held`](Self::release_held) or [`clear`](Self::clear) let it
    /// go. Adds to a count already set, saturating: `usize::MAX` means
    /// every message.
    pub fn reorder_next(&self, direction: Direction, count: usize) {
        self.broker.faults.update(|plan| {
            let lane = &mut plan.lanes[direction.index()];
            lane.reorder = lane.reorder.saturating_add(count)
        });
    }

    /// Delays every message going `direction` by `by`, until changed;
    /// `Duration::ZERO` turns the delay off. The send returns at once and
    /// other traffic is not held up: each delayed message waits on its own
    /// tokio timer (a thread, outside a tokio runtime). A delayed request
    /// is queued even if its consumers left meanwhile; a delayed reply to an
    /// inbox that closed, or that arrives while disconnected, is dropped and
    /// counted as undeliverable.
    pub fn delay(&self, direction: Direction, by: Duration) {
        self.broker
            .faults
            .update(|plan| plan.lanes[direction.index()].delay = by);
    }

    /// Makes `service` look unserved: requests and oneway calls to it fail
    /// with `NoRoute` even while servers consume its queue. Its servers keep
    /// what is already queued.
    pub fn no_consumer(&self, service: impl Into<Name>) {
        let service = service.into();
        self.broker.faults.update(|plan| {
            if !plan.unserved.contains(&service) {
                plan.unserved.push(service);
            }
        });
    }

    /// Undoes [`no_consumer`](Self::no_consumer) for `service`.
    pub fn restore_consumer(&self, service: &str) {
        self.broker
            .faults
            .update(|plan| plan.unserved.retain(|s| s != service));
    }

    /// Releases every held (reordered) message now, in the order held.
    pub fn release_held(&self) {
        let held = self.broker.faults.update(|plan| {
            plan.lanes
                .iter_mut()
                .filter_map(|lane| lane.held.take())
                .collect::<Vec<_>>()
        });
        for (route, envelope) in held {
            self.broker.deliver_routed(route, envelope);
        }
    }

    /// Removes every message fault and `no_consumer` setting and releases
    /// held messages. The connection state is left as it is.
    pub fn clear(&self) {
        self.release_held();
        self.broker.faults.update(|plan| {
            plan.lanes = Default::default();
            plan.unserved.clear();
        });
    }

    /// Simulates a dropped connection: every open inbox's sink gets
    /// [`connection_lost`](rpc_core::ReplySink::connection_lost) (so calls in
    /// flight fail with `ConnectionLost` at once); sends fail with `NotSent`
    /// (nothing left, a retry is safe), `open_inbox` and `serve` with
    /// `ConnectionLost`; request streams pause, keeping
    /// queued messages. Settling a delivery while disconnected requeues it
    /// and fails with `ConnectionLost`, as acks on a dead AMQP channel do.
    /// Does nothing if already disconnected or closed.
    pub fn disconnect(&self) {
        if self.broker.connection.set(Link::Down) != Link::Up {
            return;
        }
        for sink in self.broker.sinks() {
            sink.connection_lost();
        }
    }

    /// Ends a [`disconnect`](Self::disconnect): sends work again and paused
    /// request streams resume. Inboxes opened before stay open, as after a
    /// transport's own reconnect.
    pub fn reconnect(&self) {
        if self.broker.connection.link() == Link::Down {
            self.broker.connection.set(Link::Up);
        }
    }

    /// Whether the simulated connection is up.
    pub fn is_connected(&self) -> bool {
        self.broker.connection.link() == Link::Up
    }
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("connected", &self.is_connected())
            .field("active", &self.broker.faults.is_active())
            .finish()
    }
}

/// Where an accepted message goes once the fault plan lets it through.
#[derive(Debug)]
pub(crate) enum Route {
    /// A service's queue, resolved (and checked for consumers) at send time.
    Queue(Arc<ServiceQueue>),
    /// A reply inbox, looked up when the reply is delivered.
    Inbox(Address),
}

/// The broker's side of fault injection.
#[derive(Debug, Default)]
pub(crate) struct FaultPlan {
    /// Whether anything below is set; the only thing a fault-free send reads.
    active: AtomicBool,
    settings: Mutex<Settings>,
    /// Messages discarded by the drop fault, per direction.
    dropped: [AtomicU64; 2],
}

#[derive(Debug, Default)]
pub(crate) struct Settings {
    lanes: [Lane; 2],
    /// Services made to look unserved.
    unserved: Vec<Name>,
}

/// The faults on one direction.
#[derive(Debug, Default)]
struct Lane {
    drop: usize,
    duplicate: usize,
    reorder: usize,
    held: Option<(Route, Envelope)>,
    delay: Duration,
}

impl Lane {
    fn is_active(&self) -> bool {
        self.drop > 0
            || self.duplicate > 0
            || self.reorder > 0
            || self.held.is_some()
            || !self.delay.is_zero()
    }
}

impl FaultPlan {
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether `service` is made to look unserved.
    pub(crate) fn hides_consumers_of(&self, service: &str) -> bool {
        self.lock().unserved.iter().any(|s| s == service)
    }

    /// Messages dropped by the drop fault, going `direction`.
    pub(crate) fn dropped(&self, direction: Direction) -> u64 {
        self.dropped[direction.index()].load(Ordering::Relaxed)
    }

    /// Runs one message through the faults of `direction` and delivers what
    /// comes out (now, or after the delay).
    pub(crate) fn apply(
        &self,
        broker: &Arc<Broker>,
        direction: Direction,
        route: Route,
        envelope: Envelope,
    ) {
        let (out, delay) = self.update(|settings| {
            let lane = &mut settings.lanes[direction.index()];
            if lane.drop > 0 {
                lane.drop -= 1;
                self.dropped[direction.index()].fetch_add(1, Ordering::Relaxed);
                return (Vec::new(), Duration::ZERO);
            }
            let mut out = Vec::with_capacity(3);
            let held = lane.held.take();
            if held.is_none() && lane.reorder > 0 {
                lane.reorder -= 1;
                lane.held = Some((route, envelope));
                return (out, Duration::ZERO);
            }
            if lane.duplicate > 0 {
                lane.duplicate -= 1;
                out.push((route.duplicate(), envelope.clone()));
            }
            out.push((route, envelope));
            out.extend(held);
            (out, lane.delay)
        });
        if delay.is_zero() {
            for (route, envelope) in out {
                broker.deliver_routed(route, envelope);
            }
        } else if !out.is_empty() {
            deliver_later(broker.clone(), delay, out);
        }
    }

    /// Changes the settings and recomputes the fast-path flag.
    fn update<R>(&self, change: impl FnOnce(&mut Settings) -> R) -> R {
        let mut settings = self.lock();
        let result = change(&mut settings);
        let active = settings.lanes.iter().any(Lane::is_active) || !settings.unserved.is_empty();
        self.active.store(active, Ordering::Release);
        result
    }

    fn lock(&self) -> MutexGuard<'_, Settings> {
        // Settings are plain values updated in one step each.
        lock_unpoisoned(&self.settings)
    }
}

impl Route {
    fn duplicate(&self) -> Route {
        match self {
            Route::Queue(queue) => Route::Queue(queue.clone()),
            Route::Inbox(address) => Route::Inbox(address.clone()),
        }
    }
}

/// Delivers `out` after `delay` without holding up the sender.
fn deliver_later(broker: Arc<Broker>, delay: Duration, out: Vec<(Route, Envelope)>) {
    let deliver = move || {
        for (route, envelope) in out {
            broker.deliver_routed(route, envelope);
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                tokio::time::sleep(delay).await;
                deliver();
            });
        }
        Err(_) => {
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                deliver();
            });
        }
    }
}
