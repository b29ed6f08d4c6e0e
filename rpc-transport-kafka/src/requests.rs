//! The request stream of one served service: a consumer in the service's
//! group on its request topic, re-made in every generation of clients, and
//! the settlement of each request as offset commits.
//!
//! Kafka commits a position, not a record: committing offset `n + 1` says
//! every record before it is done. Requests of one partition run at once
//! and finish in any order, so each partition keeps the offsets still in
//! flight and commits only up to the lowest of them (`offsets.rs`). A
//! record the fetch skips (`offsets/gaps.rs`) is read again on the side,
//! and no commit passes it meanwhile; to see a skip at the very start of a
//! partition's fetch, the pump asks where that fetch began. A consumer of
//! a new generation joins the group only once the lost one's has left it
//! (`requests/members.rs`).

mod members;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_core::Stream;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, OwnedHeaders};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rpc_core::transport::{
    Delivery, DeliveryHandle, SendFuture, ServiceSpec, SettleFuture, Settlement,
};
use rpc_core::{Envelope, ErrorKind, Header, Kind, Name, Status, TransportError};
use tokio::sync::mpsc;

use crate::headers;
use crate::offsets::{Offsets, gaps};
use crate::session::{Context, Detached, Session};
use crate::transport::{Shared, produce};
use members::Members;

/// How long `serve` waits for the group to assign it partitions before it
/// returns anyway (requests flow once the assignment comes).
const JOIN_WAIT: Duration = Duration::from_secs(30);

/// How long the broker is asked where a partition's fetch starts.
const START_LOOKUP: Duration = Duration::from_secs(5);

type RequestConsumer = Arc<Detached<StreamConsumer<Context>>>;

/// Requests for one service, as [`Transport::serve`](rpc_core::Transport::serve)
/// hands them out. Dropping it leaves the group; requests it had received
/// but not yielded are written back to the request topic.
pub struct KafkaRequests {
    id: u64,
    shared: Arc<Shared>,
    service: String,
    receiver: mpsc::Receiver<Delivery>,
}

impl KafkaRequests {
    /// The service these requests are for.
    pub fn service(&self) -> &str {
        &self.service
    }
}

impl std::fmt::Debug for KafkaRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaRequests")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Stream for KafkaRequests {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Delivery>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for KafkaRequests {
    fn drop(&mut self) {
        self.shared.remove_serve(self.id);
    }
}

/// A served service as the supervisor resumes it.
pub(crate) struct ServeEntry {
    pub(crate) id: u64,
    spec: ServiceSpec,
    topic: Arc<str>,
    dead_letters: Arc<str>,
    sender: mpsc::Sender<Delivery>,
    /// The generation whose consumer runs for it (0: none yet).
    generation: tokio::sync::Mutex<u64>,
    /// Its consumers not yet destroyed, of every generation.
    members: Members,
}

pub(crate) async fn open(
    shared: Arc<Shared>,
    spec: ServiceSpec,
) -> Result<KafkaRequests, TransportError> {
    let session = shared.session().await?;
    let (sender, receiver) = mpsc::channel(spec.concurrency.max(1));
    let entry = Arc::new(ServeEntry {
        id: shared.next_id(),
        topic: shared.config.request_topic(&spec.name).into(),
        dead_letters: shared.config.dead_letter_topic(&spec.name).into(),
        spec,
        sender,
        generation: tokio::sync::Mutex::new(0),
        members: Members::default(),
    });
    shared.register_serve(entry.clone());
    let requests = KafkaRequests {
        id: entry.id,
        shared: shared.clone(),
        service: entry.spec.name.to_string(),
        receiver,
    };
    if let Some(mut assigned) = start(&shared, &entry, &session).await? {
        // Joining a group takes a few seconds (tansu: ~3 s); a server that
        // says it serves should have its partitions.
        let _ = tokio::time::timeout(JOIN_WAIT, assigned.wait_for(|n| *n > 0)).await;
    }
    Ok(requests)
}

