//! [`NatsTransport`]: the [`Transport`] implementation and the state its
//! clones share.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::message::OutboundMessage;
use async_nats::{Client, ConnectOptions, Event, HeaderMap, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::Either;
use rpc_core::transport::{ReplySink, ServiceSpec, Transport};
use rpc_core::{Envelope, Name, TransportError};
use tokio::sync::watch;

use crate::config::{Auth, Config, Mode, NatsTransportBuilder};
use crate::error::{connect_error, publish_error};
use crate::headers::{self, CallReply};
use crate::inbox::{self, NatsInbox};
use crate::requests::NatsRequests;

/// A NATS connection for RPC clients and servers. Cheap to clone; the
/// connection closes when the last clone is dropped (or on [`close`](Self::close)).
///
/// See the [crate docs](crate) for the subjects, modes and guarantees.
#[derive(Clone)]
pub struct NatsTransport {
    handle: Arc<Handle>,
}

/// Closes the shared state when the last user-held clone goes; the
/// transport's own tasks hold `Shared` only.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close_now();
    }
}

/// The connection as the rest of the transport sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Up,
    /// Disconnected; async-nats is reconnecting. Sends wait.
    Down,
    Closed,
}

/// What the connection's event callback needs, made before the connection.
pub(crate) struct Events {
    pub(crate) state: watch::Sender<State>,
    pub(crate) inboxes: Mutex<HashMap<u64, ReplySink>>,
    /// How many times the connection was lost.
    pub(crate) disconnects: AtomicU64,
}

impl Events {
    fn on(&self, event: Event) {
        match event {
            Event::Disconnected => {
                self.disconnects.fetch_add(1, Ordering::Relaxed);
                self.set_state(State::Down);
                // Replies to calls in flight went with the connection (core
                // NATS keeps nothing for a subscriber that is away).
                for sink in lock(&self.inboxes).values() {
                    sink.connection_lost();
                }
            }
            Event::Connected => self.set_state(State::Up),
            Event::Closed => self.set_state(State::Closed),
            other => tracing::debug!(event = %other, "NATS connection event"),
        }
    }

    fn set_state(&self, new: State) {
        self.state.send_if_modified(|state| {
            if *state == State::Closed || *state == new {
                return false;
            }
            *state = new;
            true
        });
    }
}

/// The most method subjects a transport keeps (see `Shared::method_subject`).
const MAX_METHOD_SUBJECTS: usize = 64;

/// The state behind every clone and every task of one transport.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) client: Client,
    pub(crate) jetstream: async_nats::jetstream::Context,
    pub(crate) events: Arc<Events>,
    /// Streams this transport created (durable mode), for `cleanup`.
    pub(crate) streams: Mutex<BTreeSet<String>>,
    /// Requests refused on arrival (unreadable headers, no reply subject).
    pub(crate) refused: AtomicU64,
    /// Durable requests moved to the dead-letter stream.
    pub(crate) dead_lettered: AtomicU64,
    /// The subjects of the methods called, with their service and method
    /// (see `method_subject`).
    method_subjects: Mutex<Vec<(Name, Name, Subject)>>,
    /// Core mode's oneway inbox, opened by the first oneway call.
    oneway: tokio::sync::OnceCell<crate::oneway::OnewayInbox>,
    next_id: AtomicU64,
}

