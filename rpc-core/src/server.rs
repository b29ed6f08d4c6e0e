//! The server runtime: receive loop, bounded concurrency, panic capture,
//! deadlines, replies, settlement and graceful shutdown.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::client::DEFAULT_MAX_MESSAGE_SIZE;
use crate::context::Context;
use crate::descriptor::DeliveryMode;
use crate::envelope::{Envelope, ErrorKind, Kind, Status};
use crate::error::RpcError;
use crate::service::{Request, Response, Service};
use crate::transport::{Delivery, ServiceSpec, Settlement, Transport};

/// The default number of requests a server runs at once.
pub const DEFAULT_CONCURRENCY: usize = 256;

/// The default time graceful shutdown waits for calls in flight.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Entry point of the server runtime: `Server::builder(transport)`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder for servers on `transport`.
    pub fn builder<T: Transport>(transport: T) -> ServerBuilder<T> {
        ServerBuilder {
            transport,
            concurrency: DEFAULT_CONCURRENCY,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// Configures and starts a server.
#[derive(Debug)]
pub struct ServerBuilder<T> {
    transport: T,
    concurrency: usize,
    drain_timeout: Duration,
    max_message_size: usize,
}

impl<T: Transport> ServerBuilder<T> {
    /// How many requests run at once (default 256; prefetch on AMQP).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// How long [`ServerHandle::shutdown`] waits for calls in flight (default 30 s).
    pub fn drain_timeout(mut self, drain_timeout: Duration) -> Self {
        self.drain_timeout = drain_timeout;
        self
    }

    /// Requests with larger bodies are refused unread with a `TooLarge`
    /// error reply and dead-lettered (default 16 MiB).
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Starts serving `service` and returns a handle to stop it.
    ///
    /// Resolves once the transport is receiving, so calls made after it
    /// returns reach this server.
    pub async fn serve<S: Service>(self, service: S) -> Result<ServerHandle, RpcError> {
        let name = service.descriptor().name;
        let spec = ServiceSpec::new(name, self.concurrency);
        let requests = self.transport.serve(&spec).await?;
        let stats = Arc::new(ServerStats::default());
        let (stop, stopped) = oneshot::channel();
        let run = ServeLoop {
            transport: self.transport,
            service: Arc::new(service),
            permits: Arc::new(Semaphore::new(self.concurrency)),
            concurrency: self.concurrency,
            drain_timeout: self.drain_timeout,
            max_message_size: self.max_message_size,
            stats: stats.clone(),
        };
        let task = tokio::spawn(run.run(requests, stopped));
        Ok(ServerHandle {
            stop: Some(stop),
            task: Some(task),
            stats,
        })
    }
}

/// A running server. Dropping it stops the server without draining; call
/// [`shutdown`](ServerHandle::shutdown) to finish calls in flight first.
#[derive(Debug)]
pub struct ServerHandle {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<ShutdownReport>>,
    stats: Arc<ServerStats>,
}

impl ServerHandle {
    /// Stops taking requests, waits for those in flight (up to the drain
    /// timeout; each is replied to and settled) and reports.
    pub async fn shutdown(mut self) -> ShutdownReport {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or(ShutdownReport {
                drained: false,
                abandoned: 0,
            }),
            None => ShutdownReport {
                drained: true,
                abandoned: 0,
            },
        }
    }

    /// Counters of what this server has done.
    pub fn stats(&self) -> &ServerStats {
        &self.stats
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// What graceful shutdown achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every call in flight finished within the drain timeout.
    pub drained: bool,
    /// Calls still running when the drain timeout ran out.
    pub abandoned: usize,
}

/// Counters of one server, readable while it runs.
#[derive(Debug, Default)]
pub struct ServerStats {
    handled: AtomicU64,
    panicked: AtomicU64,
    expired: AtomicU64,
    rejected: AtomicU64,
}

impl ServerStats {
    /// Requests whose handler ran to completion.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Requests whose handler panicked.
    pub fn panicked(&self) -> u64 {
        self.panicked.load(Ordering::Relaxed)
    }

    /// Requests not run because their deadline had passed.
    pub fn expired(&self) -> u64 {
        self.expired.load(Ordering::Relaxed)
    }

    /// Requests refused without running: unknown method, undecodable
    /// arguments, wrong envelope kind.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

struct ServeLoop<T, S> {
    transport: T,
    service: Arc<S>,
    permits: Arc<Semaphore>,
    concurrency: usize,
    drain_timeout: Duration,
    max_message_size: usize,
    stats: Arc<ServerStats>,
}

impl<T: Transport, S: Service> ServeLoop<T, S> {
    async fn run(
        self,
        mut requests: T::Requests,
        mut stop: oneshot::Receiver<()>,
    ) -> ShutdownReport {
        loop {
            // Take a permit before a request, so the server never holds more
            // requests than it can run: the rest stay with the fabric for
            // other servers.
            let permit = tokio::select! {
                _ = &mut stop => break,
                permit = self.permits.clone().acquire_owned() => permit.expect("never closed"),
            };
            let delivery = tokio::select! {
                _ = &mut stop => break,
                delivery = requests.next() => delivery,
            };
            let Some(delivery) = delivery else { break };
            let call = Call {
                transport: self.transport.clone(),
                service: self.service.clone(),
                stats: self.stats.clone(),
                max_message_size: self.max_message_size,
            };
            tokio::spawn(async move {
                // Boxed: a call's future is large (handler, reply and settle
                // states), and a task holding it inline copies all of it on
                // spawn, into the task cell and at completion (measured: 5% of
                // the instructions of a memory-transport call). The box is
                // one allocation and one copy.
                Box::pin(call.run(delivery)).await;
                drop(permit);
            });
        }
        // Stop taking: dropping the stream hands unreceived requests back.
        drop(requests);
        self.drain().await
    }

    async fn drain(&self) -> ShutdownReport {
        let all = u32::try_from(self.concurrency).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(self.drain_timeout, self.permits.acquire_many(all))
            .await
            .is_ok();
        ShutdownReport {
            drained,
            abandoned: if drained {
                0
            } else {
                self.concurrency - self.permits.available_permits()
            },
        }
    }
}

/// Everything one request needs, moved into its task.
struct Call<T, S> {
    transport: T,
    service: Arc<S>,
    stats: Arc<ServerStats>,
    max_message_size: usize,
}

impl<T: Transport, S: Service> Call<T, S> {
    async fn run(self, delivery: Delivery) {
        let Delivery { envelope, handle } = delivery;
        let Envelope { header, body } = envelope;
        let span = tracing::debug_span!(
            "rpc.serve",
            service = %header.service,
            method = %header.method,
            correlation_id = header.correlation_id,
            outcome = tracing::field::Empty,
        );
        async move {
            if !matches!(header.kind, Kind::Request | Kind::Oneway) {
                // Replies or cancels on a request queue: nothing to run, nobody
                // to answer. Keep them for inspection rather than drop them.
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                settle(handle, Settlement::DeadLetter).await;
                return;
            }
            let descriptor = self.service.descriptor();
            let delivery_mode = descriptor
                .method(&header.method)
                .map_or(DeliveryMode::AtLeastOnce, |m| m.delivery);
            let size = body.len();
            let request = Request::new(header, body);

            if size > self.max_message_size {
                // Refused unread: decoding a hostile body is the risk the limit exists for.
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                let message = format!(
                    "request of {size} bytes exceeds the limit of {} bytes",
                    self.max_message_size
                );
                self.reply(&request, Response::error(ErrorKind::TooLarge, message))
                    .await;
                settle(handle, Settlement::DeadLetter).await;
                return;
            }

            if request.header().is_expired() {
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                tracing::Span::current().record("outcome", "expired");
                let response =
                    Response::error(ErrorKind::Timeout, "deadline passed before the call ran");
                self.reply(&request, response).await;
                settle(handle, Settlement::Ack).await;
                return;
            }

            let mut handle = Some(handle);
            if delivery_mode == DeliveryMode::AtMostOnce {
                let handle = handle.take().expect("not settled yet");
                settle(handle, Settlement::AckBeforeRun).await;
            }

            let context = context_of(&request);
            let run = AssertUnwindSafe(context.scope(self.service.call(&request)));
            let (response, settlement) = match run.catch_unwind().await {
                Ok(response) => {
                    let settlement = match &response.status {
                        Status::Ok => {
                            self.stats.handled.fetch_add(1, Ordering::Relaxed);
                            Settlement::Ack
                        }
                        // A request that cannot be decoded or routed will fail the
                        // same way everywhere: dead-letter it, never requeue.
                        Status::Error { .. } => {
                            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                            Settlement::DeadLetter
                        }
                    };
                    (response, settlement)
                }
                Err(panic) => {
                    self.stats.panicked.fetch_add(1, Ordering::Relaxed);
                    let message = panic_message(panic.as_ref());
                    tracing::warn!(panic = %message, "handler panicked");
                    // A handler that panics on this input will panic again:
                    // dead-letter instead of a redelivery loop.
                    (
                        Response::error(ErrorKind::Remote, message),
                        Settlement::DeadLetter,
                    )
                }
            };
            tracing::Span::current().record(
                "outcome",
                match &response.status {
                    Status::Ok => "ok",
                    Status::Error { kind, .. } => kind.as_str(),
                },
            );
            // At-least-once: the reply is out before the ack, so a crash in
            // between redelivers rather than loses.
            self.reply(&request, response).await;
            if let Some(handle) = handle {
                settle(handle, settlement).await;
            }
        }
        .instrument(span)
        .await
    }

    async fn reply(&self, request: &Request, response: Response) {
        let header = request.header();
        let (Kind::Request, Some(reply_to)) = (header.kind, &header.reply_to) else {
            return;
        };
        let envelope = Envelope {
            header: header.reply(response.status),
            body: response.body,
        };
        if let Err(error) = self.transport.send(reply_to, envelope).await {
            tracing::warn!(%error, "could not send a reply");
        }
    }
}

async fn settle(handle: crate::transport::DeliveryHandle, settlement: Settlement) {
    if let Err(error) = handle.settle(settlement).await {
        tracing::warn!(%error, ?settlement, "could not settle a delivery");
    }
}

fn context_of(request: &Request) -> Context {
    let header = request.header();
    let deadline = header.remaining().map(|left| Instant::now() + left);
    Context::new(
        deadline,
        header.correlation_id,
        header.service.clone(),
        header.method.clone(),
        header.metadata.clone(),
    )
}

/// The text of a panic payload; never a type name.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&'static str>() {
        format!("handler panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("handler panicked: {s}")
    } else {
        "handler panicked".to_owned()
    }
}
