//! [`KafkaTransport`]: the [`Transport`] implementation and the state its
//! clones share.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::future::{Either, ready};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rpc_core::transport::support::{Connection, ConnectionState, instance_id};
use rpc_core::transport::{ReplySink, ServiceSpec, Transport};
use rpc_core::{Address, Envelope, TransportError};

use crate::config::{Config, KafkaTransportBuilder};
use crate::headers;
use crate::inbox::{self, InboxGuard};
use crate::requests::{self, KafkaRequests, ServeEntry};
use crate::session::{Health, LiveClients, Session};
use crate::supervisor;

/// How long a server keeps asking for a reply topic the broker does not
/// show before it gives the reply up (see `Shared::send_reply`).
const REPLY_TOPIC_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
/// The first pause between those questions; it doubles.
const REPLY_TOPIC_FIRST_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);

/// A Kafka connection for RPC clients and servers. Cheap to clone; it
/// closes when the last clone is dropped (or on [`close`](Self::close)).
///
/// See the [crate docs](crate) for topics, guarantees and recovery.
#[derive(Clone)]
pub struct KafkaTransport {
    handle: Arc<Handle>,
}

/// Closes the shared state when the last user-held clone goes; the
/// transport's own tasks hold `Shared` only, so they never keep it open.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close_now();
    }
}

/// The state behind every clone and every task of one transport.
pub(crate) struct Shared {
    pub(crate) config: Config,
    /// The connection as every clone and task sees it; the supervisor
    /// moves it between `Up` and `Connecting`.
    pub(crate) connection: ConnectionState<Arc<Session>>,
    /// This instance's reply topic, as written into requests.
    pub(crate) reply_to: Address,
    /// Open inboxes by id (the reply record's key).
    inboxes: Mutex<IdMap<u64, ReplySink>>,
    /// The generation whose reply consumer runs (0: none yet).
    pub(crate) reply_generation: tokio::sync::Mutex<u64>,
    /// Where the reply consumer resumes after a reconnect (-1: the start).
    pub(crate) reply_next_offset: AtomicI64,
    /// Served services, resumed on every new generation.
    serves: Mutex<HashMap<u64, Arc<ServeEntry>>>,
    /// Topics this transport created.
    created: Mutex<BTreeSet<String>>,
    next_id: AtomicU64,
    next_partition: AtomicU32,
    /// The rdkafka clients of every generation not yet destroyed.
    pub(crate) live: Arc<LiveClients>,
}

impl KafkaTransport {
    /// A builder for a transport to the brokers `bootstrap`
    /// (`host:port[,host:port...]`).
    pub fn builder(bootstrap: impl Into<String>) -> KafkaTransportBuilder {
        KafkaTransportBuilder::new(bootstrap)
    }

    /// Connects to `bootstrap` with the default options.
    pub async fn connect(bootstrap: &str) -> Result<Self, TransportError> {
        Self::builder(bootstrap).connect().await
    }

    pub(crate) async fn start(config: Config) -> Result<Self, TransportError> {
        let live = Arc::new(LiveClients::default());
        let session = Arc::new(Session::open(&config, 1, &live).await?);
        let reply_to = Address::new(config.reply_topic(&instance_id()));
        let shared = Arc::new(Shared {
            config,
            connection: ConnectionState::new(session.clone()),
            reply_to,
            inboxes: Mutex::default(),
            reply_generation: tokio::sync::Mutex::new(0),
            reply_next_offset: AtomicI64::new(-1),
            serves: Mutex::default(),
            created: Mutex::default(),
            next_id: AtomicU64::new(1),
            next_partition: AtomicU32::new(0),
            live,
        });
        tokio::spawn(supervisor::run(shared.clone(), session));
        Ok(KafkaTransport {
            handle: Arc::new(Handle { shared }),
        })
    }

    /// The topic a service's requests are written to (`<prefix><service>`).
    pub fn request_topic(&self, service: &str) -> String {
        self.shared().config.request_topic(service)
    }

    /// The topic a service's refused requests go to (`<prefix><service>.dlq`).
    pub fn dead_letter_topic(&self, service: &str) -> String {
        self.shared().config.dead_letter_topic(service)
    }

