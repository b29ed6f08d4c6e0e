//! Whether the broker's simulated connection is up, and who waits for it.
//!
//! Every send and every poll of a request stream reads the state, so it is
//! an atomic; transitions happen under the mutex that also holds the parked
//! wakers, so a stream that parks while the link is down is always woken by
//! the reconnect (no lost wakeup between "saw it down" and "parked").

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use rpc_core::TransportError;
use rpc_core::transport::support::lock_unpoisoned;

/// The state of the simulated connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// Messages flow.
    Up,
    /// Disconnected by the fault API; a reconnect brings it back.
    Down,
    /// Closed for good by [`MemTransport::close`](crate::MemTransport::close).
    Closed,
}

impl Link {
    const fn code(self) -> u8 {
        match self {
            Link::Up => 0,
            Link::Down => 1,
            Link::Closed => 2,
        }
    }

    const fn from_code(code: u8) -> Self {
        match code {
            0 => Link::Up,
            1 => Link::Down,
            _ => Link::Closed,
        }
    }
}

/// The connection state shared by the broker and every queue.
#[derive(Debug)]
pub(crate) struct Connection {
    link: AtomicU8,
    /// Request streams waiting for the link to come back up.
    parked: Mutex<Vec<Waker>>,
}

impl Connection {
    pub(crate) fn new() -> Self {
        Connection {
            link: AtomicU8::new(Link::Up.code()),
            parked: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn link(&self) -> Link {
        Link::from_code(self.link.load(Ordering::Acquire))
    }

    /// `Ok` while the link is up, else the error a send gets.
    pub(crate) fn check(&self) -> Result<(), TransportError> {
        match self.link() {
            Link::Up => Ok(()),
            Link::Down => Err(TransportError::ConnectionLost),
            Link::Closed => Err(TransportError::Closed),
        }
    }

    /// Moves to `link`; returns the state it left. A closed connection
    /// stays closed. Leaving `Down` wakes every parked stream.
    pub(crate) fn set(&self, link: Link) -> Link {
        let (previous, wake) = {
            let mut parked = self.lock();
            let previous = self.link();
            if previous == Link::Closed || previous == link {
                return previous;
            }
            self.link.store(link.code(), Ordering::Release);
            (previous, std::mem::take(&mut *parked))
        };
        for waker in wake {
            waker.wake();
        }
        previous
    }

    /// Returns the current state; when it is `Down`, `waker` is woken on
    /// the next transition.
    ///
    /// Inlined: every poll of a request stream asks, and the answer is
    /// nearly always a single load; parking is out of line.
    #[inline]
    pub(crate) fn park_unless_up(&self, waker: &Waker) -> Link {
        let link = self.link();
        if link != Link::Down {
            return link;
        }
        self.park(waker)
    }

    /// Parks `waker` while the link is down; returns the link.
    #[cold]
    fn park(&self, waker: &Waker) -> Link {
        let mut parked = self.lock();
        // Re-read under the lock: a reconnect in between has already woken
        // everyone it is going to wake.
        let link = self.link();
        if link == Link::Down && !parked.iter().any(|w| w.will_wake(waker)) {
            parked.push(waker.clone());
        }
        link
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Waker>> {
        // Critical sections only push or take wakers; nothing can be left
        // half-done by a panic, so poisoning carries no information.
        lock_unpoisoned(&self.parked)
    }
}