impl NatsTransport {
    /// Connects to `url` (`nats://host:port`, `tls://host:port`, or several
    /// comma-separated) with the default options.
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        Self::builder(url).connect().await
    }

    /// A builder for a transport to `url`.
    pub fn builder(url: impl Into<String>) -> NatsTransportBuilder {
        NatsTransportBuilder::new(url)
    }

    pub(crate) async fn start(config: Config) -> Result<Self, TransportError> {
        let events = Arc::new(Events {
            state: watch::Sender::new(State::Up),
            inboxes: Mutex::default(),
            disconnects: AtomicU64::new(0),
        });
        let options = connect_options(&config, events.clone()).await?;
        let connecting = options.connect(config.url.as_str());
        let client = match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(client)) => client,
            Ok(Err(error)) => return Err(connect_error(&config.url, error)),
            Err(_) => {
                return Err(TransportError::Connect {
                    message: format!(
                        "{}: no answer within {:?}",
                        config.url, config.connect_timeout
                    ),
                    source: None,
                });
            }
        };
        let jetstream = async_nats::jetstream::new(client.clone());
        let shared = Arc::new(Shared {
            config,
            client,
            jetstream,
            events,
            streams: Mutex::default(),
            refused: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            method_subjects: Mutex::default(),
            oneway: tokio::sync::OnceCell::new(),
            next_id: AtomicU64::new(1),
        });
        Ok(NatsTransport {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// The subject a method's requests are sent to (`<prefix><service>.<method>`).
    pub fn method_subject(&self, service: &str, method: &str) -> String {
        self.shared().config.method_subject(service, method)
    }

    /// The mode this transport sends and serves in.
    pub fn mode(&self) -> Mode {
        self.shared().config.mode
    }

    /// The JetStream stream holding `service`'s requests in durable mode.
    pub fn request_stream(&self, service: &str) -> String {
        self.shared().config.stream_name(service, "")
    }

    /// The JetStream stream durable mode moves `service`'s given-up
    /// requests to; its subjects are `<prefix>dead.<service>.<method>`.
    pub fn dead_letter_stream(&self, service: &str) -> String {
        self.shared().config.stream_name(service, "_DEAD")
    }

    /// Requests refused on arrival: unreadable headers, a request without a
    /// reply subject, a delivery past the limit. Each was answered with an
    /// error where it had a reply subject.
    pub fn refused_requests(&self) -> u64 {
        self.shared().refused.load(Ordering::Relaxed)
    }

    /// Durable requests moved to the dead-letter stream.
    pub fn dead_lettered_requests(&self) -> u64 {
        self.shared().dead_lettered.load(Ordering::Relaxed)
    }

    /// How many times the connection has been lost so far.
    pub fn disconnects(&self) -> u64 {
        self.shared().events.disconnects.load(Ordering::Relaxed)
    }

    /// Whether the transport is connected right now (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        *self.shared().events.state.borrow() == State::Up
    }

    /// Resolves once the transport is connected (at once if it is).
    pub async fn wait_connected(&self) -> Result<(), TransportError> {
        self.shared().live().await
    }

    /// The async-nats client underneath, for what this crate does not cover.
    pub fn client(&self) -> &Client {
        &self.shared().client
    }

    /// Tear-down for tests and environments: deletes the JetStream streams
    /// this transport created (durable mode), then closes it. Returns how
    /// many streams were deleted.
    pub async fn cleanup(&self) -> Result<usize, TransportError> {
        let shared = self.shared();
        let names: Vec<String> = std::mem::take(&mut *lock(&shared.streams))
            .into_iter()
            .collect();
        let mut deleted = 0;
        let result = async {
            for name in &names {
                match shared.jetstream.delete_stream(name).await {
                    Ok(_) => deleted += 1,
                    // Another transport of the same service deleted it first.
                    Err(error)
                        if matches!(
                            error.kind(),
                            async_nats::jetstream::context::DeleteStreamErrorKind::JetStream(e)
                                if e.code() == 404
                        ) => {}
                    Err(error) => return Err(TransportError::protocol("delete stream", error)),
                }
            }
            Ok::<_, TransportError>(())
        };
        let result = tokio::time::timeout(shared.config.connect_timeout, result)
            .await
            .unwrap_or(Err(TransportError::ConnectionLost));
        self.close().await;
        result.map(|()| deleted)
    }

    /// Closes the connection: calls in flight fail with `Closed`, serve
    /// streams end, and every clone of this transport stops working.
    /// Replies already queued are written first.
    pub async fn close(&self) {
        let shared = self.shared();
        shared.close_now();
        let _ = tokio::time::timeout(shared.config.connect_timeout, shared.client.drain()).await;
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.shared();
        f.debug_struct("NatsTransport")
            .field("subject_prefix", &shared.config.subject_prefix)
            .field("mode", &shared.config.mode)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Transport for NatsTransport {
    type Requests = NatsRequests;
    type Inbox = NatsInbox;

    async fn open_inbox(&self, sink: ReplySink) -> Result<NatsInbox, TransportError> {
        inbox::open(self.shared().clone(), sink).await
    }

    fn send_request(
        &self,
        inbox: &NatsInbox,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        let shared = self.shared();
        let reply = inbox.reply_subject(&envelope.header);
        // The common case, a core request on a live connection, is made
        // here, before the future: what the future holds across its one
        // wait is the publish alone, boxed (async-nats' publish future is
        // some 800 bytes, and the client runtime moves every call's future
        // several times: moving a pointer saves more than the box costs).
        if shared.config.mode == Mode::Core && *shared.events.state.borrow() == State::Up {
            match shared.core_request(reply, envelope) {
                Ok(message) => Either::Left(Box::pin(publish(&shared.client, message))),
                Err(error) => Either::Right(Either::Left(std::future::ready(Err(error)))),
            }
        } else {
            Either::Right(Either::Right(Box::pin(async move {
                shared.send_call(Some(reply), envelope).await
            })))
        }
    }

    async fn send_oneway(&self, envelope: Envelope) -> Result<(), TransportError> {
        self.shared().send_call(None, envelope).await
    }

    async fn serve(&self, service: &ServiceSpec) -> Result<NatsRequests, TransportError> {
        NatsRequests::open(self.shared().clone(), service.clone()).await
    }
}

impl Shared {
    /// Waits (at most the connect timeout) while reconnecting.
    pub(crate) async fn connected(&self) -> Result<(), TransportError> {
        match *self.events.state.borrow() {
            State::Up => return Ok(()),
            State::Closed => return Err(TransportError::Closed),
            State::Down => {}
        }
        // Boxed: this wait is rare, and every call's future (which the
        // client runtime moves several times) would otherwise hold its timer.
        let wait = Box::pin(tokio::time::timeout(
            self.config.connect_timeout,
            self.live(),
        ));
        match wait.await {
            Ok(result) => result,
            Err(_) => Err(TransportError::ConnectionLost),
        }
    }

    /// Waits as long as it takes for the connection; `Closed` once closed.
    pub(crate) async fn live(&self) -> Result<(), TransportError> {
        let mut state = self.events.state.subscribe();
        let state = state
            .wait_for(|s| *s != State::Down)
            .await
            .map_err(|_| TransportError::Closed)?;
        match *state {
            State::Up => Ok(()),
            _ => Err(TransportError::Closed),
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        *self.events.state.borrow() == State::Closed
    }

    fn close_now(&self) {
        self.events.set_state(State::Closed);
        let sinks: Vec<ReplySink> = lock(&self.events.inboxes).drain().map(|(_, s)| s).collect();
        for sink in sinks {
            sink.closed();
        }
        // Ends every subscription (serve streams, inboxes) once what is
        // queued is written; the last clone of the client closes the socket.
        let client = self.client.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = client.drain().await;
            });
        }
    }

    /// Resolves once the server has processed everything this connection
    /// sent before: a message to a subject of our own comes back. (A
    /// `flush` only writes the socket; it waits for no answer.)
    pub(crate) async fn round_trip(&self) -> Result<(), TransportError> {
        let subject = self.client.new_inbox();
        let mut echo = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|e| TransportError::protocol("subscribe", e))?;
        self.client
            .publish(subject, Bytes::new())
            .await
            .map_err(|e| publish_error(e, &self.client))?;
        match tokio::time::timeout(self.config.connect_timeout, echo.next()).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(TransportError::Closed),
            Err(_) => Err(TransportError::ConnectionLost),
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends a request (its reply goes to `reply`) or, without one, a
    /// oneway call, to the subject of the method its header names.
    async fn send_call(
        &self,
        reply: Option<Subject>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.connected().await?;
        match (self.config.mode, reply) {
            (Mode::Core, Some(reply)) => {
                // Made before the publish, in a function of its own: what
                // the future holds across its one wait is the publish alone
                // (the client runtime moves every call's future several
                // times, so its size is paid per call).
                publish(&self.client, self.core_request(reply, envelope)?).await
            }
            // Boxed, for the same reason: their futures are larger.
            (Mode::Core, None) => Box::pin(self.send_oneway_core(envelope)).await,
            (Mode::Durable, reply) => Box::pin(self.send_durable(reply, envelope)).await,
        }
    }

    /// `map` with the call's `traceparent` as a header too, when the builder
    /// asked for it (`trace_header`) and the reply subject alone states it.
    fn with_trace_header(
        &self,
        header: &rpc_core::Header,
        map: Option<HeaderMap>,
    ) -> Option<HeaderMap> {
        let Some(trace) = header.trace.filter(|_| self.config.trace_header) else {
            return map;
        };
        let mut map = map.unwrap_or_default();
        if map.get(rpc_core::trace::TRACEPARENT).is_none() {
            map.insert(rpc_core::trace::TRACEPARENT, trace.traceparent().as_str());
        }
        Some(map)
    }

    /// A core request, as the message async-nats publishes.
    fn core_request(
        &self,
        reply: Subject,
        envelope: Envelope,
    ) -> Result<OutboundMessage, TransportError> {
        let Envelope { header, body } = envelope;
        // The reply subject was made from this header (`send_request`).
        let headers =
            headers::encode_call(&header, CallReply::Own(&reply)).map_err(encode_error)?;
        let headers = self.with_trace_header(&header, headers);
        Ok(OutboundMessage {
            subject: self.method_subject(&header),
            reply: Some(reply),
            payload: Bytes::from(body),
            headers,
        })
    }

    /// The subject of the method `header` names. The subjects of the
    /// methods called so far are kept: a clone shares one buffer, where
    /// making the subject again costs an allocation per call.
    fn method_subject(&self, header: &rpc_core::Header) -> Subject {
        let (service, method) = (&header.service, &header.method);
        {
            let known = lock(&self.method_subjects);
            let found = known.iter().find(|(s, m, _)| s == service && m == method);
            if let Some((_, _, subject)) = found {
                return subject.clone();
            }
        }
        let subject = Subject::from(self.config.method_subject(service, method));
        let mut known = lock(&self.method_subjects);
        // Bounded: a client that calls ever new names (made at run time)
        // makes their subjects call by call past this.
        if known.len() < MAX_METHOD_SUBJECTS {
            known.push((service.clone(), method.clone(), subject.clone()));
        }
        subject
    }

    /// A durable call: published to the service's stream, its reply subject
    /// (if any) in a header.
    async fn send_durable(
        &self,
        reply: Option<Subject>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        let Envelope { header, body } = envelope;
        let reply = reply.as_deref().map_or(CallReply::None, CallReply::Header);
        let map = headers::encode_call(&header, reply).map_err(encode_error)?;
        let map = self.with_trace_header(&header, map).unwrap_or_default();
        let subject = self.method_subject(&header);
        crate::durable::publish(self, subject, map, Bytes::from(body), &header.service).await
    }

    /// A core oneway call: published with a reply subject on the oneway
    /// inbox so that "no responders" can come back (see `oneway.rs`).
    async fn send_oneway_core(&self, envelope: Envelope) -> Result<(), TransportError> {
        let Envelope { mut header, body } = envelope;
        let (subject, payload) = (self.method_subject(&header), Bytes::from(body));
        let inbox = self
            .oneway
            .get_or_try_init(|| crate::oneway::OnewayInbox::open(&self.client))
            .await?;
        // Says "oneway" although a reply subject is set.
        header.reply_to = Some(rpc_core::Address::new("oneway"));
        let map = headers::encode_call(&header, CallReply::None)
            .map_err(encode_error)?
            .unwrap_or_else(HeaderMap::new);
        let id = self.next_id();
        let (reply, marker, taken) = inbox.register(id);
        let sent = async {
            self.client
                .publish_with_reply_and_headers(subject, reply, map, payload)
                .await?;
            self.client.publish(marker, Bytes::new()).await
        };
        if let Err(error) = sent.await {
            inbox.forget(id);
            return Err(publish_error(error, &self.client));
        }
        match tokio::time::timeout(self.config.connect_timeout, taken).await {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(TransportError::NoRoute {
                address: header.service.to_string(),
            }),
            Ok(Err(_)) => Err(TransportError::Closed),
            Err(_) => {
                inbox.forget(id);
                Err(TransportError::ConnectionLost)
            }
        }
    }

    /// Publishes a reply to `to` (a reply subject). Its headers are made
    /// here, before the future: what the future holds (and a boxed reply
    /// future moves) is the publish alone, not the envelope.
    pub(crate) fn publish_reply(
        self: &Arc<Self>,
        to: Subject,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + 'static {
        let Envelope { header, body } = envelope;
        let message = headers::encode_reply(&header, &to)
            .map_err(encode_error)
            .map(|headers| OutboundMessage {
                subject: to,
                reply: None,
                payload: Bytes::from(body),
                headers,
            });
        let shared = self.clone();
        // The message goes into async-nats' future before the one wait, so
        // the block holds it once.
        async move {
            let message = message?;
            publish(&shared.client, message).await
        }
    }
}

