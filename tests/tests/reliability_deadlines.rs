//! Deadlines hold under load: 10,000 calls against a server that never
//! replies all end with `Timeout`, none early, none later than the deadline
//! plus 50 ms, and none hangs. On the memory transport and on RabbitMQ.

mod reliability_support;

use std::time::{Duration, Instant};

use rpc_core::{RpcError, Transport};
use rpc_transport_mem::MemTransport;

use reliability_support::{
    BrokerSetup, WorkClient, percentile, report, serve_work, timing_sensitive,
};

const CALLS: usize = 10_000;
const LATE_BY_AT_MOST: Duration = Duration::from_millis(50);

/// Starts `CALLS` calls to `hang` at once, each in its own task, and checks
/// how each ended, timed from its own start.
async fn every_call_times_out<T: Transport>(label: &str, server: T, client: T, deadline: Duration) {
    let _alone = timing_sensitive().await;
    let (_server, probe) = serve_work(server, 64).await;
    let work = WorkClient::new(client).with_timeout(deadline);
    work.client().connect().await.expect("open the reply inbox");

    let started = Instant::now();
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let work = work.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let result = work.hang().await;
                (result, start.elapsed())
            })
        })
        .collect();
    let mut took = Vec::with_capacity(CALLS);
    let mut hung = 0;
    for call in calls {
        // Far beyond any deadline: a call still running then is hung.
        match tokio::time::timeout(deadline + Duration::from_secs(20), call).await {
            Ok(joined) => {
                let (result, elapsed) = joined.expect("call task");
                assert!(matches!(result, Err(RpcError::Timeout)), "{result:?}");
                took.push(elapsed);
            }
            Err(_) => hung += 1,
        }
    }
    let wall = started.elapsed();
    assert_eq!(hung, 0, "{hung} calls hung");
    took.sort();
    let (min, max) = (took[0], took[took.len() - 1]);
    let late = |d: Duration| d.saturating_sub(deadline);
    report(
        &format!("deadlines/{label}"),
        format_args!(
            "{CALLS} calls, deadline {deadline:?}: all Timeout, hung 0; ended after deadline \
             +{:?} (p50) +{:?} (p99) +{:?} (max); min {min:?}; handler ran {} times; wall {wall:?}",
            late(percentile(&took, 50)),
            late(percentile(&took, 99)),
            late(max),
            probe.hang_runs.load(std::sync::atomic::Ordering::SeqCst),
        ),
    );
    assert!(min >= deadline, "a call ended early: {min:?}");
    assert!(
        max <= deadline + LATE_BY_AT_MOST,
        "a call ended {:?} after its deadline",
        late(max)
    );
    assert_eq!(work.client().pending_calls(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_time_out_on_memory() {
    let transport = MemTransport::new();
    every_call_times_out(
        "memory",
        transport.clone(),
        transport,
        Duration::from_millis(500),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_time_out_on_amqp() {
    let Some(broker) = BrokerSetup::new("deadlines").await else {
        return;
    };
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker.direct("client").connect().await.expect("connect");
    // Long enough that every request is published before the first expires,
    // so the timers are not competing with 10,000 publishes.
    every_call_times_out(
        "amqp",
        server.clone(),
        client.clone(),
        Duration::from_secs(3),
    )
    .await;
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}
