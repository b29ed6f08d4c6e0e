//! The calling side: one link (a DEALER socket) per server endpoint, the
//! credit each server granted, the calls each holds, and the calls waiting
//! for credit.
//!
//! A call goes to the connected server of its service with the most credit
//! left; with none left anywhere it waits here (up to the high-water mark)
//! until a reply returns credit. A link whose server falls silent for the
//! liveness period is dropped: the calls it held fail with `ConnectionLost`
//! at once, and a new socket is made to reconnect (a zeromq DEALER does not
//! reconnect by itself after its server restarts).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rpc_core::envelope::now_ms;
use rpc_core::{Envelope, ErrorKind, Header, KnownNames, Name, ReplySink, Status, TransportError};
use tokio::sync::{Mutex as SendLock, Notify, watch};
use zeromq::prelude::*;
use zeromq::{DealerRecvHalf, DealerSendHalf, DealerSocket, SocketOptions, ZmqMessage};

use crate::batcher::{self, Batch};
use crate::config::Config;
use crate::ids::IdMap;
use crate::services;
use crate::signal::Signal;
use crate::stats::Counters;
use crate::ticker::Ticker;
use crate::wire::{self, FromServer};
use rpc_core::transport::support::lock_unpoisoned;

/// Where a link stands, for whoever waits for it to come up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LinkStatus {
    /// First attempt under way.
    Connecting,
    /// Connected and `READY` received.
    Ready,
    /// Not connected; retrying.
    Down,
}

/// A link's socket, written by one task at a time.
pub(crate) type Sender = Arc<SendLock<DealerSendHalf>>;

/// A call the client side tracks: its inbox and correlation id.
type CallKey = (u64, u64);

/// The calling side, shared by the transport, its inboxes and link tasks.
pub(crate) struct ClientSide {
    pub(crate) config: Arc<Config>,
    pub(crate) counters: Arc<Counters>,
    state: Mutex<State>,
    closed: AtomicBool,
    /// Rung whenever a server's services or credit change.
    advertised: Notify,
}

#[derive(Default)]
struct State {
    links: Vec<Link>,
    waiting: HashMap<Name, VecDeque<Waiting>>,
    waiting_total: usize,
    inboxes: IdMap<u64, ReplySink>,
    next_inbox: u64,
}

struct Link {
    endpoint: String,
    up: Option<Up>,
    status: watch::Sender<LinkStatus>,
}

/// A connected link.
struct Up {
    /// Its socket, its queue of requests (`batcher.rs`), and the signal
    /// raised by a send that failed (the connection is gone, so the link
    /// task drops it now rather than at the next missed heartbeat) and by
    /// `close`.
    link: batcher::Link,
    /// Calls answered since the link last took a request: more than one,
    /// and the calls those answers wake make their next requests together.
    answered: usize,
    ready: bool,
    services: HashMap<Name, Window>,
    in_flight: IdMap<CallKey, Name>,
}

/// One service's credit at one server.
#[derive(Default)]
struct Window {
    granted: i64,
    used: i64,
}

/// A call held until some server has credit.
struct Waiting {
    key: Option<CallKey>,
    method: Name,
    deadline_ms: u64,
    frames: Vec<Bytes>,
}

/// What a routed call's send future still has to do.
enum Later {
    /// Write the call's own message.
    Send(Sender, Arc<Signal>, ZmqMessage),
    /// Flush the link's queue, the call's request in it.
    Flush(batcher::Link),
}

/// What routing decided for one call.
enum Route {
    Send(Sender, Arc<Signal>, ZmqMessage),
    /// Queued on the link; this call's send flushes the queue.
    Flush(batcher::Link),
    /// Queued on the link behind a call that flushes it.
    Batched,
    Held,
    Unserved(Name),
    Full,
}

impl ClientSide {
    pub(crate) fn new(config: Arc<Config>, counters: Arc<Counters>) -> Self {
        ClientSide {
            config,
            counters,
            state: Mutex::new(State::default()),
            closed: AtomicBool::new(false),
            advertised: Notify::new(),
        }
    }

    /// Adds a link to `endpoint`; returns its index and a view of its status.
    pub(crate) fn add_link(&self, endpoint: String) -> (usize, watch::Receiver<LinkStatus>) {
        let (status, view) = watch::channel(LinkStatus::Connecting);
        let mut state = self.lock();
        state.links.push(Link {
            endpoint,
            up: None,
            status,
        });
        (state.links.len() - 1, view)
    }

