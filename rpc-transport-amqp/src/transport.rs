//! The crate's top face: [`AmqpTransport`], the [`Transport`] impl and the
//! transport's own operations (cleanup, queue names, connection status).

use std::collections::BTreeSet;
use std::sync::Arc;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use rpc_core::transport::{ReplySink, ServiceSpec, Transport};
use rpc_core::{Envelope, TransportError};

use crate::config::{Config, redacted_url};
use crate::confirms;
use crate::error::protocol;
use crate::inbox::{self, InboxGuard};
use crate::requests::AmqpRequests;
use crate::session::Session;
use crate::shared::{Shared, State, lock, short};
use crate::supervisor;
use crate::topology;

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

impl AmqpTransport {
    pub(crate) async fn start(config: Config) -> Result<Self, TransportError> {
        let session = Arc::new(Session::open(&config, 1, 0).await?);
        let (shared, unconfirmed) = Shared::new(config, session.clone());
        let shared = Arc::new(shared);
        tokio::spawn(supervisor::run(shared.clone(), session));
        tokio::spawn(confirms::run(shared.clone(), unconfirmed));
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

    /// Tear-down for tests and environments: closes the transport, then
    /// deletes every queue it declared (request queues and their
    /// dead-letter queues; its reply queues are exclusive and go with its
    /// connection) and the broadcast exchange of its prefix if it declared
    /// it. Returns how many queues are gone. A broker that does
    /// not answer within the connect timeout fails it.
    ///
    /// The deletes run on a connection of their own, opened after this
    /// transport's is closed, so no consumer of this transport is still
    /// being cancelled while its queue is deleted: lapin takes the broker's
    /// cancel-ok for a consumer it already saw cancelled by the delete as a
    /// protocol violation and drops the whole connection.
    pub async fn cleanup(&self) -> Result<usize, TransportError> {
        let shared = self.shared();
        let replies: BTreeSet<String> = shared
            .inbox_entries()
            .iter()
            .filter_map(|entry| entry.queue.clone())
            .collect();
        let first = match &*shared.state.borrow() {
            State::Up(session) => session.url_index,
            _ => 0,
        };
        self.close().await;
        let declared = std::mem::take(&mut *lock(&shared.declared));
        let exchanges = std::mem::take(&mut *lock(&shared.exchanges));
        let (exclusive, shared_queues): (Vec<String>, Vec<String>) = declared
            .into_iter()
            .partition(|name| replies.contains(name));
        let result = async {
            let session = Session::open(&shared.config, 0, first).await?;
            let channel = session.admin_channel().await?;
            for name in &shared_queues {
                channel
                    .queue_delete(short(name)?, QueueDeleteOptions::default())
                    .await
                    .map_err(|e| protocol("delete queue", e))?;
            }
            for exchange in &exchanges {
                channel
                    .exchange_delete(short(exchange)?, ExchangeDeleteOptions::default())
                    .await
                    .map_err(|e| protocol("delete exchange", e))?;
            }
            let _ = session.connection.close(200, "cleaned up".into()).await;
            Ok(shared_queues.len() + exclusive.len())
        };
        // A broker that stopped answering fails the cleanup instead of
        // stalling it (queues left behind are the lesser harm).
        tokio::time::timeout(shared.config.connect_timeout, result)
            .await
            .unwrap_or(Err(TransportError::ConnectionLost))
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
                session.close(200, "closed by owner"),
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

    /// The broker the transport is connected to right now (its URL as
    /// configured, password redacted); `None` while reconnecting.
    pub fn connected_broker(&self) -> Option<String> {
        match &*self.shared().state.borrow() {
            State::Up(session) if session.is_alive() => {
                Some(redacted_url(&self.shared().config.urls[session.url_index]))
            }
            _ => None,
        }
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

    async fn open_inbox(&self, sink: ReplySink) -> Result<InboxGuard, TransportError> {
        inbox::open(self.shared().clone(), sink).await
    }

    async fn send_request(
        &self,
        inbox: &InboxGuard,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.shared()
            .publish_call(Some(&inbox.entry), envelope)
            .await
    }

    async fn send_oneway(&self, envelope: Envelope) -> Result<(), TransportError> {
        self.shared().publish_call(None, envelope).await
    }

    async fn serve(&self, service: &ServiceSpec) -> Result<AmqpRequests, TransportError> {
        AmqpRequests::open(self.shared().clone(), service.clone(), false).await
    }

    /// A private queue bound to `<prefix>rpc.broadcast` under the service's
    /// name and `*`.
    async fn serve_broadcast(&self, service: &ServiceSpec) -> Result<AmqpRequests, TransportError> {
        AmqpRequests::open(self.shared().clone(), service.clone(), true).await
    }

    /// Published to `<prefix>rpc.broadcast` with the service's name (or `*`)
    /// as routing key; not `mandatory`: nobody listening means no answers.
    async fn send_broadcast(
        &self,
        inbox: &InboxGuard,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        let session = self.shared().session().await?;
        let channel = session
            .connection
            .create_channel()
            .await
            .map_err(|e| protocol("open channel", e))?;
        let exchange = topology::declare_broadcast_exchange(&channel, self.shared()).await;
        let _ = channel.close(200, "declared".into()).await;
        self.shared()
            .publish_to(Some(&inbox.entry), envelope, Some(exchange?))
            .await
    }
}
