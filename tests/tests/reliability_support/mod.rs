//! Shared by the `reliability_*` tests: the service they call, a probe into
//! its handlers, broker set-up through the relay, and figures.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "a module of each test binary: each uses a subset, and `pub` is for them"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rpc_core::{Server, ServerHandle, Transport, rpc_service};
use rpc_tests::broker::{BrokerUrl, amqp_builder, amqp_url, unique_prefix};
use rpc_tests::rabbitmqctl::{
    QueueRow, channels_of_connections, close_connections_named, list_queues,
};
use rpc_tests::relay::Relay;
use rpc_transport_amqp::AmqpTransportBuilder;
use tokio::sync::{Notify, Semaphore};

/// The input [`Work::poison`] always panics on.
pub const POISON: u64 = 13;

/// The service the reliability tests call.
#[rpc_service(name = "reliability.work")]
pub trait Work {
    /// Returns `n`.
    async fn echo(&self, n: u64) -> u64;
    /// Sleeps `ms` milliseconds, then returns `ms`.
    async fn sleep(&self, ms: u64) -> u64;
    /// Never returns.
    async fn hang(&self);
    /// Panics on [`POISON`], returns `n` otherwise.
    async fn poison(&self, n: u64) -> u64;
    /// Waits for a permit of the probe's gate, then returns `n`.
    async fn gated(&self, n: u64) -> u64;
}

/// A second service, so a test can tell "the connection works again" apart
/// from "the backlog of `Work` calls has drained".
#[rpc_service(name = "reliability.ping")]
pub trait Ping {
    /// Returns `n`.
    async fn ping(&self, n: u64) -> u64;
}

/// The implementation of [`Ping`].
#[derive(Clone, Copy, Debug, Default)]
pub struct PingImpl;

impl Ping for PingImpl {
    async fn ping(&self, n: u64) -> u64 {
        n
    }
}

/// Starts a [`Ping`] server on `transport`.
pub async fn serve_ping<T: Transport>(transport: T) -> ServerHandle {
    Server::builder(transport)
        .concurrency(4)
        .serve(PingServer::new(PingImpl))
        .await
        .expect("serve reliability.ping")
}

/// What the handlers of one server did, for tests to read.
#[derive(Debug)]
pub struct WorkProbe {
    /// Runs of `echo`.
    pub echo_runs: AtomicU64,
    /// Runs of `sleep`.
    pub sleep_runs: AtomicU64,
    /// Runs of `hang`.
    pub hang_runs: AtomicU64,
    /// Runs of `poison` with the poison input.
    pub poison_runs: AtomicU64,
    /// Handlers running right now.
    pub running: AtomicUsize,
    /// Calls waiting inside `gated`.
    pub in_gate: AtomicUsize,
    /// The most calls ever inside `gated` at once.
    pub max_in_gate: AtomicUsize,
    /// `gated` calls take a permit here.
    pub gate: Semaphore,
    /// Woken on every change above.
    changed: Notify,
}

impl Default for WorkProbe {
    fn default() -> Self {
        WorkProbe {
            echo_runs: AtomicU64::new(0),
            sleep_runs: AtomicU64::new(0),
            hang_runs: AtomicU64::new(0),
            poison_runs: AtomicU64::new(0),
            running: AtomicUsize::new(0),
            in_gate: AtomicUsize::new(0),
            max_in_gate: AtomicUsize::new(0),
            gate: Semaphore::new(0),
            changed: Notify::new(),
        }
    }
}

impl WorkProbe {
    /// Waits until `condition` holds, at most `limit`; whether it did.
    pub async fn wait_until(&self, limit: Duration, condition: impl Fn(&Self) -> bool) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let changed = self.changed.notified();
                if condition(self) {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }

    /// Waits until exactly `n` calls wait inside `gated`, at most `limit`;
    /// whether they did.
    pub async fn wait_in_gate(&self, n: usize, limit: Duration) -> bool {
        self.wait_until(limit, |p| p.in_gate.load(Ordering::SeqCst) == n)
            .await
    }

    fn enter(&self, runs: &AtomicU64) -> Running<'_> {
        runs.fetch_add(1, Ordering::SeqCst);
        self.running.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Running(self)
    }
}

/// Counts a handler as running until dropped (also when the call is aborted).
struct Running<'a>(&'a WorkProbe);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// The implementation of [`Work`].
#[derive(Clone, Debug, Default)]
pub struct WorkImpl {
    /// Shared with the test.
    pub probe: Arc<WorkProbe>,
}

impl Work for WorkImpl {
    async fn echo(&self, n: u64) -> u64 {
        let _running = self.probe.enter(&self.probe.echo_runs);
        n
    }

