//! No leaks: after many calls of which 10% time out and 10% are cancelled
//! (their futures dropped while in flight), nothing is left behind: the
//! pending-call table is empty, the in-flight cap is whole again, the
//! broker holds no message, and on RabbitMQ the channels, consumers and
//! queues are what they were before.
//!
//! Always on: 100,000 calls on memory, 20,000 on RabbitMQ. The 1,000,000
//! call run on memory is `#[ignore]`d (about a minute in debug); run it in
//! release:
//!
//! ```text
//! cargo test --release -p rpc-tests --test reliability_leaks -- --ignored --nocapture
//! ```

mod reliability_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rpc_core::{Client, ClientConfig, RpcError, ServerHandle, Transport};
use rpc_transport_mem::MemTransport;

use reliability_support::{
    BrokerSetup, WORK_DESCRIPTOR, WorkClient, WorkProbe, report, resident_bytes, serve_work,
    spawn_gated,
};

/// Calls in flight at once, and the client's cap.
const PARALLEL: usize = 256;
/// Timed-out calls: a deadline shorter than the handler takes.
const TIMEOUT: Duration = Duration::from_millis(10);
const SLOW_MS: u64 = 30;
/// Cancelled calls are dropped this long after they start.
const CANCEL_AFTER: Duration = Duration::from_millis(1);

/// How the calls of a mix ended.
#[derive(Debug, Default, PartialEq, Eq)]
struct Mix {
    ok: usize,
    timeouts: usize,
    cancelled: usize,
}

enum Outcome {
    Ok,
    Timeout,
    Cancelled,
}

/// `calls` calls, `PARALLEL` at a time: every tenth times out, every tenth
/// (another one) is dropped in flight, the rest are answered.
async fn run_mix<T: Transport>(work: &WorkClient<T>, calls: usize) -> Mix {
    let short = work.with_timeout(TIMEOUT);
    let outcomes = futures_util::stream::iter(0..calls as u64)
        .map(|n| {
            let (work, short) = (work.clone(), short.clone());
            async move {
                match n % 10 {
                    0 => match short.sleep(SLOW_MS).await {
                        Err(RpcError::Timeout) => Outcome::Timeout,
                        // A call polled only after its reply arrived still
                        // completes: a loaded machine may do that.
                        Ok(ms) if ms == SLOW_MS => Outcome::Ok,
                        other => panic!("call {n}: {other:?}"),
                    },
                    1 => tokio::select! {
                        // The call first, so it is sent before the timer can win.
                        biased;
                        result = work.sleep(SLOW_MS) => {
                            assert_eq!(result.expect("a call not cancelled in time"), SLOW_MS);
                            Outcome::Ok
                        }
                        () = tokio::time::sleep(CANCEL_AFTER) => Outcome::Cancelled,
                    },
                    _ => {
                        assert_eq!(work.echo(n).await.expect("an ordinary call"), n);
                        Outcome::Ok
                    }
                }
            }
        })
        .buffer_unordered(PARALLEL);
    outcomes
        .fold(Mix::default(), |mut mix, outcome| async move {
            match outcome {
                Outcome::Ok => mix.ok += 1,
                Outcome::Timeout => mix.timeouts += 1,
                Outcome::Cancelled => mix.cancelled += 1,
            }
            mix
        })
        .await
}

/// Fills the client's cap with calls at once: none may be refused, so every
/// slot taken by the mix was given back.
async fn cap_is_whole<T: Transport>(work: &WorkClient<T>, probe: &WorkProbe) {
    let held = spawn_gated(work, 0..PARALLEL as u64);
    assert!(
        probe.wait_in_gate(PARALLEL, Duration::from_secs(20)).await,
        "the cap's worth of calls reaches the server"
    );
    probe.gate.add_permits(PARALLEL);
    for call in held {
        call.await
            .expect("held task")
            .expect("a call within the cap was refused: in-flight slots leaked");
    }
}