/// Starts the consumer of `entry` in `session`, unless that generation has
/// one already. Returns the assignment watch of a consumer it started.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    entry: &Arc<ServeEntry>,
    session: &Arc<Session>,
) -> Result<Option<tokio::sync::watch::Receiver<usize>>, TransportError> {
    let mut running = entry.generation.lock().await;
    if *running == session.generation {
        return Ok(None);
    }
    entry.members.leave(session.generation, &entry.topic).await;
    // A generation lost meanwhile gets no consumer: one that joined only to
    // leave again would be one more member for the group to see go.
    if session.health.is_lost() {
        return Ok(None);
    }
    shared
        .create_topics(
            session,
            &[
                (&entry.topic, shared.config.partitions),
                (&entry.dead_letters, 1),
            ],
        )
        .await?;
    let context = Context::new(session.health.clone());
    let assigned = context.assigned.subscribe();
    let assignments = context.assignments.clone();
    let consumer: StreamConsumer<Context> = shared
        .config
        .request_consumer(&shared.config.group(&entry.spec.name))
        .create_with_context(context)
        .map_err(|e| session.kafka_error("create a request consumer", e))?;
    consumer
        .subscribe(&[&entry.topic])
        .map_err(|e| session.kafka_error("subscribe to a request topic", e))?;
    tracing::debug!(generation = session.generation, topic = %entry.topic, "request consumer subscribed");
    let consumer =
        Arc::new(Detached::new(consumer, &session.live).counted_in(entry.members.count()));
    let offsets = Arc::new(Offsets::new(consumer.clone(), entry.topic.clone()));
    tokio::spawn(pump(
        shared.clone(),
        session.clone(),
        entry.clone(),
        consumer,
        offsets,
        assignments,
    ));
    *running = session.generation;
    Ok(Some(assigned))
}

/// What one record became, taken out of the message before any await (a
/// borrowed message is not `Send`).
///
/// Boxed, the envelope is not copied each time the record moves on its way
/// to the stream (out of the consumer's future, through the pump's select,
/// into the hand-out), only once, into its delivery: about 250 instructions
/// a call fewer at 256 in flight (callgrind: 550 fewer in `memcpy`, less
/// the allocation). The rare refused record is boxed so that it does not
/// make every record large again.
enum Received {
    Request(Box<Envelope>, Option<Arc<[u8]>>, i32, i64),
    Refused(Box<Refusal>),
}

/// A record that is not a request, and why; where to answer it, if it
/// says.
struct Refusal {
    record: RawRecord,
    error: headers::HeadersError,
    reply_to: Option<(String, u64)>,
}

impl Received {
    /// The record's partition and offset.
    fn position(&self) -> (i32, i64) {
        match self {
            Received::Request(_, _, partition, offset) => (*partition, *offset),
            Received::Refused(refused) => (refused.record.partition, refused.record.offset),
        }
    }
}

/// A record kept byte for byte, for the dead-letter topic.
struct RawRecord {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Option<OwnedHeaders>,
}

/// Reads one record: from the consumer, or read again after the fetch
/// skipped it (`offsets/gaps.rs`).
fn take<M: Message>(message: &M, service: &Name) -> Received {
    let key = message.key();
    let value = message.payload().unwrap_or_default().to_vec();
    match headers::decode(message.headers(), headers::Source::Requests { service }) {
        Ok(mut header) => {
            // The time sent is the record's own (a header only when a
            // foreign client writes one).
            if header.sent_at_ms == 0 {
                header.sent_at_ms = message
                    .timestamp()
                    .to_millis()
                    .map_or(0, |ms| u64::try_from(ms).unwrap_or(0));
            }
            Received::Request(
                Box::new(Envelope {
                    header,
                    body: value,
                }),
                key.map(Arc::from),
                message.partition(),
                message.offset(),
            )
        }
        Err(error) => Received::Refused(Box::new(Refusal {
            record: RawRecord {
                partition: message.partition(),
                offset: message.offset(),
                key: key.map(<[u8]>::to_vec),
                value,
                headers: message.headers().map(|headers| {
                    headers.iter().fold(
                        OwnedHeaders::new_with_capacity(headers.count()),
                        |out, h| out.insert(h),
                    )
                }),
            },
            error,
            reply_to: headers::reply_address(message.headers()),
        })),
    }
}

