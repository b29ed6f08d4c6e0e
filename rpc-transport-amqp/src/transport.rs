//! [`AmqpTransport`]: the [`Transport`] implementation and the state its
//! clones share.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use lapin::options::{BasicPublishOptions, QueueDeleteOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};
use rpc_core::transport::{ReplySink, ServiceSpec, Transport};
use rpc_core::{Address, Envelope, Kind, TransportError};
use tokio::sync::watch;

use crate::config::{AmqpTransportBuilder, Config, ReplyMode};
use crate::error::protocol;
use crate::inbox::{self, InboxEntry, InboxGuard};
use crate::properties;
use crate::requests::AmqpRequests;
use crate::session::Session;
use crate::supervisor;

/// The queue RabbitMQ's direct reply-to feature listens on.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// A RabbitMQ connection for RPC clients and servers. Cheap to clone; the
/// connection closes when the last clone is dropped (or on [`close`](Self::close)).
///
/// See the [crate docs](crate) for options, guarantees and recovery.
#[derive(Clone)]
pub struct AmqpTransport {
    handle: Arc<Handle>,
}

/// Closes the shared state when the last user-held clone goes; the
/// transport's own tasks hold `Shared` only, so they never keep it open.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close_now();
    }
}

/// The state behind every clone and every task of one transport.
pub(crate) struct Shared {
    pub(crate) config: Config,
    state: watch::Sender<State>,
    inboxes: Mutex<HashMap<u64, Arc<InboxEntry>>>,
    declared: Mutex<BTreeSet<String>>,
    /// Set by `cleanup`: consumers that end are not re-established.
    retiring: AtomicBool,
    /// Unique per transport instance: names its reply queues.
    pub(crate) instance: String,
    next_id: AtomicU64,
}

/// The connection as the rest of the transport sees it.
#[derive(Clone)]
pub(crate) enum State {
    /// Reconnecting; sends wait, consumers wait.
    Connecting,
    /// Connected.
    Up(Arc<Session>),
    /// Closed for good.
    Closed,
}

