//! Baseline: a hand-written rdkafka request/reply loop with the settings our
//! Kafka transport uses, the way one would write it without a framework.
//!
//! Server: one consumer in a group on a request topic of 4 partitions, a
//! task per request that produces the reply, awaits the broker's
//! acknowledgement, then stores the request's offset for librdkafka to
//! commit every 100 ms (at-least-once, as ours; librdkafka's own pattern
//! for it). Client: its own reply topic of one partition, read from the start
//! with `assign`; each request goes to the next partition in turn, its
//! produce acknowledgement awaited; the correlation id travels as a record
//! header. The payload is 16 raw bytes in, 8 out: no envelope, no codec.
//! Same librdkafka settings as the transport: no linger, at most 5 produce
//! requests awaiting the broker per connection, acks=all, fetch
//! wait 5 ms, no auto-created topics, stored offsets auto-committed every
//! 100 ms; and, over them, whatever `RPC_BENCH_KAFKA_SET` gives ours too
//! ([`extra_settings`]).
//!
//! With [`Headers::Ours`] each record instead carries the envelope header
//! as our transport writes it (`rpc_transport_kafka::headers`: the call's
//! fields in one `rpc-call` header on a request, the correlation id on an
//! ok reply; docs/wire.md), and the server
//! reads it back: the like-for-like loop, which tells what the headers cost
//! the broker and the clients apart from the rest of ours.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers as KafkaHeaders, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::Running;
use super::waiters::Waiters;
use crate::error::BenchError;
use crate::load::Caller;

/// Partitions of the request topic (our transport's default).
const PARTITIONS: i32 = 4;

/// Which headers the raw loop's records carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Headers {
    /// What the loop needs: a reply topic and a correlation id.
    Minimal,
    /// Our envelope header, written and read with our transport's mapping.
    Ours,
}
const REPLY_TO: &str = "rr-reply-to";
const CORRELATION: &str = "rr-correlation";

/// The raw loop's client.
#[derive(Clone)]
pub(crate) struct KafkaRawCaller(Arc<Client>);

struct Client {
    producer: FutureProducer,
    request_topic: String,
    reply_topic: String,
    next: AtomicU64,
    partition: AtomicU32,
    pending: Arc<Waiters>,
    headers: Headers,
    /// The reply topic as our header holds it (made once, as ours does).
    reply_address: rpc_core::Address,
}

impl Caller for KafkaRawCaller {
    const NAME: &'static str = "raw rdkafka";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        let client = &self.0;
        let id = client.next.fetch_add(1, Ordering::Relaxed);
        let answer = client.pending.register(id);
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&a.to_be_bytes());
        payload[8..].copy_from_slice(&b.to_be_bytes());
        let correlation = id.to_be_bytes();
        let headers = match client.headers {
            Headers::Minimal => OwnedHeaders::new()
                .insert(Header {
                    key: REPLY_TO,
                    value: Some(client.reply_topic.as_bytes()),
                })
                .insert(Header {
                    key: CORRELATION,
                    value: Some(&correlation[..]),
                }),
            Headers::Ours => our_request_headers(id, &client.reply_address),
        };
        let partition =
            (client.partition.fetch_add(1, Ordering::Relaxed) % PARTITIONS as u32) as i32;
        let record = FutureRecord::<(), [u8]>::to(&client.request_topic)
            .payload(&payload[..])
            .partition(partition)
            .headers(headers);
        if let Err((error, _)) = client.producer.send(record, Duration::from_secs(10)).await {
            return Err(client.pending.fail(Self::NAME, id, error));
        }
        client.pending.wait(Self::NAME, id, answer).await
    }
}

/// The settings every client gets (the transport's).
pub(crate) fn base(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("socket.nagle.disable", "true")
        .set("allow.auto.create.topics", "false")
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "500")
        .set("log_level", "3");
    c
}

/// `c` with the run's extra settings ([`extra_settings`]) over its own.
fn with_extra_settings(mut c: ClientConfig) -> ClientConfig {
    for (key, value) in extra_settings() {
        c.set(key, value);
    }
    c
}

/// librdkafka settings from `RPC_BENCH_KAFKA_SET` (`key=value,key=value`),
/// given to every Kafka client of a run, ours' and the raw loops' alike:
/// how a setting moves both is measured like for like.
pub(crate) fn extra_settings() -> &'static [(String, String)] {
    static SETTINGS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    SETTINGS
        .get_or_init(|| parse_settings(&std::env::var("RPC_BENCH_KAFKA_SET").unwrap_or_default()))
}

/// `key=value` pairs separated by commas; anything without `=` is skipped.
fn parse_settings(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|setting| setting.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

fn producer(bootstrap: &str) -> Result<FutureProducer, BenchError> {
    let mut c = base(bootstrap);
    c.set("linger.ms", "0")
        .set("max.in.flight.requests.per.connection", "5")
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("compression.type", "none")
        .set("message.timeout.ms", "10000");
    with_extra_settings(c)
        .create()
        .map_err(|e| BenchError::setup(KafkaRawCaller::NAME, e))
}

fn consumer(bootstrap: &str, group: &str) -> Result<StreamConsumer, BenchError> {
    let mut c = base(bootstrap);
    c.set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "100")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("enable.partition.eof", "false")
        .set("fetch.min.bytes", "1")
        .set("fetch.error.backoff.ms", "10")
        .set("fetch.wait.max.ms", "5");
    with_extra_settings(c)
        .create()
        .map_err(|e| BenchError::setup(KafkaRawCaller::NAME, e))
}

