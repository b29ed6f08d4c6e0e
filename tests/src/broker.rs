//! Access to the test broker: its URL, unique names, skip-or-fail policy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rpc_transport_amqp::{AmqpTransport, AmqpTransportBuilder};

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

/// A builder on the test broker with a unique queue prefix, or `None` after
/// printing a notice when no broker is reachable. Panics instead of skipping
/// when [`broker_required`].
pub async fn amqp_builder(test: &str) -> Option<AmqpTransportBuilder> {
    let url = amqp_url();
    let probe = AmqpTransport::builder(url.clone())
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await;
    match probe {
        Ok(probe) => probe.close().await,
        Err(error) if broker_required() => {
            panic!("RPC_REQUIRE_BROKER=1 but no AMQP broker is reachable: {error}")
        }
        Err(error) => {
            eprintln!("notice: skipping {test}: no AMQP broker reachable ({error})");
            return None;
        }
    }
    Some(
        AmqpTransport::builder(url)
            .queue_prefix(unique_prefix(test))
            .connection_name(format!("rpc-tests-{test}-{}", std::process::id())),
    )
}
