//! The client runtime: one reply inbox, a pending-call table, per-call options.

use std::fmt;
use std::future::{self, Future};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use tokio::time::Instant;
use tracing::{Instrument, Span};

use crate::TransportError;
use crate::cancel::CancelOnDrop;
use crate::clock::{self, Now};
use crate::codec::ContentType;
use crate::context::Context;
use crate::envelope::{Envelope, Header, Kind, Metadata};
use crate::error::RpcError;
use crate::limits::Limits;
use crate::metrics::{ClientMeters, Outcome};
use crate::name::Name;
use crate::pending::{self, PendingGuard, PendingTable, Reply};
use crate::spans;
use crate::trace::{self, TraceContext};
use crate::transport::{ReplySink, Transport};

/// The deadline a call gets when nobody sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The default cap on calls in flight per client.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 65_536;

/// Settings shared by every clone of a [`Client`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ClientConfig {
    /// The deadline of calls that set none (default 30 s).
    pub timeout: Duration,
    /// Calls in flight beyond this fail at once with [`RpcError::Overloaded`].
    pub max_in_flight: usize,
    /// The codec arguments are sent in (default bincode).
    pub content_type: ContentType,
    /// Calls whose encoded arguments are larger fail with
    /// [`RpcError::TooLarge`] before anything is sent (default 16 MiB).
    pub max_message_size: usize,
    /// Whether calls report to the [`metrics`](::metrics) facade (default
    /// on). With no recorder installed its handles do nothing anyway; off,
    /// a call skips them and the clock reading that times it.
    pub metrics: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            timeout: DEFAULT_TIMEOUT,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            content_type: ContentType::default(),
            max_message_size: Limits::default().max_message_size,
            metrics: true,
        }
    }
}

impl ClientConfig {
    /// Sets the default deadline.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the cap on calls in flight.
    pub fn max_in_flight(mut self, max: usize) -> Self {
        self.max_in_flight = max.max(1);
        self
    }

    /// Sets the codec.
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.content_type = content_type;
        self
    }

    /// Sets the limit on encoded arguments.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Turns reporting to the `metrics` facade on or off.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }
}

/// The untyped client every generated `<Trait>Client` wraps.
///
/// Cheap to clone: clones share the inbox, the pending-call table and the
/// in-flight cap, and each carries its own per-call options
/// ([`with_timeout`](Client::with_timeout), [`with_metadata`](Client::with_metadata)).
/// The reply inbox opens on the first call (or on [`connect`](Client::connect))
/// and closes when the last clone is dropped.
pub struct Client<T: Transport> {
    shared: Arc<Shared<T>>,
    options: CallOptions,
}

struct Shared<T: Transport> {
    transport: T,
    pending: Arc<PendingTable>,
    inbox: OnceCell<T::Inbox>,
    in_flight: AtomicUsize,
    max_in_flight: usize,
    max_message_size: usize,
    /// `None` for a client configured with metrics off.
    meters: Option<ClientMeters>,
}

#[derive(Clone, Debug)]
struct CallOptions {
    timeout: Duration,
    content_type: ContentType,
    metadata: Metadata,
}

impl<T: Transport> Client<T> {
    /// A client with the default configuration.
    pub fn new(transport: T) -> Self {
        Self::with_config(transport, ClientConfig::default())
    }

    /// A client with the given configuration.
    pub fn with_config(transport: T, config: ClientConfig) -> Self {
        Client {
            shared: Arc::new(Shared {
                transport,
                pending: Arc::default(),
                inbox: OnceCell::new(),
                in_flight: AtomicUsize::new(0),
                max_in_flight: config.max_in_flight,
                max_message_size: config.max_message_size,
                meters: config.metrics.then(ClientMeters::default),
            }),
            options: CallOptions {
                timeout: config.timeout,
                content_type: config.content_type,
                metadata: Metadata::new(),
            },
        }
    }

    /// Opens the reply inbox now rather than on the first call, so that
    /// transport errors show up here.
    pub async fn connect(&self) -> Result<(), RpcError> {
        self.inbox().await.map(drop)
    }

