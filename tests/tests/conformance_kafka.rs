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
        log_if_asked();
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

/// The transport's log on the test's output when `RUST_LOG` asks for it
/// (`RUST_LOG=rpc_transport_kafka=trace` logs each record's offset): what
/// a rare failure of a case is diagnosed from.
fn log_if_asked() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// The connection-loss case, which the shared broker cannot give (it would
/// take restarting it, and a restarted tansu has lost every topic): a
/// broker of this test's own that tells clients to reach it through a
/// relay, so the relay can break every connection while the broker and its
/// topics live on.
mod connection_loss {
    use std::time::{Duration, Instant};

    use rpc_tests::conformance::{Fixture, Opened, connection_loss_fails_calls_then_recovers};
    use rpc_tests::kafka::OwnBroker;
    use rpc_tests::relay::Relay;
    use rpc_transport_kafka::KafkaTransport;
    use tokio::sync::Mutex;

    /// The broker's own port.
    const BROKER_PORT: u16 = 19_195;
    /// The port the broker advertises, where the relay listens.
    const RELAY_PORT: u16 = 19_196;

    struct RelayedKafka {
        relay: Mutex<Relay>,
        opened: Opened<KafkaTransport>,
        _broker: OwnBroker,
    }

    impl Fixture for RelayedKafka {
        type Transport = KafkaTransport;

        async fn transport(&self) -> KafkaTransport {
            let transport = KafkaTransport::builder(format!("127.0.0.1:{RELAY_PORT}"))
                .client_id("rpc-tests-connection-loss")
                .connect()
                .await
                .expect("connect through the relay");
            self.opened.keep(transport)
        }

        async fn finish(self) {
            for transport in self.opened.take() {
                transport.close().await;
            }
        }

        /// Closes the relay (every connection, and its port) until the
        /// transport has noticed, then opens it again on the same port.
        async fn break_connection(&self, transport: &KafkaTransport) -> bool {
            let mut relay = self.relay.lock().await;
            drop(std::mem::replace(
                &mut *relay,
                Relay::start(format!("127.0.0.1:{BROKER_PORT}"))
                    .await
                    .expect("a placeholder relay"),
            ));
            let noticed_by = Instant::now() + Duration::from_secs(20);
            while transport.is_connected() {
                assert!(Instant::now() < noticed_by, "the loss was never noticed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            *relay = Relay::start_on(format!("127.0.0.1:{BROKER_PORT}"), RELAY_PORT)
                .await
                .expect("the relay back on its port");
            true
        }
    }

    /// The calls in flight end `ConnectionLost` at once, both transports
    /// build a new generation of clients, and calls are answered again
    /// once the server's new consumer has joined the group, after its old
    /// one left it (docs/reliability.md, Kafka). With
    /// `RUST_LOG=rpc_transport_kafka=debug` it logs each generation's
    /// steps (the broker it starts inherits `RUST_LOG` too).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connection_loss_fails_calls_then_recovers_through_a_relay() {
        // The transport's log, with its generations, when asked for: what
        // this case's failures were diagnosed from.
        super::log_if_asked();
        let Some(broker) = OwnBroker::start_advertising(BROKER_PORT, Some(RELAY_PORT)) else {
            return;
        };
        let relay = Relay::start_on(format!("127.0.0.1:{BROKER_PORT}"), RELAY_PORT)
            .await
            .expect("relay");
        let fixture = RelayedKafka {
            relay: Mutex::new(relay),
            opened: Opened::default(),
            _broker: broker,
        };
        connection_loss_fails_calls_then_recovers(&fixture).await;
        fixture.finish().await;
    }
}
