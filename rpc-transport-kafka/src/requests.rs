//! The request stream of one served service: a consumer in the service's
//! group on its request topic, re-made in every generation of clients, and
//! the settlement of each request as offset commits.
//!
//! Kafka commits a position, not a record: committing offset `n + 1` says
//! every record before it is done. Requests of one partition run at once
//! and finish in any order, so each partition keeps the offsets still in
//! flight and commits only up to the lowest of them (`offsets.rs`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures_core::Stream;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::BorrowedMessage;
use rpc_core::transport::{
    Delivery, DeliveryHandle, SendFuture, ServiceSpec, SettleFuture, Settlement,
};
use rpc_core::{Envelope, ErrorKind, Header, Kind, Name, Status, TransportError};
use tokio::sync::mpsc;

use crate::headers;
use crate::offsets::Offsets;
use crate::session::{Context, Detached, Session};
use crate::transport::{Shared, produce};

/// How long `serve` waits for the group to assign it partitions before it
/// returns anyway (requests flow once the assignment comes).
const JOIN_WAIT: Duration = Duration::from_secs(30);

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
    let consumer: StreamConsumer<Context> = shared
        .config
        .consumer(&shared.config.group(&entry.spec.name))
        .create_with_context(context)
        .map_err(|e| session.kafka_error("create a request consumer", e))?;
    consumer
        .subscribe(&[&entry.topic])
        .map_err(|e| session.kafka_error("subscribe to a request topic", e))?;
    let consumer = Arc::new(Detached::new(consumer, &session.live));
    let offsets = Arc::new(Offsets::new(consumer.clone(), entry.topic.clone()));
    tokio::spawn(pump(
        shared.clone(),
        session.clone(),
        entry.clone(),
        consumer,
        offsets,
    ));
    *running = session.generation;
    Ok(Some(assigned))
}

/// What one record became, taken out of the borrowed message before any
/// await (a borrowed message is not `Send`).
enum Received {
    Request(Envelope, Option<Vec<u8>>, i32, i64),
    Refused(RawRecord, headers::HeadersError, Option<(String, u64)>),
    Failed(KafkaError),
}

/// A record kept byte for byte, for the dead-letter topic.
struct RawRecord {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: Option<rdkafka::message::OwnedHeaders>,
}

fn take(received: Result<BorrowedMessage<'_>, KafkaError>, service: &Name) -> Received {
    let message = match received {
        Ok(message) => message,
        Err(error) => return Received::Failed(error),
    };
    let key = message.key().map(<[u8]>::to_vec);
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
                Envelope {
                    header,
                    body: value,
                },
                key,
                message.partition(),
                message.offset(),
            )
        }
        Err(error) => Received::Refused(
            RawRecord {
                partition: message.partition(),
                offset: message.offset(),
                key,
                value,
                headers: message.headers().map(|h| h.detach()),
            },
            error,
            headers::reply_address(message.headers()),
        ),
    }
}

/// Moves requests from the consumer to the stream (at most `concurrency`
/// waiting), until the stream is dropped, the generation is lost or the
/// transport closes.
async fn pump(
    shared: Arc<Shared>,
    session: Arc<Session>,
    entry: Arc<ServeEntry>,
    consumer: Arc<Detached<StreamConsumer<Context>>>,
    offsets: Arc<Offsets>,
) {
    loop {
        let received = tokio::select! {
            received = consumer.recv() => take(received, &entry.spec.name),
            () = entry.sender.closed() => break,
            () = session.health.lost() => break,
            () = shared.connection.closed() => break,
        };
        match received {
            Received::Request(envelope, key, partition, offset) => {
                offsets.received(partition, offset);
                let handle = KafkaDelivery {
                    shared: shared.clone(),
                    offsets: offsets.clone(),
                    topic: entry.topic.clone(),
                    dead_letters: entry.dead_letters.clone(),
                    key,
                    partition,
                    offset,
                };
                let delivery = Delivery::new(envelope, Box::new(handle));
                if entry.sender.send(delivery).await.is_err() {
                    break;
                }
            }
            Received::Refused(record, error, reply_to) => {
                tracing::warn!(%error, topic = %entry.topic, "unreadable request dead-lettered");
                entry.spec.refused();
                offsets.received(record.partition, record.offset);
                tokio::spawn(refuse(
                    shared.clone(),
                    offsets.clone(),
                    entry.clone(),
                    record,
                    error,
                    reply_to,
                ));
            }
            Received::Failed(error) => {
                tracing::debug!(%error, "request consumer");
            }
        }
    }
    // A lost generation stops fetching at once: the consumer may take
    // seconds to close, and a client of a lost generation that fetched a
    // topic the restarted broker no longer has crashed librdkafka (SIGSEGV
    // in a metadata update). Not on a normal stop: an unsubscribed member
    // that is not closed yet stalls the group's next rebalance.
    if session.health.is_lost() {
        consumer.unsubscribe();
    }
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
    key: Option<Vec<u8>>,
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
        let shared = self.shared.clone();
        let key = self.key.clone();
        Box::pin(async move { shared.send_reply(to.as_str(), key.as_deref(), reply).await })
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