    /// A clone whose calls get `timeout` as their deadline.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        let mut client = self.clone();
        client.options.timeout = timeout;
        client
    }

    /// A clone whose calls carry `key = value` in their metadata.
    ///
    /// Keys under [`Metadata::RESERVED_PREFIX`] belong to transports: calls
    /// of a client given one fail with [`RpcError::Encode`] before sending.
    pub fn with_metadata(&self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let mut client = self.clone();
        client.options.metadata.insert(key, value);
        client
    }

    /// A clone whose calls are encoded with `content_type`.
    pub fn with_content_type(&self, content_type: ContentType) -> Self {
        let mut client = self.clone();
        client.options.content_type = content_type;
        client
    }

    /// The transport this client sends through.
    pub fn transport(&self) -> &T {
        &self.shared.transport
    }

    /// Calls waiting for a reply right now.
    pub fn pending_calls(&self) -> usize {
        self.shared.pending.len()
    }

    /// Replies dropped because no call was waiting for them (duplicates,
    /// replies to calls that timed out or were cancelled).
    pub fn dropped_replies(&self) -> u64 {
        self.shared.pending.dropped_replies()
    }

    /// Calls `service.method(args)` and decodes the reply as `R`.
    ///
    /// The deadline is this client's timeout, capped by the remaining budget
    /// of the handler this call is made from (if any). Nothing happens until
    /// the returned future is polled. Dropping it cancels the call: its
    /// pending entry goes at once, a late reply is dropped and counted, and
    /// a [`Kind::Cancel`] for the call goes to the service, whose server
    /// drops the handler if it still runs (best effort; see
    /// docs/ARCHITECTURE.md, "Cancellation").
    ///
    /// `args` may be a value or a reference (`&T` serializes as `T`).
    pub fn call<A, R>(
        &self,
        service: &'static str,
        method: &'static str,
        args: A,
    ) -> impl Future<Output = Result<R, RpcError>>
    where
        A: Serialize,
        R: DeserializeOwned,
    {
        let span = spans::debug_span(|| {
            tracing::debug_span!(
                "rpc.call",
                service = %service,
                method = %method,
                correlation_id = tracing::field::Empty,
                trace_id = tracing::field::Empty,
                outcome = tracing::field::Empty,
            )
        });
        let record = span.clone();
        // One `async` block for the whole call, not an `async fn` calling
        // another: every layer of future is copied whole when it is first
        // awaited, so each one costs a copy per call.
        async move {
            let inbox = self.inbox().await;
            // One reading of the clock starts the meter and sets the
            // deadline. Taken after the await above, so the call's future
            // does not hold it.
            let now = clock::now();
            let meter =
                (self.shared.meters.as_ref()).map(|m| m.start(service, method, now.instant));
            let result = 'call: {
                let inbox = match inbox {
                    Ok(inbox) => inbox,
                    Err(error) => break 'call Err(error),
                };
                // The call registers with the waker of this poll of its
                // task, so its reply's first poll, in this same task poll
                // (nothing below yields before it), need not look in the
                // table: no answer came yet, or it has woken this task.
                let waker = future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
                // Taken apart in the `let`, so nothing of the temporary is
                // kept across the awaits below.
                let Started {
                    _slot,
                    guard,
                    cancel,
                    mut reply,
                    send,
                    deadline,
                } = match self.start(inbox, service, method, &args, &record, now, waker) {
                    Ok(started) => started,
                    Err(error) => break 'call Err(error),
                };
                // The wait is written out here rather than in a future of
                // its own: that future would be copied whole into this one
                // when first awaited, on every call.
                //
                // The send races the reply: the client's watchdog fails a
                // call whose deadline passes while it is still being sent,
                // and a reply may come before the transport reports the
                // send done.
                let mut send = pin!(send);
                // The reply is decoded as soon as it is out of the table, so
                // no envelope is kept across an await (it would take room in
                // every call's future).
                let decode = |received: pending::Answer| match received {
                    Ok(reply) => read_reply(&reply, service, method),
                    Err(error) => Err(error),
                };
                // Decoded inside the poll, so what the await hands back is
                // small: an answer handed back whole would be copied out of
                // the poll and into its decoding (208 bytes each time, on
                // every call, whichever way the wait ended).
                let early = future::poll_fn(|cx| {
                    first_of(&mut reply, send.as_mut(), cx).map(|first| match first {
                        First::Sent => Ok(None),
                        First::SendFailed(send_failed) => Err(send_failed),
                        First::Answered {
                            answer,
                            finish_send,
                        } => Ok(Some((finish_send, decode(answer)))),
                    })
                })
                .await;
                let early = match early {
                    Ok(early) => early,
                    Err(send_failed) => {
                        // Not answered: nothing to cancel, and the guard
                        // drops and removes the call's entry.
                        cancel.disarm();
                        break 'call Err(RpcError::from(send_failed));
                    }
                };
                let answered = match early {
                    // Read where the poll left it: moved out, the
                    // envelope would be copied on its way to the reading.
                    None => {
                        future::poll_fn(|cx| match Pin::new(&mut reply).poll(cx) {
                            Poll::Ready(Ok(ref envelope)) => {
                                Poll::Ready(read_reply(envelope, service, method))
                            }
                            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                            Poll::Pending => Poll::Pending,
                        })
                        .await
                    }
                    Some((true, answered)) => {
                        // Answered before the transport reported the send
                        // done (a broker's confirm can trail the reply). The
                        // send is finished all the same, within the
                        // deadline: lapin keeps an unawaited confirm until
                        // someone asks for it. Boxed: rare, and it would
                        // otherwise take room in every call's future.
                        let _ = Box::pin(tokio::time::timeout_at(deadline, send)).await;
                        answered
                    }
                    // The deadline or a lost connection: the send is
                    // abandoned, as dropping a call abandons it.
                    Some((false, answered)) => answered,
                };
                // Answered or timed out: nothing to cancel. Only a call
                // future dropped before this point sends a cancel.
                cancel.disarm();
                // The reply future took the answer (a reply, the watchdog at
                // the deadline, a connection loss) and the entry with it:
                // nothing left for the guard.
                guard.answered();
                answered
            };
            let finished = Outcome::of_result(&result);
            if let Some(meter) = meter {
                meter.finish(finished);
            }
            record.record("outcome", finished.as_str());
            result
        }
        .instrument(span)
    }

    /// Everything a call does before it waits: takes an in-flight slot,
    /// builds the envelope, registers the call (to wake `waker`) and hands
    /// the envelope to the transport.
    #[expect(
        clippy::too_many_arguments,
        reason = "the call's own parts, each passed once, from one place"
    )]
    fn start<'a, A>(
        &'a self,
        inbox: &'a T::Inbox,
        service: &'static str,
        method: &'static str,
        args: &A,
        span: &Span,
        now: Now,
        waker: Waker,
    ) -> Result<Started<'a, T, impl Future<Output = Result<(), TransportError>>>, RpcError>
    where
        A: Serialize,
    {
        let slot = InFlightSlot::take(&self.shared)?;
        let (deadline, mut envelope, trace) =
            self.envelope(Kind::Request, service, method, args, now)?;
        span.record("trace_id", tracing::field::display(trace.trace_id_hex()));
        let (guard, reply) = PendingTable::register(&self.shared.pending, deadline, Some(waker))?;
        envelope.header.correlation_id = guard.id();
        span.record("correlation_id", guard.id());
        let cancel = CancelOnDrop::new(
            &self.shared.transport,
            service,
            method,
            &envelope.header,
            deadline,
        );
        let send = self.shared.transport.send_request(inbox, envelope);
        Ok(Started {
            _slot: slot,
            guard,
            cancel,
            reply,
            send,
            deadline,
        })
    }

    /// Sends `service.method(args)` without waiting for a reply. Resolves once
    /// the transport has taken the message; fails with [`RpcError::NoRoute`]
    /// when nobody serves the service.
    ///
    /// `args` may be a value or a reference (`&T` serializes as `T`).
    pub async fn notify<A>(
        &self,
        service: &'static str,
        method: &'static str,
        args: A,
    ) -> Result<(), RpcError>
    where
        A: Serialize,
    {
        let span = tracing::debug_span!("rpc.notify", service = %service, method = %method);
        let (deadline, envelope, _) =
            self.envelope(Kind::Oneway, service, method, &args, clock::now())?;
        let send = self.shared.transport.send_oneway(envelope);
        tokio::time::timeout_at(deadline, send)
            .instrument(span)
            .await
            .map_err(|_| RpcError::Timeout)?
            .map_err(RpcError::from)
    }

    /// Builds the envelope of a call made at `now`, and returns its
    /// deadline and trace.
    ///
    /// Inlined: returned from a call, the result (the envelope in it) is
    /// copied out of the return slot piece by piece.
    #[inline(always)]
    fn envelope<A: Serialize + ?Sized>(
        &self,
        kind: Kind,
        service: &'static str,
        method: &'static str,
        args: &A,
        now: Now,
    ) -> Result<(Instant, Envelope, TraceContext), RpcError> {
        let options = &self.options;
        if let Some(key) = options.metadata.reserved_key() {
            // Transports put who called under these keys; a caller that
            // could set them could claim to be anyone.
            return Err(RpcError::Encode {
                message: format!(
                    "metadata key `{key}` uses the reserved `{}` prefix",
                    Metadata::RESERVED_PREFIX
                ),
            });
        }
        let mut metadata = options.metadata.clone();
        let (timeout, trace) = Context::with_current(|cx| {
            let inherited = cx.and_then(Context::remaining);
            let timeout = inherited.map_or(options.timeout, |left| left.min(options.timeout));
            (timeout, trace::for_call(&mut metadata, cx))
        });
        let body = options
            .content_type
            .encode(args)
            .map_err(|e| RpcError::Encode {
                message: e.to_string(),
            })?;
        let limit = self.shared.max_message_size;
        if body.len() > limit {
            return Err(RpcError::TooLarge {
                size: body.len(),
                limit,
            });
        }
        let mut header = Header::request(
            Name::from_static(service),
            Name::from_static(method),
            options.content_type,
        );
        header.kind = kind;
        header.sent_at_ms = now.unix_ms;
        // Round up so a deadline is never earlier on the wire than here.
        header.deadline_ms = now.unix_ms + timeout.as_millis() as u64 + 1;
        header.trace = Some(trace);
        header.metadata = metadata;
        // The call gives up when the wall clock reaches the deadline on the
        // wire (at most a millisecond after `timeout`), not before: then a
        // server that takes the request after the caller gave up sees it
        // expired and does not run it.
        Ok((
            now.instant_at(header.deadline_ms),
            Envelope { header, body },
            trace,
        ))
    }

    async fn inbox(&self) -> Result<&T::Inbox, RpcError> {
        match self.shared.inbox.get() {
            Some(inbox) => Ok(inbox),
            // Boxed: opening the inbox happens once per client, and its
            // future (a semaphore wait and the transport's open) would
            // otherwise make every call's future larger, and every move of
            // it dearer.
            None => Box::pin(self.open_inbox()).await,
        }
    }

    async fn open_inbox(&self) -> Result<&T::Inbox, RpcError> {
        let shared = &self.shared;
        let inbox = shared
            .inbox
            .get_or_try_init(|| {
                let sink = ReplySink::new(shared.pending.clone());
                shared.transport.open_inbox(sink)
            })
            .await?;
        Ok(inbox)
    }
}

