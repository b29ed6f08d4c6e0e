//! The serving side: one ROUTER socket bound to every bind endpoint, the
//! services served on it, and the task that reads it.
//!
//! The router task owns the peer list and what it has advertised to peers,
//! so `READY` and `CREDIT` go out in one order from one place: a `serve`
//! stream that starts or ends only marks the services changed, and the
//! task tells every peer the difference.

use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use rpc_core::transport::ServiceSpec;
use rpc_core::{Delivery, Envelope, ErrorKind, KnownNames, Name, Status};
use zeromq::prelude::*;
use zeromq::{RouterRecvHalf, RouterSendHalf, RouterSocket, SocketEvent};

use crate::config::Config;
use crate::delivery::ZmqDelivery;
use crate::handoff::Handoff;
use crate::outbox::Outbox;
use crate::requests::ZmqRequests;
use crate::services;
use crate::signal::Signal;
use crate::stats::Counters;
use crate::tags::TagArena;
use crate::ticker::Ticker;
use crate::wire::{self, FromClient};
use rpc_core::transport::support::lock_unpoisoned;

/// One `serve` stream: where its deliveries go and how busy it is.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) id: u64,
    pub(crate) service: Name,
    pub(crate) concurrency: usize,
    /// Deliveries handed to the stream and not finished yet.
    pub(crate) load: AtomicUsize,
    /// Where its deliveries wait for the stream; closed when the
    /// transport closes, which ends the stream.
    pub(crate) handoff: Handoff,
}

impl Slot {
    /// Hands the delivery of `envelope` to the stream; a stream that has
    /// ended drops it, which tells its client.
    // Inlined, and the delivery made in the call that queues it: each move
    // of a delivery on the way copies a few hundred bytes.
    #[inline(always)]
    fn send(&self, envelope: Envelope, handle: Box<ZmqDelivery>) {
        self.handoff.push(Delivery::untracked(envelope, handle));
    }
}

/// What the serving side shares with its streams and deliveries.
pub(crate) struct ServerSide {
    pub(crate) sender: RouterSendHalf,
    pub(crate) config: Arc<Config>,
    pub(crate) counters: Arc<Counters>,
    services: Mutex<HashMap<Name, Vec<Arc<Slot>>>>,
    /// Raised when a stream starts or ends: the router task tells peers.
    changed: Signal,
    next_slot: AtomicU64,
    /// Replies gathered for peers that take batches (`outbox.rs`).
    pub(crate) outbox: Outbox,
}

/// Binds a ROUTER to every endpoint; returns the serving side, the
/// endpoints as bound (ports resolved), and its tasks: the router task,
/// the one that counts refused handshakes, and the outbox's writer.
pub(crate) async fn bind(
    config: Arc<Config>,
    counters: Arc<Counters>,
) -> Result<
    (
        Arc<ServerSide>,
        Vec<String>,
        [tokio::task::JoinHandle<()>; 3],
    ),
    zeromq::ZmqError,
> {
    let mut socket = RouterSocket::new();
    let monitor = socket.monitor();
    let mut endpoints = Vec::new();
    for endpoint in &config.binds {
        endpoints.push(socket.bind(endpoint).await?.to_string());
    }
    let (sender, receiver) = socket.split();
    let server = Arc::new(ServerSide {
        sender,
        config,
        counters,
        services: Mutex::new(HashMap::new()),
        changed: Signal::default(),
        next_slot: AtomicU64::new(0),
        outbox: Outbox::default(),
    });
    let router = tokio::spawn(Router::new(server.clone()).run(receiver));
    let handshakes = tokio::spawn(count_refused_handshakes(monitor, server.counters.clone()));
    let outbox = tokio::spawn(crate::outbox::write(server.clone()));
    Ok((server, endpoints, [router, handshakes, outbox]))
}

