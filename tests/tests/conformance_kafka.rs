//! The conformance suite on Kafka (tansu in tests and CI:
//! `.ci/kafka-broker run -- cargo test -p rpc-tests --test conformance_kafka`).
//!
//! Each test gets its own topic prefix, so tests run in parallel on one
//! broker. Topics are left behind on the throwaway in-memory broker: deleting
//! a topic that another client of the process still fetches crashed
//! librdkafka 2.12 against tansu (SIGSEGV in `rd_kafka_metadata_update_op`,
//! a response entry with neither topic name nor id).

use rpc_tests::conformance::{Fixture, Opened};
use rpc_tests::kafka::kafka_builder;
use rpc_transport_kafka::{KafkaTransport, KafkaTransportBuilder};

/// A namespace on the broker; every participant gets its own clients.
struct KafkaFixture {
    builder: KafkaTransportBuilder,
    opened: Opened<KafkaTransport>,
}

impl KafkaFixture {
    async fn new(test: &str) -> Option<Self> {
        Some(KafkaFixture {
            builder: kafka_builder(test).await?,
            opened: Opened::default(),
        })
    }
}

impl Fixture for KafkaFixture {
    type Transport = KafkaTransport;

    async fn transport(&self) -> KafkaTransport {
        let transport = self
            .builder
            .clone()
            .connect()
            .await
            .expect("connect to the test broker");
        self.opened.keep(transport)
    }

    async fn finish(self) {
        for transport in self.opened.take() {
            transport.close().await;
        }
    }
}

rpc_tests::conformance_suite!(KafkaFixture::new("conformance"));
