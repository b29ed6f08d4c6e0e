//! One generation of rdkafka clients: the producer, the admin client, what
//! they know about topics, and the signal that the broker is gone.
//!
//! After the broker is lost the whole generation is dropped and a new one
//! built (see `supervisor.rs`): librdkafka clients kept across a restart of
//! a broker that lost its topics crashed (SIGSEGV in a metadata update).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{FutureProducer, Producer as _, PurgeConfig};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaErrorCode;
use rpc_core::TransportError;
use rpc_core::transport::support::Liveness;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::transport::lock;

/// Raised by any client of a generation when librdkafka reports every
/// broker down; the supervisor waits on it.
pub(crate) struct Health {
    /// The generation it is of, for the log: which generation an event
    /// came from is what a reconnect is diagnosed with.
    pub(crate) generation: u64,
    lost: AtomicBool,
    notify: Notify,
}

impl Health {
    /// The health of generation `generation`, not lost yet.
    pub(crate) fn new(generation: u64) -> Self {
        Health {
            generation,
            lost: AtomicBool::new(false),
            notify: Notify::new(),
        }
    }

    pub(crate) fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            tracing::debug!(generation = self.generation, "generation lost");
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// A librdkafka error as a transport error: `ConnectionLost` once the
    /// generation is lost.
    pub(crate) fn kafka_error(&self, operation: &'static str, error: KafkaError) -> TransportError {
        if self.is_lost() {
            TransportError::ConnectionLost
        } else {
            TransportError::protocol(operation, error)
        }
    }

    /// Resolves once the generation is lost.
    pub(crate) async fn lost(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_lost() {
                return;
            }
            notified.await;
        }
    }
}

/// The context of every client: turns "all brokers down" into
/// [`Health::mark_lost`], sends librdkafka's log to `tracing`, and (for
/// consumers) reports partition assignments.
#[derive(Clone)]
pub(crate) struct Context {
    pub(crate) health: Arc<Health>,
    /// Partitions assigned to this consumer right now (servers wait for
    /// their first assignment before serving).
    pub(crate) assigned: Arc<watch::Sender<usize>>,
    /// How many assignments this consumer has had: a partition's fetch
    /// position is learnt again in each (`requests.rs`).
    pub(crate) assignments: Arc<AtomicU64>,
}

impl Context {
    pub(crate) fn new(health: Arc<Health>) -> Self {
        Context {
            health,
            assigned: Arc::new(watch::Sender::new(0)),
            assignments: Arc::default(),
        }
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            tracing::debug!(facility = fac, "librdkafka: {message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            tracing::warn!(
                reason,
                generation = self.health.generation,
                "Kafka broker lost"
            );
            self.health.mark_lost();
        } else {
            tracing::debug!(%error, reason, "librdkafka error");
        }
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let _ = consumer;
        match rebalance {
            Rebalance::Assign(list) => {
                tracing::debug!(
                    partitions = list.count(),
                    generation = self.health.generation,
                    "partitions assigned"
                );
                // Before the first record of the assignment is polled: the
                // records come through the poll that runs this callback.
                self.assignments.fetch_add(1, Ordering::AcqRel);
                self.assigned.send_replace(list.count());
            }
            Rebalance::Revoke(list) => {
                tracing::debug!(
                    partitions = list.count(),
                    generation = self.health.generation,
                    "partitions revoked"
                );
                self.assigned.send_replace(0);
            }
            Rebalance::Error(error) => tracing::debug!(%error, "rebalance failed"),
        }
    }

    /// Commits are queued (`offsets.rs`); one the broker refused is only
    /// reported here. Harmless: its records come back to whoever owns the
    /// partition, and the next commit covers them.
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::debug!(%error, ?offsets, "commit refused");
        }
    }
}

/// Counts one transport's rdkafka clients not yet destroyed, so that
/// closing can wait for them: a process that exited while librdkafka was
/// still tearing a client down on another thread crashed (SIGSEGV), and a
/// client whose topic is deleted under it crashed the same way.
pub(crate) struct LiveClients(watch::Sender<usize>);

impl Default for LiveClients {
    fn default() -> Self {
        LiveClients(watch::Sender::new(0))
    }
}