async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) -> Result<(), BenchError> {
    let admin: AdminClient<DefaultClientContext> = base(bootstrap)
        .create()
        .map_err(|e| BenchError::setup(KafkaRawCaller::NAME, e))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
    admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| BenchError::setup(KafkaRawCaller::NAME, e))?;
    close_off_runtime(move || drop(admin));
    Ok(())
}

/// Deletes `topics`, on the calling thread (one that may block): a
/// failure is only said, as the run it served is over.
fn delete_topics(bootstrap: &str, topics: &[String]) {
    let deleted = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|runtime| {
            let admin: AdminClient<DefaultClientContext> =
                base(bootstrap).create().map_err(|e| e.to_string())?;
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
            runtime
                .block_on(admin.delete_topics(&names, &options))
                .map(drop)
                .map_err(|e| e.to_string())
        });
    if let Err(error) = deleted {
        eprintln!("notice: the raw Kafka loop's topics were not deleted: {error}");
    }
}

/// The threads closing rdkafka clients, which [`wait_for_closing`] joins.
static CLOSING: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>> =
    std::sync::Mutex::new(Vec::new());

/// Drops rdkafka clients on a thread of their own: closing a consumer can
/// block for seconds against tansu, and must not stall the runtime.
fn close_off_runtime(close: impl FnOnce() + Send + 'static) {
    let thread = std::thread::spawn(close);
    CLOSING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(thread);
}

/// Waits, at most `limit`, for the clients this loop closed off the
/// runtime to be destroyed: a process that ended while librdkafka still tore
/// a client down crashed (SIGSEGV). Says so when some are still closing.
pub(crate) fn wait_for_closing(limit: Duration) {
    let until = std::time::Instant::now() + limit;
    let closing = std::mem::take(
        &mut *CLOSING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let mut left = closing.len();
    for thread in closing {
        while !thread.is_finished() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if thread.is_finished() {
            let _ = thread.join();
            left -= 1;
        }
    }
    if left > 0 {
        eprintln!("notice: {left} raw rdkafka client(s) still closing at exit");
    }
}

/// A request's headers as our client writes them: a deadline 30 s out, the
/// time sent, bincode, a `traceparent` of the call's own.
fn our_request_headers(id: u64, reply_topic: &rpc_core::Address) -> OwnedHeaders {
    use rpc_core::{ContentType, Header, Name};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut header = Header::request(
        Name::from_static("bench.adder"),
        Name::from_static("add"),
        ContentType::Bincode,
    );
    header.correlation_id = id;
    header.reply_to = Some(reply_topic.clone());
    header.sent_at_ms = now.as_millis() as u64;
    header.deadline_ms = (now + Duration::from_secs(30)).as_millis() as u64;
    header
        .metadata
        .insert("traceparent", format!("00-{id:032x}-{id:016x}-01"));
    rpc_transport_kafka::headers::encode(&header)
}

/// Reads a request: its reply topic and correlation id, from our envelope
/// header (decoded whole, as our server does) or the two minimal headers.
fn read_request<H: KafkaHeaders>(headers: Option<&H>, mode: Headers) -> Option<(String, u64)> {
    match mode {
        Headers::Minimal => {
            let reply_to = header(headers, REPLY_TO)?;
            let id = header(headers, CORRELATION)
                .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
                .map(u64::from_be_bytes)?;
            Some((String::from_utf8_lossy(&reply_to).into_owned(), id))
        }
        Headers::Ours => {
            static SERVICE: rpc_core::Name = rpc_core::Name::from_static("bench.adder");
            let source = rpc_transport_kafka::headers::Source::Requests { service: &SERVICE };
            let request = rpc_transport_kafka::headers::decode(headers, source).ok()?;
            let reply_to = request.reply_to.as_ref()?.as_str().to_owned();
            Some((reply_to, request.correlation_id))
        }
    }
}

/// A reply's headers: the correlation id alone, or our reply header.
fn reply_headers(id: u64, mode: Headers) -> OwnedHeaders {
    match mode {
        Headers::Minimal => OwnedHeaders::new().insert(Header {
            key: CORRELATION,
            value: Some(&id.to_be_bytes()[..]),
        }),
        Headers::Ours => {
            let mut request = rpc_core::Header::request(
                rpc_core::Name::from_static("bench.adder"),
                rpc_core::Name::from_static("add"),
                rpc_core::ContentType::Bincode,
            );
            request.correlation_id = id;
            let reply = request.reply(rpc_core::Status::Ok);
            rpc_transport_kafka::headers::encode(&reply)
        }
    }
}

/// A reply's correlation id.
fn read_reply<H: KafkaHeaders>(headers: Option<&H>, mode: Headers) -> Option<u64> {
    match mode {
        Headers::Minimal => header(headers, CORRELATION)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes),
        Headers::Ours => rpc_transport_kafka::headers::decode(
            headers,
            rpc_transport_kafka::headers::Source::Replies,
        )
        .ok()
        .map(|reply| reply.correlation_id),
    }
}

