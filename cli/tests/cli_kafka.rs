//! `rpc` end to end over Kafka (`kafka://`): runs when `KAFKA_BOOTSTRAP`
//! names a broker (CI starts one with `.ci/kafka-broker`); skipped with a
//! notice otherwise, failed when `RPC_REQUIRE_BROKER=1` and the named
//! broker does not answer.

mod common;

use std::time::Duration;

use common::{adds, describes, introspects_one_instance};
use rpc_examples::calculator::CalculatorClient;
use rpc_tests::broker::unique_prefix;
use rpc_tests::kafka::{kafka_bootstrap, kafka_builder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pings_describes_and_calls_over_kafka() {
    if std::env::var_os("KAFKA_BOOTSTRAP").is_none() {
        eprintln!("notice: skipping the Kafka CLI test: KAFKA_BOOTSTRAP is not set");
        return;
    }
    let Some(builder) = kafka_builder("cli-kafka").await else {
        return;
    };
    let prefix = unique_prefix("cli-kafka");
    let transport = builder
        .topic_prefix(prefix.clone())
        .connect()
        .await
        .expect("connect");
    let server = common::serve_calculator(&transport).await;
    // The server's consumer group takes a moment to join: wait for its
    // first answer before the CLI's 3 s deadlines.
    let client = CalculatorClient::new(transport.clone()).with_timeout(Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    loop {
        match client.add(0, 0).await {
            Ok(_) => break,
            Err(error) if started.elapsed() < Duration::from_secs(20) => {
                eprintln!("waiting for the Kafka server: {error}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => panic!("the Kafka server never answered: {error}"),
        }
    }
    let url = format!("kafka://{}", kafka_bootstrap());

    adds(&url, &prefix).await;
    describes(&url, &prefix).await;
    introspects_one_instance(&url, &prefix, "kafka").await;

    // Each CLI run deleted the reply topic it made: only the test's own is left.
    let replies: Vec<String> = topics()
        .await
        .into_iter()
        .filter(|topic| topic.starts_with(&format!("{prefix}reply.")))
        .collect();
    assert_eq!(replies, [transport.reply_topic().to_owned()]);

    server.shutdown().await;
    let _ = transport.cleanup().await;
    transport.close().await;
}

/// Every topic the broker has.
async fn topics() -> Vec<String> {
    use rpc_transport_kafka::rdkafka::ClientConfig;
    use rpc_transport_kafka::rdkafka::consumer::{BaseConsumer, Consumer};

    tokio::task::spawn_blocking(|| {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", kafka_bootstrap())
            .create()
            .expect("a metadata client");
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(5))
            .expect("metadata");
        metadata
            .topics()
            .iter()
            .map(|topic| topic.name().to_owned())
            .collect()
    })
    .await
    .unwrap()
}