impl LiveClients {
    /// Resolves once every client is destroyed, or after `patience`;
    /// `false` when some were still alive then.
    pub(crate) async fn all_gone(&self, patience: Duration) -> bool {
        let mut count = self.0.subscribe();
        tokio::time::timeout(patience, count.wait_for(|&live| live == 0))
            .await
            .is_ok()
    }

    /// How many clients are alive (built and not yet destroyed).
    pub(crate) fn count(&self) -> usize {
        *self.0.borrow()
    }
}

/// An rdkafka client dropped on a thread of its own: closing one (leaving
/// its group, flushing) can block for many seconds against tansu, and must
/// never hold up the async runtime or a shutdown. It counts itself in its
/// transport's [`LiveClients`] (and any other count it is added to) until
/// it is destroyed.
pub(crate) struct Detached<T: Send + 'static> {
    client: Option<T>,
    counts: Vec<Arc<LiveClients>>,
}

impl<T: Send + 'static> Detached<T> {
    pub(crate) fn new(client: T, live: &Arc<LiveClients>) -> Self {
        Detached {
            client: Some(client),
            counts: Vec::new(),
        }
        .counted_in(live)
    }

    /// Counts the client in `count` too, until it is destroyed.
    pub(crate) fn counted_in(mut self, count: &Arc<LiveClients>) -> Self {
        count.0.send_modify(|count| *count += 1);
        self.counts.push(count.clone());
        self
    }
}

impl<T: Send + 'static> std::ops::Deref for Detached<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.client.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for Detached<T> {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let counts = std::mem::take(&mut self.counts);
        let kept = counts.clone();
        let spawned = std::thread::Builder::new()
            .name("rdkafka-close".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                drop(client);
                tracing::trace!(
                    client = std::any::type_name::<T>(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "rdkafka client destroyed"
                );
                uncount(&counts);
            });
        if let Err(error) = spawned {
            // The closure, client and all, was dropped here, on this thread.
            tracing::warn!(%error, "could not close an rdkafka client off the runtime");
            uncount(&kept);
        }
    }
}

/// Counts a destroyed client out of every count it was in.
fn uncount(counts: &[Arc<LiveClients>]) {
    for count in counts {
        count.0.send_modify(|count| *count -= 1);
    }
}

/// The producer type of a generation.
pub(crate) type Producer = FutureProducer<Context>;

/// One generation of clients.
pub(crate) struct Session {
    pub(crate) generation: u64,
    pub(crate) health: Arc<Health>,
    pub(crate) producer: Detached<Producer>,
    admin: Detached<AdminClient<Context>>,
    /// The transport's count of live clients, which this generation's
    /// consumers join too.
    pub(crate) live: Arc<LiveClients>,
    /// Partition counts of topics known to exist.
    topics: Mutex<HashMap<String, i32>>,
}

/// A generation is handed out until its broker is found lost (it stays
/// `Up` in the connection state until the supervisor replaces it).
impl Liveness for Session {
    fn is_alive(&self) -> bool {
        !self.health.is_lost()
    }
}

impl Session {
    /// Builds the clients and checks the broker answers a metadata request
    /// within the connect timeout.
    pub(crate) async fn open(
        config: &Config,
        generation: u64,
        live: &Arc<LiveClients>,
    ) -> Result<Self, TransportError> {
        let health = Arc::new(Health::new(generation));
        let producer: Producer = config
            .producer()
            .create_with_context(Context::new(health.clone()))
            .map_err(|e| connect_error("create the producer", e))?;
        let admin: AdminClient<Context> = config
            .admin()
            .create_with_context(Context::new(health.clone()))
            .map_err(|e| connect_error("create the admin client", e))?;
        let session = Session {
            generation,
            health,
            producer: Detached::new(producer, live),
            admin: Detached::new(admin, live),
            live: live.clone(),
            topics: Mutex::default(),
        };
        session.probe(config.connect_timeout).await?;
        Ok(session)
    }