/// The value a reply carries, or the error its status reports; also how
/// the introspection queries read their answers, so both read a reply alike.
pub(crate) fn read_reply<R: DeserializeOwned>(
    reply: &Envelope,
    service: &str,
    method: &str,
) -> Result<R, RpcError> {
    if let Some(error) = RpcError::from_status(&reply.header.status, service, method) {
        return Err(error);
    }
    reply
        .header
        .content_type
        .decode(&reply.body)
        .map_err(|e| RpcError::Decode {
            message: e.to_string(),
        })
}

impl<T: Transport> Clone for Client<T> {
    fn clone(&self) -> Self {
        Client {
            shared: self.shared.clone(),
            options: self.options.clone(),
        }
    }
}

impl<T: Transport> fmt::Debug for Client<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.options.timeout)
            .field("content_type", &self.options.content_type)
            .field("pending_calls", &self.pending_calls())
            .finish_non_exhaustive()
    }
}

/// What the first wait of a call ends with.
enum First {
    /// Sent; the answer is still to come.
    Sent,
    /// The send failed, and no reply answered the call.
    SendFailed(TransportError),
    /// Answered before the transport reported the send done: by a reply
    /// (`finish_send`: the send is finished all the same), or by the
    /// deadline or a lost connection (the send is abandoned).
    Answered {
        answer: pending::Answer,
        finish_send: bool,
    },
}