    /// This transport's reply topic (created when the first inbox opens).
    pub fn reply_topic(&self) -> &str {
        self.shared().reply_to.as_str()
    }

    /// Every topic this transport has created so far.
    pub fn created_topics(&self) -> Vec<String> {
        lock(&self.shared().created).iter().cloned().collect()
    }

    /// Whether the transport is connected right now (false while reconnecting).
    pub fn is_connected(&self) -> bool {
        self.shared().connection.current().is_some()
    }

    /// How many times the clients have been (re-)built.
    pub fn connection_generation(&self) -> u64 {
        match &*self.shared().connection.borrow() {
            Connection::Up(session) => session.generation,
            _ => 0,
        }
    }

    /// How many of this transport's rdkafka clients are not yet destroyed:
    /// each generation's producer and admin client, the reply consumer, a
    /// consumer per served service. Zero once [`close`](Self::close) has
    /// returned, unless it warned that some were still held.
    pub fn live_clients(&self) -> usize {
        self.shared().live.count()
    }

    /// Resolves once the transport is connected (at once if it is).
    pub async fn wait_connected(&self) -> Result<(), TransportError> {
        self.shared().connection.live().await.map(drop)
    }

    /// Tear-down: closes the transport, then deletes every topic it
    /// created. Returns how many topics were deleted. The transport's own
    /// consumers are destroyed before their topics go: against tansu,
    /// librdkafka 2.12 crashed (SIGSEGV in a metadata update) in a client
    /// whose topic was deleted under it. For the same reason, call it only
    /// when no other client in this process still reads or writes them.
    pub async fn cleanup(&self) -> Result<usize, TransportError> {
        let shared = self.shared();
        let names: Vec<String> = std::mem::take(&mut *lock(&shared.created))
            .into_iter()
            .collect();
        self.close().await;
        if names.is_empty() {
            return Ok(0);
        }
        let timeout = shared.config.connect_timeout;
        // A generation of its own, made after the close, only to delete.
        let admin = Session::open(&shared.config, 0, &shared.live).await?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let deleted = admin.delete_topics(&names, timeout).await;
        drop(admin);
        shared.wait_destroyed().await;
        deleted
    }

    /// Closes the transport: calls in flight fail with `Closed`, serve
    /// streams end, and every clone stops working. Returns once its rdkafka
    /// clients are destroyed (each on a thread of its own, since leaving a
    /// group can take seconds), or after the connect timeout if one is
    /// still held (a serve stream the application keeps) or slow. Await it
    /// before the process exits: a process that exited while librdkafka
    /// was still tearing a client down crashed (SIGSEGV).
    pub async fn close(&self) {
        let shared = self.shared();
        shared.close_now();
        shared.wait_destroyed().await;
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.shared
    }
}

