//! The server runtime: receive loop, bounded concurrency, panic capture,
//! deadlines, replies, settlement and graceful shutdown.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use futures_core::Stream;
use futures_util::FutureExt;
use futures_util::future::Either;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{Instrument, Span};

use crate::client::DEFAULT_MAX_MESSAGE_SIZE;
use crate::clock::{self, Now};
use crate::context::Context;
use crate::descriptor::DeliveryMode;
use crate::envelope::{Envelope, ErrorKind, Kind, Status};
use crate::error::RpcError;
use crate::running::{COMPLETIONS_PER_WAKE, RunningCalls};
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
            spawn_calls: false,
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
    spawn_calls: bool,
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

    /// Runs each call in a tokio task of its own (default: off).
    ///
    /// By default a server runs its calls inside its own serve task: no task
    /// per call, which at 64 and more calls in flight was most of what a
    /// call cost beyond its handler. The calls of one server then share one
    /// worker thread at a time, which suits handlers that mostly await.
    /// Handlers that compute for long (or block) hold up the others; turn
    /// this on and one server's handlers run in parallel across the
    /// runtime's workers, for the price of a task per call. Concurrency,
    /// panics, deadlines and graceful shutdown behave the same either way.
    pub fn spawn_calls(mut self, spawn_calls: bool) -> Self {
        self.spawn_calls = spawn_calls;
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
            shared: Arc::new(CallShared {
                transport: self.transport,
                service,
                stats: stats.clone(),
                max_message_size: self.max_message_size,
            }),
            concurrency: self.concurrency,
            drain_timeout: self.drain_timeout,
            spawn_calls: self.spawn_calls,
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
        // Dropping `stop` unsent tells the serve task to stop taking
        // requests at once and leave the calls it runs to finish on their
        // own, as calls did when each ran in a task of its own.
        drop(self.stop.take());
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
    shared: Arc<CallShared<T, S>>,
    concurrency: usize,
    drain_timeout: Duration,
    spawn_calls: bool,
}

/// Why the serve loop stopped taking requests.
enum Stopped {
    /// [`ServerHandle::shutdown`]: finish the calls in flight, then report.
    Shutdown,
    /// The handle was dropped: leave the calls in flight to finish alone.
    HandleDropped,
    /// The transport ended the request stream.
    StreamEnded,
}