/// Polls a call's send, then, unless it is done and went well, its reply:
/// a reply wins over anything the send reports, and a send that has failed
/// says more than the deadline or a lost connection. A call sent well is
/// not asked for its reply here: its caller's next step does that, and a
/// poll of the pending table saved is a lock saved.
fn first_of<S>(reply: &mut Reply<'_>, send: Pin<&mut S>, cx: &mut TaskContext<'_>) -> Poll<First>
where
    S: Future<Output = Result<(), TransportError>>,
{
    let sent = match send.poll(cx) {
        Poll::Ready(Ok(())) => return Poll::Ready(First::Sent),
        Poll::Ready(Err(send_failed)) => {
            // A reply that came already must win over the failure.
            reply.look_next_poll();
            Some(send_failed)
        }
        Poll::Pending => None,
    };
    match (Pin::new(reply).poll(cx), sent) {
        // `NotSent` (it never left, so a retry is safe) must not turn into
        // `Timeout` because both timers fired before this task ran.
        (Poll::Ready(Err(_)) | Poll::Pending, Some(send_failed)) => {
            Poll::Ready(First::SendFailed(send_failed))
        }
        (Poll::Ready(answer), sent) => Poll::Ready(First::Answered {
            finish_send: sent.is_none() && answer.is_ok(),
            answer,
        }),
        (Poll::Pending, None) => Poll::Pending,
    }
}