/// Publishes one message, its subjects handed over as they are: async-nats'
/// `publish*` methods take subjects as `ToSubject`, which copies even a
/// `Subject` (an allocation per subject, each way of every call), while
/// `publish_message` takes the message whole. Its future is async-nats' own
/// with the error mapped on the way out (no `async` block around it, which
/// would hold that future twice: once as made, once as awaited, and a call
/// future that holds it is moved several times per call).
fn publish(
    client: &Client,
    message: OutboundMessage,
) -> impl Future<Output = Result<(), TransportError>> + Send + '_ {
    use async_nats::client::traits::Publisher;
    use futures_util::TryFutureExt;
    client
        .publish_message(message)
        .map_err(|e| publish_error(e, client))
}

fn encode_error(error: headers::HeadersError) -> TransportError {
    TransportError::protocol("map envelope to NATS headers", error)
}

/// The async-nats options for `config`; the event callback feeds `events`.
async fn connect_options(
    config: &Config,
    events: Arc<Events>,
) -> Result<ConnectOptions, TransportError> {
    let mut options = match &config.auth {
        Auth::None => ConnectOptions::new(),
        Auth::Token(token) => ConnectOptions::with_token(token.clone()),
        Auth::UserPassword(user, password) => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Auth::Nkey(seed) => ConnectOptions::with_nkey(seed.clone()),
        Auth::Credentials(creds) => {
            ConnectOptions::with_credentials(creds).map_err(|e| TransportError::Connect {
                message: format!("unreadable credentials: {e}"),
                source: None,
            })?
        }
    };
    if config.tls_required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &config.tls_client_cert {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let (min, max) = (config.reconnect_min, config.reconnect_max);
    Ok(options
        .name(&config.connection_name)
        .connection_timeout(config.connect_timeout)
        // async-nats' default backoff climbs to 4 s, too slow to come back
        // from a blip; ours is short, capped, and jittered so that many
        // clients of one restarted server do not reconnect in step.
        .reconnect_delay_callback(move |attempts| backoff(attempts, min, max))
        .event_callback(move |event| {
            events.on(event);
            std::future::ready(())
        }))
}

/// The wait before reconnect attempt `attempts` (counted from 1): `min`
/// doubling up to `max`, plus up to a quarter of jitter.
pub(crate) fn backoff(attempts: usize, min: Duration, max: Duration) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let exponent = u32::try_from(attempts - 2).unwrap_or(u32::MAX).min(16);
    let base = min.saturating_mul(1 << exponent).min(max);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base + base.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

// Every critical section here is a single collection call, so a poisoned
// lock still guards consistent data: the shared helper's contract.
pub(crate) use rpc_core::transport::support::lock_unpoisoned as lock;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_at_once_and_is_capped() {
        let (min, max) = (Duration::from_millis(20), Duration::from_secs(1));
        assert_eq!(backoff(1, min, max), Duration::ZERO);
        let second = backoff(2, min, max);
        assert!(second >= min && second <= min + min / 4, "{second:?}");
        let late = backoff(40, min, max);
        assert!(late >= max && late <= max + max / 4, "{late:?}");
    }
}
