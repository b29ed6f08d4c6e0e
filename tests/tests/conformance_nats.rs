//! The conformance suite on NATS, in core mode (request/reply through queue
//! groups) and in durable mode (JetStream work queues).
//!
//! Each test gets its own subject prefix, so tests run in parallel on one
//! server, and deletes the streams it created when it ends.

use std::sync::Mutex;

use rpc_tests::broker::nats_builder;
use rpc_tests::conformance::{Fabric, Fixture};
use rpc_transport_nats::{Mode, NatsTransport, NatsTransportBuilder};

/// A namespace on the server; every participant gets its own connection.
struct NatsFixture {
    builder: NatsTransportBuilder,
    mode: Mode,
    opened: Mutex<Vec<NatsTransport>>,
    max_payload: usize,
}

impl NatsFixture {
    async fn new(test: &str, mode: Mode) -> Option<Self> {
        let builder = nats_builder(test, mode).await?;
        let probe = builder.clone().connect().await.expect("connect to NATS");
        let max_payload = probe.client().server_info().max_payload;
        probe.close().await;
        Some(NatsFixture {
            builder,
            mode,
            opened: Mutex::new(Vec::new()),
            max_payload,
        })
    }
}

impl Fixture for NatsFixture {
    type Transport = NatsTransport;

    async fn transport(&self) -> NatsTransport {
        let transport = self
            .builder
            .clone()
            .connect()
            .await
            .expect("connect to the test NATS server");
        self.opened.lock().unwrap().push(transport.clone());
        transport
    }

    async fn finish(self) {
        let opened = std::mem::take(&mut *self.opened.lock().unwrap());
        for transport in opened {
            transport
                .cleanup()
                .await
                .expect("delete the test's streams");
        }
    }

    fn max_body(&self) -> usize {
        // Room for the headers and the bincode length prefix.
        self.max_payload - 4 * 1024
    }

    fn fabric(&self) -> Fabric {
        match self.mode {
            Mode::Durable => Fabric::QUEUE_BROKER,
            _ => Fabric::AT_MOST_ONCE,
        }
    }

    async fn break_connection(&self, transport: &NatsTransport) -> bool {
        // Drops the socket and dials again, as a failed link does.
        transport
            .client()
            .force_reconnect()
            .await
            .expect("force a reconnect");
        true
    }

    fn shares_by_credit(&self) -> bool {
        // Core queue groups pick a member at random; durable servers pull
        // only what they have room for.
        self.mode == Mode::Durable
    }
}

mod core {
    use super::*;
    rpc_tests::conformance_suite!(NatsFixture::new("conformance", Mode::Core));
}

mod durable {
    use super::*;
    rpc_tests::conformance_suite!(NatsFixture::new("conformance", Mode::Durable));
}