/// A call sent and registered: what waits for its answer (the watchdog
/// answers it at its deadline).
struct Started<'a, T: Transport, S> {
    _slot: InFlightSlot<'a>,
    guard: PendingGuard<'a>,
    /// Sends the call's cancel if the call future is dropped unanswered.
    cancel: CancelOnDrop<'a, T>,
    reply: Reply<'a>,
    /// The transport's send of the request.
    send: S,
    deadline: Instant,
}

/// One unit of the client's in-flight cap, given back on drop.
struct InFlightSlot<'a>(&'a AtomicUsize);

impl<'a> InFlightSlot<'a> {
    fn take<T: Transport>(shared: &'a Shared<T>) -> Result<Self, RpcError> {
        let previous = shared.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = InFlightSlot(&shared.in_flight);
        if previous >= shared.max_in_flight {
            return Err(RpcError::Overloaded);
        }
        Ok(slot)
    }
}

impl Drop for InFlightSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<T: Transport> Drop for Shared<T> {
    fn drop(&mut self) {
        // Wake anything still registered (there is nothing when every call
        // future has been dropped, but a transport may hold the sink).
        use crate::transport::ReplyHandler;
        self.pending.closed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::Header;
    use crate::transport::ReplyHandler;

    /// A call registered in this poll whose send fails, with its reply
    /// already in: the reply wins, as it does for a call that looked.
    #[tokio::test]
    async fn a_reply_that_came_before_a_failed_send_wins() {
        let table = Arc::new(PendingTable::default());
        let later = Instant::now() + Duration::from_secs(60);
        let (guard, mut reply) = table.register(later, Some(Waker::noop().clone())).unwrap();
        let mut header = Header::request("s".into(), "m".into(), ContentType::Json);
        header.correlation_id = guard.id();
        table.deliver(Envelope {
            header,
            body: Vec::new(),
        });
        let send = pin!(future::ready(Err(TransportError::ConnectionLost)));
        let mut cx = TaskContext::from_waker(Waker::noop());
        let first = first_of(&mut reply, send, &mut cx);
        assert!(
            matches!(
                first,
                Poll::Ready(First::Answered {
                    answer: Ok(_),
                    finish_send: false
                })
            ),
            "the reply, not the failed send"
        );
        guard.answered();
    }
}
