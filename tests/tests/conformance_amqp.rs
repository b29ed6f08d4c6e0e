//! The conformance suite on RabbitMQ.
//!
//! Each test gets its own queue prefix, so tests run in parallel on one
//! broker, and deletes every queue it declared when it ends.

use rpc_tests::broker::{amqp_builder, unique_prefix};
use rpc_tests::conformance::{Fixture, Opened};
use rpc_tests::rabbitmqctl::close_connections_named;
use rpc_transport_amqp::{AmqpTransport, AmqpTransportBuilder};

/// A namespace on the broker; every participant gets its own connection.
struct AmqpFixture {
    builder: AmqpTransportBuilder,
    /// Every participant's connection shows this name on the broker, so a
    /// test can close its own connections and no other test's.
    connection_name: String,
    opened: Opened<AmqpTransport>,
}

impl AmqpFixture {
    async fn new(test: &str) -> Option<Self> {
        let connection_name = format!("rpc-tests-{}", unique_prefix(test).trim_end_matches('.'));
        let builder = amqp_builder(test)
            .await?
            .connection_name(connection_name.clone());
        Some(AmqpFixture {
            builder,
            connection_name,
            opened: Opened::default(),
        })
    }
}

impl Fixture for AmqpFixture {
    type Transport = AmqpTransport;

    async fn transport(&self) -> AmqpTransport {
        let transport = self
            .builder
            .clone()
            .connect()
            .await
            .expect("connect to the test broker");
        self.opened.keep(transport)
    }

    /// Closes the test's connections broker-side (every participant's: they
    /// share one name), as `rabbitmqctl close_connection` does in operations.
    async fn break_connection(&self, _: &AmqpTransport) -> bool {
        let name = self.connection_name.clone();
        let closed = tokio::task::spawn_blocking(move || close_connections_named(&name))
            .await
            .expect("rabbitmqctl task");
        assert!(closed > 0, "no connection of this test was open");
        true
    }

    /// Broadcasts go through the prefix's fanout exchange.
    fn broadcasts(&self) -> bool {
        true
    }

    async fn finish(self) {
        for transport in self.opened.take() {
            transport.cleanup().await.expect("delete the test's queues");
        }
    }
}

rpc_tests::conformance_suite!(AmqpFixture::new("conformance"));
