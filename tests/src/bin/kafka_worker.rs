//! A `Calc` server over Kafka in a process of its own, for the crash test
//! (tests/tests/reliability_kafka.rs): killing it is a real process death.
//!
//! Reads `KAFKA_BOOTSTRAP`, `RPC_WORKER_PREFIX` (topic prefix) and
//! `RPC_WORKER_ID` (the `Calc` instance id); prints `serving` once the
//! group has given it partitions, then serves until killed.

use std::time::Duration;

use rpc_tests::conformance::serve_calc;
use rpc_tests::kafka::kafka_bootstrap;
use rpc_transport_kafka::KafkaTransport;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let prefix = std::env::var("RPC_WORKER_PREFIX").expect("RPC_WORKER_PREFIX");
    let id: u32 = std::env::var("RPC_WORKER_ID")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let transport = KafkaTransport::builder(kafka_bootstrap())
        .topic_prefix(prefix)
        .client_id(format!("kafka-worker-{id}"))
        .connect()
        .await
        .expect("connect to the broker");
    let _calc = serve_calc(transport, id, 64).await;
    println!("serving");
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
