//! A Kafka server stores each answered request's offset and librdkafka
//! commits what is stored every commit interval and when the consumer
//! closes (`rpc-transport-kafka/src/offsets.rs`). These tests read the
//! group's committed offsets as the broker holds them: they fall behind
//! the answered requests if a store is lost, if the interval never fires,
//! or if a closing server does not commit what it answered.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rpc_tests::conformance::{CalcFixture, serve_calc};
use rpc_tests::kafka::{kafka_bootstrap, kafka_builder};
use rpc_tests::services::CalcClient;
use rpc_transport_kafka::KafkaTransport;

const SERVICE: &str = "conformance.calc";
const PARTITIONS: i32 = 4;
const CALLS: i64 = 40;

/// The sum over the request topic's partitions of the group's committed
/// positions (the group is the request topic's name).
async fn committed_total(topic: String) -> i64 {
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .set("group.id", &topic)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut list = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            list.add_partition(&topic, partition);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(5))
            .expect("committed offsets");
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            })
            .sum()
    })
    .await
    .expect("join")
}

/// Polls (the broker holds the answer; there is no signal to wait for)
/// until the committed total reaches `want` or `limit` passes.
async fn committed_reaches(topic: &str, want: i64, limit: Duration) -> i64 {
    let until = tokio::time::Instant::now() + limit;
    loop {
        let total = committed_total(topic.to_owned()).await;
        if total >= want || tokio::time::Instant::now() > until {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A server and a client on transports of their own, `CALLS` calls of
/// `add(n, b)` answered, nothing closed yet.
struct Answered {
    server_transport: KafkaTransport,
    client_transport: KafkaTransport,
    /// The request topic, which is also the group's name.
    topic: String,
    calc: CalcFixture,
}

/// Serves the calculator on `test`'s topics with `commit_interval`, and
/// answers `CALLS` calls; `None` (a printed skip) when no broker answers.
async fn answer_calls(test: &str, commit_interval: Duration, b: i64) -> Option<Answered> {
    let builder = kafka_builder(test)
        .await?
        .partitions(PARTITIONS as u16)
        .commit_interval(commit_interval);
    let server_transport = builder.clone().connect().await.expect("connect");
    let client_transport = builder.connect().await.expect("connect");
    let topic = server_transport.request_topic(SERVICE);
    let calc = serve_calc(server_transport.clone(), 1, 8).await;
    let client = CalcClient::new(client_transport.clone()).with_timeout(Duration::from_secs(10));
    for n in 0..CALLS {
        assert_eq!(client.add(n, b).await.unwrap(), n + b);
    }
    Some(Answered {
        server_transport,
        client_transport,
        topic,
        calc,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_requests_are_committed_within_the_interval() {
    let Some(run) = answer_calls("kafka-commits-interval", Duration::from_millis(50), 1).await
    else {
        return;
    };
    // Every request answered, the server still running: only the interval
    // can have committed them.
    let total = committed_reaches(&run.topic, CALLS, Duration::from_secs(10)).await;
    assert_eq!(total, CALLS, "committed positions over {}", run.topic);

    run.calc.server.shutdown().await;
    run.client_transport.close().await;
    run.server_transport.close().await;
    let _ = run.client_transport.cleanup().await;
    let _ = run.server_transport.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_server_commits_what_it_answered() {
    // An interval that never comes within the test: only the close commits.
    let Some(run) = answer_calls("kafka-commits-close", Duration::from_secs(3600), 2).await else {
        return;
    };
    // The control: answered, not committed yet (the first interval is an
    // hour away).
    assert_eq!(
        committed_total(run.topic.clone()).await,
        0,
        "committed before the close"
    );

    run.calc.server.shutdown().await;
    run.server_transport.close().await;
    let total = committed_reaches(&run.topic, CALLS, Duration::from_secs(10)).await;
    assert_eq!(
        total, CALLS,
        "committed positions over {} after the close",
        run.topic
    );

    run.client_transport.close().await;
    let _ = run.client_transport.cleanup().await;
    let _ = run.server_transport.cleanup().await;
}
