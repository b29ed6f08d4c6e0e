//! Stale requests: a request whose deadline passes while no server can take
//! it (the only server is busy, or no server consumes at all) never runs
//! once a server gets to it.

mod reliability_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use rpc_core::{RpcError, Transport};
use rpc_transport_mem::MemTransport;

use reliability_support::{BrokerSetup, WORK_DESCRIPTOR, WorkClient, report, serve_work};

const STALE: u64 = 100;
const STALE_DEADLINE: Duration = Duration::from_millis(200);

/// Sends `STALE` calls that all time out; returns once every one has.
async fn stale_calls<T: Transport>(work: &WorkClient<T>) {
    let short = work.with_timeout(STALE_DEADLINE);
    let results = join_all((0..STALE).map(|n| short.echo(n))).await;
    for result in results {
        assert!(matches!(result, Err(RpcError::Timeout)), "{result:?}");
    }
}

/// The only server (concurrency 1) is stuck in a handler while the stale
/// calls wait; once freed, it must not run them.
async fn busy_server_skips_stale_requests<T: Transport>(label: &str, server: T, client: T) -> u64 {
    let (server, probe) = serve_work(server, 1).await;
    let work = WorkClient::new(client);
    let blocker = tokio::spawn({
        let work = work.clone();
        async move { work.gated(0).await }
    });
    assert!(
        probe.wait_in_gate(1, Duration::from_secs(10)).await,
        "the blocker reaches the server"
    );
    stale_calls(&work).await;
    probe.gate.add_permits(1);
    assert_eq!(blocker.await.expect("blocker task").expect("blocker"), 0);
    // One request at a time, in queue order: by the time this is answered
    // the server has seen every stale one (or the broker dropped it).
    assert_eq!(work.echo(1_000).await.expect("a fresh call"), 1_000);
    let runs = probe.echo_runs.load(Ordering::SeqCst);
    let expired = server.stats().expired();
    report(
        &format!("stale/busy server/{label}"),
        format_args!(
            "{STALE} calls with a {STALE_DEADLINE:?} deadline queued behind a stuck handler: \
             all Timeout; stale ones run {}; refused as expired by the server {expired}",
            runs - 1
        ),
    );
    assert_eq!(runs, 1, "{label}: a stale request ran");
    expired
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_requests_behind_a_busy_server_on_memory() {
    let transport = MemTransport::new();
    let expired = busy_server_skips_stale_requests("memory", transport.clone(), transport).await;
    // The memory broker has no message expiry: the server itself refused them.
    assert_eq!(expired, STALE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_requests_behind_a_busy_server_on_amqp() {
    let Some(broker) = BrokerSetup::new("stale_busy").await else {
        return;
    };
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker.direct("client").connect().await.expect("connect");
    busy_server_skips_stale_requests("amqp", server.clone(), client.clone()).await;
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}

/// No consumer at all while the calls wait (the queue exists: a server ran
/// before); a server started after their deadline must not run them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_requests_in_a_queue_without_consumer_on_amqp() {
    let Some(broker) = BrokerSetup::new("stale_absent").await else {
        return;
    };
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker.direct("client").connect().await.expect("connect");
    let (first, _) = serve_work(server.clone(), 4).await;
    assert!(first.shutdown().await.drained);
    let work = WorkClient::new(client.clone());
    stale_calls(&work).await;

    let (later, probe) = serve_work(server.clone(), 4).await;
    assert_eq!(work.echo(1_000).await.expect("a fresh call"), 1_000);
    let runs = probe.echo_runs.load(Ordering::SeqCst);
    let dlq = server.dead_letter_queue(WORK_DESCRIPTOR.name);
    let dead = broker.queue(&dlq).map_or(0, |q| q.ready);
    report(
        "stale/no consumer/amqp",
        format_args!(
            "{STALE} calls with a {STALE_DEADLINE:?} deadline sent while no server consumed: \
             all Timeout; run after a server started: {}; refused by the server {}; expired \
             by the broker into the dead-letter queue {dead}",
            runs - 1,
            later.stats().expired()
        ),
    );
    assert_eq!(runs, 1, "a stale request ran");
    assert_eq!(dead + later.stats().expired(), STALE);
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}
