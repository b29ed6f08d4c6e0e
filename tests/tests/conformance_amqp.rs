//! The conformance suite on RabbitMQ.
//!
//! Each test gets its own queue prefix, so tests run in parallel on one
//! broker, and deletes every queue it declared when it ends.

use std::sync::Mutex;

use rpc_tests::broker::amqp_builder;
use rpc_tests::conformance::Fixture;
use rpc_transport_amqp::{AmqpTransport, AmqpTransportBuilder};

/// A namespace on the broker; every participant gets its own connection.
struct AmqpFixture {
    builder: AmqpTransportBuilder,
    opened: Mutex<Vec<AmqpTransport>>,
}

impl AmqpFixture {
    async fn new(test: &str) -> Option<Self> {
        Some(AmqpFixture {
            builder: amqp_builder(test).await?,
            opened: Mutex::new(Vec::new()),
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
        self.opened.lock().unwrap().push(transport.clone());
        transport
    }

    async fn finish(self) {
        let opened = std::mem::take(&mut *self.opened.lock().unwrap());
        for transport in opened {
            transport.cleanup().await.expect("delete the test's queues");
        }
    }
}

rpc_tests::conformance_suite!(AmqpFixture::new("conformance"));
