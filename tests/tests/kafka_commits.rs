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
use rpc_tests::conformance::serve_calc;
use rpc_tests::kafka::{kafka_bootstrap, kafka_builder};
use rpc_tests::services::CalcClient;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_requests_are_committed_within_the_interval() {
    let Some(builder) = kafka_builder("kafka-commits-interval").await else {
        return;
    };
    let builder = builder
        .partitions(PARTITIONS as u16)
        .commit_interval(Duration::from_millis(50));
    let server_transport = builder.clone().connect().await.expect("connect");
    let client_transport = builder.connect().await.expect("connect");
    let topic = server_transport.request_topic(SERVICE);
    let calc = serve_calc(server_transport.clone(), 1, 8).await;
    let client = CalcClient::new(client_transport.clone()).with_timeout(Duration::from_secs(10));
    for n in 0..CALLS {
        assert_eq!(client.add(n, 1).await.unwrap(), n + 1);
    }
    // Every request answered, the server still running: only the interval
    // can have committed them.
    let total = committed_reaches(&topic, CALLS, Duration::from_secs(10)).await;
    assert_eq!(total, CALLS, "committed positions over {topic}");

    calc.server.shutdown().await;
    client_transport.close().await;
    server_transport.close().await;
    let _ = client_transport.cleanup().await;
    let _ = server_transport.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closing_server_commits_what_it_answered() {
    let Some(builder) = kafka_builder("kafka-commits-close").await else {
        return;
    };
    // An interval that never comes within the test: only the close commits.
    let builder = builder
        .partitions(PARTITIONS as u16)
        .commit_interval(Duration::from_secs(3600));
    let server_transport = builder.clone().connect().await.expect("connect");
    let client_transport = builder.connect().await.expect("connect");
    let topic = server_transport.request_topic(SERVICE);
    let calc = serve_calc(server_transport.clone(), 1, 8).await;
    let client = CalcClient::new(client_transport.clone()).with_timeout(Duration::from_secs(10));
    for n in 0..CALLS {
        assert_eq!(client.add(n, 2).await.unwrap(), n + 2);
    }
    // The control: answered, not committed yet (the first interval is an
    // hour away).
    assert_eq!(
        committed_total(topic.clone()).await,
        0,
        "committed before the close"
    );

    calc.server.shutdown().await;
    server_transport.close().await;
    let total = committed_reaches(&topic, CALLS, Duration::from_secs(10)).await;
    assert_eq!(
        total, CALLS,
        "committed positions over {topic} after the close"
    );

    client_transport.close().await;
    let _ = client_transport.cleanup().await;
    let _ = server_transport.cleanup().await;
}
