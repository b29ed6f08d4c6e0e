//! Access to the test broker: its URL, unique names, skip-or-fail policy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use rpc_transport_amqp::{AmqpTransport, AmqpTransportBuilder};
use rpc_transport_nats::{Mode, NatsTransport, NatsTransportBuilder};

/// The broker tests use when `AMQP_URL` is not set.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The broker URL: `AMQP_URL`, else [`DEFAULT_AMQP_URL`].
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

/// Whether broker tests must run (CI sets `RPC_REQUIRE_BROKER=1`).
pub fn broker_required() -> bool {
    std::env::var("RPC_REQUIRE_BROKER").as_deref() == Ok("1")
}

/// A queue prefix no other test, or test run, uses.
pub fn unique_prefix(test: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "test.{test}.{}.{:x}.{}.",
        std::process::id(),
        nanos & 0xffff_ffff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The probe connection to `server` (named in messages, e.g. "AMQP
/// broker") if it got through. If it did not: panics when
/// [`broker_required`], else prints a notice that `test` skips and returns
/// `None`.
fn reachable_or_skip<T, E: std::fmt::Display>(
    test: &str,
    server: &str,
    probe: Result<T, E>,
) -> Option<T> {
    match probe {
        Ok(probe) => Some(probe),
        Err(error) if broker_required() => {
            panic!("RPC_REQUIRE_BROKER=1 but no {server} is reachable: {error}")
        }
        Err(error) => {
            eprintln!("notice: skipping {test}: no {server} reachable ({error})");
            None
        }
    }
}

/// A builder on the test broker with a unique queue prefix, or `None` after
/// printing a notice when no broker is reachable. Panics instead of skipping
/// when [`broker_required`].
pub async fn amqp_builder(test: &str) -> Option<AmqpTransportBuilder> {
    let url = amqp_url();
    let probe = AmqpTransport::builder(url.clone())
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    reachable_or_skip(test, "AMQP broker", probe)?.close().await;
    Some(
        AmqpTransport::builder(url)
            .queue_prefix(unique_prefix(test))
            .connection_name(format!("rpc-tests-{test}-{}", std::process::id())),
    )
}

/// An exclusive, server-named reply queue on `channel` (deleted with its
/// connection) and a no-ack consumer on it, as a plain AMQP client (the
/// RabbitMQ RPC tutorial's) sets one up; returns the queue's name.
pub async fn reply_queue(channel: &lapin::Channel) -> (String, lapin::Consumer) {
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions::exclusive(),
            FieldTable::default(),
        )
        .await
        .expect("declare a reply queue");
    let name = queue.name().as_str().to_owned();
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let consumer = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .expect("consume replies");
    (name, consumer)
}

/// The parts of the test broker's URL.
#[derive(Clone, Debug)]
pub struct BrokerUrl {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Virtual host, unescaped.
    pub vhost: String,
}

impl BrokerUrl {
    /// The parts of `AMQP_URL` (or the default).
    pub fn from_env() -> Self {
        let uri: AMQPUri = amqp_url().parse().expect("AMQP_URL parses");
        BrokerUrl {
            host: uri.authority.host,
            port: uri.authority.port,
            user: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password,
            vhost: uri.vhost,
        }
    }

    /// The broker's `host:port`, for a relay in front of it.
    pub fn host_port(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The same broker URL with another address (a relay's).
    pub fn via(&self, addr: std::net::SocketAddr) -> String {
        BrokerUrl {
            host: addr.ip().to_string(),
            port: addr.port(),
            ..self.clone()
        }
        .to_url()
    }

    /// An `amqp://` URL from the parts (user info and vhost percent-escaped).
    pub fn to_url(&self) -> String {
        format!(
            "amqp://{}:{}@{}:{}/{}",
            escape(&self.user),
            escape(&self.password),
            self.host,
            self.port,
            escape(&self.vhost)
        )
    }
}

/// Percent-escapes everything but unreserved characters.
pub fn escape(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The NATS server tests use when `NATS_URL` is not set.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The NATS server URL: `NATS_URL`, else [`DEFAULT_NATS_URL`].
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| DEFAULT_NATS_URL.to_owned())
}

/// A builder on the test NATS server in `mode` with a unique subject
/// prefix, or `None` after printing a notice when no server is reachable.
/// Panics instead of skipping when [`broker_required`].
pub async fn nats_builder(test: &str, mode: Mode) -> Option<NatsTransportBuilder> {
    let url = nats_url();
    let probe = NatsTransport::builder(url.clone())
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    reachable_or_skip(test, "NATS server", probe)?.close().await;
    Some(
        NatsTransport::builder(url)
            .subject_prefix(unique_prefix(test))
            .mode(mode)
            .connection_name(format!("rpc-tests-{test}-{}", std::process::id())),
    )
}
