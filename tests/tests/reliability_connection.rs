//! Connections that break under load.
//!
//! - Cut: 10,000 calls in flight when the client's connection is cut (by the
//!   in-test relay, or closed broker-side with `rabbitmqctl`): every call
//!   completes or fails typed, none hangs, and new calls succeed within 5 s
//!   without restarting anything. Also on the memory transport's simulated
//!   disconnect.
//! - Black hole: the relay stops forwarding but keeps the sockets open; the
//!   dead connection is noticed by heartbeats within about twice the
//!   heartbeat interval, and the calls waiting on it fail typed.

mod reliability_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_core::{RpcError, Transport};
use rpc_tests::relay::Relay;
use rpc_transport_mem::MemTransport;

use reliability_support::{
    BrokerSetup, Counter, PingClient, WorkClient, broker_addr, report, serve_ping, serve_work,
};

const CALLS: usize = 10_000;
/// Calls that run freely (they sleep a few milliseconds); the others wait in
/// the server's gate. The break comes once the gate holds as many calls as
/// the server runs at once, so thousands of calls are provably in flight
/// however long the break takes to arrange: closing a connection with
/// `rabbitmqctl` takes a second or more, time enough for 10,000 free calls
/// to finish.
const FREE_CALLS: usize = 1_500;
/// Calls the server runs at once.
const SERVER_CONCURRENCY: usize = 256;
/// Gated calls let through just before the break, so that some replies are
/// on their way back while it happens.
const RELEASED_AT_BREAK: usize = 500;
/// The deadline of the 10,000 calls. A call that has not ended well after
/// it counts as hung.
const CALL_DEADLINE: Duration = Duration::from_secs(20);
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);

/// How the calls ended.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    connection_lost: usize,
    /// Calls refused before they left (made while disconnected).
    not_sent: usize,
    timeout: usize,
    other: Vec<String>,
    hung: usize,
    /// From the break to the last `ConnectionLost`.
    last_lost_after: Duration,
}

