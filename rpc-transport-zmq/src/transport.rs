//! [`ZmqTransport`]: the `Transport` implementation.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};

use rpc_core::transport::{ReplySink, ServiceSpec};
use rpc_core::{Envelope, Transport, TransportError};
use tokio::task::JoinHandle;

use crate::client::{self, ClientSide};
use crate::config::{Config, ZmqTransportBuilder};
use crate::inbox::ZmqInbox;
use crate::requests::ZmqRequests;
use crate::server::{self, ServerSide};
use crate::stats::{Counters, ZmqStats};
use rpc_core::transport::support::lock_unpoisoned;

/// A ZeroMQ transport: a ROUTER serving on its bind endpoints, and a DEALER
/// link to each server it connects to. Cheap to clone; the last clone
/// dropped (or [`close`](Self::close)) stops its sockets.
///
/// See the [crate docs](crate) for the protocol and its guarantees.
#[derive(Clone)]
pub struct ZmqTransport {
    inner: Arc<Inner>,
}

struct Inner {
    client: Arc<ClientSide>,
    server: Option<Arc<ServerSide>>,
    endpoints: Vec<String>,
    counters: Arc<Counters>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.client.close();
        if let Some(server) = &self.server {
            server.close();
        }
        for task in lock_unpoisoned(&self.tasks).drain(..) {
            task.abort();
        }
    }
}

impl ZmqTransport {
    /// Options for a new transport.
    pub fn builder() -> ZmqTransportBuilder {
        ZmqTransportBuilder::new()
    }

    pub(crate) async fn start(config: Config) -> Result<Self, TransportError> {
        let config = Arc::new(config);
        let counters = Arc::new(Counters::default());
        let mut tasks = Vec::new();
        let (server, endpoints) = if config.binds.is_empty() {
            (None, Vec::new())
        } else {
            let (server, endpoints, server_tasks) = server::bind(config.clone(), counters.clone())
                .await
                .map_err(|error| TransportError::Connect {
                    message: format!("bind {:?}: {error}", config.binds),
                    source: Some(Box::new(error)),
                })?;
            tasks.extend(server_tasks);
            (Some(server), endpoints)
        };
        let transport = ZmqTransport {
            inner: Arc::new(Inner {
                client: Arc::new(ClientSide::new(config.clone(), counters.clone())),
                server,
                endpoints,
                counters,
                tasks: Mutex::new(tasks),
            }),
        };
        let mut waits = Vec::new();
        for endpoint in &config.connects {
            waits.push(transport.start_link(endpoint.clone()));
        }
        let deadline = config.connect_timeout + config.heartbeat;
        for wait in waits {
            client::within(deadline, client::settled(wait)).await;
        }
        Ok(transport)
    }

    fn start_link(&self, endpoint: String) -> tokio::sync::watch::Receiver<client::LinkStatus> {
        let (index, status) = self.inner.client.add_link(endpoint);
        let task = tokio::spawn(self.inner.client.clone().run_link(index));
        lock_unpoisoned(&self.inner.tasks).push(task);
        status
    }

    /// Calls the server at `endpoint` too, from now on, and waits (up to
    /// the connect timeout) for its `READY` or its first failed attempt. A
    /// server not up yet is retried every reconnect interval. Returns
    /// whether the server is ready.
    pub async fn connect(&self, endpoint: impl Into<String>) -> bool {
        let status = self.start_link(endpoint.into());
        let config = &self.inner.client.config;
        let deadline = config.connect_timeout + config.heartbeat;
        let mut view = status.clone();
        client::within(deadline, client::settled(status)).await;
        *view.borrow_and_update() == client::LinkStatus::Ready
    }

    /// The endpoints this transport serves on, as bound: a `:0` port is
    /// the port the system picked.
    pub fn endpoints(&self) -> &[String] {
        &self.inner.endpoints
    }

    /// The server endpoints whose links are connected and ready right now.
    pub fn ready_servers(&self) -> Vec<String> {
        self.inner.client.ready_links()
    }

    /// Calls held in this client because every server of their service is
    /// at its credit.
    pub fn waiting_calls(&self) -> usize {
        self.inner.client.waiting()
    }

    /// Counters of this transport.
    pub fn stats(&self) -> ZmqStats {
        self.inner.counters.snapshot()
    }

    /// Closes the transport for good, for every clone: inboxes' sinks get
    /// `closed`, `serve` streams end, links stop, and later operations
    /// fail with `TransportError::Closed`. The sockets close when the last
    /// clone is dropped.
    pub fn close(&self) {
        self.inner.client.close();
        if let Some(server) = &self.inner.server {
            server.close();
        }
    }
}

impl fmt::Debug for ZmqTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZmqTransport")
            .field("endpoints", &self.inner.endpoints)
            .field("ready_servers", &self.ready_servers())
            .finish_non_exhaustive()
    }
}

impl Transport for ZmqTransport {
    type Requests = ZmqRequests;
    type Inbox = ZmqInbox;

    async fn open_inbox(&self, sink: ReplySink) -> Result<ZmqInbox, TransportError> {
        let id = self.inner.client.open_inbox(sink)?;
        Ok(ZmqInbox::new(self.inner.client.clone(), id))
    }

    /// Routes the call before returning (to the server with the most
    /// credit, or into the wait for credit); the future only writes it to
    /// the server's socket.
    fn send_request(
        &self,
        inbox: &ZmqInbox,
        mut envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.inner
            .client
            .send_request(inbox.id(), inbox.tag(), &mut envelope)
    }

    fn send_oneway(
        &self,
        mut envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.inner.client.send_oneway(&mut envelope)
    }

    async fn serve(&self, service: &ServiceSpec) -> Result<ZmqRequests, TransportError> {
        if self.inner.client.is_closed() {
            return Err(TransportError::Closed);
        }
        let server = self
            .inner
            .server
            .as_ref()
            .ok_or_else(|| TransportError::Connect {
                message: "this transport binds no endpoint, so it cannot serve".into(),
                source: None,
            })?;
        let requests = server.serve(service);
        // This transport's own links hear of the service before `serve`
        // returns, so it can call what it serves at once. Bounded: a link
        // that is going down never hears.
        let config = &self.inner.client.config;
        let own = self
            .inner
            .client
            .wait_for_own(&self.inner.endpoints, &service.name);
        client::within(config.connect_timeout, own).await;
        Ok(requests)
    }
}