    async fn sleep(&self, ms: u64) -> u64 {
        let _running = self.probe.enter(&self.probe.sleep_runs);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    async fn hang(&self) {
        let _running = self.probe.enter(&self.probe.hang_runs);
        std::future::pending::<()>().await
    }

    async fn poison(&self, n: u64) -> u64 {
        let no_runs = AtomicU64::new(0);
        let runs = if n == POISON {
            &self.probe.poison_runs
        } else {
            &no_runs
        };
        let _running = self.probe.enter(runs);
        assert_ne!(n, POISON, "poison input");
        n
    }

    async fn gated(&self, n: u64) -> u64 {
        let probe = &self.probe;
        let _running = probe.enter(&AtomicU64::new(0));
        let inside = probe.in_gate.fetch_add(1, Ordering::SeqCst) + 1;
        probe.max_in_gate.fetch_max(inside, Ordering::SeqCst);
        probe.changed.notify_waiters();
        probe.gate.acquire().await.expect("never closed").forget();
        probe.in_gate.fetch_sub(1, Ordering::SeqCst);
        probe.changed.notify_waiters();
        n
    }
}

/// Starts a [`Work`] server on `transport`; returns it with its probe.
pub async fn serve_work<T: Transport>(
    transport: T,
    concurrency: usize,
) -> (ServerHandle, Arc<WorkProbe>) {
    let service = WorkImpl::default();
    let probe = service.probe.clone();
    let server = Server::builder(transport)
        .concurrency(concurrency)
        .serve(WorkServer::new(service))
        .await
        .expect("serve reliability.work");
    (server, probe)
}

/// A count that tests can wait on (e.g. calls completed).
#[derive(Debug, Default)]
pub struct Counter {
    count: AtomicUsize,
    changed: Notify,
}

impl Counter {
    /// Adds one and wakes every waiter.
    pub fn add(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// The count now.
    pub fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until the count reaches `n`, at most `limit`; whether it did.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let changed = self.changed.notified();
                if self.get() >= n {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }
}

// ---- the broker ------------------------------------------------------------

/// A namespace on the test broker: a queue prefix and connection names
/// no other test uses, so `rabbitmqctl` readings can be filtered to it.
#[derive(Clone, Debug)]
pub struct BrokerSetup {
    /// Prepended to every queue of this test.
    pub prefix: String,
    /// Prepended to the connection names of this test.
    pub connection_prefix: String,
}

impl BrokerSetup {
    /// A fresh namespace, or `None` when broker tests are skipped (see
    /// [`amqp_builder`]: the skip-or-fail policy lives there).
    pub async fn new(test: &str) -> Option<BrokerSetup> {
        amqp_builder(test).await?;
        let prefix = unique_prefix(test);
        Some(BrokerSetup {
            connection_prefix: format!("rpc-reliability-{}", prefix.trim_end_matches('.')),
            prefix,
        })
    }

    /// A builder for a connection straight to the broker, named `<prefix>-<role>`.
    pub fn direct(&self, role: &str) -> AmqpTransportBuilder {
        self.builder(amqp_url(), role)
    }

    /// A builder for a connection through `relay`, named `<prefix>-<role>`.
    pub fn through(&self, relay: &Relay, role: &str) -> AmqpTransportBuilder {
        self.builder(BrokerUrl::from_env().via(relay.addr()), role)
    }

    /// The name a connection of `role` shows on the broker.
    pub fn connection_name(&self, role: &str) -> String {
        format!("{}-{role}", self.connection_prefix)
    }

    fn builder(&self, url: String, role: &str) -> AmqpTransportBuilder {
        rpc_transport_amqp::AmqpTransport::builder(url)
            .queue_prefix(self.prefix.clone())
            .connection_name(self.connection_name(role))
            .connect_timeout(Duration::from_secs(3))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(250))
    }

    /// This test's queues as the broker sees them.
    pub fn queues(&self) -> Vec<QueueRow> {
        list_queues()
            .into_iter()
            .filter(|q| q.name.starts_with(&self.prefix))
            .collect()
    }

    /// One of this test's queues by full name.
    pub fn queue(&self, name: &str) -> Option<QueueRow> {
        self.queues().into_iter().find(|q| q.name == name)
    }

    /// Open channels per connection of this test, by connection name.
    pub fn channels(&self) -> Vec<(String, usize)> {
        channels_of_connections(&self.connection_prefix)
    }

    /// Closes, broker-side, the connections named for `role`; how many.
    pub fn close_connections(&self, role: &str) -> usize {
        close_connections_named(&self.connection_name(role))
    }
}

/// The broker's `host:port`, for the relay.
pub fn broker_addr() -> String {
    BrokerUrl::from_env().host_port()
}

// ---- figures -----------------------------------------------------------------

/// Held by tests whose figures are timings, so that the other tests of the
/// same binary do not run beside them on the two CI cores.
pub async fn timing_sensitive() -> tokio::sync::MutexGuard<'static, ()> {
    static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ALONE.lock().await
}

/// Resident memory of this process in bytes (Linux), for figures only.
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Prints a figure for docs/reliability.md (shown with `--nocapture`).
pub fn report(check: &str, figure: impl std::fmt::Display) {
    eprintln!("figure: {check}: {figure}");
}

/// The `p`-th percentile (0-100) of sorted durations.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() - 1) * p / 100]
}

/// Calls `gated(n)` for every `n` of `ids`, each on a task of its own, so
/// they wait in the server's gate together.
pub fn spawn_gated<T: Transport>(
    work: &WorkClient<T>,
    ids: std::ops::Range<u64>,
) -> Vec<tokio::task::JoinHandle<Result<u64, rpc_core::RpcError>>> {
    ids.map(|n| {
        let work = work.clone();
        tokio::spawn(async move { work.gated(n).await })
    })
    .collect()
}
