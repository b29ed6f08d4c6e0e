//! The bottom layer: the state every clone and task of one transport
//! shares (the connection state, open inboxes, declared queues) and the
//! small helpers every layer above uses. It imports nothing of this crate
//! but options, errors and sessions.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::types::ShortString;
use lapin::{Channel, Confirmation};
use rpc_core::TransportError;
use rpc_core::transport::ReplySink;
use rpc_core::transport::support::{Connection, ConnectionState, Liveness, instance_id};
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::session::Session;

/// How long before its deadline a message waiting for a connection gives
/// up as `NotSent` (see [`Shared::session_to_send`]).
pub(crate) const SEND_MARGIN: Duration = Duration::from_millis(25);

/// The queue RabbitMQ's direct reply-to feature listens on.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The state behind every clone and every task of one transport.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) state: ConnectionState<Arc<Session>>,
    pub(crate) inboxes: Mutex<HashMap<u64, Arc<InboxEntry>>>,
    pub(crate) declared: Mutex<BTreeSet<String>>,
    /// Exchanges this transport declared (the broadcast exchange), for
    /// `cleanup`.
    pub(crate) exchanges: Mutex<BTreeSet<String>>,
    /// Unique per transport instance: names its reply queues.
    pub(crate) instance: String,
    pub(crate) next_id: AtomicU64,
    /// Requests whose writes and confirms the confirm task awaits
    /// (`confirms.rs`).
    unconfirmed: mpsc::UnboundedSender<Unconfirmed>,
}

/// A request's publish from the moment lapin has queued its frames: lapin's
/// write of it, then the broker's confirm (`NotRequested` at once after the
/// write without confirm mode). Boxed, so the confirm task can own it.
pub(crate) type Publishing = Pin<Box<dyn Future<Output = lapin::Result<Confirmation>> + Send>>;

/// A reply from the moment lapin has queued its frames: lapin's write of
/// it (settlements.rs).
pub(crate) type Written = Pin<Box<dyn Future<Output = lapin::Result<()>> + Send>>;

/// A request whose frames are queued and whose call does not wait for them
/// to be written or confirmed: what the confirm task needs to fail the call
/// if the write or the confirm says the request did not get through.
pub(crate) struct Unconfirmed {
    pub(crate) publishing: Publishing,
    /// The inbox the call waits at.
    pub(crate) inbox: Arc<InboxEntry>,
    /// The call's correlation id.
    pub(crate) correlation: u64,
    /// The session it was published on: whether it is still connected
    /// tells a lost connection from a refused message.
    pub(crate) session: Arc<Session>,
}

/// The connection as the rest of the transport sees it: `Connecting`
/// (sends and consumers wait), `Up` or `Closed` for good.
pub(crate) type State = Connection<Arc<Session>>;

/// What the shared state machine asks before handing a session out.
impl Liveness for Session {
    fn is_alive(&self) -> bool {
        Session::is_alive(self)
    }
}

impl Shared {
    /// Fresh state for a transport whose first session is `session`, and
    /// the receiving end of [`track`](Self::track), for the confirm task.
    pub(crate) fn new(
        config: Config,
        session: Arc<Session>,
    ) -> (Self, mpsc::UnboundedReceiver<Unconfirmed>) {
        let (unconfirmed, handed) = mpsc::unbounded_channel();
        let shared = Shared {
            config,
            state: ConnectionState::new(session),
            inboxes: Mutex::default(),
            declared: Mutex::default(),
            exchanges: Mutex::default(),
            instance: instance_id(),
            next_id: AtomicU64::new(1),
            unconfirmed,
        };
        (shared, handed)
    }

    /// Hands a request's publish to the confirm task. Once the task has
    /// ended (the transport closed) it is dropped: its call has failed
    /// with `Closed`.
    pub(crate) fn track(&self, unconfirmed: Unconfirmed) {
        let _ = self.unconfirmed.send(unconfirmed);
    }

