//! Overload.
//!
//! - Client side: past the cap on calls in flight, calls fail at once with
//!   `Overloaded` and never reach the server.
//! - Server side: under 10x more calls than its concurrency, a server holds
//!   at most `concurrency` requests (unacknowledged deliveries) at any time;
//!   the rest wait in the broker's queue, so its memory is bounded by its
//!   prefetch, not by the load.

mod reliability_support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rpc_core::{Client, ClientConfig, RpcError, Transport};
use rpc_transport_mem::MemTransport;

use reliability_support::{
    BrokerSetup, Counter, WORK_DESCRIPTOR, WorkClient, report, serve_work, spawn_gated,
};

const CAP: usize = 100;
const EXCESS: usize = 1_000;

async fn client_cap_refuses_excess_calls<T: Transport>(label: &str, server: T, client: T) {
    let (_server, probe) = serve_work(server, 2 * CAP).await;
    let config = ClientConfig::default().max_in_flight(CAP);
    let work = WorkClient::from_client(Client::with_config(client, config));
    work.client().connect().await.expect("open the reply inbox");
    let held = spawn_gated(&work, 0..CAP as u64);
    assert!(
        probe.wait_in_gate(CAP, Duration::from_secs(10)).await,
        "{label}: the held calls reach the server"
    );
    let mut slowest = Duration::ZERO;
    for n in 0..EXCESS as u64 {
        let started = Instant::now();
        let result = work.echo(n).await;
        slowest = slowest.max(started.elapsed());
        assert!(matches!(result, Err(RpcError::Overloaded)), "{result:?}");
    }
    probe.gate.add_permits(CAP);
    for (n, call) in held.into_iter().enumerate() {
        assert_eq!(call.await.expect("held task").expect("held call"), n as u64);
    }
    assert_eq!(work.echo(7).await.expect("under the cap again"), 7);
    let reached = probe.echo_runs.load(Ordering::SeqCst) - 1;
    report(
        &format!("overload/client cap/{label}"),
        format_args!(
            "cap {CAP}, {CAP} calls held: {EXCESS} more calls all Overloaded, slowest refusal \
             {slowest:?}, {reached} reached the server; held calls then all answered"
        ),
    );
    assert_eq!(reached, 0, "{label}: refused calls reached the server");
    // A refusal waits for nothing: `Overloaded` rather than `Timeout`, and
    // none reaching the server, prove it; how long it took is a figure only
    // (a loaded machine delays anything by anything).
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cap_on_memory() {
    let transport = MemTransport::new();
    client_cap_refuses_excess_calls("memory", transport.clone(), transport).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cap_on_amqp() {
    let Some(broker) = BrokerSetup::new("overload_cap").await else {
        return;
    };
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker.direct("client").connect().await.expect("connect");
    client_cap_refuses_excess_calls("amqp", server.clone(), client.clone()).await;
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}

const CONCURRENCY: usize = 16;
/// 10x more calls waiting than the server runs.
const WAITING: usize = 10 * CONCURRENCY;
const TOTAL: usize = CONCURRENCY + WAITING;

/// Ready and unacknowledged requests of the service, as the fabric counts.
trait QueueGauge {
    async fn read(&self) -> (usize, usize);
}

struct MemGauge(MemTransport);

impl QueueGauge for MemGauge {
    async fn read(&self) -> (usize, usize) {
        let service = WORK_DESCRIPTOR.name;
        (self.0.queue_depth(service), self.0.unacked(service))
    }
}

struct AmqpGauge {
    broker: BrokerSetup,
    queue: String,
}

impl QueueGauge for AmqpGauge {
    async fn read(&self) -> (usize, usize) {
        let (broker, queue) = (self.broker.clone(), self.queue.clone());
        tokio::task::spawn_blocking(move || {
            broker
                .queue(&queue)
                .map_or((0, 0), |q| (q.ready as usize, q.unacked as usize))
        })
        .await
        .expect("rabbitmqctl task")
    }
}

/// Waits until the gauge reads `(ready, unacked)`, bounded: the counts
/// live in the fabric, which sends no event when they change.
async fn wait_for_gauge(gauge: &impl QueueGauge, want: (usize, usize)) -> (usize, usize) {
    let since = Instant::now();
    loop {
        let got = gauge.read().await;
        if got == want || since.elapsed() > Duration::from_secs(20) {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `TOTAL` calls to a server of concurrency `CONCURRENCY` whose
/// handlers wait at a gate, then lets them through `CONCURRENCY` at a time,
/// reading the fabric's counts at each of `samples` steps.
async fn server_holds_at_most_its_concurrency<T: Transport>(
    label: &str,
    server: T,
    client: T,
    gauge: impl QueueGauge,
    samples: usize,
) {
    let (_server, probe) = serve_work(server, CONCURRENCY).await;
    let work = WorkClient::new(client).with_timeout(Duration::from_secs(120));
    let done = Arc::new(Counter::default());
    let calls: Vec<_> = (0..TOTAL as u64)
        .map(|n| {
            let (work, done) = (work.clone(), done.clone());
            tokio::spawn(async move {
                let result = work.gated(n).await;
                done.add();
                result
            })
        })
        .collect();

    let mut readings = Vec::new();
    let steps = TOTAL / CONCURRENCY;
    let sample_every = steps.div_ceil(samples);
    for step in 0..steps {
        let waiting = TOTAL - step * CONCURRENCY - CONCURRENCY;
        assert!(
            probe
                .wait_in_gate(CONCURRENCY, Duration::from_secs(20))
                .await,
            "{label}: step {step}: the server does not fill up"
        );
        if step % sample_every == 0 {
            let reading = wait_for_gauge(&gauge, (waiting, CONCURRENCY)).await;
            readings.push(reading);
            assert_eq!(
                reading,
                (waiting, CONCURRENCY),
                "{label}: step {step}: (ready, unacked)"
            );
        }
        probe.gate.add_permits(CONCURRENCY);
        // Wait for this batch to finish before reading again.
        let target = (step + 1) * CONCURRENCY;
        assert!(
            done.wait_for(target, Duration::from_secs(20)).await,
            "{label}: step {step}: the batch does not finish"
        );
    }
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.expect("call task").expect("call"), n as u64);
    }
    let most = probe.max_in_gate.load(Ordering::SeqCst);
    report(
        &format!("overload/server/{label}"),
        format_args!(
            "concurrency {CONCURRENCY}, {TOTAL} calls ({WAITING} waiting): (ready, unacked) \
             read {readings:?} while draining; most handlers at once {most}; all {TOTAL} answered"
        ),
    );
    assert_eq!(most, CONCURRENCY, "{label}: more handlers ran than allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_under_tenfold_overload_on_memory() {
    let transport = MemTransport::new();
    let gauge = MemGauge(transport.clone());
    server_holds_at_most_its_concurrency("memory", transport.clone(), transport, gauge, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_under_tenfold_overload_on_amqp() {
    let Some(broker) = BrokerSetup::new("overload_server").await else {
        return;
    };
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker.direct("client").connect().await.expect("connect");
    let gauge = AmqpGauge {
        broker: broker.clone(),
        queue: server.request_queue(WORK_DESCRIPTOR.name),
    };
    // Each reading is a rabbitmqctl run (about a second): take three.
    server_holds_at_most_its_concurrency("amqp", server.clone(), client.clone(), gauge, 3).await;
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}
