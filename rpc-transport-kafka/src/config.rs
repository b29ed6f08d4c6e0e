//! Options of a [`KafkaTransport`](crate::KafkaTransport), their builder,
//! and the librdkafka settings they become.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rpc_core::TransportError;

use crate::transport::KafkaTransport;

/// Everything a [`KafkaTransport`] is configured with. `Debug` is written by
/// hand: pass-through settings (SASL passwords, key files) are not shown.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) bootstrap: String,
    pub(crate) client_id: String,
    pub(crate) topic_prefix: String,
    pub(crate) partitions: i32,
    pub(crate) fetch_wait: Duration,
    pub(crate) commit_interval: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    /// librdkafka settings given by the user (TLS, SASL, ...), applied last.
    pub(crate) extra: Vec<(String, String)>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.extra.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Config")
            .field("bootstrap", &self.bootstrap)
            .field("client_id", &self.client_id)
            .field("topic_prefix", &self.topic_prefix)
            .field("partitions", &self.partitions)
            .field("fetch_wait", &self.fetch_wait)
            .field("commit_interval", &self.commit_interval)
            .field("extra_settings", &keys)
            .finish_non_exhaustive()
    }
}

/// The largest record the transport produces or fetches: the runtimes'
/// default message limit (16 MiB) plus room for the headers.
const MAX_RECORD_BYTES: usize = 17 * 1024 * 1024;

impl Config {
    /// The topic a service's requests are written to (`<prefix><service>`).
    /// Built on every call's send, so by hand: `format!` costs several
    /// times as much.
    pub(crate) fn request_topic(&self, service: &str) -> String {
        let mut topic = String::with_capacity(self.topic_prefix.len() + service.len());
        topic.push_str(&self.topic_prefix);
        topic.push_str(service);
        topic
    }

    /// The topic a service's refused requests go to (`<prefix><service>.dlq`).
    pub(crate) fn dead_letter_topic(&self, service: &str) -> String {
        format!("{}{service}.dlq", self.topic_prefix)
    }

    /// The consumer group of a service's servers: the request topic's name.
    pub(crate) fn group(&self, service: &str) -> String {
        self.request_topic(service)
    }

    /// The reply topic of one transport instance (`<prefix>reply.<instance>`).
    pub(crate) fn reply_topic(&self, instance: &str) -> String {
        format!("{}reply.{instance}", self.topic_prefix)
    }

    /// Settings every client of this transport gets.
    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap)
            .set("client.id", &self.client_id)
            .set("socket.nagle.disable", "true")
            // Topics exist because a server created them: a request to a
            // service nobody serves must find no topic (NoRoute), not make one.
            .set("allow.auto.create.topics", "false")
            // Reconnect quickly after a broker restart (defaults 100 ms .. 10 s).
            .set("reconnect.backoff.ms", "20")
            .set("reconnect.backoff.max.ms", "500")
            .set("log_level", "3");
        for (key, value) in &self.extra {
            c.set(key, value);
        }
        c
    }

    /// The producer of requests, replies and dead letters: each record goes
    /// out at once (no linger), acknowledged by the partition leader.
    pub(crate) fn producer(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("linger.ms", "0")
            // At most 5 produce requests wait for the broker on a connection
            // (Kafka's own clients' default; librdkafka's is a million).
            // With no linger, a request goes out for whatever few records
            // have queued; unbounded, they pile up at a broker that handles
            // a connection's requests one by one, as Kafka brokers do (tansu: 70 waiting, 6
            // records each, 24 ms round trips at 256 calls in flight).
            // Bounded, records queue in librdkafka while requests are out
            // and leave in batches: 2.2x the calls/s of the unbounded
            // setting at 256 in flight on tansu, the same at 1 and 16.
            .set("max.in.flight.requests.per.connection", "5")
            .set("acks", "all")
            .set("enable.idempotence", "false")
            .set("compression.type", "none")
            .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
            .set(
                "message.timeout.ms",
                self.send_timeout.as_millis().max(1).to_string(),
            );
        // User settings win over ours.
        for (key, value) in &self.extra {
            c.set(key, value);
        }
        c
    }

    /// A consumer in `group` that commits nothing by itself (reply
    /// consumers and gap readers only assign, but librdkafka wants a group
    /// id for that too); servers use [`request_consumer`](Self::request_consumer).
    pub(crate) fn consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("enable.partition.eof", "false")
            .set("fetch.min.bytes", "1")
            .set("fetch.error.backoff.ms", "10")
            .set(
                "receive.message.max.bytes",
                (2 * MAX_RECORD_BYTES).to_string(),
            )
            .set("fetch.max.bytes", MAX_RECORD_BYTES.to_string())
            .set("max.partition.fetch.bytes", MAX_RECORD_BYTES.to_string())
            // The broker answers a fetch when this wait ends, not when a
            // record arrives (tansu): it is the floor of every hop.
            .set(
                "fetch.wait.max.ms",
                self.fetch_wait.as_millis().max(1).to_string(),
            );
        // User settings win over ours.
        for (key, value) in &self.extra {
            c.set(key, value);
        }
        c
    }

    /// A server's consumer in `group`: stored offsets are committed by
    /// librdkafka every commit interval (`offsets.rs` stores them).
    pub(crate) fn request_consumer(&self, group: &str) -> ClientConfig {
        let mut c = self.consumer(group);
        c.set("enable.auto.commit", "true").set(
            "auto.commit.interval.ms",
            self.commit_interval.as_millis().max(1).to_string(),
        );
        // User settings win over ours.
        for (key, value) in &self.extra {
            c.set(key, value);
        }
        c
    }

    /// The admin client (topic creation and deletion).
    pub(crate) fn admin(&self) -> ClientConfig {
        self.base()
    }
}

