//! The call context a handler runs in: deadline, correlation id, metadata.
//!
//! The server runtime sets it as a task-local around each handler, so trait
//! methods keep plain signatures. Calls a handler makes through any client
//! read it too: their deadline is capped by the handler's remaining budget.
//! A task the handler spawns does not inherit it; capture it with
//! [`Context::current`] and re-enter it with [`Context::scope`].

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use crate::envelope::Metadata;
use crate::name::Name;
use crate::trace::TraceContext;

tokio::task_local! {
    static CURRENT: Context;
}

/// What a handler knows about the call it is serving.
#[derive(Clone, Debug)]
pub struct Context {
    /// On tokio's clock, the crate's one monotonic clock (see `clock.rs`):
    /// under paused test time a handler's budget runs down with it.
    deadline: Option<TokioInstant>,
    correlation_id: u64,
    service: Name,
    method: Name,
    metadata: Metadata,
    trace: Option<TraceContext>,
    caller_trace: Option<TraceContext>,
}

impl Context {
    /// The metadata key under which a transport that authenticates its
    /// peers records who sent a request (see [`caller`](Self::caller)).
    /// Transports drop a value a client put there itself.
    pub const CALLER_KEY: &'static str = "x-rpc-caller";

    /// A context; the server runtime makes one per request.
    pub fn new(
        deadline: Option<Instant>,
        correlation_id: u64,
        service: Name,
        method: Name,
        metadata: Metadata,
    ) -> Self {
        Context {
            deadline: deadline.map(TokioInstant::from_std),
            correlation_id,
            service,
            method,
            metadata,
            trace: None,
            caller_trace: None,
        }
    }

    /// This context, in the span `trace` of a trace (the server runtime
    /// gives each request's handler its own span of the caller's trace).
    pub fn with_trace(mut self, trace: TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    /// This context, serving a call whose caller sent the trace context
    /// `caller`.
    pub(crate) fn with_caller_trace(mut self, caller: Option<TraceContext>) -> Self {
        self.caller_trace = caller;
        self
    }

    /// The trace context the caller sent (its `traceparent`), if it sent a
    /// valid one; the handler's own [`trace`](Self::trace) is its child.
    pub fn caller_trace(&self) -> Option<TraceContext> {
        self.caller_trace
    }

    /// The handler's place in its trace: calls made from it continue this
    /// trace, with this span as their parent.
    pub fn trace(&self) -> Option<TraceContext> {
        self.trace
    }

    /// The context of the request being served by this task, if any.
    pub fn current() -> Option<Context> {
        CURRENT.try_with(Context::clone).ok()
    }

    /// Reads the current context without cloning it.
    pub fn with_current<R>(f: impl FnOnce(Option<&Context>) -> R) -> R {
        let mut f = Some(f);
        match CURRENT.try_with(|cx| (f.take().expect("called once"))(Some(cx))) {
            Ok(r) => r,
            Err(_) => (f.take().expect("not called yet"))(None),
        }
    }

    /// Runs `future` with this context as the current one.
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        CURRENT.scope(self, future)
    }

    /// When the caller stops waiting.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline.map(TokioInstant::into_std)
    }

    /// Time left before the deadline (`None` without one).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(TokioInstant::now()))
    }

    /// The call's correlation id (unique per caller inbox).
    pub fn correlation_id(&self) -> u64 {
        self.correlation_id
    }

    /// The service being called.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The method being called.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The caller's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Who sent the request, as authenticated by the transport: on AMQP the
    /// broker-validated `user_id` (the caller's connection user), with any
    /// value a client put there itself dropped; `None` when the sender stated
    /// no identity. Only trust it on a transport that documents doing this:
    /// the in-memory transport passes metadata through as the client set it.
    /// Reads [`CALLER_KEY`](Self::CALLER_KEY).
    pub fn caller(&self) -> Option<&str> {
        self.metadata.get(Self::CALLER_KEY)
    }
}