impl<T: Transport, S: Service> ServeLoop<T, S> {
    async fn run(
        self,
        mut requests: T::Requests,
        mut stop: oneshot::Receiver<()>,
    ) -> ShutdownReport {
        let mut running = RunningCalls::new();
        let stopped = std::future::poll_fn(|cx| {
            if let Poll::Ready(sent) = Pin::new(&mut stop).poll(cx) {
                return Poll::Ready(match sent {
                    Ok(()) => Stopped::Shutdown,
                    Err(_) => Stopped::HandleDropped,
                });
            }
            let mut finished = 0;
            loop {
                // Take a request only while there is room to run it, so the
                // server never holds more than it can run: the rest stay
                // with the fabric for other servers.
                while running.len() < self.concurrency {
                    match Pin::new(&mut requests).poll_next(cx) {
                        Poll::Ready(Some(delivery)) => {
                            let call = self.shared.clone().run(delivery);
                            running.push(if self.spawn_calls {
                                Either::Right(spawned(call))
                            } else {
                                Either::Left(call)
                            });
                        }
                        Poll::Ready(None) => return Poll::Ready(Stopped::StreamEnded),
                        Poll::Pending => break,
                    }
                }
                // Each finished call makes room: go back for more requests.
                match running.poll_next_finished(cx) {
                    Poll::Ready(Some(())) => {
                        finished += 1;
                        if finished == COMPLETIONS_PER_WAKE {
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                    }
                    // Nothing running and no request waiting: both wakers
                    // are registered (an empty set leaves room to poll
                    // the requests).
                    Poll::Ready(None) | Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        // Stop taking: dropping the stream hands unreceived requests back.
        drop(requests);
        match stopped {
            Stopped::HandleDropped => {
                running.finish_detached();
                ShutdownReport {
                    drained: false,
                    abandoned: 0,
                }
            }
            Stopped::Shutdown | Stopped::StreamEnded => self.drain(running).await,
        }
    }

    /// Finishes the calls in flight within the drain timeout; those still
    /// running then are abandoned to finish (or not) in a task of their own.
    async fn drain<F>(&self, mut running: RunningCalls<F>) -> ShutdownReport
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let drained = tokio::time::timeout(self.drain_timeout, running.finish())
            .await
            .is_ok();
        let abandoned = running.len();
        running.finish_detached();
        ShutdownReport { drained, abandoned }
    }
}

/// Runs `call` in a task of its own; the returned future ends with it.
///
/// A panic in the task is raised again here, so the set reports it as it
/// does for calls run inline.
fn spawned<F>(call: F) -> impl Future<Output = ()> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(call).map(|joined| {
        if let Err(error) = joined
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    })
}

/// What one request needs beyond its delivery, shared by every call of a server.
struct CallShared<T, S> {
    transport: T,
    service: S,
    stats: Arc<ServerStats>,
    max_message_size: usize,
}

impl<T: Transport, S: Service> CallShared<T, S> {
    /// Runs one request to its reply and settlement.
    ///
    /// A plain function returning the instrumented future, not an `async fn`:
    /// the future would otherwise hold the delivery beside the request made
    /// from it, and the set copies a call's whole future on the way in.
    fn run(self: Arc<Self>, delivery: Delivery) -> impl Future<Output = ()> {
        let header = &delivery.envelope().header;
        let span = tracing::debug_span!(
            "rpc.serve",
            service = %header.service,
            method = %header.method,
            correlation_id = header.correlation_id,
            outcome = tracing::field::Empty,
        );
        // Outcomes are recorded on this handle rather than through
        // `Span::current()`, which looks the span up again on each call.
        let outcome = span.clone();
        self.answer(Request::received(delivery), outcome)
            .instrument(span)
    }

    /// Runs `request` to its reply and settlement.
    ///
    /// Returns an `async move` block rather than being an `async fn`: an
    /// `async fn` moves its arguments into locals and keeps room for both in
    /// its future, and the request is most of that future's size.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would double the future"
    )]
    fn answer(self: Arc<Self>, mut request: Request, outcome: Span) -> impl Future<Output = ()> {
        async move {
            let kind = request.header().kind;
            if !matches!(kind, Kind::Request | Kind::Oneway) {
                // Replies or cancels on a request queue: nothing to run, nobody
                // to answer. Keep them for inspection rather than drop them.
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                settle(&mut request, Settlement::DeadLetter).await;
                return;
            }
            let descriptor = self.service.descriptor();
            let delivery_mode = descriptor
                .method(&request.header().method)
                .map_or(DeliveryMode::AtLeastOnce, |m| m.delivery);
            let size = request.body().len();

            if size > self.max_message_size {
                // Refused unread: decoding a hostile body is the risk the limit exists for.
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                let message = format!(
                    "request of {size} bytes exceeds the limit of {} bytes",
                    self.max_message_size
                );
                self.reply(&request, Response::error(ErrorKind::TooLarge, message))
                    .await;
                settle(&mut request, Settlement::DeadLetter).await;
                return;
            }

            // One reading of the clock serves both the expiry check and the
            // handler's deadline.
            let now = clock::now();
            let remaining = now.until(request.header().deadline_ms);
            if remaining == Some(Duration::ZERO) {
                self.stats.expired.fetch_add(1, Ordering::Relaxed);
                outcome.record("outcome", "expired");
                let response =
                    Response::error(ErrorKind::Timeout, "deadline passed before the call ran");
                self.reply(&request, response).await;
                settle(&mut request, Settlement::Ack).await;
                return;
            }

            if delivery_mode == DeliveryMode::AtMostOnce {
                settle(&mut request, Settlement::AckBeforeRun).await;
            }

            let context = context_of(&request, now, remaining);
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
            outcome.record(
                "outcome",
                match &response.status {
                    Status::Ok => "ok",
                    Status::Error { kind, .. } => kind.as_str(),
                },
            );
            // At-least-once: the reply is out before the ack, so a crash in
            // between redelivers rather than loses. (After an ack before the
            // run, this settles nothing.)
            self.reply(&request, response).await;
            settle(&mut request, settlement).await;
        }
    }

    /// Sends `response` to the caller, if the request asked for one.
    ///
    /// A plain function returning the transport's send, not an `async fn`:
    /// the envelope is built and handed over before the call's future
    /// stores anything, so it takes no room there.
    fn reply(&self, request: &Request, response: Response) -> impl Future<Output = ()> {
        let header = request.header();
        let send = match (header.kind, &header.reply_to) {
            (Kind::Request, Some(reply_to)) => {
                let envelope = Envelope {
                    header: header.reply(response.status),
                    body: response.body,
                };
                Some(self.transport.send(reply_to, envelope))
            }
            _ => None,
        };
        async move {
            if let Some(send) = send
                && let Err(error) = send.await
            {
                tracing::warn!(%error, "could not send a reply");
            }
        }
    }
}

/// Settles `request`'s delivery; the returned future does not borrow it.
fn settle(request: &mut Request, settlement: Settlement) -> impl Future<Output = ()> + use<> {
    let settling = request.delivery().settle_keeping_envelope(settlement);
    async move {
        if let Err(error) = settling.await {
            tracing::warn!(%error, ?settlement, "could not settle a delivery");
        }
    }
}

/// The handler's context; `remaining` is the request's time left at `now`,
/// read once for the expiry check as well.
fn context_of(request: &Request, now: Now, remaining: Option<Duration>) -> Context {
    let header = request.header();
    let deadline = remaining.map(|left| now.instant.into_std() + left);
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