    /// The current session, waiting (at most the connect timeout) while
    /// reconnecting.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, TransportError> {
        self.state.session(self.config.connect_timeout).await
    }

    /// The session if connected right now.
    pub(crate) fn current_session(&self) -> Option<Arc<Session>> {
        self.state.current()
    }

    /// The session to send a message on, waiting while reconnecting until
    /// `deadline_ms` (unix ms; `0`: for the connect timeout). Past it the
    /// message was not sent: `NotSent`, which tells the caller a retry is
    /// safe.
    ///
    /// It gives up [`SEND_MARGIN`] before the deadline: the client's own
    /// timer fails the call at the deadline with `Timeout`, which would hide
    /// that nothing was sent, and a request published in its last moments
    /// could not be answered anyway.
    pub(crate) async fn session_to_send(
        &self,
        deadline_ms: u64,
    ) -> Result<Arc<Session>, TransportError> {
        if let Some(session) = self.current_session() {
            return Ok(session);
        }
        let wait = if deadline_ms == 0 {
            self.config.connect_timeout
        } else {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(SEND_MARGIN)
        };
        match tokio::time::timeout(wait, self.live_session()).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::NotSent),
        }
    }

    /// Waits as long as it takes for a live session; `Closed` once closed.
    pub(crate) async fn live_session(&self) -> Result<Arc<Session>, TransportError> {
        self.state.live().await
    }

    /// Resolves once the transport is closed.
    pub(crate) async fn closed(&self) {
        self.state.closed().await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// Publishes a new state unless closed (closing is final).
    pub(crate) fn set_state(&self, new: State) {
        self.state.set(new);
    }

    pub(crate) fn close_now(&self) {
        self.state.close();
        for inbox in self.inbox_entries() {
            inbox.sink.closed();
        }
    }

    pub(crate) fn register_inbox(&self, entry: Arc<InboxEntry>) {
        lock(&self.inboxes).insert(entry.id, entry);
    }

    pub(crate) fn remove_inbox(&self, id: u64) -> Option<Arc<InboxEntry>> {
        lock(&self.inboxes).remove(&id)
    }

    pub(crate) fn inbox_entries(&self) -> Vec<Arc<InboxEntry>> {
        lock(&self.inboxes).values().cloned().collect()
    }

    /// The inbox whose reply queue is `queue`.
    pub(crate) fn inbox_with_queue(&self, queue: &str) -> Option<Arc<InboxEntry>> {
        lock(&self.inboxes)
            .values()
            .find(|entry| entry.queue.as_deref() == Some(queue))
            .cloned()
    }

    pub(crate) fn record_declared(&self, queue: &str) {
        let mut declared = lock(&self.declared);
        if !declared.contains(queue) {
            declared.insert(queue.to_owned());
        }
    }

    pub(crate) fn forget_declared(&self, queue: &str) {
        lock(&self.declared).remove(queue);
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// One open inbox, as the transport tracks it.
pub(crate) struct InboxEntry {
    pub(crate) id: u64,
    pub(crate) sink: ReplySink,
    /// The reply queue's name (exclusive-queue mode).
    pub(crate) queue: Option<String>,
    /// The channel consuming direct replies, and its session's generation
    /// (direct reply-to mode): requests expecting replies here go out on it.
    pub(crate) direct: watch::Sender<Option<(u64, Arc<Channel>)>>,
    /// Replies whose properties could not be read.
    pub(crate) malformed: AtomicU64,
}

impl InboxEntry {
    /// The direct reply-to channel on `session`, waiting (at most the
    /// connect timeout) while it is being set up after a reconnect.
    pub(crate) async fn direct_channel(
        &self,
        session: &Session,
        shared: &Shared,
    ) -> Result<Arc<Channel>, TransportError> {
        let generation = session.generation;
        let mut current = self.direct.subscribe();
        let wait = current.wait_for(|c| matches!(c, Some((g, _)) if *g == generation));
        match tokio::time::timeout(shared.config.connect_timeout, wait).await {
            Ok(Ok(found)) => match &*found {
                Some((_, channel)) => Ok(channel.clone()),
                None => Err(TransportError::ConnectionLost),
            },
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::ConnectionLost),
        }
    }
}

/// A `ShortString` (at most 255 bytes) for a queue or exchange name.
pub(crate) fn short(name: &str) -> Result<ShortString, TransportError> {
    ShortString::try_new(name).map_err(|e| TransportError::protocol("name a queue", e))
}

// Every critical section here is a single collection call, so a poisoned
// lock still guards consistent data: the shared helper's contract.
pub(crate) use rpc_core::transport::support::lock_unpoisoned as lock;
