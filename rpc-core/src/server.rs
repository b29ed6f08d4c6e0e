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
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::clock::{self, Now};
use crate::context::Context;
use crate::descriptor::{DeliveryMode, MethodDescriptor};
use crate::envelope::{Envelope, ErrorKind, Header, Kind, Status};
use crate::error::{RpcError, TransportError};
use crate::interrupt::{self, CallKey, Interrupted, Interruptible, RunningHandlers, interruptible};
use crate::introspection::{self, BroadcastTask, Responder};
use crate::limits::Limits;
use crate::metrics::{Outcome as MeteredOutcome, ServerMeter};
use crate::replay::{
    Answer, DEFAULT_REPLAY_BYTES, DEFAULT_REPLAY_ENTRIES, MAX_FAILED_SENDS, ReplayCache,
};
use crate::running::{self, COMPLETIONS_PER_WAKE, RunningCalls, SpareBox};
use crate::service::{Request, Response, Service};
use crate::spans;
use crate::trace::{self, TraceContext};
use crate::trace_otel;
use crate::transport::{Delivery, RefusalCount, ServiceSpec, SettleFuture, Settlement, Transport};

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
            max_message_size: Limits::default().max_message_size,
            spawn_calls: None,
            replay_entries: DEFAULT_REPLAY_ENTRIES,
            replay_bytes: DEFAULT_REPLAY_BYTES,
            introspection: true,
            metrics: true,
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
    spawn_calls: Option<bool>,
    replay_entries: usize,
    replay_bytes: usize,
    introspection: bool,
    metrics: bool,
}

impl<T: Transport> ServerBuilder<T> {
    /// Answers `$ping`, `$info` and `$stats` queries, one at a time and by
    /// broadcast (default: on). Off, such queries get `NoSuchMethod`.
    pub fn introspection(mut self, on: bool) -> Self {
        self.introspection = on;
        self
    }

    /// Reports to the [`metrics`](::metrics) facade (default: on). Off, the
    /// server registers no handles and skips them on every request; its
    /// own counts, which `$stats` reports, are kept either way. With no
    /// recorder installed the handles do nothing anyway: this is for a
    /// server that wants none of the per-request work around them.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

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

    /// Whether each call runs in a tokio task of its own: `true` for every
    /// call, `false` for none. Unset (the default), the server decides by
    /// its runtime.
    ///
    /// Calls run inside the server's serve task cost no task each, which on
    /// a single thread is the cheaper way at any number of calls in flight;
    /// but they share one worker thread at a time. So by default, on a
    /// `current_thread` runtime every call runs inline, and on a
    /// multi-thread runtime the first [`SPAWN_CALLS_BEYOND`] calls in
    /// flight run inline (a lone call gains nothing from a task) and the
    /// ones beyond get tasks of their own, so a busy server's handlers
    /// spread over the runtime's workers. An inline call is polled once
    /// where its request is taken, and one that finishes then (a handler
    /// that does not wait) was never in flight beside others: it counts
    /// towards none, so such calls all run in the serve task, cheaper
    /// there than a task would be to schedule. `true` suits handlers that
    /// compute for long or block, which would hold up the calls sharing
    /// their task; `false` keeps one server's calls on one thread at a
    /// time. Concurrency, panics, deadlines, cancellation and graceful
    /// shutdown behave the same either way.
    pub fn spawn_calls(mut self, spawn_calls: bool) -> Self {
        self.spawn_calls = Some(spawn_calls);
        self
    }

    /// How many recent answers the server keeps, and how many bytes of reply
    /// bodies at most (defaults 4096 and 16 MiB; `0` entries keeps none).
    ///
    /// A request the fabric delivers again after its answer was sent (the
    /// server's connection dropped before the ack got through) gets the
    /// kept answer again and is settled as before, without running its
    /// handler a second time. Only this server's answers are kept: a
    /// request redelivered to another server runs there. The cache also
    /// bounds the retries of an answer whose send failed (the request is
    /// handed back, up to [`MAX_FAILED_SENDS`] times); with no cache such a
    /// request is acked at once. See docs/reliability.md.
    pub fn replay_cache(mut self, entries: usize, bytes: usize) -> Self {
        self.replay_entries = entries;
        self.replay_bytes = bytes;
        self
    }