    /// Does the broker answer a metadata request? The request names no
    /// topic: naming one, even one that does not exist, leaves librdkafka a
    /// topic to look up again about once a second for as long as the client
    /// lives. (Asking for every topic is one response per connection.)
    async fn probe(&self, timeout: Duration) -> Result<(), TransportError> {
        let producer = self.producer_handle();
        tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(None, timeout).map(drop)
        })
        .await
        .map_err(|e| connect_error("probe the broker", e))?
        .map_err(|e| connect_error("reach the broker", e))
    }

    /// Fails every record this generation's producer still holds, queued
    /// or in flight, at once: their acknowledgements resolve with
    /// `PurgeQueue` / `PurgeInflight`, which the sends waiting on them take
    /// as `ConnectionLost` (`transport.rs`). Called once the generation is
    /// lost, it is what ends those sends, so that none waits a wait of its
    /// own beside its acknowledgement. librdkafka's purge blocks until every
    /// broker thread has purged its queues, so it runs off the runtime; the
    /// generation is kept until it returns (its clients are then destroyed
    /// as usual, by `Detached`).
    pub(crate) fn purge(self: Arc<Self>) {
        tokio::task::spawn_blocking(move || {
            self.producer
                .purge(PurgeConfig::default().queue().inflight());
            tracing::debug!(generation = self.generation, "producer purged");
        });
    }

    /// A clone of the producer for blocking calls (librdkafka's metadata
    /// calls block a thread).
    pub(crate) fn producer_handle(&self) -> Producer {
        (*self.producer).clone()
    }

    /// How many partitions `topic` has, or `None` when it does not exist.
    /// Asked of the broker once per topic and generation, then cached; a
    /// missing topic is asked again each time (a server may have made it).
    pub(crate) async fn partitions(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Option<i32>, TransportError> {
        if let Some(count) = self.known_partitions(topic) {
            return Ok(Some(count));
        }
        let producer = self.producer_handle();
        let name = topic.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            let metadata = producer.client().fetch_metadata(Some(&name), timeout)?;
            Ok::<_, KafkaError>(metadata.topics().first().and_then(|t| {
                let missing = t.error().is_some() || t.partitions().is_empty();
                (!missing).then(|| t.partitions().len() as i32)
            }))
        })
        .await
        .map_err(|e| TransportError::protocol("look up a topic", e))?
        .map_err(|e| self.kafka_error("look up a topic", e))?;
        if let Some(count) = found {
            lock(&self.topics).insert(topic.to_owned(), count);
        }
        Ok(found)
    }

    /// How many partitions `topic` has, if it is known to exist.
    pub(crate) fn known_partitions(&self, topic: &str) -> Option<i32> {
        lock(&self.topics).get(topic).copied()
    }

    /// Creates topics (name, partitions); one that exists already is fine.
    pub(crate) async fn create_topics(
        &self,
        topics: &[(&str, i32)],
        timeout: Duration,
    ) -> Result<(), TransportError> {
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let results = tokio::time::timeout(timeout, self.admin.create_topics(&new, &options))
            .await
            .map_err(|_| TransportError::ConnectionLost)?
            .map_err(|e| self.kafka_error("create topics", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(TransportError::protocol(
                        "create topics",
                        KafkaError::AdminOp(code),
                    ));
                }
            }
        }
        let mut known = lock(&self.topics);
        for (name, partitions) in topics {
            known.entry((*name).to_owned()).or_insert(*partitions);
        }
        Ok(())
    }

    /// Deletes topics; missing ones are fine. Returns how many were deleted.
    pub(crate) async fn delete_topics(
        &self,
        topics: &[&str],
        timeout: Duration,
    ) -> Result<usize, TransportError> {
        let options = AdminOptions::new().operation_timeout(Some(timeout));
        let results = tokio::time::timeout(timeout, self.admin.delete_topics(topics, &options))
            .await
            .map_err(|_| TransportError::ConnectionLost)?
            .map_err(|e| self.kafka_error("delete topics", e))?;
        let mut known = lock(&self.topics);
        for name in topics {
            known.remove(*name);
        }
        Ok(results.iter().filter(|r| r.is_ok()).count())
    }

    /// A librdkafka error as a transport error: `ConnectionLost` once the
    /// generation is lost.
    pub(crate) fn kafka_error(&self, operation: &'static str, error: KafkaError) -> TransportError {
        self.health.kafka_error(operation, error)
    }
}

fn connect_error(
    what: &str,
    error: impl std::error::Error + Send + Sync + 'static,
) -> TransportError {
    TransportError::Connect {
        message: format!("{what}: {error}"),
        source: Some(Box::new(error)),
    }
}