/// Waits until no handler runs and the server has been idle long enough
/// for a handler started by a queued request to show; bounded.
async fn server_idle(server: &ServerHandle, probe: &WorkProbe) -> bool {
    let since = Instant::now();
    let mut last = u64::MAX;
    while since.elapsed() < Duration::from_secs(30) {
        let stats = server.stats();
        let seen = stats.handled() + stats.expired() + stats.cut_at_deadline() + stats.cancelled();
        if seen == last && probe.running.load(Ordering::SeqCst) == 0 {
            return true;
        }
        last = seen;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("n/a".to_owned(), |b| {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    })
}

async fn memory_mix_leaves_nothing(calls: usize) {
    let transport = MemTransport::new();
    let (server, probe) = serve_work(transport.clone(), 2 * PARALLEL).await;
    let config = ClientConfig::default().max_in_flight(PARALLEL);
    let work = WorkClient::from_client(Client::with_config(transport.clone(), config));
    // Warm up, so the resident figure compares steady states.
    run_mix(&work, 10_000).await;
    assert!(server_idle(&server, &probe).await);
    let (before, dropped_before) = (resident_bytes(), work.client().dropped_replies());
    let handled_before = server.stats().handled();
    let expired_before = server.stats().expired();
    let cut_before = server.stats().cut_at_deadline() + server.stats().cancelled();

    let started = Instant::now();
    let mix = run_mix(&work, calls).await;
    let took = started.elapsed();
    assert!(server_idle(&server, &probe).await, "the server never idles");
    let after = resident_bytes();
    let service = WORK_DESCRIPTOR.name;
    let dropped = work.client().dropped_replies() - dropped_before;
    let handled = server.stats().handled() - handled_before;
    let expired = server.stats().expired() - expired_before;
    let cut = server.stats().cut_at_deadline() + server.stats().cancelled() - cut_before;
    report(
        &format!("leaks/memory/{calls}"),
        format_args!(
            "{calls} calls in {took:?}: {mix:?}; after: pending {}, queued {}, unacked {}, \
             inboxes {}, late replies dropped {dropped}, handled {handled}, refused as expired {expired}; resident {} -> {}",
            work.client().pending_calls(),
            transport.queue_depth(service),
            transport.unacked(service),
            transport.open_inboxes(),
            mib(before),
            mib(after),
        ),
    );
    assert_eq!(mix.ok + mix.timeouts + mix.cancelled, calls);
    assert!(mix.timeouts > 0 && mix.cancelled > 0, "{mix:?}");
    assert_eq!(work.client().pending_calls(), 0, "pending-call table");
    assert_eq!(transport.queue_depth(service), 0);
    assert_eq!(transport.unacked(service), 0);
    assert_eq!(transport.open_inboxes(), 1);
    // At most one late reply per call that ended without one: a timed-out
    // call's handler is cut at the same deadline and answered `Timeout`,
    // which ends the call or comes just after it; a cancelled call's
    // handler is cut without a reply unless it finished first.
    let dropped = dropped as usize;
    assert!(
        dropped <= mix.timeouts + mix.cancelled,
        "{dropped} late replies for {mix:?}"
    );
    // Every request ran to its end, was refused as expired, or was cut
    // short (at its deadline or by its cancel).
    assert_eq!(handled as usize + expired as usize + cut as usize, calls);
    cap_is_whole(&work, &probe).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_calls_leave_nothing_on_memory() {
    memory_mix_leaves_nothing(100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "heavy (1,000,000 calls): run in release, see the module docs"]
async fn a_million_calls_leave_nothing_on_memory() {
    memory_mix_leaves_nothing(1_000_000).await;
}

/// What the broker shows of this test, compared before and after.
#[derive(Debug, PartialEq, Eq)]
struct BrokerFootprint {
    /// Channels per connection.
    channels: Vec<(String, usize)>,
    /// Queue name and consumers.
    queues: Vec<(String, u64)>,
    /// Messages (ready + unacked) in queues other than the dead-letter
    /// queue: requests the broker expired end up there, by design.
    messages: u64,
}

async fn footprint(broker: &BrokerSetup) -> (BrokerFootprint, u64) {
    let broker = broker.clone();
    tokio::task::spawn_blocking(move || {
        let queues = broker.queues();
        let (dead, live): (Vec<_>, Vec<_>) = queues.iter().partition(|q| q.name.ends_with(".dlq"));
        let footprint = BrokerFootprint {
            channels: broker.channels(),
            queues: queues
                .iter()
                .map(|q| (q.name.clone(), q.consumers))
                .collect(),
            messages: live.iter().map(|q| q.ready + q.unacked).sum(),
        };
        (footprint, dead.iter().map(|q| q.ready).sum())
    })
    .await
    .expect("rabbitmqctl task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_calls_leave_nothing_on_amqp() {
    const CALLS: usize = 20_000;
    let Some(broker) = BrokerSetup::new("leaks").await else {
        return;
    };
    let server_transport = broker.direct("server").connect().await.expect("connect");
    let client_transport = broker.direct("client").connect().await.expect("connect");
    let (server, probe) = serve_work(server_transport.clone(), 2 * PARALLEL).await;
    let config = ClientConfig::default().max_in_flight(PARALLEL);
    let work = WorkClient::from_client(Client::with_config(client_transport.clone(), config));
    run_mix(&work, 1_000).await;
    assert!(server_idle(&server, &probe).await);
    let (baseline, dead_before) = footprint(&broker).await;

    let started = Instant::now();
    let mix = run_mix(&work, CALLS).await;
    let took = started.elapsed();
    assert!(server_idle(&server, &probe).await, "the server never idles");
    let (after, dead_after) = footprint(&broker).await;
    report(
        &format!("leaks/amqp/{CALLS}"),
        format_args!(
            "{CALLS} calls in {took:?}: {mix:?}; pending after {}; late replies dropped {}; \
             broker before {baseline:?}, after {after:?}; expired by the broker into the \
             dead-letter queue {}",
            work.client().pending_calls(),
            work.client().dropped_replies(),
            dead_after - dead_before,
        ),
    );
    assert_eq!(mix.ok + mix.timeouts + mix.cancelled, CALLS);
    assert!(mix.timeouts > 0 && mix.cancelled > 0, "{mix:?}");
    assert_eq!(work.client().pending_calls(), 0, "pending-call table");
    assert_eq!(after, baseline, "channels, consumers or queues leaked");
    assert_eq!(after.messages, 0);
    cap_is_whole(&work, &probe).await;
    client_transport
        .cleanup()
        .await
        .expect("delete the reply queue");
    server_transport
        .cleanup()
        .await
        .expect("delete the service queues");
}