/// The next thing the pump does.
enum Next {
    Record(Received),
    Failed(KafkaError),
    /// A gap read again (`offsets/gaps.rs`), for one partition.
    Filled(i32, gaps::Filled),
    Stop,
}

/// Moves requests from the consumer to the stream (at most `concurrency`
/// waiting), until the stream is dropped, the generation is lost or the
/// transport closes.
async fn pump(
    shared: Arc<Shared>,
    session: Arc<Session>,
    entry: Arc<ServeEntry>,
    consumer: RequestConsumer,
    offsets: Arc<Offsets>,
    assignments: Arc<AtomicU64>,
) {
    let pump = Pump {
        shared,
        session,
        entry,
        offsets,
    };
    // Gaps are read by tasks of their own, which hand their records back
    // here, so that every request leaves through one place.
    let (filled_sender, mut filled) = mpsc::unbounded_channel();
    // Made once, not per record: each of these registers a waiter when
    // first polled, which cost more than the rest of a record's hand-out.
    let stop = async {
        tokio::select! {
            () = pump.entry.sender.closed() => {}
            () = pump.session.health.lost() => {}
            () = pump.shared.connection.closed() => {}
        }
    };
    tokio::pin!(stop);
    loop {
        let next = tokio::select! {
            // Stopping wins over a record ready at once (a lost generation
            // stops fetching at once).
            biased;
            () = &mut stop => Next::Stop,
            received = pump.consumer_next(&consumer) => received,
            Some((partition, found)) = filled.recv() => Next::Filled(partition, found),
        };
        let handed_out = match next {
            Next::Record(received) => {
                let (partition, offset) = received.position();
                let assignment = assignments.load(Ordering::Acquire);
                if pump.offsets.unstarted(partition, assignment) {
                    let start = fetch_start(&consumer, &pump.entry.topic, partition).await;
                    let start = start.unwrap_or(offset);
                    tracing::trace!(partition, start, assignment, "request fetch started");
                    pump.offsets.started(partition, assignment, start);
                }
                if let Some(gap) = pump.offsets.received(partition, offset) {
                    pump.read_again(partition, gap, filled_sender.clone());
                }
                pump.hand_out(received).await
            }
            Next::Filled(partition, found) => {
                let mut handed_out = true;
                for record in &found.records {
                    if handed_out && pump.offsets.filled(partition, record.offset()) {
                        handed_out = pump.hand_out(take(record, &pump.entry.spec.name)).await;
                    }
                }
                pump.offsets.given_up(partition, &found.missing);
                handed_out
            }
            Next::Failed(error) => {
                tracing::debug!(%error, "request consumer");
                true
            }
            Next::Stop => false,
        };
        if !handed_out {
            break;
        }
    }
    // A lost generation stops fetching at once: a client of a lost
    // generation that fetched a topic the restarted broker no longer has
    // crashed librdkafka (SIGSEGV in a metadata update). Its consumer is
    // kept, no longer by the requests it handed out, until the next
    // generation makes it leave the group before joining
    // (`requests/members.rs`). Not on a normal stop: the requests still
    // running commit through it, and a member unsubscribed but not closed
    // would stall the group's next rebalance.
    let lost = pump.session.health.is_lost();
    if lost {
        consumer.unsubscribe();
        pump.offsets.detach();
        if !pump.shared.connection.is_closed() {
            pump.entry.members.retire(consumer);
        }
    }
    tracing::debug!(
        generation = pump.session.generation,
        lost,
        "request consumer stopped"
    );
}