impl std::fmt::Debug for KafkaTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTransport")
            .field("config", &self.shared().config)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Transport for KafkaTransport {
    type Requests = KafkaRequests;
    type Inbox = InboxGuard;

    async fn open_inbox(&self, sink: ReplySink) -> Result<InboxGuard, TransportError> {
        inbox::open(self.shared().clone(), sink).await
    }

    fn send_request(
        &self,
        inbox: &InboxGuard,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.shared().call(Some(inbox.id), envelope)
    }

    fn send_oneway(
        &self,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send {
        self.shared().call(None, envelope)
    }

    async fn serve(&self, service: &ServiceSpec) -> Result<KafkaRequests, TransportError> {
        requests::open(self.shared().clone(), service.clone()).await
    }
}

impl Shared {
    /// The current session, waiting (at most the connect timeout) while
    /// reconnecting.
    pub(crate) async fn session(&self) -> Result<Arc<Session>, TransportError> {
        self.connection.session(self.config.connect_timeout).await
    }

    /// Waits, at most the connect timeout, until every rdkafka client of
    /// this transport is destroyed.
    async fn wait_destroyed(&self) {
        if !self.live.all_gone(self.config.connect_timeout).await {
            tracing::warn!(
                live = self.live.count(),
                "rdkafka clients still alive after closing"
            );
        }
    }

    fn close_now(&self) {
        self.connection.close();
        // Serve streams end once their pumps let go of the senders.
        lock(&self.serves).clear();
        for sink in self.inbox_sinks() {
            sink.closed();
        }
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register_inbox(&self, id: u64, sink: ReplySink) {
        lock(&self.inboxes).insert(id, sink);
    }

    pub(crate) fn remove_inbox(&self, id: u64) {
        lock(&self.inboxes).remove(&id);
    }

    pub(crate) fn inbox(&self, id: u64) -> Option<ReplySink> {
        lock(&self.inboxes).get(&id).cloned()
    }

    pub(crate) fn inbox_sinks(&self) -> Vec<ReplySink> {
        lock(&self.inboxes).values().cloned().collect()
    }

    pub(crate) fn has_inboxes(&self) -> bool {
        !lock(&self.inboxes).is_empty()
    }

    pub(crate) fn register_serve(&self, entry: Arc<ServeEntry>) {
        lock(&self.serves).insert(entry.id, entry);
    }

    pub(crate) fn remove_serve(&self, id: u64) {
        lock(&self.serves).remove(&id);
    }

    pub(crate) fn serve_entries(&self) -> Vec<Arc<ServeEntry>> {
        lock(&self.serves).values().cloned().collect()
    }

    /// Creates topics and remembers them for [`KafkaTransport::cleanup`].
    pub(crate) async fn create_topics(
        &self,
        session: &Session,
        topics: &[(&str, i32)],
    ) -> Result<(), TransportError> {
        session
            .create_topics(topics, self.config.connect_timeout)
            .await?;
        let mut created = lock(&self.created);
        for (name, _) in topics {
            created.insert((*name).to_owned());
        }
        Ok(())
    }

    /// Sends a request (replies to inbox `inbox`) or, without an inbox, a
    /// oneway call, to the service its header names: to the next partition
    /// of its request topic in turn, so every server of the group gets a
    /// share.
    ///
    /// Connected, and with the topic's partitions known (every call but the
    /// first), the record is queued here, before the future: the future,
    /// which lives inside every call's, holds only the wait for the
    /// broker's acknowledgement. Awaiting the connection and the topic's
    /// metadata in the future made it large, and it is moved and allocated
    /// with the call's: queued here, a call at 256 in flight costs about
    /// 1,900 instructions less in `memcpy` and the allocator (callgrind).
    /// Otherwise (reconnecting, a new topic) the send waits in a future of
    /// its own, boxed.
    fn call(
        &self,
        inbox: Option<u64>,
        envelope: Envelope,
    ) -> impl Future<Output = Result<(), TransportError>> + Send + '_ {
        let topic = self.config.request_topic(&envelope.header.service);
        let known = self.connection.current().and_then(|session| {
            let partitions = session.known_partitions(&topic)?;
            Some((session, partitions))
        });
        match known {
            Some((session, partitions)) => Either::Left(
                match self.queue_call(&session, &topic, partitions, inbox, envelope) {
                    Ok(delivery) => {
                        Either::Left(acknowledged(session.health.clone(), delivery, move || {
                            topic
                        }))
                    }
                    Err(error) => Either::Right(ready(Err(error))),
                },
            ),
            None => Either::Right(Box::pin(self.send_call(inbox, envelope, topic))),
        }
    }

    /// [`call`](Self::call) when it must wait: for the connection, or for
    /// the topic's metadata.
    async fn send_call(
        &self,
        inbox: Option<u64>,
        envelope: Envelope,
        topic: String,
    ) -> Result<(), TransportError> {
        let session = self.session().await?;
        let Some(partitions) = session
            .partitions(&topic, self.config.connect_timeout)
            .await?
        else {
            return Err(TransportError::NoRoute { address: topic });
        };
        let delivery = self.queue_call(&session, &topic, partitions, inbox, envelope)?;
        acknowledged(session.health.clone(), delivery, move || topic).await
    }

    /// Queues a call's record on `topic`, which has `partitions`.
    fn queue_call(
        &self,
        session: &Session,
        topic: &str,
        partitions: i32,
        inbox: Option<u64>,
        envelope: Envelope,
    ) -> Result<DeliveryFuture, TransportError> {
        let Envelope { mut header, body } = envelope;
        let partition =
            (self.next_partition.fetch_add(1, Ordering::Relaxed) % partitions.max(1) as u32) as i32;
        header.reply_to = inbox.map(|_| self.reply_to.clone());
        let key = inbox.map(headers::Decimal::new);
        queue(
            session,
            topic,
            Some(partition),
            key.as_ref().map(|key| key.as_str().as_bytes()),
            headers::encode(&header),
            &body,
        )
    }

    /// Sends a reply to the reply topic `to`, keyed like its request. As
    /// [`call`](Self::call) does, the record is queued at once when the
    /// topic is known on a live connection, and the returned future only
    /// waits for its acknowledgement; otherwise it is
    /// [`send_reply`](Self::send_reply), boxed.
    pub(crate) fn reply(
        self: &Arc<Self>,
        to: Address,
        key: Option<Arc<[u8]>>,
        envelope: Envelope,
    ) -> rpc_core::transport::SendFuture {
        let known = self
            .connection
            .current()
            .filter(|session| session.known_partitions(to.as_str()).is_some());
        match known {
            Some(session) => {
                let queued = queue(
                    &session,
                    to.as_str(),
                    None,
                    key.as_deref(),
                    headers::encode(&envelope.header),
                    &envelope.body,
                );
                match queued {
                    Ok(delivery) => {
                        Box::pin(acknowledged(session.health.clone(), delivery, move || {
                            to.as_str().to_owned()
                        }))
                    }
                    Err(error) => Box::pin(ready(Err(error))),
                }
            }
            None => {
                let shared = self.clone();
                Box::pin(async move {
                    shared
                        .send_reply(to.as_str(), key.as_deref(), envelope)
                        .await
                })
            }
        }
    }

    /// Sends a reply to the reply topic `to`, keyed like its request. A
    /// reply topic the broker does not know fails the send (the server
    /// then tries again, a bounded number of times: `MAX_FAILED_SENDS`).
    pub(crate) async fn send_reply(
        &self,
        to: &str,
        key: Option<&[u8]>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        let session = self.session().await?;
        // A client makes its reply topic before it sends a request, so a
        // topic not found here is most likely one the broker's metadata does
        // not show yet (seen under load right after the topic was made):
        // asked again for a while before the reply is given up. A topic that
        // stays unknown is gone with its client; the send then fails, and
        // the server tries again a bounded number of times (the request is
        // handed back and its answer replayed).
        let mut pause = REPLY_TOPIC_FIRST_PAUSE;
        let asked_until = tokio::time::Instant::now() + REPLY_TOPIC_PATIENCE;
        while session
            .partitions(to, self.config.connect_timeout)
            .await?
            .is_none()
        {
            if tokio::time::Instant::now() + pause > asked_until {
                tracing::debug!(topic = to, "reply topic not found");
                return Err(TransportError::protocol(
                    "send a reply",
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the broker does not know the reply topic",
                    ),
                ));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(REPLY_TOPIC_PATIENCE / 4);
        }
        produce(
            &session,
            to,
            None,
            key,
            headers::encode(&envelope.header),
            &envelope.body,
        )
        .await
    }
}

/// Produces one record and waits for the broker's acknowledgement; a broker
/// lost meanwhile ends the wait at once with `ConnectionLost` (see
/// [`acknowledged`]).
pub(crate) async fn produce(
    session: &Session,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    headers: OwnedHeaders,
    body: &[u8],
) -> Result<(), TransportError> {
    let delivery = queue(session, topic, partition, key, headers, body)?;
    acknowledged(session.health.clone(), delivery, || topic.to_owned()).await
}

/// Hands one record to the producer, which copies what it borrows.
///
/// `ConnectionLost` if the generation is found lost once the record is
/// queued: the purge that ends the sends of a lost generation
/// (`Session::purge`) runs after it is marked lost, and may have run before
/// this record was queued, which would then wait for `message.timeout.ms`.
/// Checked after queueing, not before, it cannot miss: the purge and the
/// queueing take the partition queue's lock, so either the purge came
/// after this record and fails it, or it came before, and so did the mark,
/// which this check then sees.
fn queue(
    session: &Session,
    topic: &str,
    partition: Option<i32>,
    key: Option<&[u8]>,
    headers: OwnedHeaders,
    body: &[u8],
) -> Result<DeliveryFuture, TransportError> {
    let mut record = FutureRecord::<[u8], [u8]>::to(topic)
        .payload(body)
        .headers(headers);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    if let Some(key) = key {
        record = record.key(key);
    }
    let delivery = session
        .producer
        .send_result(record)
        .map_err(|(error, _)| session.kafka_error("produce", error))?;
    if session.health.is_lost() {
        return Err(TransportError::ConnectionLost);
    }
    Ok(delivery)
}

/// Waits for the broker's acknowledgement of a queued record. A broker lost
/// meanwhile ends the wait at once with `ConnectionLost`: the supervisor
/// purges the lost generation's producer (`Session::purge`), which resolves
/// every acknowledgement still awaited with a purge error. That purge,
/// once per lost generation, replaces a wait on the generation's `Health`
/// beside each acknowledgement, whose registering and dropping cost about
/// 800 instructions a call (its request's send and its reply's) at 256 in
/// flight (callgrind). `health` still turns any other error of a lost
/// generation into `ConnectionLost`; `topic` names the record's topic in a
/// `NoRoute`.
async fn acknowledged(
    health: Arc<Health>,
    delivery: DeliveryFuture,
    topic: impl FnOnce() -> String,
) -> Result<(), TransportError> {
    match delivery.await {
        Ok(Ok(delivered)) => {
            tracing::trace!(
                partition = delivered.partition,
                offset = delivered.offset,
                "produced"
            );
            Ok(())
        }
        Ok(Err((error, _))) => Err(match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
                TransportError::NoRoute { address: topic() }
            }
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight) => {
                TransportError::ConnectionLost
            }
            _ => health.kafka_error("produce", error),
        }),
        // The producer went without a word on the record (it is dropped only
        // with its generation).
        Err(_cancelled) => Err(TransportError::ConnectionLost),
    }
}