fn header<H: KafkaHeaders>(headers: Option<&H>, key: &str) -> Option<Vec<u8>> {
    headers?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value.map(<[u8]>::to_vec))
}

/// Starts a server and a client; the first call waits for the group join.
pub(crate) async fn start(
    in_flight: usize,
    bootstrap: &str,
    headers: Headers,
) -> Result<Running<KafkaRawCaller>, BenchError> {
    let _ = in_flight;
    static RUN: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "rpc-bench-raw.{}.{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    );
    let request_topic = format!("{name}.requests");
    let reply_topic = format!("{name}.replies");
    create_topics(
        bootstrap,
        &[(&request_topic, PARTITIONS), (&reply_topic, 1)],
    )
    .await?;

    let server_consumer = Arc::new(consumer(bootstrap, &request_topic)?);
    server_consumer
        .subscribe(&[&request_topic])
        .map_err(|e| BenchError::setup(KafkaRawCaller::NAME, e))?;
    let server_producer = producer(bootstrap)?;
    let server = tokio::spawn({
        let consumer = server_consumer.clone();
        async move {
            loop {
                let Ok(message) = consumer.recv().await else {
                    continue;
                };
                let Some((reply_to, correlation)) = read_request(message.headers(), headers) else {
                    continue;
                };
                let payload = message.payload().unwrap_or_default();
                let sum = match payload.len() {
                    16 => u64::from_be_bytes(payload[..8].try_into().unwrap())
                        .wrapping_add(u64::from_be_bytes(payload[8..].try_into().unwrap())),
                    _ => 0,
                };
                let mut position = TopicPartitionList::new();
                let _ = position.add_partition_offset(
                    message.topic(),
                    message.partition(),
                    Offset::Offset(message.offset() + 1),
                );
                let (producer, consumer) = (server_producer.clone(), consumer.clone());
                tokio::spawn(async move {
                    let headers = reply_headers(correlation, headers);
                    let sum = sum.to_be_bytes();
                    let record = FutureRecord::<(), [u8]>::to(&reply_to)
                        .payload(&sum[..])
                        .headers(headers);
                    if producer.send(record, Duration::from_secs(10)).await.is_ok() {
                        let _ = consumer.store_offsets(&position);
                    }
                });
            }
        }
    });

    let reply_consumer = Arc::new(consumer(bootstrap, &reply_topic)?);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&reply_topic, 0, Offset::Beginning)
        .map_err(|e| BenchError::setup(KafkaRawCaller::NAME, e))?;
    reply_consumer
        .assign(&assignment)
        .map_err(|e| BenchError::setup(KafkaRawCaller::NAME, e))?;
    let pending: Arc<Waiters> = Arc::default();
    let replies = tokio::spawn({
        let (consumer, pending) = (reply_consumer.clone(), pending.clone());
        async move {
            loop {
                let Ok(message) = consumer.recv().await else {
                    continue;
                };
                let Some(id) = read_reply(message.headers(), headers) else {
                    continue;
                };
                let sum = message
                    .payload()
                    .and_then(|p| <[u8; 8]>::try_from(p).ok())
                    .map_or(0, u64::from_be_bytes);
                pending.answer(id, sum);
            }
        }
    });
    let (request_topic_name, reply_topic_name) = (request_topic.clone(), reply_topic.clone());
    let bootstrap_address = bootstrap.to_owned();
    let caller = KafkaRawCaller(Arc::new(Client {
        producer: producer(bootstrap)?,
        request_topic,
        reply_address: rpc_core::Address::new(reply_topic.clone()),
        reply_topic,
        next: AtomicU64::new(1),
        partition: AtomicU32::new(0),
        pending,
        headers,
    }));
    // The group join (seconds on tansu) is not what is measured.
    caller.add(1, 1).await?;
    Ok(Running::new(caller, async move {
        server.abort();
        replies.abort();
        let _ = server.await;
        let _ = replies.await;
        // The topics go once nothing reads them: tansu keeps every topic
        // and record in memory, and its CPU per call grows with them.
        let topics = [request_topic_name, reply_topic_name];
        close_off_runtime(move || {
            drop(server_consumer);
            drop(reply_consumer);
            delete_topics(&bootstrap_address, &topics);
        });
    }))
}

#[cfg(test)]
mod tests {
    use super::parse_settings;

    #[test]
    fn extra_settings_are_key_value_pairs_separated_by_commas() {
        assert_eq!(
            parse_settings("linger.ms=0.5, fetch.wait.max.ms = 2,junk,"),
            [
                ("linger.ms".to_owned(), "0.5".to_owned()),
                ("fetch.wait.max.ms".to_owned(), "2".to_owned())
            ]
        );
        assert!(parse_settings("").is_empty());
    }
}