    pub(crate) fn open_inbox(&self, sink: ReplySink) -> Result<u64, TransportError> {
        if self.is_closed() {
            return Err(TransportError::Closed);
        }
        let mut state = self.lock();
        state.next_inbox += 1;
        let id = state.next_inbox;
        state.inboxes.insert(id, sink);
        Ok(id)
    }

    pub(crate) fn close_inbox(&self, id: u64) {
        self.lock().inboxes.remove(&id);
    }

    /// Closes for good: every inbox hears `closed`, links stop.
    pub(crate) fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        let sinks: Vec<ReplySink> = {
            let mut state = self.lock();
            state.waiting.clear();
            state.waiting_total = 0;
            for up in state.links.iter().filter_map(|link| link.up.as_ref()) {
                up.link.stop.raise();
            }
            state.inboxes.drain().map(|(_, sink)| sink).collect()
        };
        for sink in sinks {
            sink.closed();
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Sends a request from inbox `inbox` (whose tag frame is `tag`), or
    /// holds it for credit. Takes the envelope by reference (its encoding
    /// is what goes out), so that it is not moved from call to call.
    pub(crate) fn send_request(
        &self,
        inbox: u64,
        tag: Bytes,
        envelope: &mut Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + 'static + use<> {
        // The inbox travels as the tag frame; nothing is read from these.
        envelope.header.reply_to = None;
        envelope.header.metadata.remove_reserved();
        let key = (inbox, envelope.header.correlation_id);
        // Room for the envelope frame too: `route_envelope` appends it.
        let mut head = Vec::with_capacity(3);
        head.extend([Bytes::from_static(wire::REQ), tag]);
        self.send(envelope, Some(key), head)
    }

    /// Sends a oneway call, or holds it for credit.
    pub(crate) fn send_oneway(
        &self,
        envelope: &mut Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + 'static + use<> {
        envelope.header.reply_to = None;
        envelope.header.metadata.remove_reserved();
        let mut head = Vec::with_capacity(2);
        head.push(Bytes::from_static(wire::ONEWAY));
        self.send(envelope, None, head)
    }

    /// Routes `envelope` now; the future only writes it to the socket.
    /// `head` is the command frames before the envelope frame.
    fn send(
        &self,
        envelope: &Envelope,
        key: Option<CallKey>,
        mut head: Vec<Bytes>,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + 'static + use<> {
        let (now, later) = match self.route_envelope(envelope, key, &mut head) {
            Ok(Route::Send(sender, stop, message)) => {
                (None, Some(Later::Send(sender, stop, message)))
            }
            Ok(Route::Flush(link)) => (None, Some(Later::Flush(link))),
            Ok(Route::Batched | Route::Held | Route::Full) => (Some(Ok(())), None),
            Ok(Route::Unserved(service)) => (
                Some(Err(TransportError::NoRoute {
                    address: service.to_string(),
                })),
                None,
            ),
            Err(error) => (Some(Err(error)), None),
        };
        async move {
            if let Some(result) = now {
                return result;
            }
            match later {
                Some(Later::Send(sender, stop, message)) => {
                    batcher::send(&sender, &stop, message).await
                }
                Some(Later::Flush(link)) => batcher::flush(link).await,
                None => Ok(()),
            }
        }
    }

    fn route_envelope(
        &self,
        envelope: &Envelope,
        key: Option<CallKey>,
        head: &mut Vec<Bytes>,
    ) -> Result<Route, TransportError> {
        if self.is_closed() {
            return Err(TransportError::Closed);
        }
        let bytes = match wire::encode_envelope(envelope, &self.config.limits) {
            Ok(bytes) => bytes,
            Err(rpc_core::FrameError::TooLarge { size, limit }) => {
                return Err(TransportError::TooLarge { size, limit });
            }
            Err(error) => return Err(TransportError::protocol("encode request", error)),
        };
        head.push(bytes);
        let header = &envelope.header;
        let call = Waiting {
            key,
            method: header.method.clone(),
            deadline_ms: header.deadline_ms,
            frames: std::mem::take(head),
        };
        match self.route(&header.service, call) {
            Route::Full => {
                // Past the high-water mark: answered here, as a server at
                // its capacity would answer.
                if let Some((inbox, correlation_id)) = key
                    && let Some(sink) = self.sink(inbox)
                {
                    let request = Header::request(
                        header.service.clone(),
                        header.method.clone(),
                        header.content_type,
                    );
                    sink.deliver(error_reply(
                        request,
                        correlation_id,
                        ErrorKind::Overloaded,
                        "every server of the service is at its credit and the client holds its most",
                    ));
                }
                Ok(Route::Held)
            }
            route => Ok(route),
        }
    }

    /// Picks the server with the most credit left for `service`, takes one
    /// credit and records the call; or holds the call.
    fn route(&self, service: &Name, call: Waiting) -> Route {
        let batch_above = self.config.batch_above;
        let mut state = self.lock();
        match best_link(&mut state.links, service) {
            None => Route::Unserved(service.clone()),
            Some((mut up, true)) => {
                take_credit(&mut up, service, call.key);
                // The calls made in this turn of the runtime go together,
                // unless this one is alone: nothing else in flight on the
                // link, and not one of several the last replies woke. A
                // lone call is written at once: its batch would hold it
                // alone, for the cost of a yield.
                let alone = up.in_flight.len() == 1 && *up.answered <= 1;
                *up.answered = 0;
                if call.key.is_some() && !alone && up.in_flight.len() > batch_above {
                    let mut frames = call.frames.into_iter().skip(1);
                    if let (Some(tag), Some(envelope)) = (frames.next(), frames.next())
                        && up.link.batch.push(tag, envelope)
                    {
                        return Route::Flush(up.link.clone());
                    }
                    return Route::Batched;
                }
                Route::Send(
                    up.link.sender.clone(),
                    up.link.stop.clone(),
                    wire::message(call.frames),
                )
            }
            Some((_, false)) => {
                if state.waiting_total >= self.config.max_waiting {
                    return Route::Full;
                }
                state.waiting_total += 1;
                state
                    .waiting
                    .entry(service.clone())
                    .or_default()
                    .push_back(call);
                Route::Held
            }
        }
    }

    /// Sends held calls to servers that have credit again.
    fn release_waiting(&self) {
        let ready: Vec<(Sender, Arc<Signal>, ZmqMessage)> = {
            let mut guard = self.lock();
            if guard.waiting_total == 0 {
                return;
            }
            let state = &mut *guard;
            let mut out = Vec::new();
            let now = now_ms();
            for (service, queue) in state.waiting.iter_mut() {
                while !queue.is_empty() {
                    let Some((mut up, true)) = best_link(&mut state.links, service) else {
                        break;
                    };
                    let Some(call) = queue.pop_front() else { break };
                    state.waiting_total -= 1;
                    if call.deadline_ms != 0 && now >= call.deadline_ms {
                        // Its caller has had `Timeout` already.
                        continue;
                    }
                    take_credit(&mut up, service, call.key);
                    out.push((
                        up.link.sender.clone(),
                        up.link.stop.clone(),
                        wire::message(call.frames),
                    ));
                }
            }
            state.waiting.retain(|_, queue| !queue.is_empty());
            out
        };
        if ready.is_empty() {
            return;
        }
        // Written from a task of their own, so the reader (which calls
        // this) never waits for a send lock; see `read_link`.
        tokio::spawn(async move {
            for (sender, stop, message) in ready {
                // The link task fails the call it recorded when it drops the link.
                if sender.lock().await.send(message).await.is_err() {
                    stop.raise();
                }
            }
        });
    }

    /// Runs link `index` until the transport closes: connect, `HELLO`,
    /// read and heartbeat until the server falls silent, fail what it
    /// held, wait, connect again with a new socket.
    pub(crate) async fn run_link(self: Arc<Self>, index: usize) {
        let endpoint = self.lock().links[index].endpoint.clone();
        let mut first = true;
        while !self.is_closed() {
            if !first {
                tokio::time::sleep(self.config.reconnect).await;
            }
            first = false;
            let mut options = SocketOptions::default();
            options.connect_timeout(self.config.connect_timeout);
            let mut socket = DealerSocket::with_options(options);
            if let Err(error) = socket.connect(&endpoint).await {
                Counters::bump(&self.counters.connect_failures);
                tracing::debug!(%endpoint, %error, "connect failed");
                self.set_status(index, LinkStatus::Down);
                continue;
            }
            let (send, receive) = socket.split();
            let sender: Sender = Arc::new(SendLock::new(send));
            let stop = Arc::new(Signal::default());
            let link = batcher::Link {
                batch: Arc::new(Batch::default()),
                sender: sender.clone(),
                stop: stop.clone(),
                counters: self.counters.clone(),
                max_size: self.config.limits.max_message_size,
            };
            self.lock().links[index].up = Some(Up {
                link: link.clone(),
                answered: 0,
                ready: false,
                services: HashMap::new(),
                in_flight: IdMap::default(),
            });
            // `close` raises the signal of every link up when it runs; one
            // that ran before this link was up is seen here (the lock
            // orders the two).
            if self.is_closed() {
                stop.raise();
            }
            Counters::bump(&self.counters.connects);
            tokio::spawn(batcher::write_orphans(link));
            if sender
                .lock()
                .await
                .send(wire::message(wire::hello(true)))
                .await
                .is_ok()
            {
                self.read_link(index, &sender, &stop, receive).await;
            }
            // Ends the link's writer, whatever ended the link.
            stop.raise();
            Counters::bump(&self.counters.servers_lost);
            self.link_down(index);
        }
    }

    /// Reads one connection until its server falls silent or the transport closes.
    async fn read_link(
        &self,
        index: usize,
        sender: &Sender,
        stop: &Signal,
        mut receive: DealerRecvHalf,
    ) {
        let liveness = self.config.liveness;
        // Heartbeat ticks since the server was last heard. Ticks, not time:
        // a tick comes only when this task runs, so a runtime stalled for a
        // while (a handler computing on its thread, a machine too busy to
        // run it) counts as one tick, and the server is not taken for dead
        // because this side could not listen.
        let mut silent_ticks = 0u32;
        let mut tick = Ticker::new(self.config.heartbeat);
        // Kept across turns of the loop: it holds no state, and making it
        // anew per message would be work for nothing.
        let stop = stop.raised();
        tokio::pin!(stop);
        // The names replies carry, so that decoding them allocates none.
        let mut names = KnownNames::new();
        loop {
            tokio::select! {
                // Messages first: after this task was starved (a runtime
                // busy encoding a large call), what arrived meanwhile is
                // read before silence is judged.
                biased;
                message = receive.recv() => match message {
                    Ok(message) => {
                        silent_ticks = 0;
                        self.on_message(index, message.into_vec(), &mut names);
                    }
                    Err(_) => return,
                },
                () = std::future::poll_fn(|cx| tick.poll_tick(cx)) => {
                    silent_ticks += 1;
                    if silent_ticks > liveness {
                        tracing::debug!(index, "server silent past its liveness: dead or hung");
                        return;
                    }
                    // Never wait for the send lock here: a caller writing a
                    // large message holds it, and a reader stuck behind it
                    // would read nothing and take its server for dead. That
                    // write is a sign of life to the server anyway.
                    if let Ok(mut sender) = sender.try_lock() {
                        let heartbeat = wire::message(vec![Bytes::from_static(wire::HB)]);
                        if sender.send(heartbeat).await.is_err() {
                            return;
                        }
                    }
                }
                () = &mut stop => {
                    if !self.is_closed() {
                        tracing::debug!(index, "a send failed: the server's connection is gone");
                    }
                    return;
                }
            }
        }
    }

    /// Handles one message. Not `async`: nothing here waits, and a future
    /// would be made and moved about for every reply.
    fn on_message(&self, index: usize, frames: Vec<Bytes>, names: &mut KnownNames) {
        // Matched as parsed, not taken out of the result first: that would
        // move the reply's envelope once more.
        match wire::parse_from_server_with(&frames, &self.config.limits, names) {
            Err(error) => {
                Counters::bump(&self.counters.refused_messages);
                tracing::debug!(%error, "refused a message from a server");
                return;
            }
            Ok(FromServer::Heartbeat) => return,
            Ok(FromServer::Reply { tag, envelope }) => self.on_reply(index, &tag, envelope),
            Ok(FromServer::Replies(pairs)) => {
                for (tag, envelope) in pairs {
                    match envelope {
                        Ok(envelope) => self.on_reply(index, &tag, envelope),
                        Err(error) => {
                            // The call it answered ends at its deadline.
                            Counters::bump(&self.counters.refused_messages);
                            tracing::debug!(%error, "refused a reply from a server");
                        }
                    }
                }
            }
            Ok(FromServer::Done {
                tag,
                service,
                correlation_id,
            }) => self.on_done(index, &tag, &service, correlation_id),
            Ok(FromServer::Ready(services)) => {
                let mut state = self.lock();
                if let Some(up) = state.links[index].up.as_mut() {
                    up.ready = true;
                    for (service, credit) in services {
                        up.services.entry(service).or_default().granted = i64::from(credit);
                    }
                }
                let _ = state.links[index].status.send(LinkStatus::Ready);
                drop(state);
                self.advertised.notify_waiters();
            }
            Ok(FromServer::Credit(service, change)) => {
                let lost = {
                    let mut state = self.lock();
                    if let Some(up) = state.links[index].up.as_mut() {
                        let window = up.services.entry(service.clone()).or_default();
                        window.granted += i64::from(change);
                        if window.granted <= 0 {
                            up.services.remove(&service);
                        }
                    }
                    self.unroutable(&mut state)
                };
                self.advertised.notify_waiters();
                self.fail_unroutable(lost);
            }
            Ok(FromServer::Error { reason, .. }) => {
                Counters::bump(&self.counters.errors_received);
                tracing::debug!(%reason, "a server refused a message");
                return;
            }
        }
        self.release_waiting();
    }

    fn on_reply(&self, index: usize, tag: &[u8], envelope: Envelope) {
        let Some(inbox) = inbox_of(tag) else {
            Counters::bump(&self.counters.undeliverable_replies);
            return;
        };
        let sink = {
            let mut state = self.lock();
            if let Some(up) = state.links[index].up.as_mut() {
                return_credit(up, (inbox, envelope.header.correlation_id));
            }
            state.inboxes.get(&inbox).cloned()
        };
        match sink {
            // Duplicates and late replies go too: the inbox counts them.
            Some(sink) => sink.deliver(envelope),
            None => Counters::bump(&self.counters.undeliverable_replies),
        }
    }

    fn on_done(&self, index: usize, tag: &[u8], service: &Name, correlation_id: u64) {
        let key = inbox_of(tag).map(|inbox| (inbox, correlation_id));
        let sink = {
            let mut state = self.lock();
            let Some(up) = state.links[index].up.as_mut() else {
                return;
            };
            match key.filter(|key| up.in_flight.contains_key(key)) {
                Some(key) => {
                    return_credit(up, key);
                    state.inboxes.get(&key.0).cloned()
                }
                None => {
                    // A oneway call: nothing recorded but the credit it took.
                    if let Some(window) = up.services.get_mut(service) {
                        window.used = (window.used - 1).max(0);
                    }
                    None
                }
            }
        };
        if let Some(sink) = sink {
            sink.call_lost(correlation_id);
        }
    }

    /// The link lost its server: calls it held fail with `ConnectionLost`,
    /// held calls nobody else serves fail with `NoRoute`.
    fn link_down(&self, index: usize) {
        let (lost, unroutable) = {
            let mut state = self.lock();
            let up = state.links[index].up.take();
            let _ = state.links[index].status.send(LinkStatus::Down);
            let lost: Vec<(ReplySink, u64)> = up
                .into_iter()
                .flat_map(|up| up.in_flight.into_keys())
                .filter_map(|(inbox, id)| state.inboxes.get(&inbox).map(|s| (s.clone(), id)))
                .collect();
            (lost, self.unroutable(&mut state))
        };
        for (sink, correlation_id) in lost {
            sink.call_lost(correlation_id);
        }
        self.fail_unroutable(unroutable);
    }

    /// Takes the held calls of services no connected server serves any more.
    fn unroutable(&self, state: &mut State) -> Vec<(ReplySink, Name, Waiting)> {
        let gone: Vec<Name> = state
            .waiting
            .keys()
            .filter(|service| {
                !state.links.iter().any(|link| {
                    link.up
                        .as_ref()
                        .is_some_and(|up| up.ready && up.services.contains_key(*service))
                })
            })
            .cloned()
            .collect();
        let mut out = Vec::new();
        for service in gone {
            for call in state.waiting.remove(&service).unwrap_or_default() {
                state.waiting_total -= 1;
                let sink = call
                    .key
                    .and_then(|(inbox, _)| state.inboxes.get(&inbox).cloned());
                if let Some(sink) = sink {
                    out.push((sink, service.clone(), call));
                }
            }
        }
        out
    }

    fn fail_unroutable(&self, calls: Vec<(ReplySink, Name, Waiting)>) {
        for (sink, service, call) in calls {
            let Some((_, correlation_id)) = call.key else {
                continue;
            };
            let header = Header::request(service, call.method, Default::default());
            sink.deliver(error_reply(
                header,
                correlation_id,
                ErrorKind::NoSuchService,
                "no connected server serves it any more",
            ));
        }
    }

    fn sink(&self, inbox: u64) -> Option<ReplySink> {
        self.lock().inboxes.get(&inbox).cloned()
    }

    fn set_status(&self, index: usize, status: LinkStatus) {
        let _ = self.lock().links[index].status.send(status);
    }

    /// Waits until every ready link to one of `endpoints` (this
    /// transport's own) lists `service`: a transport that calls itself can
    /// call a service as soon as it serves it.
    pub(crate) async fn wait_for_own(&self, endpoints: &[String], service: &Name) {
        loop {
            let advertised = self.advertised.notified();
            let missing = self.lock().links.iter().any(|link| {
                endpoints.contains(&link.endpoint)
                    && link
                        .up
                        .as_ref()
                        .is_some_and(|up| up.ready && !up.services.contains_key(service))
            });
            if !missing {
                return;
            }
            advertised.await;
        }
    }

    /// Calls held for credit.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting_total
    }