/// Options for a [`KafkaTransport`]; start with [`KafkaTransport::builder`].
#[derive(Clone, Debug)]
pub struct KafkaTransportBuilder {
    config: Config,
}

impl KafkaTransportBuilder {
    pub(crate) fn new(bootstrap: impl Into<String>) -> Self {
        KafkaTransportBuilder {
            config: Config {
                bootstrap: bootstrap.into(),
                client_id: "rpc".to_owned(),
                topic_prefix: String::new(),
                partitions: 4,
                fetch_wait: Duration::from_millis(5),
                commit_interval: Duration::from_millis(100),
                connect_timeout: Duration::from_secs(10),
                send_timeout: Duration::from_secs(10),
                reconnect_min: Duration::from_millis(50),
                reconnect_max: Duration::from_secs(2),
                extra: Vec::new(),
            },
        }
    }

    /// The client id the broker sees (`client.id`; default `rpc`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.config.client_id = id.into();
        self
    }

    /// Prefix of every topic and group this transport names (default none):
    /// requests go to `<prefix><service>`.
    pub fn topic_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.topic_prefix = prefix.into();
        self
    }

    /// Partitions of a request topic when a server creates it (default 4).
    /// A service's servers split the partitions, so more servers than
    /// partitions leaves some idle.
    pub fn partitions(mut self, partitions: u16) -> Self {
        self.config.partitions = i32::from(partitions.max(1));
        self
    }

    /// How long a fetch waits at the broker for records (`fetch.wait.max.ms`,
    /// default 5 ms). Brokers that answer a fetch only when this wait ends
    /// (tansu) add up to this much to each hop; shorter waits cost more
    /// fetches (1 ms collapsed at 256 calls in flight on tansu).
    pub fn fetch_wait(mut self, wait: Duration) -> Self {
        self.config.fetch_wait = wait;
        self
    }

    /// How often a server commits the offsets of the requests it has
    /// answered (`auto.commit.interval.ms`, default 100 ms). A request's
    /// offset is stored once its reply is acknowledged, and librdkafka
    /// commits what is stored at this interval, when the group takes the
    /// partition away and when the consumer closes: one commit request per
    /// interval instead of one per request, which is what lets a broker keep
    /// up with hundreds of calls in flight. The price: after a server's
    /// crash, up to one interval's answered requests are delivered again
    /// (at-least-once either way).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.config.commit_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// How long connecting, and calls made while reconnecting, wait for the
    /// broker (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long a produced record may wait for the broker's acknowledgement
    /// (`message.timeout.ms`, default 10 s).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.config.send_timeout = timeout;
        self
    }

    /// Bounds of the exponential backoff between reconnect attempts
    /// (default 50 ms .. 2 s).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.reconnect_min = min;
        self.config.reconnect_max = max.max(min);
        self
    }

    /// Sets a librdkafka property on every client, applied after the
    /// transport's own: TLS (`security.protocol=ssl`, `ssl.ca.location`,
    /// ...), SASL (`sasl.mechanism`, `sasl.username`, `sasl.password`), or
    /// any tuning. Values are never logged.
    ///
    /// The transport sends each record at once (no linger). A service that
    /// always has hundreds of calls in flight may batch instead:
    /// `set("linger.ms", "1")` raised calls/s at 256 in flight by about a
    /// fifth on the test broker (rounds spread widely), and costs about
    /// 1.5 ms a call when calls come one at a time (docs/benchmarks.md).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.extra.push((key.into(), value.into()));
        self
    }

    /// Connects: checks the broker answers a metadata request within the
    /// connect timeout, then returns the transport.
    pub async fn connect(self) -> Result<KafkaTransport, TransportError> {
        KafkaTransport::start(self.config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_settings_win_over_the_transports_own() {
        let ours = KafkaTransportBuilder::new("127.0.0.1:9092").config;
        assert_eq!(ours.producer().get("acks"), Some("all"));
        assert_eq!(
            ours.producer().get("max.in.flight.requests.per.connection"),
            Some("5")
        );
        assert_eq!(ours.consumer("g").get("fetch.wait.max.ms"), Some("5"));

        let users = KafkaTransportBuilder::new("127.0.0.1:9092")
            .set("acks", "1")
            .set("max.in.flight.requests.per.connection", "1")
            .set("fetch.wait.max.ms", "50")
            .config;
        let producer = users.producer();
        assert_eq!(producer.get("acks"), Some("1"));
        assert_eq!(
            producer.get("max.in.flight.requests.per.connection"),
            Some("1")
        );
        assert_eq!(users.consumer("g").get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(
            users.request_consumer("g").get("fetch.wait.max.ms"),
            Some("50")
        );
    }
}