/// A map keyed by numbers this crate makes or the broker numbers (inbox
/// ids, partitions), looked up several times a call: hashed by one
/// multiplication instead of SipHash (about 120 instructions a lookup
/// less). No key comes from a peer, so there is no flooding to resist.
pub(crate) type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

/// The hasher of an [`IdMap`]: a multiplication by an odd constant (a
/// bijection, so distinct keys never collide in the full hash; the table
/// picks buckets from the low bits and tags from the high ones, both of
/// which it mixes).
#[derive(Default)]
pub(crate) struct IdHasher(u64);

/// 2^64 divided by the golden ratio, odd.
const ID_HASH_FACTOR: u64 = 0x9e37_79b9_7f4a_7c15;

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Not used by the integer keys, but a `Hasher` must take any bytes.
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(ID_HASH_FACTOR);
    }

    fn write_i32(&mut self, n: i32) {
        self.write_u64(u64::from(n as u32));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

// Every critical section here is a single collection call, so a poisoned
// lock still guards consistent data: the shared helper's contract.
pub(crate) use rpc_core::transport::support::lock_unpoisoned as lock;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::BuildHasher;

    use super::*;

    /// Sequential ids (inboxes) and small partition numbers must spread
    /// over a table's buckets (low bits) and tags (high 7 bits): a hash
    /// that left either alone would put every key in one bucket or give
    /// them one tag.
    #[test]
    fn id_hashes_spread_in_low_and_high_bits() {
        let build = std::hash::BuildHasherDefault::<IdHasher>::default();
        let ids: Vec<u64> = (1..=64u64).map(|id| build.hash_one(id)).collect();
        let buckets: HashSet<u64> = ids.iter().map(|h| h & 63).collect();
        let tags: HashSet<u64> = ids.iter().map(|h| h >> 57).collect();
        assert_eq!(buckets.len(), 64, "64 ids fill a 64-bucket table");
        assert!(tags.len() > 32, "tags of 64 ids: {}", tags.len());
        let partitions: HashSet<u64> = (0..16i32).map(|p| build.hash_one(p) & 15).collect();
        assert_eq!(partitions.len(), 16);

        let mut map: IdMap<u64, u64> = IdMap::default();
        for id in 1..=1000 {
            map.insert(id, id * 2);
        }
        assert!((1..=1000).all(|id| map.get(&id) == Some(&(id * 2))));
    }
}