/// Counts the connections refused for failing the ZMTP handshake. A task
/// of its own, not a branch of the router's `select`: the router would
/// poll the monitor again each time it waits for a message.
async fn count_refused_handshakes(
    mut monitor: impl futures_core::Stream<Item = SocketEvent> + Unpin,
    counters: Arc<Counters>,
) {
    while let Some(event) = monitor.next().await {
        if let SocketEvent::AcceptFailed(error) = event {
            Counters::bump(&counters.refused_handshakes);
            tracing::debug!(%error, "refused a connection that failed the ZMTP handshake");
        }
    }
}

/// What the router task woke for.
#[derive(Debug, PartialEq)]
enum Event<M> {
    Message(M),
    Changed,
    Tick,
}

/// Messages the router reads in a row, at most, before it looks at its
/// other waits and lets other tasks run: a flood of messages neither holds
/// back heartbeats nor keeps peers from hearing of credit changes, nor
/// keeps the tasks that write to peers (and run handlers) from the thread.
const READS_IN_A_ROW: u32 = 32;

/// One poll of the router task's waits. Not `select!`, which polls its
/// branches in a random order, so that most messages would come after a
/// poll of the timer and the signal for nothing: here a waiting message is
/// taken first, and the other waits are polled when there is none, or
/// first after `READS_IN_A_ROW` messages in a row (counted in `in_a_row`).
///
/// After that many, when the other waits are not ready either, the task
/// yields (wakes itself and returns `Pending`) before it reads on. zeromq
/// hands out messages from what it has buffered without going to the
/// runtime, so a task reading a flood would otherwise keep its thread for
/// as long as the flood lasts, and the tasks queued behind it (the writes
/// of heartbeats to other peers among them) would not run: on a runtime of
/// one thread, or with the other threads busy, those peers took the server
/// for dead.
fn poll_event<M, R, C>(
    cx: &mut Context<'_>,
    in_a_row: &mut u32,
    mut message: Pin<&mut R>,
    changed: Pin<&mut C>,
    tick: impl FnOnce(&mut Context<'_>) -> Poll<()>,
) -> Poll<Event<M>>
where
    R: Future<Output = M> + ?Sized,
    C: Future<Output = ()> + ?Sized,
{
    let fair = *in_a_row >= READS_IN_A_ROW;
    if !fair && let Poll::Ready(message) = message.as_mut().poll(cx) {
        *in_a_row += 1;
        return Poll::Ready(Event::Message(message));
    }
    *in_a_row = 0;
    if changed.poll(cx).is_ready() {
        return Poll::Ready(Event::Changed);
    }
    if tick(cx).is_ready() {
        return Poll::Ready(Event::Tick);
    }
    if fair {
        // The yield: polled again at once, after the tasks queued meanwhile.
        cx.waker().wake_by_ref();
        return Poll::Pending;
    }
    Poll::Pending
}

impl ServerSide {
    /// Starts a `serve` stream; peers hear of its credit from the router task.
    pub(crate) fn serve(self: &Arc<Self>, spec: &ServiceSpec) -> ZmqRequests {
        let slot = Arc::new(Slot {
            id: self.next_slot.fetch_add(1, Ordering::Relaxed),
            service: spec.name.clone(),
            concurrency: spec.concurrency,
            load: AtomicUsize::new(0),
            handoff: Handoff::default(),
        });
        self.lock()
            .entry(spec.name.clone())
            .or_default()
            .push(slot.clone());
        self.changed.raise();
        ZmqRequests::new(self.clone(), slot)
    }

    /// A stream ended: its slot goes, and peers lose its credit.
    pub(crate) fn unserve(&self, slot: &Slot) {
        let mut services = self.lock();
        if let Some(slots) = services.get_mut(&slot.service) {
            slots.retain(|s| s.id != slot.id);
            if slots.is_empty() {
                services.remove(&slot.service);
            }
        }
        drop(services);
        self.changed.raise();
    }

    /// Ends every stream (the transport closed).
    pub(crate) fn close(&self) {
        for slot in self.lock().drain().flat_map(|(_, slots)| slots) {
            slot.handoff.close();
        }
        self.changed.raise();
    }

    /// Each served service and the credit it grants a client: the sum of
    /// its streams' concurrency.
    fn credits(&self) -> HashMap<Name, u32> {
        self.lock()
            .iter()
            .map(|(name, slots)| {
                let total: usize = slots.iter().map(|s| s.concurrency).sum();
                (name.clone(), u32::try_from(total).unwrap_or(u32::MAX))
            })
            .collect()
    }

    /// The least busy stream of `service`.
    fn pick(&self, service: &str) -> Option<Arc<Slot>> {
        services::get(&self.lock(), service)?
            .iter()
            .min_by_key(|slot| slot.load.load(Ordering::Relaxed) * 1024 / slot.concurrency.max(1))
            .cloned()
    }

    /// Sends `frames` to `peer`; a peer that has gone is counted, not an error here.
    pub(crate) async fn send_to(&self, peer: Bytes, frames: Vec<Bytes>) -> bool {
        let mut all = Vec::with_capacity(frames.len() + 1);
        all.push(peer);
        all.extend(frames);
        let sent = self.sender.clone().send(wire::message(all)).await.is_ok();
        if !sent {
            Counters::bump(&self.counters.undeliverable_replies);
        }
        sent
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Name, Vec<Arc<Slot>>>> {
        lock_unpoisoned(&self.services)
    }
}

/// A peer that said `HELLO`.
struct Peer {
    /// Heartbeat ticks it has been silent for.
    silent: u32,
    /// Whether it takes `REP`s carrying several replies.
    batches: bool,
}

/// What the router answers a message with, to the peer that sent it.
enum Answer {
    One(Vec<Bytes>),
    Many(Vec<Vec<Bytes>>),
}

/// The router task's own state.
struct Router {
    server: Arc<ServerSide>,
    /// Peers that said `HELLO`, and how many heartbeat ticks each has been
    /// silent for. Ticks, not time: a tick comes only when this task runs,
    /// so a runtime stalled for a while (a handler computing on its thread,
    /// a machine too busy to run it) counts as one tick, and no peer is
    /// taken for dead because this side could not listen.
    peers: HashMap<Bytes, Peer>,
    /// A peer in `peers` heard since the last heartbeat tick, and whether
    /// it takes batches, whose next messages need not touch `peers`:
    /// looking a peer up hashes its identity, a sizeable share of what
    /// reading a small call cost. The tick marks it seen then, which can
    /// keep a dead peer one interval longer, never drops a live one sooner.
    fresh: Option<(Bytes, bool)>,
    /// Where the inbox tags of requests are copied to.
    tags: TagArena,
    /// What every peer has been told each service grants.
    advertised: HashMap<Name, u32>,
    /// The names requests carry, so that decoding them allocates none: the
    /// services served, and the rest as they arrive.
    names: KnownNames,
}

impl Router {
    fn new(server: Arc<ServerSide>) -> Self {
        Router {
            server,
            peers: HashMap::new(),
            fresh: None,
            tags: TagArena::default(),
            advertised: HashMap::new(),
            names: KnownNames::new(),
        }
    }

    async fn run(mut self, mut receiver: RouterRecvHalf) {
        let server = self.server.clone();
        let mut tick = Ticker::new(server.config.heartbeat);
        // Kept across turns of the loop: it holds no state.
        let changed = server.changed.take();
        tokio::pin!(changed);
        let mut in_a_row = 0u32;
        loop {
            let mut recv = receiver.recv();
            let event = poll_fn(|cx| {
                poll_event(cx, &mut in_a_row, recv.as_mut(), changed.as_mut(), |cx| {
                    tick.poll_tick(cx)
                })
            })
            .await;
            drop(recv);
            match event {
                Event::Message(Ok(message)) => match self.on_message(message.into_vecdeque()) {
                    Some((peer, Answer::One(answer))) => {
                        server.send_to(peer, answer).await;
                    }
                    Some((peer, Answer::Many(answers))) => {
                        for answer in answers {
                            server.send_to(peer.clone(), answer).await;
                        }
                    }
                    None => {}
                },
                Event::Message(Err(_)) => return,
                Event::Changed => self.advertise().await,
                Event::Tick => self.heartbeat().await,
            }
        }
    }

    /// Handles one message; returns the answer to send its peer, if any.
    /// Not `async`: a request (the usual message) is handed on without
    /// waiting, and a future holding it would be moved about, envelope and
    /// all, on every message.
    fn on_message(&mut self, mut frames: VecDeque<Bytes>) -> Option<(Bytes, Answer)> {
        let peer = frames.pop_front()?;
        // zeromq put the peer in front of the frames as received, so without
        // it they are usually in one piece again and this moves nothing (a
        // `Vec` would have shifted every frame, or rotated the deque, per
        // message).
        let frames = &*frames.make_contiguous();
        let batches = match &self.fresh {
            Some((fresh, batches)) if same_peer(fresh, &peer) => *batches,
            _ => match self.peers.get_mut(&peer) {
                Some(known) => {
                    known.silent = 0;
                    self.fresh = Some((peer.clone(), known.batches));
                    known.batches
                }
                None => false,
            },
        };
        let parsed =
            wire::parse_from_client_with(frames, &self.server.config.limits, &mut self.names);
        match parsed {
            Ok(FromClient::Request { tag, envelope }) => {
                let tag = self.tags.copy(&tag);
                // A request that came alone is answered alone, at once.
                self.dispatch(peer, Some(tag), envelope, false)
                    .map(|(peer, answer)| (peer, Answer::One(answer)))
            }
            Ok(FromClient::Requests(pairs)) => {
                let mut answers = Vec::new();
                for (tag, envelope) in pairs {
                    let tag = self.tags.copy(&tag);
                    match envelope {
                        Ok(envelope) => answers.extend(
                            self.dispatch(peer.clone(), Some(tag), envelope, batches)
                                .map(|(_, answer)| answer),
                        ),
                        Err(error) => answers.push(self.refusal(&error, tag)),
                    }
                }
                (!answers.is_empty()).then_some((peer, Answer::Many(answers)))
            }
            Ok(FromClient::Oneway(envelope)) => self
                .dispatch(peer, None, envelope, false)
                .map(|(peer, answer)| (peer, Answer::One(answer))),
            Ok(FromClient::Heartbeat) => None,
            Ok(FromClient::Hello { batches }) => {
                self.peers.insert(peer.clone(), Peer { silent: 0, batches });
                if self
                    .fresh
                    .as_ref()
                    .is_some_and(|(fresh, _)| same_peer(fresh, &peer))
                {
                    self.fresh = None;
                }
                let ready = wire::ready(self.advertised.iter().map(|(n, c)| (n.as_str(), *c)));
                Some((peer, Answer::One(ready)))
            }
            Err(error) => {
                // The tag, when a request got that far, lets the client say which call.
                let tag = match frames.first().map(|f| f.as_ref()) {
                    Some(wire::REQ) => frames.get(1).cloned().unwrap_or_default(),
                    _ => Bytes::new(),
                };
                Some((peer, Answer::One(self.refusal(&error, tag))))
            }
        }
    }

    /// Counts a refused message (or pair of a batch) and makes its `ERROR`.
    fn refusal(&self, error: &wire::WireError, tag: Bytes) -> Vec<Bytes> {
        Counters::bump(&self.server.counters.refused_messages);
        tracing::debug!(%error, "refused a message");
        let reason = Bytes::from(error.to_string());
        vec![Bytes::from_static(wire::ERROR), tag, reason]
    }

    /// Hands a call to the least busy stream of its service, or returns
    /// the answer that nobody here serves it. `batched`: its reply goes to
    /// the outbox, to leave with the replies to the rest of its batch.
    // Inlined into `on_message`, so that the request is not moved into
    // this call first.
    #[inline(always)]
    fn dispatch(
        &mut self,
        peer: Bytes,
        tag: Option<Bytes>,
        mut envelope: Envelope,
        batched: bool,
    ) -> Option<(Bytes, Vec<Bytes>)> {
        // Nobody is authenticated here, so no caller sets the reserved keys.
        envelope.header.metadata.remove_reserved();
        let server = &self.server;
        let Some(slot) = server.pick(&envelope.header.service) else {
            let tag = tag?;
            let reply = Envelope {
                header: envelope.header.reply(Status::Error {
                    kind: ErrorKind::NoSuchService,
                    message: format!("no `{}` here", envelope.header.service),
                }),
                body: Vec::new(),
            };
            let bytes = wire::encode_envelope(&reply, &server.config.limits).ok()?;
            return Some((peer, vec![Bytes::from_static(wire::REP), tag, bytes]));
        };
        slot.load.fetch_add(1, Ordering::Relaxed);
        let handle = ZmqDelivery::new(server.clone(), slot.clone(), peer, tag, &envelope, batched);
        // A stream that has just ended drops the delivery, which tells the
        // client the call ended without a reply.
        slot.send(envelope, Box::new(handle));
        None
    }

    /// Tells every peer how each service's credit changed.
    async fn advertise(&mut self) {
        let now = self.server.credits();
        for name in now.keys() {
            self.names.insert(name.clone());
        }
        let mut changes = Vec::new();
        for (name, credit) in &now {
            let before = self.advertised.get(name).copied().unwrap_or(0);
            if before != *credit {
                changes.push((name.clone(), i64::from(*credit) - i64::from(before)));
            }
        }
        for (name, before) in &self.advertised {
            if !now.contains_key(name) {
                changes.push((name.clone(), -i64::from(*before)));
            }
        }
        self.advertised = now;
        for (name, change) in changes {
            let change =
                i32::try_from(change).unwrap_or(if change < 0 { i32::MIN } else { i32::MAX });
            for peer in self.peers.keys() {
                self.server
                    .send_to(peer.clone(), wire::credit(&name, change))
                    .await;
            }
        }
    }

    /// Forgets peers silent too long; sends a heartbeat to the others.
    async fn heartbeat(&mut self) {
        let liveness = self.server.config.liveness;
        if let Some((peer, _)) = self.fresh.take()
            && let Some(known) = self.peers.get_mut(&peer)
        {
            known.silent = 0;
        }
        self.peers.retain(|_, known| {
            known.silent += 1;
            known.silent <= liveness
        });
        for peer in self.peers.keys() {
            self.server
                .send_to(peer.clone(), vec![Bytes::from_static(wire::HB)])
                .await;
        }
    }
}

/// Whether two peer identities are the same: zeromq hands out one peer's
/// identity as clones of the same bytes, so comparing where they are
/// usually settles it without comparing them.
#[inline]
fn same_peer(a: &Bytes, b: &Bytes) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{pending, ready};
    use std::sync::atomic::AtomicBool;
    use std::task::Waker;

    /// Counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One poll with a message waiting or not, and the other waits ready or not.
    fn step(in_a_row: &mut u32, message: bool, changed: bool, tick: bool) -> Poll<Event<()>> {
        step_waking(Waker::noop(), in_a_row, message, changed, tick)
    }

    fn step_waking(
        waker: &Waker,
        in_a_row: &mut u32,
        message: bool,
        changed: bool,
        tick: bool,
    ) -> Poll<Event<()>> {
        let mut cx = Context::from_waker(waker);
        let message: Pin<Box<dyn Future<Output = ()>>> = match message {
            true => Box::pin(ready(())),
            false => Box::pin(pending()),
        };
        let changed: Pin<Box<dyn Future<Output = ()>>> = match changed {
            true => Box::pin(ready(())),
            false => Box::pin(pending()),
        };
        let (mut message, mut changed) = (message, changed);
        let tick = |_: &mut Context<'_>| if tick { Poll::Ready(()) } else { Poll::Pending };
        poll_event(&mut cx, in_a_row, message.as_mut(), changed.as_mut(), tick)
    }

    #[test]
    fn waiting_messages_come_first_but_not_forever() {
        let mut in_a_row = 0;
        for _ in 0..READS_IN_A_ROW {
            let event = step(&mut in_a_row, true, true, true);
            assert_eq!(event, Poll::Ready(Event::Message(())));
        }
        assert_eq!(
            step(&mut in_a_row, true, true, true),
            Poll::Ready(Event::Changed)
        );
        // Then messages first again, and after as many the tick's turn.
        for _ in 0..READS_IN_A_ROW {
            let event = step(&mut in_a_row, true, false, true);
            assert_eq!(event, Poll::Ready(Event::Message(())));
        }
        assert_eq!(
            step(&mut in_a_row, true, false, true),
            Poll::Ready(Event::Tick)
        );
        // With the others not ready at their turn, the task yields: it is
        // woken at once, and reads the message when polled again.
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        for _ in 0..READS_IN_A_ROW {
            let event = step_waking(&waker, &mut in_a_row, true, false, false);
            assert_eq!(event, Poll::Ready(Event::Message(())));
        }
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0);
        let event = step_waking(&waker, &mut in_a_row, true, false, false);
        assert_eq!(event, Poll::Pending);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1);
        let event = step_waking(&waker, &mut in_a_row, true, false, false);
        assert_eq!(event, Poll::Ready(Event::Message(())));
        assert_eq!(in_a_row, 1);
    }

    /// A router reading a flood without end still lets another task of its
    /// thread run: here the one that would write a heartbeat to an idle peer.
    #[tokio::test(flavor = "current_thread")]
    async fn a_flood_of_ready_messages_leaves_other_tasks_the_thread() {
        let other_ran = Arc::new(AtomicBool::new(false));
        let other = tokio::spawn({
            let other_ran = other_ran.clone();
            async move { other_ran.store(true, Ordering::Relaxed) }
        });
        let mut in_a_row = 0;
        let mut reads = 0u32;
        // Messages always ready, as zeromq hands them out from its buffer;
        // nothing else ready. Bounded, so that a router that never yields
        // fails here rather than hanging.
        while !other_ran.load(Ordering::Relaxed) && reads < 100 * READS_IN_A_ROW {
            let mut message = std::pin::pin!(ready(()));
            let mut changed = std::pin::pin!(pending::<()>());
            let event = poll_fn(|cx| {
                poll_event(
                    cx,
                    &mut in_a_row,
                    message.as_mut(),
                    changed.as_mut(),
                    |_| Poll::Pending,
                )
            })
            .await;
            assert_eq!(event, Event::Message(()));
            reads += 1;
        }
        assert!(other_ran.load(Ordering::Relaxed), "read {reads} messages");
        assert!(reads <= READS_IN_A_ROW + 1, "read {reads} messages first");
        other.await.unwrap();
    }

    #[test]
    fn with_no_message_the_other_waits_are_polled() {
        let mut in_a_row = 5;
        assert_eq!(
            step(&mut in_a_row, false, false, true),
            Poll::Ready(Event::Tick)
        );
        assert_eq!(
            step(&mut in_a_row, false, true, true),
            Poll::Ready(Event::Changed)
        );
        assert_eq!(step(&mut in_a_row, false, false, false), Poll::Pending);
        assert_eq!(in_a_row, 0);
    }
}
