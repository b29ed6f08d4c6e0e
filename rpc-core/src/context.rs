//! The call context a handler runs in: deadline, correlation id, metadata.
//!
//! The server runtime sets it around each handler (as a task-local would:
//! current while the handler's future is polled or dropped), so trait
//! methods keep plain signatures. Calls a handler makes through any client
//! read it too: their deadline is capped by the handler's remaining budget.
//! A task the handler spawns does not inherit it; capture it with
//! [`Context::current`] and re-enter it with [`Context::scope`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::time::Instant as TokioInstant;

use crate::envelope::Metadata;
use crate::name::Name;
use crate::trace::TraceContext;

thread_local! {
    /// The context of the scoped future being polled (or dropped) on this
    /// thread, if any, as a task-local would hold it: set only while that
    /// future runs. Boxed, so entering and leaving a scope swaps a pointer,
    /// not the whole context, on every poll.
    static CURRENT: RefCell<Option<Box<Context>>> = const { RefCell::new(None) };

    /// The box of a scope that ended on this thread, emptied, for the next
    /// scope: a box per request would be an allocation and a free per
    /// request.
    static SPARE: Cell<Option<Box<Context>>> = const { Cell::new(None) };
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
        Self::with_current(|cx| cx.cloned())
    }

    /// Reads the current context without cloning it.
    pub fn with_current<R>(f: impl FnOnce(Option<&Context>) -> R) -> R {
        let mut f = Some(f);
        let found = CURRENT.try_with(|current| {
            let current = current.try_borrow().ok()?;
            let cx = current.as_deref()?;
            Some((f.take().expect("called once"))(Some(cx)))
        });
        match found {
            Ok(Some(r)) => r,
            _ => (f.take().expect("not called yet"))(None),
        }
    }

    /// Runs `future` with this context as the current one: while it is
    /// polled, and while it is dropped.
    #[inline]
    pub fn scope<F: Future>(self, future: F) -> impl Future<Output = F::Output> {
        Scoped {
            context: Some(boxed(self)),
            future: Some(future),
        }
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

pin_project_lite::pin_project! {
    /// A future run in a context ([`Context::scope`]).
    struct Scoped<F> {
        // `None` while the future runs: the context is in `CURRENT` then.
        context: Option<Box<Context>>,
        // `None` once finished: it is dropped in its context.
        #[pin]
        future: Option<F>,
    }

    impl<F> PinnedDrop for Scoped<F> {
        fn drop(this: Pin<&mut Self>) {
            let mut this = this.project();
            if this.future.is_some() {
                in_context(this.context, || this.future.set(None));
            }
            if let Some(context) = this.context.take() {
                recycle(context);
            }
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut future = this.future;
        in_context(this.context, || {
            let polled = future
                .as_mut()
                .as_pin_mut()
                .expect("a scoped future is not polled after it finished")
                .poll(cx);
            if polled.is_ready() {
                future.set(None);
            }
            polled
        })
    }
}

/// Runs `f` with `context` as the current one, which goes back into
/// `context` afterwards, on a panic too.
#[inline(always)]
fn in_context<R>(context: &mut Option<Box<Context>>, f: impl FnOnce() -> R) -> R {
    /// Swaps the context back out when dropped.
    struct Leave<'a>(&'a mut Option<Box<Context>>);

    impl Drop for Leave<'_> {
        fn drop(&mut self) {
            swap_current(self.0);
        }
    }

    swap_current(context);
    let _leave = Leave(context);
    f()
}

/// Swaps `context` with the current one.
#[inline]
fn swap_current(context: &mut Option<Box<Context>>) {
    CURRENT.with(|current| {
        std::mem::swap(
            context,
            &mut current
                .try_borrow_mut()
                .expect("cannot enter a context while the current one is read"),
        );
    });
}

/// `context` in a box: the spare one if there is one.
#[inline]
fn boxed(context: Context) -> Box<Context> {
    match SPARE.try_with(Cell::take) {
        Ok(Some(mut spare)) => {
            *spare = context;
            spare
        }
        _ => Box::new(context),
    }
}

/// Keeps the box of a scope that ended for the next one, emptied now: what
/// the context held (its names, its metadata) is released with its scope.
#[inline]
fn recycle(mut context: Box<Context>) {
    *context = Context::new(
        None,
        0,
        Name::from_static(""),
        Name::from_static(""),
        Metadata::default(),
    );
    // During the thread's teardown the box is simply freed.
    let _ = SPARE.try_with(|spare| spare.set(Some(context)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(method: &'static str) -> Context {
        Context::new(
            None,
            7,
            Name::from_static("s"),
            Name::from_static(method),
            Metadata::default(),
        )
    }

    fn current_method() -> Option<String> {
        Context::with_current(|cx| cx.map(|cx| cx.method().to_owned()))
    }

    #[tokio::test]
    async fn scopes_nest_and_end() {
        assert_eq!(current_method(), None);
        let outer = named("outer").scope(async {
            assert_eq!(current_method().as_deref(), Some("outer"));
            let inner = named("inner").scope(async {
                tokio::task::yield_now().await;
                current_method()
            });
            assert_eq!(inner.await.as_deref(), Some("inner"));
            tokio::task::yield_now().await;
            Context::current().map(|cx| cx.method().to_owned())
        });
        assert_eq!(outer.await.as_deref(), Some("outer"));
        assert_eq!(current_method(), None);
    }

    #[test]
    fn a_panic_leaves_the_scope() {
        let scoped = named("panics").scope(async { panic!("in the scope") });
        let polled = std::panic::catch_unwind(|| futures_util::FutureExt::now_or_never(scoped));
        assert!(polled.is_err());
        assert_eq!(current_method(), None);
    }

    /// Notes the context current when it is dropped.
    struct NotesDrop(std::sync::mpsc::Sender<Option<String>>);

    impl Drop for NotesDrop {
        fn drop(&mut self) {
            let _ = self.0.send(current_method());
        }
    }

    #[test]
    fn an_unfinished_future_is_dropped_in_its_scope() {
        let (notes, noted) = std::sync::mpsc::channel();
        let held = NotesDrop(notes);
        let scoped = named("dropped").scope(async move {
            let _held = held;
            std::future::pending::<()>().await
        });
        let mut scoped = Box::pin(scoped);
        assert!(futures_util::FutureExt::now_or_never(scoped.as_mut()).is_none());
        drop(scoped);
        assert_eq!(noted.recv().unwrap().as_deref(), Some("dropped"));
        assert_eq!(current_method(), None);
    }
}
