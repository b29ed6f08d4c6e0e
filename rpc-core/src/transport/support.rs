//! Small helpers for transport authors: pieces every transport needs and
//! that should behave the same in each, so they are written once here
//! rather than once per transport.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use crate::error::TransportError;

/// Locks `mutex`, taking the guard even if an earlier holder panicked.
///
/// For locks whose every critical section is a single collection call (an
/// insert, a remove, a take): a panic cannot leave such data half-changed,
/// so a poisoned lock still guards consistent data, and refusing it would
/// only turn one panic into a panic in every later caller.
pub fn lock_unpoisoned<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name no other transport instance, in this process or another, picks:
/// for reply queues, inbox topics and the like that must not collide on a
/// shared broker.
///
/// It is `<pid>.<nanos>.<n>`: the process id and the low 48 bits of the
/// wall clock's nanoseconds in hex (apart across processes and restarts),
/// and a per-process counter (apart within one process, whatever the
/// clock says).
pub fn instance_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:x}.{:x}.{n}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}

/// Whether a session (a connection, a generation of clients) can still
/// carry traffic: what [`ConnectionState`] asks before handing one out.
///
/// A session can die before the transport's supervisor notices and swaps
/// it (a failed publish marks it lost at once; the reconnect comes later),
/// so being [`Connection::Up`] is not enough.
pub trait Liveness {
    /// `false` once the session is known to be lost.
    fn is_alive(&self) -> bool;
}

impl<T: Liveness + ?Sized> Liveness for Arc<T> {
    fn is_alive(&self) -> bool {
        (**self).is_alive()
    }
}

/// Where a transport's connection stands, as [`ConnectionState`] publishes it.
#[derive(Clone, Debug)]
pub enum Connection<S> {
    /// Reconnecting: sends and consumers wait.
    Connecting,
    /// Connected over this session (which may since have died: see
    /// [`Liveness`]).
    Up(S),
    /// Closed for good.
    Closed,
}

/// The connection-state machine of a reconnecting transport: the current
/// [`Connection`] of session type `S`, which every clone and task of the
/// transport reads and waits on, and which its supervisor moves between
/// `Up` and `Connecting`.
///
/// Closing is final: once [`close`](Self::close)d, [`set`](Self::set)
/// changes nothing, so a supervisor that finishes a reconnect just after
/// the owner closed the transport cannot bring it back to life. A session
/// that is `Up` but not [alive](Liveness) is never handed out: the waiters
/// wait for the supervisor to replace it.
pub struct ConnectionState<S> {
    state: watch::Sender<Connection<S>>,
}

impl<S: Liveness + Clone> ConnectionState<S> {
    /// A state that starts `Up` over `session` (a transport connects once
    /// before it is handed to its user).
    pub fn new(session: S) -> Self {
        ConnectionState {
            state: watch::Sender::new(Connection::Up(session)),
        }
    }

    /// The state right now, alive or not: for what a dead session still
    /// tells (its generation, which broker it was). Do not hold it across
    /// an `.await`: it blocks [`set`](Self::set).
    pub fn borrow(&self) -> watch::Ref<'_, Connection<S>> {
        self.state.borrow()
    }

    /// The session if one is up and alive right now.
    pub fn current(&self) -> Option<S> {
        match &*self.state.borrow() {
            Connection::Up(session) if session.is_alive() => Some(session.clone()),
            _ => None,
        }
    }

    /// The current session, waiting at most `wait` while reconnecting:
    /// [`TransportError::ConnectionLost`] if none came by then,
    /// [`TransportError::Closed`] once closed.
    pub async fn session(&self, wait: Duration) -> Result<S, TransportError> {
        // The common case (connected) takes neither a subscription nor a timer.
        if let Some(session) = self.current() {
            return Ok(session);
        }
        match tokio::time::timeout(wait, self.live()).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::ConnectionLost),
        }
    }

    /// Waits as long as it takes for a live session;
    /// [`TransportError::Closed`] once closed.
    pub async fn live(&self) -> Result<S, TransportError> {
        let mut state = self.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                Connection::Up(session) if session.is_alive() => return Ok(session.clone()),
                Connection::Closed => return Err(TransportError::Closed),
                _ => {}
            }
            // A session marked lost stays `Up` until the supervisor swaps
            // it; the swap wakes us. (The sender lives as long as `self`,
            // so the error arm is only for form.)
            state.changed().await.map_err(|_| TransportError::Closed)?;
        }
    }

    /// Resolves once the transport is closed.
    pub async fn closed(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| matches!(s, Connection::Closed)).await;
    }

    /// Whether the transport is closed.
    pub fn is_closed(&self) -> bool {
        matches!(&*self.state.borrow(), Connection::Closed)
    }

    /// Publishes `new` unless closed (closing is final: see the type's docs).
    pub fn set(&self, new: Connection<S>) {
        self.state.send_if_modified(|state| {
            if matches!(state, Connection::Closed) {
                return false;
            }
            *state = new;
            true
        });
    }

    /// Closes for good, waking every waiter.
    pub fn close(&self) {
        self.state.send_replace(Connection::Closed);
    }
}