/// Starts `CALLS` calls, breaks the connection with `break_it` while they
/// are being published, queued, run and replied to, then checks that every call ends typed and that new
/// calls succeed again within `RECOVERY_LIMIT` of the break.
///
/// New calls go to a second service on the same connections: calls to
/// `Work` queue behind thousands of others, and would measure the backlog.
async fn calls_survive_a_break<T: Transport>(
    label: &str,
    server: T,
    client: T,
    break_it: impl AsyncFnOnce(),
) {
    let (_work_server, probe) = serve_work(server.clone(), SERVER_CONCURRENCY).await;
    let _ping_server = serve_ping(server).await;
    let work = WorkClient::new(client.clone());
    let ping = PingClient::from_client(work.client().clone());
    let progress = Arc::new(Counter::default());
    let started = Instant::now();
    let calls: Vec<_> = (0..CALLS as u64)
        .map(|n| {
            let work = work.with_timeout(CALL_DEADLINE);
            let progress = progress.clone();
            tokio::spawn(async move {
                let result = if (n as usize) < FREE_CALLS {
                    work.sleep(n % 7).await
                } else {
                    work.gated(n % 7).await
                };
                progress.add();
                (n, result, Instant::now())
            })
        })
        .collect();
    assert!(
        probe
            .wait_in_gate(SERVER_CONCURRENCY, Duration::from_secs(60))
            .await,
        "{label}: the gated calls fill the server before the break"
    );
    let done_before = progress.get();
    probe.gate.add_permits(RELEASED_AT_BREAK);
    break_it().await;
    let broken_at = Instant::now();

    // New calls work again, with nothing restarted.
    let recovered_in = loop {
        let probe = ping.with_timeout(Duration::from_secs(1)).ping(42).await;
        if let Ok(n) = probe {
            assert_eq!(n, 42);
            break broken_at.elapsed();
        }
        assert!(
            broken_at.elapsed() < RECOVERY_LIMIT,
            "{label}: new calls still fail {:?} after the break: {probe:?}",
            broken_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // Whatever is still gated runs now: a call the break did not fail
    // (published after it) must complete.
    probe.gate.add_permits(CALLS);
    let mut tally = Tally::default();
    let hung_after = broken_at + CALL_DEADLINE + Duration::from_secs(10);
    for call in calls {
        let left = hung_after.saturating_duration_since(Instant::now());
        let Ok(joined) = tokio::time::timeout(left, call).await else {
            tally.hung += 1;
            continue;
        };
        let (n, result, ended) = joined.expect("call task");
        match result {
            Ok(ms) => {
                assert_eq!(ms, n % 7, "a call got another call's answer");
                tally.ok += 1;
            }
            Err(RpcError::ConnectionLost) => {
                tally.connection_lost += 1;
                tally.last_lost_after = tally
                    .last_lost_after
                    .max(ended.saturating_duration_since(broken_at));
            }
            Err(RpcError::NotSent) => tally.not_sent += 1,
            Err(RpcError::Timeout) => tally.timeout += 1,
            Err(other) => tally.other.push(format!("{other:?}")),
        }
    }
    report(
        &format!("connection/{label}"),
        format_args!(
            "{CALLS} calls, break after {done_before} done, {RELEASED_AT_BREAK} released with it: ok {}, ConnectionLost {}, \
             NotSent {}, Timeout {}, other {}, hung {}; last ConnectionLost {:?} after the break; \
             new calls succeed {recovered_in:?} after it; wall {:?}",
            tally.ok,
            tally.connection_lost,
            tally.not_sent,
            tally.timeout,
            tally.other.len(),
            tally.hung,
            tally.last_lost_after,
            started.elapsed(),
        ),
    );
    assert_eq!(tally.hung, 0, "{label}: {tally:?}");
    assert!(
        tally.other.is_empty(),
        "{label}: untyped failures: {tally:?}"
    );
    assert_eq!(
        tally.ok + tally.connection_lost + tally.not_sent + tally.timeout,
        CALLS,
        "{tally:?}"
    );
    assert!(
        tally.connection_lost > 0,
        "{label}: the break failed no call: {tally:?}"
    );
    assert_eq!(work.client().pending_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_survive_a_relay_cut() {
    let Some(broker) = BrokerSetup::new("conn_cut").await else {
        return;
    };
    let relay = Relay::start(broker_addr()).await.expect("start the relay");
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker
        .through(&relay, "client")
        .connect()
        .await
        .expect("connect through the relay");
    calls_survive_a_break(
        "amqp relay cut",
        server.clone(),
        client.clone(),
        async || {
            assert!(relay.cut() > 0, "nothing to cut");
        },
    )
    .await;
    assert_eq!(client.connection_generation(), 2);
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_survive_a_broker_side_close() {
    let Some(broker) = BrokerSetup::new("conn_close").await else {
        return;
    };
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker.direct("client").connect().await.expect("connect");
    let closer = broker.clone();
    let label = "amqp rabbitmqctl close_connection";
    calls_survive_a_break(label, server.clone(), client.clone(), async move || {
        let closed = tokio::task::spawn_blocking(move || closer.close_connections("client"))
            .await
            .expect("rabbitmqctl task");
        assert_eq!(closed, 1, "the client's connection was not found");
    })
    .await;
    assert_eq!(client.connection_generation(), 2);
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_survive_a_memory_disconnect() {
    let transport = MemTransport::new();
    let faults = transport.faults();
    calls_survive_a_break(
        "memory disconnect",
        transport.clone(),
        transport,
        async || {
            faults.disconnect();
            faults.reconnect();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_hole_is_detected_by_heartbeats() {
    let Some(broker) = BrokerSetup::new("conn_blackhole").await else {
        return;
    };
    const HEARTBEAT: Duration = Duration::from_secs(1);
    const WAITING: usize = 50;
    let relay = Relay::start(broker_addr()).await.expect("start the relay");
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker
        .through(&relay, "client")
        .heartbeat(HEARTBEAT)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("connect through the relay");
    let (_server, probe) = serve_work(server.clone(), 64).await;
    let work = WorkClient::new(client.clone()).with_timeout(Duration::from_secs(30));
    let calls: Vec<_> = (0..WAITING as u64)
        .map(|n| {
            let work = work.clone();
            tokio::spawn(async move { (work.gated(n).await, Instant::now()) })
        })
        .collect();
    assert!(
        probe.wait_in_gate(WAITING, Duration::from_secs(10)).await,
        "the calls reach the server"
    );

    relay.black_hole();
    let dark_at = Instant::now();
    let mut detected_after = Duration::ZERO;
    for call in calls {
        let (result, ended) = tokio::time::timeout(Duration::from_secs(15), call)
            .await
            .expect("a call hangs in the black hole")
            .expect("call task");
        assert!(
            matches!(result, Err(RpcError::ConnectionLost)),
            "{result:?}"
        );
        detected_after = detected_after.max(ended.duration_since(dark_at));
    }
    // lapin declares the peer dead after 2 heartbeat intervals of silence
    // and checks every half interval.
    assert!(
        detected_after <= HEARTBEAT * 2 + HEARTBEAT,
        "noticed only after {detected_after:?}"
    );

    // While it is dark, a new call waits for the connection up to its
    // deadline, then fails typed (`NotSent`: it never left) instead of hanging.
    let during = Instant::now();
    let result = work.with_timeout(Duration::from_secs(3)).echo(1).await;
    let failed_in = during.elapsed();
    assert!(matches!(result, Err(RpcError::NotSent)), "{result:?}");
    assert!(failed_in < Duration::from_secs(4), "{failed_in:?}");

    relay.resume();
    let resumed_at = Instant::now();
    let recovered_in = loop {
        match work.with_timeout(Duration::from_secs(1)).echo(7).await {
            Ok(7) => break resumed_at.elapsed(),
            other => assert!(
                resumed_at.elapsed() < RECOVERY_LIMIT,
                "new calls still fail after the network came back: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    report(
        "connection/black hole",
        format_args!(
            "heartbeat {HEARTBEAT:?}: {WAITING} waiting calls all ConnectionLost, the last \
             {detected_after:?} after the relay went dark; a new call while dark (3 s deadline) fails \
             NotSent in {failed_in:?}; calls succeed {recovered_in:?} after the network \
             returns"
        ),
    );
    probe.gate.add_permits(WAITING);
    assert_eq!(work.client().pending_calls(), 0);
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}