/// What the pump of one served service works with.
struct Pump {
    shared: Arc<Shared>,
    session: Arc<Session>,
    entry: Arc<ServeEntry>,
    offsets: Arc<Offsets>,
}

impl Pump {
    async fn consumer_next(&self, consumer: &RequestConsumer) -> Next {
        match consumer.recv().await {
            Ok(message) => {
                tracing::trace!(
                    partition = message.partition(),
                    offset = message.offset(),
                    "request received"
                );
                Next::Record(take(&message, &self.entry.spec.name))
            }
            Err(error) => Next::Failed(error),
        }
    }

    /// Reads a gap again in a task of its own; its records come back
    /// through `sender`.
    fn read_again(
        &self,
        partition: i32,
        gap: std::ops::Range<i64>,
        sender: mpsc::UnboundedSender<(i32, gaps::Filled)>,
    ) {
        let read = gaps::read(
            self.shared.clone(),
            self.session.clone(),
            self.entry.topic.clone(),
            partition,
            gap,
        );
        tokio::spawn(async move {
            let _ = sender.send((partition, read.await));
        });
    }

    /// Hands one record out: a request to the stream, anything else to
    /// `refuse`. False once the stream is gone.
    async fn hand_out(&self, received: Received) -> bool {
        match received {
            Received::Request(envelope, key, partition, offset) => {
                let handle = KafkaDelivery {
                    shared: self.shared.clone(),
                    offsets: self.offsets.clone(),
                    topic: self.entry.topic.clone(),
                    dead_letters: self.entry.dead_letters.clone(),
                    key,
                    partition,
                    offset,
                };
                let delivery = Delivery::new(*envelope, Box::new(handle));
                self.entry.sender.send(delivery).await.is_ok()
            }
            Received::Refused(refused) => {
                let Refusal {
                    record,
                    error,
                    reply_to,
                } = *refused;
                tracing::warn!(%error, topic = %self.entry.topic, "unreadable request dead-lettered");
                self.entry.spec.refused();
                tokio::spawn(refuse(
                    self.shared.clone(),
                    self.offsets.clone(),
                    self.entry.clone(),
                    record,
                    error,
                    reply_to,
                ));
                true
            }
        }
    }
}

/// Where the fetch of a newly assigned partition starts: the group's
/// committed position, else offset 0. `None` when the broker did not say in
/// time.
///
/// Not the log's start, which is where the consumer resets to: tansu (the
/// test broker) takes as a partition's start the first batch it stored,
/// and when two producers write a new partition at once the later offsets
/// can be stored first (`offsets/gaps.rs`), so its start stays above
/// records it holds for good. Seen: a fresh group's member fetched from 5,
/// the partition's reported start, and requests 0 to 4 never ran
/// (`replies_reach_their_own_client`). From 0, the records below the first
/// one fetched are a gap, read again on the side. Where the log really
/// starts later (Apache Kafka after retention), that gap is offsets that
/// never come: given up after `gaps::PATIENCE`, as any other.
async fn fetch_start(consumer: &RequestConsumer, topic: &str, partition: i32) -> Option<i64> {
    let consumer = consumer.clone();
    let topic = topic.to_owned();
    let lookup = tokio::task::spawn_blocking(move || {
        let mut list = TopicPartitionList::new();
        list.add_partition(&topic, partition);
        // Not learnt, the fetch is taken to start at its first record, and
        // a record skipped before it is not read again: say so in the log.
        let committed = consumer
            .committed_offsets(list, START_LOOKUP)
            .inspect_err(|error| {
                tracing::debug!(%error, %topic, partition, "could not learn the committed position");
            })
            .ok()?;
        match committed.find_partition(&topic, partition)?.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => Some(0),
        }
    });
    lookup.await.ok().flatten()
}