    /// Starts serving `service` and returns a handle to stop it.
    ///
    /// Resolves once the transport is receiving, so calls made after it
    /// returns reach this server.
    pub async fn serve<S: Service>(self, service: S) -> Result<ServerHandle, RpcError> {
        let descriptor = service.descriptor();
        let name = descriptor.name;
        let spec = ServiceSpec::new(name, self.concurrency);
        let requests = self.transport.serve(&spec).await?;
        let stats = Arc::new(ServerStats {
            refused_by_transport: spec.refusals(),
            ..ServerStats::default()
        });
        let meter = Arc::new(ServerMeter::new(descriptor, self.metrics));
        let (responder, broadcasts) = if self.introspection {
            let responder = Arc::new(Responder::new(descriptor, meter.clone()));
            let task = responder.clone().serve_broadcasts(&self.transport).await?;
            (Some(responder), task)
        } else {
            (None, None)
        };
        let (stop, stopped) = oneshot::channel();
        let run = ServeLoop {
            _transport: self.transport,
            shared: Arc::new(CallShared {
                service,
                stats: stats.clone(),
                max_message_size: self.max_message_size,
                handlers: RunningHandlers::default(),
                replay: ReplayCache::new(self.replay_entries, self.replay_bytes),
                meter,
                responder,
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
            _broadcasts: broadcasts,
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
    _broadcasts: Option<BroadcastTask>,
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
    cut_at_deadline: AtomicU64,
    cancelled: AtomicU64,
    replayed: AtomicU64,
    /// Shared with the transport through the [`ServiceSpec`].
    refused_by_transport: RefusalCount,
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
    /// arguments, wrong envelope kind, too large, and those the transport
    /// refused before dispatch ([`refused_by_transport`](Self::refused_by_transport)).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed) + self.refused_by_transport()
    }

    /// Requests the transport refused before they reached the server: their
    /// headers or properties could not be read (see
    /// [`ServiceSpec::refused`]). Each was answered with a `decode` error
    /// where it named a reply address, and dead-lettered where the fabric
    /// has dead letters.
    pub fn refused_by_transport(&self) -> u64 {
        self.refused_by_transport.get()
    }

    /// Handlers dropped at their call's deadline.
    pub fn cut_at_deadline(&self) -> u64 {
        self.cut_at_deadline.load(Ordering::Relaxed)
    }

    /// Handlers dropped because their caller cancelled.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Redelivered requests answered again from the replay cache, not run.
    pub fn replayed(&self) -> u64 {
        self.replayed.load(Ordering::Relaxed)
    }

    /// Counts one request's outcome.
    fn count(&self, outcome: &Outcome) {
        let counter = match outcome {
            Outcome::Ran(Response {
                status: Status::Ok, ..
            }) => &self.handled,
            Outcome::Ran(_) | Outcome::NotACall | Outcome::TooLarge { .. } => &self.rejected,
            Outcome::Expired => &self.expired,
            Outcome::Panicked(_) => &self.panicked,
            Outcome::Interrupted(Interrupted::Deadline) => &self.cut_at_deadline,
            Outcome::Interrupted(Interrupted::Cancelled) => &self.cancelled,
            Outcome::Replayed(_) => &self.replayed,
            // A cancel message is not a request of its own.
            Outcome::Cancel => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// On a multi-thread runtime, and unless
/// [`ServerBuilder::spawn_calls`] says otherwise, a server runs this many
/// calls inside its serve task and gives each call beyond them a task of its
/// own. Calls that finish on their first poll, in the serve task, do not
/// count.
pub const SPAWN_CALLS_BEYOND: usize = 4;

struct ServeLoop<T, S> {
    /// Held for the server's life: a transport may close its connection
    /// when the last clone goes (AMQP does), and the request stream alone
    /// does not keep it open.
    _transport: T,
    shared: Arc<CallShared<S>>,
    concurrency: usize,
    drain_timeout: Duration,
    spawn_calls: Option<bool>,
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
    async fn run<R: Stream<Item = Delivery> + Unpin>(
        self,
        mut requests: R,
        mut stop: oneshot::Receiver<()>,
    ) -> ShutdownReport {
        let mut running = RunningCalls::new();
        let mut spare = SpareBox::new();
        let spawn_beyond = match self.spawn_calls {
            Some(true) => 0,
            Some(false) => usize::MAX,
            None => match tokio::runtime::Handle::current().runtime_flavor() {
                tokio::runtime::RuntimeFlavor::MultiThread => SPAWN_CALLS_BEYOND,
                _ => usize::MAX,
            },
        };
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
                            let shared = self.shared.clone();
                            if running.len() >= spawn_beyond {
                                running.push(Either::Right(spawned(shared.run(delivery))));
                                continue;
                            }
                            // Boxed where it is made: the call's future is
                            // large, and the set moves what it is given
                            // several times on the way into its task;
                            // moving a pointer instead saves more than the
                            // allocation costs. Polled once here: a call
                            // that finishes at once never enters the set,
                            // and leaves its box to the next call.
                            let mut call = spare.boxed(shared.run(delivery));
                            if !running::poll_first(Pin::new(&mut call), cx) {
                                running.push(Either::Left(call));
                                continue;
                            }
                            spare.keep(call);
                            finished += 1;
                            if finished == COMPLETIONS_PER_WAKE {
                                cx.waker().wake_by_ref();
                                return Poll::Pending;
                            }
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
struct CallShared<S> {
    service: S,
    stats: Arc<ServerStats>,
    max_message_size: usize,
    /// Handlers waiting, for cancels to find.
    handlers: RunningHandlers,
    /// Answers sent, for requests delivered again.
    replay: ReplayCache,
    meter: Arc<ServerMeter>,
    responder: Option<Arc<Responder>>,
}

impl<S: Service> CallShared<S> {
    /// Runs one request to its reply and settlement.
    ///
    /// A plain function returning the instrumented future, not an `async fn`:
    /// the future would otherwise hold the delivery beside the request made
    /// from it, and the set copies a call's whole future on the way in.
    fn run(self: Arc<Self>, delivery: Delivery) -> impl Future<Output = ()> {
        let header = &delivery.envelope().header;
        if let Some(responder) = &self.responder
            && introspection::is_query(&header.method)
        {
            return Either::Right(responder.clone().answer(delivery));
        }
        let caller = trace::caller(header);
        let trace = trace::serving(caller);
        let span = spans::debug_span(|| {
            tracing::debug_span!(
                "rpc.serve",
                service = %header.service,
                method = %header.method,
                correlation_id = header.correlation_id,
                trace_id = %trace.trace_id_hex(),
                span_id = %trace.span_id_hex(),
                outcome = tracing::field::Empty,
            )
        });
        trace_otel::set_parent(&span, caller);
        // Outcomes are recorded on this handle rather than through
        // `Span::current()`, which looks the span up again on each call.
        let outcome = spans::recorder(&span);
        Either::Left(
            self.answer(Request::received(delivery), outcome, trace)
                .instrument(span),
        )
    }

    /// Runs `request` to its outcome, then replies and settles as
    /// [`policy`] says.
    ///
    /// Returns an `async move` block rather than being an `async fn`: an
    /// `async fn` moves its arguments into locals and keeps room for both in
    /// its future, and the request is most of that future's size.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn would double the future"
    )]
    fn answer(
        self: Arc<Self>,
        mut request: Request,
        span: Option<Span>,
        trace: TraceContext,
    ) -> impl Future<Output = ()> {
        async move {
            // One reading of the clock starts the meter, checks the
            // request's expiry and sets its handler's deadline.
            let now = clock::now();
            // Looked up once, for the meter and for how to run the handler.
            let methods = self.service.descriptor().methods;
            let index = methods.iter().position(|m| m.name == request.method());
            let meter = self.meter.start(index, now.instant);
            // Tracked when received: a fabric that tracks deliveries may
            // deliver this request again, and its answer is kept for that.
            let redeliverable = request.delivery_ref().is_tracked();
            let outcome = match self.admit(&request, now, index.map(|i| &methods[i])) {
                Admission::Decided(outcome) => outcome,
                Admission::Run(run) => {
                    if run.ack_first {
                        settle(&mut request, Settlement::AckBeforeRun).await;
                    }
                    Outcome::of_run(self.handler(&request, trace, &run).await)
                }
            };
            self.stats.count(&outcome);
            if let Outcome::Panicked(message) = &outcome {
                tracing::warn!(panic = %message, "handler panicked");
            }
            let ran = outcome.ran_the_handler();
            let (response, settlement) = policy(outcome);
            let finished = response.as_ref().map_or(MeteredOutcome::Refused, |r| {
                MeteredOutcome::of_status(&r.status)
            });
            // One reading of the clock ends the meter and dates the reply.
            let end = clock::now();
            meter.finish(finished, settlement == Settlement::DeadLetter, end.instant);
            if let Some(span) = &span {
                span.record("outcome", finished.as_str());
            }
            // The answer is kept for a redelivery before its reply goes out,
            // unless the fabric's first delivery of the request can be
            // settled for good: then only if the request can still come
            // back (its reply failed, or the fabric would not promise).
            let mut unkept = None;
            if ran
                && redeliverable
                && let Some(response) = &response
            {
                if request.delivery_ref().answer_kept_only_if_needed() {
                    unkept = self.replay.copy(response);
                } else {
                    self.replay.insert(request.header(), response, settlement);
                }
            }
            // At-least-once: the reply is out before the ack, so a crash in
            // between redelivers rather than loses. (After an ack before the
            // run, this settles nothing.)
            let mut settlement = settlement;
            if let Some(response) = response
                && !reply(&request, response, end.unix_ms).await
                && settlement == Settlement::Ack
                && request.delivery_ref().is_tracked()
            {
                if let Some(kept) = unkept.take() {
                    self.replay.insert_copy(request.header(), kept, settlement);
                }
                settlement = self.after_failed_send(request.header());
            }
            if let Some(kept) = unkept {
                match request.delivery().settle_for_good(settlement) {
                    Some(settling) => return report_settled(settling, settlement).await,
                    None => self.replay.insert_copy(request.header(), kept, settlement),
                }
            }
            settle(&mut request, settlement).await;
        }
    }
}

impl<S: Service> CallShared<S> {
    /// The settlement of a request whose answer could not be sent: handed
    /// back to the fabric, which delivers it again and the replay cache
    /// answers it without running, until its sends have failed
    /// [`MAX_FAILED_SENDS`] times; then acked, as an answer nobody can
    /// receive. An answer the cache does not keep is acked at once: only the
    /// cache bounds the retries.
    fn after_failed_send(&self, header: &Header) -> Settlement {
        match self.replay.send_failed(header) {
            Some(failed) if failed < MAX_FAILED_SENDS => Settlement::Requeue,
            _ => Settlement::Ack,
        }
    }

    /// Decides `request`'s fate short of running its handler: an outcome
    /// reached without it, or how to run it (`method` is its method's
    /// descriptor, `None` for a method the service does not have).
    /// Synchronous, so none of it takes room in the call's future.
    ///
    /// Inlined, as are [`handler`](Self::handler) and `Outcome::of_run`:
    /// left out of line, the handler's future and the reply's encoding are
    /// built and copied across the calls (measured: about 200 instructions
    /// per call more).
    #[inline(always)]
    fn admit(
        &self,
        request: &Request,
        now: Now,
        method: Option<&'static MethodDescriptor>,
    ) -> Admission {
        let header = request.header();
        match header.kind {
            Kind::Request | Kind::Oneway => {}
            Kind::Cancel => {
                // Best effort: a handler is dropped only if it runs here.
                self.handlers.cancel(CallKey::of(header));
                return Admission::Decided(Outcome::Cancel);
            }
            _ => return Admission::Decided(Outcome::NotACall),
        }
        let size = request.body().len();
        if size > self.max_message_size {
            // Refused unread: decoding a hostile body is the risk the limit exists for.
            return Admission::Decided(Outcome::TooLarge {
                size,
                limit: self.max_message_size,
            });
        }
        let remaining = now.until(header.deadline_ms);
        if remaining == Some(Duration::ZERO) {
            return Admission::Decided(Outcome::Expired);
        }
        // A first delivery cannot have been answered before: no look-up.
        if request.delivery_ref().may_be_redelivered()
            && let Some(answer) = self.replay.get(header)
        {
            return Admission::Decided(Outcome::Replayed(answer));
        }
        Admission::Run(Run {
            deadline: remaining.map(|left| now.instant + left),
            // Methods marked `run_to_completion` are never cut short.
            cut: !method.is_some_and(|m| m.run_to_completion),
            ack_first: method.is_some_and(|m| m.delivery == DeliveryMode::AtMostOnce),
        })
    }

    /// The handler of `request`, in its context, with panics caught, cut
    /// short at its deadline or by a cancel unless `run` says otherwise.
    #[inline(always)]
    fn handler<'a>(
        &'a self,
        request: &'a Request,
        trace: TraceContext,
        run: &Run,
    ) -> Interruptible<'a, impl Future<Output = std::thread::Result<Response>> + 'a> {
        let context = context_of(request, run.deadline)
            .with_trace(trace)
            .with_caller_trace(trace::caller(request.header()));
        let handler = AssertUnwindSafe(context.scope(self.service.call(request))).catch_unwind();
        if run.cut {
            let key = CallKey::of(request.header());
            interruptible(handler, run.deadline, &self.handlers, key)
        } else {
            interrupt::to_completion(handler)
        }
    }
}

/// What [`CallShared::admit`] decided.
enum Admission {
    /// The request's outcome, reached without running its handler.
    Decided(Outcome),
    /// Run the handler.
    Run(Run),
}

/// How to run a request's handler.
struct Run {
    /// The call's deadline, on the monotonic clock.
    deadline: Option<Instant>,
    /// Whether the deadline and a cancel cut the handler short.
    cut: bool,
    /// Whether the request is settled before it runs (at-most-once).
    ack_first: bool,
}

impl Outcome {
    /// The outcome of a handler that ran, to its end or not.
    #[inline(always)]
    fn of_run(finished: Result<std::thread::Result<Response>, Interrupted>) -> Self {
        match finished {
            Ok(Ok(response)) => Outcome::Ran(response),
            Ok(Err(panic)) => Outcome::Panicked(panic_message(panic.as_ref())),
            Err(why) => Outcome::Interrupted(why),
        }
    }
}

/// What became of one request, as far as replying and settling go.
#[derive(Debug)]
enum Outcome {
    /// A reply found among requests: nothing to run, nobody to answer.
    NotACall,
    /// A caller's cancel of one of its calls: handed to that call's handler
    /// if it runs here; nobody to answer.
    Cancel,
    /// The body is over the server's limit; refused unread.
    TooLarge {
        /// The body's size.
        size: usize,
        /// The server's limit.
        limit: usize,
    },
    /// The deadline passed before the request ran.
    Expired,
    /// The dispatch ran: the handler's value, or a refusal it made
    /// (unknown method, undecodable arguments, unencodable value).
    Ran(Response),
    /// The handler panicked.
    Panicked(String),
    /// The handler's future was dropped before it finished.
    Interrupted(Interrupted),
    /// The request was answered before and delivered again: its answer is
    /// sent again, not run again.
    Replayed(Answer),
}

impl Outcome {
    /// Whether the handler ran (to its end or not): only then is the answer
    /// worth keeping for a redelivery.
    fn ran_the_handler(&self) -> bool {
        matches!(
            self,
            Outcome::Ran(_) | Outcome::Panicked(_) | Outcome::Interrupted(_)
        )
    }
}

/// The settlement policy, the table in docs/ARCHITECTURE.md: what to answer
/// (if the request asked for an answer) and how to settle.
///
/// Requests that will fail the same way everywhere (undecodable, unknown
/// method, a handler that panics on them, too large) are dead-lettered,
/// never requeued into a redelivery loop; a request that was merely late is
/// acked (stale, not poison), and so is one whose caller gave up.
fn policy(outcome: Outcome) -> (Option<Response>, Settlement) {
    match outcome {
        Outcome::NotACall => (None, Settlement::DeadLetter),
        Outcome::Cancel => (None, Settlement::Ack),
        Outcome::TooLarge { size, limit } => (
            Some(Response::error(
                ErrorKind::TooLarge,
                format!("request of {size} bytes exceeds the limit of {limit} bytes"),
            )),
            Settlement::DeadLetter,
        ),
        Outcome::Expired => (
            Some(Response::error(
                ErrorKind::Timeout,
                "deadline passed before the call ran",
            )),
            Settlement::Ack,
        ),
        Outcome::Ran(response) => {
            let settlement = match response.status {
                Status::Ok => Settlement::Ack,
                Status::Error { .. } => Settlement::DeadLetter,
            };
            (Some(response), settlement)
        }
        Outcome::Panicked(message) => (
            Some(Response::error(ErrorKind::Remote, message)),
            Settlement::DeadLetter,
        ),
        Outcome::Interrupted(Interrupted::Deadline) => (
            Some(Response::error(
                ErrorKind::Timeout,
                "deadline passed while the call ran",
            )),
            Settlement::Ack,
        ),
        Outcome::Interrupted(Interrupted::Cancelled) => (None, Settlement::Ack),
        Outcome::Replayed(answer) => (Some(answer.response()), answer.settlement),
    }
}

/// Sends `response`, dated `sent_at_ms`, to the caller, if the request asked for one; resolves
/// to whether it is out (or needed no sending). A send that fails because
/// the caller's inbox is gone (`NoRoute`) counts as out: nobody is left to
/// receive it, sending again would not change that.
///
/// A plain function returning the transport's send, not an `async fn`: the
/// envelope is built and handed over before the call's future stores
/// anything, so it takes no room there.
fn reply(
    request: &Request,
    response: Response,
    sent_at_ms: u64,
) -> impl Future<Output = bool> + use<> {
    let header = request.header();
    let send = (header.kind == Kind::Request).then(|| {
        request.delivery_ref().reply(Envelope {
            header: header.reply_sent_at(response.status, sent_at_ms),
            body: response.body,
        })
    });
    async move {
        let Some(send) = send else { return true };
        match send.await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "could not send a reply");
                matches!(error, TransportError::NoRoute { .. })
            }
        }
    }
}

/// Settles `request`'s delivery; the returned future does not borrow it.
fn settle(request: &mut Request, settlement: Settlement) -> impl Future<Output = ()> + use<> {
    report_settled(
        request.delivery().settle_keeping_envelope(settlement),
        settlement,
    )
}

/// Waits for a settlement and reports its failure.
async fn report_settled(settling: SettleFuture, settlement: Settlement) {
    if let Err(error) = settling.await {
        tracing::warn!(%error, ?settlement, "could not settle a delivery");
    }
}

/// The handler's context, with the request's deadline read once for the
/// expiry check as well.
fn context_of(request: &Request, deadline: Option<Instant>) -> Context {
    let header = request.header();
    let deadline = deadline.map(Instant::into_std);
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
