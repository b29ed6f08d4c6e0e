//! Shared by the `amqp_*` tests: a hand-written service (no macro), and the
//! shared broker, relay and `rabbitmqctl` support under the names these
//! tests use.
#![allow(
    dead_code,
    unused_imports,
    unreachable_pub,
    missing_docs,
    reason = "a module of each test binary: each uses a subset"
)]

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use rpc_core::{
    Client, DeliveryMode, MethodDescriptor, MethodKind, Request, Response, Server, ServerHandle,
    Service, ServiceDescriptor,
};
use rpc_transport_amqp::AmqpTransport;
use serde::{Deserialize, Serialize};

pub use rpc_tests::broker::{
    amqp_builder as builder, amqp_url as broker_url, reply_queue, unique_prefix,
};
pub use rpc_tests::rabbitmqctl::close_connections_named;

// ---- a hand-written service -------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct AddArgs {
    pub a: i64,
    pub b: i64,
}

pub static CALC: ServiceDescriptor = ServiceDescriptor {
    name: "calc",
    version: "0.0.0",
    docs: "test calculator",
    methods: &[
        method("add"),
        method("sleep_ms"),
        method("whoami"),
        method("panic"),
    ],
};

const fn method(name: &'static str) -> MethodDescriptor {
    MethodDescriptor {
        name,
        kind: MethodKind::Call,
        delivery: DeliveryMode::AtLeastOnce,
        run_to_completion: false,
        signature: "",
        docs: "",
    }
}

/// `add`, `sleep_ms` (returns its argument), `whoami` (returns the
/// server's id), `panic`.
pub struct Calc {
    pub id: u32,
    /// Told when a `sleep_ms` call starts running.
    pub started: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
}

impl Calc {
    pub fn new(id: u32) -> Self {
        Calc { id, started: None }
    }

    /// A calc that reports each `sleep_ms` call as it starts.
    pub fn reporting(id: u32) -> (Self, tokio::sync::mpsc::UnboundedReceiver<u64>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Calc {
                id,
                started: Some(tx),
            },
            rx,
        )
    }
}

impl Service for Calc {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        &CALC
    }

    async fn call(&self, request: &Request) -> Response {
        match request.method() {
            "add" => {
                request
                    .respond(|args: AddArgs| async move { args.a + args.b })
                    .await
            }
            "sleep_ms" => {
                let started = self.started.clone();
                request
                    .respond(|ms: u64| async move {
                        if let Some(started) = started {
                            let _ = started.send(ms);
                        }
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        ms
                    })
                    .await
            }
            "whoami" => {
                let id = self.id;
                request.respond(|(): ()| async move { id }).await
            }
            "panic" => {
                request
                    .respond(|(): ()| async move {
                        if true {
                            panic!("boom");
                        }
                    })
                    .await
            }
            _ => request.no_such_method(),
        }
    }
}

// ---- the calc service on the test broker ------------------------------------

/// Serves [`Calc`] (id 1) on `transport`; it serves until the handle drops.
pub async fn serve_calc(transport: &AmqpTransport) -> ServerHandle {
    Server::builder(transport.clone())
        .serve(Calc::new(1))
        .await
        .unwrap()
}

/// A transport on the test broker (see [`builder`]) serving [`Calc`] (id 1),
/// or `None` when `test` skips for want of a broker.
pub async fn calc_on_broker(test: &str) -> Option<(AmqpTransport, ServerHandle)> {
    let transport = builder(test).await?.connect().await.unwrap();
    let server = serve_calc(&transport).await;
    Some((transport, server))
}

/// `calc.add(a, b)` through `client`; the call must succeed.
pub async fn add(client: &Client<AmqpTransport>, a: i64, b: i64) -> i64 {
    client.call("calc", "add", &AddArgs { a, b }).await.unwrap()
}

// ---- plain AMQP (raw lapin) on the test broker ------------------------------

/// A plain lapin connection to the test broker and a channel on it.
pub async fn raw_channel() -> (Connection, Channel) {
    let conn = Connection::connect(&broker_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

/// `queue` as a passive declare reports it (its depth and consumers).
async fn passive_declare(channel: &Channel, queue: &str) -> lapin::Queue {
    let passive = QueueDeclareOptions::default().passive();
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
}

/// Messages ready in `queue`.
pub async fn depth(channel: &Channel, queue: &str) -> u32 {
    passive_declare(channel, queue).await.message_count()
}

/// Consumers on `queue`.
pub async fn consumers(channel: &Channel, queue: &str) -> u32 {
    passive_declare(channel, queue).await.consumer_count()
}

/// Publishes `body` with `props` straight to `queue` (the default
/// exchange), as a foreign client does, and waits for the broker's confirm.
pub async fn publish_to_queue(channel: &Channel, queue: &str, body: &[u8], props: BasicProperties) {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// The next delivery on `replies`; panics if none comes within `limit`.
pub async fn next_reply(replies: &mut Consumer, limit: Duration) -> Delivery {
    tokio::time::timeout(limit, futures_util::StreamExt::next(replies))
        .await
        .expect("no reply")
        .unwrap()
        .unwrap()
}

/// A relay in front of the test broker (see [`rpc_tests::relay`]), with the
/// broker URL through it.
pub struct Relay {
    inner: rpc_tests::relay::Relay,
}

impl Relay {
    /// Starts a relay to the test broker.
    pub async fn start() -> Relay {
        Relay::start_on(0).await
    }

    /// A relay on a given loopback port: `start_on(old.port)` after dropping
    /// `old` brings a "broker" back at the address clients know.
    pub async fn start_on(port: u16) -> Relay {
        let upstream = rpc_tests::broker::BrokerUrl::from_env().host_port();
        let inner = rpc_tests::relay::Relay::start_on(upstream, port)
            .await
            .expect("start the relay");
        Relay { inner }
    }

    /// The relay's port.
    pub fn port(&self) -> u16 {
        self.inner.addr().port()
    }

    /// The broker URL through this relay.
    pub fn url(&self) -> String {
        rpc_tests::broker::BrokerUrl::from_env().via(self.inner.addr())
    }

    /// Drops every connection through the relay; how many.
    pub fn cut(&self) -> usize {
        self.inner.cut()
    }
}