/// A record that is not a request: answered `decode` when it names a reply
/// topic and correlation id, copied to the dead-letter topic, committed.
async fn refuse(
    shared: Arc<Shared>,
    offsets: Arc<Offsets>,
    entry: Arc<ServeEntry>,
    record: RawRecord,
    error: headers::HeadersError,
    reply_to: Option<(String, u64)>,
) {
    if let Some((topic, correlation_id)) = reply_to {
        let mut header = Header::request(
            entry.spec.name.clone(),
            rpc_core::Name::from_static(""),
            rpc_core::ContentType::default(),
        )
        .reply(Status::Error {
            kind: ErrorKind::Decode,
            message: format!("unreadable request: {error}"),
        });
        header.kind = Kind::Reply;
        header.correlation_id = correlation_id;
        let reply = Envelope {
            header,
            body: Vec::new(),
        };
        if let Err(error) = shared
            .send_reply(&topic, record.key.as_deref(), reply)
            .await
        {
            tracing::debug!(%error, "could not answer an unreadable request");
        }
    }
    let Ok(session) = shared.session().await else {
        return;
    };
    let headers = record.headers.unwrap_or_default();
    let copied = produce(
        &session,
        &entry.dead_letters,
        None,
        record.key.as_deref(),
        headers,
        &record.value,
    )
    .await;
    match copied {
        Ok(()) => offsets.settled(record.partition, record.offset),
        Err(error) => tracing::warn!(%error, "could not dead-letter an unreadable request"),
    }
}

/// One delivered request: where it came from, how to answer and settle it.
struct KafkaDelivery {
    shared: Arc<Shared>,
    offsets: Arc<Offsets>,
    topic: Arc<str>,
    dead_letters: Arc<str>,
    /// The request's record key, which its reply carries too (shared, not
    /// copied, with the reply).
    key: Option<Arc<[u8]>>,
    partition: i32,
    offset: i64,
}

impl KafkaDelivery {
    /// Writes a copy of `delivered` to `topic` (a requeue or a dead letter),
    /// then settles the original.
    fn copy_then_settle(
        &self,
        topic: Arc<str>,
        partition: Option<i32>,
        delivered: &Envelope,
    ) -> SettleFuture {
        let shared = self.shared.clone();
        let offsets = self.offsets.clone();
        let key = self.key.clone();
        let (own_partition, offset) = (self.partition, self.offset);
        let headers = headers::encode(&delivered.header);
        let body = delivered.body.clone();
        Box::pin(async move {
            let session = shared.session().await?;
            produce(&session, &topic, partition, key.as_deref(), headers, &body).await?;
            offsets.settled(own_partition, offset);
            Ok(())
        })
    }
}

impl DeliveryHandle for KafkaDelivery {
    fn reply(&self, request: &Envelope, reply: Envelope) -> SendFuture {
        // A request without a reply topic (a oneway call, or a foreign
        // client that wants no answer) gets none.
        let Some(to) = request.header.reply_to.clone() else {
            return Box::pin(rpc_core::transport::Settled);
        };
        self.shared.reply(to, self.key.clone(), reply)
    }

    fn settle(&self, settlement: Settlement, delivered: &Envelope) -> SettleFuture {
        let (partition, offset) = (self.partition, self.offset);
        match settlement {
            Settlement::Ack => {
                self.offsets.settled(partition, offset);
                Box::pin(rpc_core::transport::Settled)
            }
            Settlement::AckBeforeRun => {
                let offsets = self.offsets.clone();
                Box::pin(async move { offsets.settled_and_committed(partition, offset).await })
            }
            Settlement::Requeue => {
                self.copy_then_settle(self.topic.clone(), Some(partition), delivered)
            }
            _ => self.copy_then_settle(self.dead_letters.clone(), None, delivered),
        }
    }

    fn abandon(&self, delivered: &Envelope) {
        // Left uncommitted, the record would come back only after a
        // rebalance, and would hold back every commit of its partition:
        // written back to its partition instead, like a requeue.
        let requeue = self.copy_then_settle(self.topic.clone(), Some(self.partition), delivered);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = requeue.await {
                    tracing::debug!(%error, "could not requeue an abandoned request");
                }
            });
        }
    }
}