impl<S> std::fmt::Debug for ConnectionState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phase = match &*self.state.borrow() {
            Connection::Connecting => "Connecting",
            Connection::Up(_) => "Up",
            Connection::Closed => "Closed",
        };
        f.debug_tuple("ConnectionState").field(&phase).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_differ_within_a_process() {
        let (a, b) = (instance_id(), instance_id());
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("{:x}.", std::process::id())), "{a}");
    }

    #[test]
    fn a_poisoned_lock_still_locks() {
        let mutex = Mutex::new(vec![1]);
        let _ = std::panic::catch_unwind(|| {
            let _guard = mutex.lock().unwrap();
            panic!("poison it");
        });
        assert!(mutex.is_poisoned());
        lock_unpoisoned(&mutex).push(2);
        assert_eq!(*lock_unpoisoned(&mutex), [1, 2]);
    }
    /// A session whose liveness a test flips.
    #[derive(Clone)]
    struct TestSession {
        id: u32,
        alive: Arc<std::sync::atomic::AtomicBool>,
    }

    impl TestSession {
        fn new(id: u32) -> Self {
            TestSession {
                id,
                alive: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            }
        }

        fn kill(&self) {
            self.alive.store(false, Ordering::Relaxed);
        }
    }

    impl Liveness for TestSession {
        fn is_alive(&self) -> bool {
            self.alive.load(Ordering::Relaxed)
        }
    }

    /// A task waiting on `state` for a session's id: [`ConnectionState::live`],
    /// or with `limit` [`ConnectionState::session`]; returned once it is
    /// waiting (checked still unfinished).
    async fn waiting(
        state: &Arc<ConnectionState<TestSession>>,
        limit: Option<Duration>,
    ) -> tokio::task::JoinHandle<Result<u32, TransportError>> {
        let state = state.clone();
        let waiter = tokio::spawn(async move {
            let session = match limit {
                Some(limit) => state.session(limit).await,
                None => state.live().await,
            };
            session.map(|s| s.id)
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        waiter
    }

    #[tokio::test]
    async fn closing_is_final() {
        let state = ConnectionState::new(TestSession::new(1));
        assert!(!state.is_closed());
        state.close();
        assert!(state.is_closed());
        state.set(Connection::Up(TestSession::new(2)));
        state.set(Connection::Connecting);
        assert!(state.is_closed());
        assert!(state.current().is_none());
        assert!(matches!(state.live().await, Err(TransportError::Closed)));
        assert!(matches!(
            state.session(Duration::from_secs(1)).await,
            Err(TransportError::Closed)
        ));
        // Resolves at once: already closed.
        state.closed().await;
    }

    #[tokio::test]
    async fn closed_resolves_when_closed_later() {
        let state = Arc::new(ConnectionState::new(TestSession::new(1)));
        let waiter = tokio::spawn({
            let state = state.clone();
            async move { state.closed().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        state.set(Connection::Connecting);
        state.close();
        waiter.await.unwrap();
    }

    #[tokio::test]
    async fn live_waits_across_connecting_to_up() {
        let state = Arc::new(ConnectionState::new(TestSession::new(1)));
        state.set(Connection::Connecting);
        assert!(state.current().is_none());
        let waiter = waiting(&state, None).await;
        state.set(Connection::Up(TestSession::new(2)));
        assert_eq!(waiter.await.unwrap().unwrap(), 2);
        assert_eq!(state.current().map(|s| s.id), Some(2));
    }

    #[tokio::test]
    async fn live_ends_with_closed_when_closed_while_waiting() {
        let state = Arc::new(ConnectionState::new(TestSession::new(1)));
        state.set(Connection::Connecting);
        let waiter = waiting(&state, None).await;
        state.close();
        assert!(matches!(waiter.await.unwrap(), Err(TransportError::Closed)));
    }

    #[tokio::test]
    async fn a_dead_session_is_not_handed_out() {
        let first = TestSession::new(1);
        let state = Arc::new(ConnectionState::new(first.clone()));
        assert_eq!(state.current().map(|s| s.id), Some(1));
        first.kill();
        // Still `Up` (the supervisor has not noticed), but not handed out.
        assert!(matches!(&*state.borrow(), Connection::Up(s) if s.id == 1));
        assert!(state.current().is_none());
        assert!(matches!(
            state.session(Duration::from_millis(20)).await,
            Err(TransportError::ConnectionLost)
        ));
        let waiter = waiting(&state, None).await;
        state.set(Connection::Up(TestSession::new(2)));
        assert_eq!(waiter.await.unwrap().unwrap(), 2);
    }

    #[tokio::test]
    async fn session_waits_for_a_reconnect_within_its_time() {
        let state = Arc::new(ConnectionState::new(TestSession::new(1)));
        state.set(Connection::Connecting);
        let waiter = waiting(&state, Some(Duration::from_secs(10))).await;
        state.set(Connection::Up(TestSession::new(2)));
        assert_eq!(waiter.await.unwrap().unwrap(), 2);
    }
}