impl AmqpTransport {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost` or `amqps://...`)
    /// with the default options.
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        Self::builder(url).connect().await
    }

    /// A builder for a transport to `url`.
    pub fn builder(url: impl Into<String>) -> AmqpTransportBuilder {
        AmqpTransportBuilder::new(url)
    }

    pub(crate) async fn start(config: Config) -> Result<Self, TransportError> {
        let session = Arc::new(Session::open(&config, 1).await?);
        let shared = Arc::new(Shared {
            config,
            state: watch::Sender::new(State::Up(session.clone())),
            inboxes: Mutex::default(),
            declared: Mutex::default(),
            retiring: AtomicBool::new(false),
            instance: unique_instance_id(),
            next_id: AtomicU64::new(1),
        });
        tokio::spawn(supervisor::run(shared.clone(), session));
        Ok(AmqpTransport {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// The queue a service's requests wait in (`<prefix><service>`).
    pub fn request_queue(&self, service: &str) -> String {
        self.shared().config.request_queue(service)
    }

    /// The queue a service's refused requests go to (`<prefix><service>.dlq`).
    pub fn dead_letter_queue(&self, service: &str) -> String {
        self.shared().config.dead_letter_queue(service)
    }

    /// Every queue this transport has declared so far.
    pub fn declared_queues(&self) -> Vec<String> {
        lock(&self.shared().declared).iter().cloned().collect()
    }

    /// Tear-down for tests and environments: stops re-establishing
    /// consumers, deletes every queue this transport declared (request
    /// queues, their dead-letter queues, reply queues), then closes the
    /// transport. Returns how many queues were deleted. A broker that does
    /// not answer within the connect timeout fails it with `ConnectionLost`.
    ///
    /// Without the first step a running server or client would take a
    /// deleted queue for a broker-side cancel and declare it again.
    pub async fn cleanup(&self) -> Result<usize, TransportError> {
        let shared = self.shared();
        shared.retiring.store(true, Ordering::Release);
        let result = async {
            let session = shared.session().await?;
            let channel = session.admin_channel().await?;
            let names: Vec<String> = std::mem::take(&mut *lock(&shared.declared))
                .into_iter()
                .collect();
            for name in &names {
                channel
                    .queue_delete(short(name)?, QueueDeleteOptions::default())
                    .await
                    .map_err(|e| protocol("delete queue", e))?;
            }
            let _ = channel.close(200, "done".into()).await;
            Ok(names.len())
        };
        // A broker that stopped answering fails the cleanup instead of
        // stalling it (queues left behind are the lesser harm).
        let result = tokio::time::timeout(shared.config.connect_timeout, result)
            .await
            .unwrap_or(Err(TransportError::ConnectionLost));
        self.close().await;
        result
    }

    /// Whether a queue exists on the broker (a passive declare), for tests
    /// and health checks.
    pub async fn queue_exists(&self, queue: &str) -> Result<bool, TransportError> {
        let session = self.shared().session().await?;
        let channel = session.admin_channel().await?;
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        // A passive declare of a missing queue closes the channel with 404;
        // that is the answer, not a failure.
        let exists = channel
            .queue_declare(short(queue)?, options, Default::default())
            .await
            .is_ok();
        if exists {
            let _ = channel.close(200, "done".into()).await;
        }
        Ok(exists)
    }

    /// Closes the connection. Calls in flight fail with `Closed`, serve
    /// streams end, and every clone of this transport stops working.
    pub async fn close(&self) {
        let shared = self.shared();
        let state = shared.state.borrow().clone();
        shared.close_now();
        if let State::Up(session) = state {
            // A connection that died unnoticed never answers the close:
            // bounded, like every other wait on the broker.
            let _ = tokio::time::timeout(
                shared.config.connect_timeout,
                session.connection.close(200, "closed by owner".into()),
            )
            .await;
        }
    }

    /// Whether the transport is connected right now (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        matches!(&*self.shared().state.borrow(), State::Up(s) if s.is_alive())
    }

    /// Resolves once the transport is connected (at once if it is).
    pub async fn wait_connected(&self) -> Result<(), TransportError> {
        self.shared().live_session().await.map(drop)
    }

    /// How many times the connection has been (re-)established.
    pub fn connection_generation(&self) -> u64 {
        match &*self.shared().state.borrow() {
            State::Up(session) => session.generation,
            _ => 0,
        }
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.shared();
        f.debug_struct("AmqpTransport")
            .field("queue_prefix", &shared.config.queue_prefix)
            .field("exchange", &shared.config.exchange)
            .field("reply_mode", &shared.config.reply_mode)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Transport for AmqpTransport {
    type Requests = AmqpRequests;
    type Inbox = InboxGuard;

    async fn open_inbox(&self, sink: ReplySink) -> Result<(Address, InboxGuard), TransportError> {
        inbox::open(self.shared().clone(), sink).await
    }

    async fn send(&self, to: &Address, envelope: Envelope) -> Result<(), TransportError> {
        self.shared().send(to, envelope).await
    }

    async fn serve(&self, service: &ServiceSpec) -> Result<AmqpRequests, TransportError> {
        AmqpRequests::open(self.shared().clone(), service.clone()).await
    }
}

impl Shared {
    /// The current session, waiting (at most the connect timeout) while
    /// reconnecting.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, TransportError> {
        if let State::Up(session) = &*self.state.borrow()
            && session.is_alive()
        {
            return Ok(session.clone());
        }
        match tokio::time::timeout(self.config.connect_timeout, self.live_session()).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::ConnectionLost),
        }
    }

    /// Waits as long as it takes for a live session; `Closed` once closed.
    pub(crate) async fn live_session(&self) -> Result<Arc<Session>, TransportError> {
        let mut state = self.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                State::Up(session) if session.is_alive() => return Ok(session.clone()),
                State::Closed => return Err(TransportError::Closed),
                _ => {}
            }
            // A session marked lost stays `Up` until the supervisor swaps
            // it; the swap wakes us.
            state.changed().await.map_err(|_| TransportError::Closed)?;
        }
    }

    /// Resolves once the transport is closed.
    pub(crate) async fn closed(&self) {
        let mut state = self.state.subscribe();
        let _ = state.wait_for(|s| matches!(s, State::Closed)).await;
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.retiring.load(Ordering::Acquire) || matches!(&*self.state.borrow(), State::Closed)
    }

    /// Publishes a new state unless closed (closing is final).
    pub(crate) fn set_state(&self, new: State) {
        self.state.send_if_modified(|state| {
            if matches!(state, State::Closed) {
                return false;
            }
            *state = new;
            true
        });
    }

    fn close_now(&self) {
        self.state.send_replace(State::Closed);
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

    fn inbox(&self, id: u64) -> Option<Arc<InboxEntry>> {
        lock(&self.inboxes).get(&id).cloned()
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

    async fn send(&self, to: &Address, envelope: Envelope) -> Result<(), TransportError> {
        let Envelope { header, body } = envelope;
        let session = self.session().await?;
        let config = &self.config;
        let is_call = header.kind != Kind::Reply;

        // Requests expecting a direct reply-to answer must leave on the
        // channel that consumes the answers (a broker rule).
        let mut direct_channel = None;
        let reply_to = match (&header.reply_to, config.reply_mode) {
            (Some(address), ReplyMode::DirectReplyTo) => match inbox::direct_id(address.as_str()) {
                Some(id) => {
                    let entry = self.inbox(id).ok_or(TransportError::Closed)?;
                    direct_channel = Some(entry.direct_channel(&session, self).await?);
                    Some(DIRECT_REPLY_TO)
                }
                None => Some(address.as_str()),
            },
            (reply_to, _) => reply_to.as_ref().map(Address::as_str),
        };
        let mut props: BasicProperties = properties::encode(&header, reply_to)
            .map_err(|e| TransportError::protocol("map envelope to AMQP properties", e))?;
        let (exchange, routing_key) = if is_call {
            // The broker refuses a user_id other than the connection's user,
            // which is what lets a server trust it as the caller. Replies
            // carry none: the caller knows whom it called.
            props = props.with_user_id(session.user.clone());
            if config.persistent {
                props = props.with_delivery_mode(2);
            }
            (
                config.exchange.as_str(),
                short(&config.request_queue(to.as_str()))?,
            )
        } else {
            ("", short(to.as_str())?)
        };
        let options = BasicPublishOptions {
            // Calls must reach a queue; replies to a client that is gone
            // are simply dropped by the broker.
            mandatory: is_call,
            immediate: false,
        };
        let channel = direct_channel.as_deref().unwrap_or(&session.publisher);
        // Resolves once lapin has written the message. A server acks a
        // request after sending its reply, and lapin writes method frames
        // (acks) ahead of queued publishes: without this wait the ack could
        // reach the broker before the reply.
        let confirm = channel
            .basic_publish(short(exchange)?, routing_key, options, &body, props)
            .await
            .map_err(|e| {
                session.check();
                protocol("publish", e)
            })?;
        // Awaited even without confirm mode: a dropped PublisherConfirm is
        // parked inside lapin until `wait_for_confirms`.
        match confirm.await {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_))) => {
                Err(TransportError::NoRoute {
                    address: to.as_str().to_owned(),
                })
            }
            Ok(Confirmation::Nack(None)) => Err(TransportError::protocol(
                "publish",
                std::io::Error::other("the broker refused the message (nack)"),
            )),
            Err(e) => {
                session.check();
                Err(protocol("publish confirm", e))
            }
        }
    }
}

/// A `ShortString` (at most 255 bytes) for a queue or exchange name.
pub(crate) fn short(name: &str) -> Result<ShortString, TransportError> {
    ShortString::try_new(name).map_err(|e| TransportError::protocol("name a queue", e))
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here is a single collection call, so a
    // poisoned lock still guards consistent data.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name no other transport instance, here or in another process, picks.
fn unique_instance_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:x}.{:x}.{n}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff
    )
}