    /// The endpoints of links whose server is connected and ready.
    pub(crate) fn ready_links(&self) -> Vec<String> {
        self.lock()
            .links
            .iter()
            .filter(|link| link.up.as_ref().is_some_and(|up| up.ready))
            .map(|link| link.endpoint.clone())
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        lock_unpoisoned(&self.state)
    }
}

/// The link chosen for a call: its credit for the call's service, its
/// record of calls, and what sending there takes. Borrowed from its `Up`
/// field by field, so that the service's credit is looked up once.
struct Chosen<'a> {
    window: &'a mut Window,
    in_flight: &'a mut IdMap<CallKey, Name>,
    link: &'a batcher::Link,
    answered: &'a mut usize,
}

/// The ready link serving `service` with the most credit left, and whether
/// it has any; `None` when no ready link serves it.
fn best_link<'a>(links: &'a mut [Link], service: &Name) -> Option<(Chosen<'a>, bool)> {
    let mut best: Option<(Chosen<'a>, i64)> = None;
    for link in links.iter_mut() {
        let Some(up) = link.up.as_mut().filter(|up| up.ready) else {
            continue;
        };
        let Up {
            link,
            answered,
            services,
            in_flight,
            ..
        } = up;
        let Some(window) = services::get_mut(services, service) else {
            continue;
        };
        let left = window.granted - window.used;
        if best.as_ref().is_none_or(|(_, most)| left > *most) {
            let chosen = Chosen {
                window,
                in_flight,
                link,
                answered,
            };
            best = Some((chosen, left));
        }
    }
    best.map(|(chosen, left)| (chosen, left > 0))
}

fn take_credit(chosen: &mut Chosen<'_>, service: &Name, key: Option<CallKey>) {
    chosen.window.used += 1;
    if let Some(key) = key {
        chosen.in_flight.insert(key, service.clone());
    }
}

fn return_credit(up: &mut Up, key: CallKey) {
    up.answered += 1;
    if let Some(service) = up.in_flight.remove(&key)
        && let Some(window) = services::get_mut(&mut up.services, &service)
    {
        window.used = (window.used - 1).max(0);
    }
}

fn inbox_of(tag: &[u8]) -> Option<u64> {
    tag.try_into().ok().map(u64::from_be_bytes)
}

/// A reply made here for a call that never reached a server.
fn error_reply(request: Header, correlation_id: u64, kind: ErrorKind, message: &str) -> Envelope {
    let mut header = request.reply(Status::Error {
        kind,
        message: message.to_owned(),
    });
    header.correlation_id = correlation_id;
    Envelope {
        header,
        body: Vec::new(),
    }
}

/// Waits until the link leaves `Connecting` (ready, or its first attempt failed).
pub(crate) async fn settled(mut status: watch::Receiver<LinkStatus>) {
    let _ = status
        .wait_for(|status| *status != LinkStatus::Connecting)
        .await;
}

/// Holds `future` to its result or `false` after the deadline.
pub(crate) async fn within<F: Future<Output = ()>>(
    deadline: std::time::Duration,
    future: F,
) -> bool {
    tokio::time::timeout(deadline, future).await.is_ok()
}
