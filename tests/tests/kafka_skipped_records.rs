//! Records a fetch skipped are read again (rpc-transport-kafka's
//! `offsets/gaps.rs`).
//!
//! Tansu gives a record its offset (raises the high watermark) before it
//! stores it, and a fetch returns the stored records from its offset on.
//! When producers write one partition at once and the later record is
//! stored first, a consumer at the end of the partition is handed the later
//! one and moves past the earlier one. Before the transport read such gaps
//! again, that lost a request for good (its server never saw it, and its
//! commits covered it): one call in about 75 runs of
//! `replies_reach_their_own_client`, one in four or five runs of the
//! SIGKILL test of `reliability_kafka`. This test puts many writers on few
//! partitions to make the race common: without the fix it lost calls in 4
//! runs of 10 (and found a gap to read again in most runs with it).

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::future::join_all;
use rpc_tests::conformance::serve_calc;
use rpc_tests::kafka::kafka_builder;
use rpc_tests::services::CalcClient;

/// Client transports writing the request partitions at once.
const CLIENTS: i64 = 12;
/// Calls each client has in flight at once, each one after the other: many
/// small produce requests from many connections are what the race needs.
const LANES: i64 = 2;
/// Calls per lane.
const CALLS: i64 = 100;

/// Many clients write two request partitions at once, and two servers
/// write every client's reply topic at once: every call is answered, each
/// request runs once, and no reply comes twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_written_at_once_are_all_read() {
    let Some(builder) = kafka_builder("skipped").await else {
        return;
    };
    let builder = builder.partitions(2);
    let mut transports = Vec::new();
    for _ in 0..2 {
        transports.push(builder.clone().connect().await.unwrap());
    }
    let one = serve_calc(transports[0].clone(), 1, 64).await;
    let two = serve_calc(transports[1].clone(), 2, 64).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let transport = builder.clone().connect().await.unwrap();
        clients.push(CalcClient::new(transport.clone()).with_timeout(Duration::from_secs(30)));
        transports.push(transport);
    }
    let lanes = clients.iter().enumerate().flat_map(|(c, calc)| {
        (0..LANES).map(move |lane| {
            let calc = calc.clone();
            async move {
                let mut lost = Vec::new();
                for i in 0..CALLS {
                    let a = ((c as i64 * LANES) + lane) * CALLS + i;
                    match calc.add(a, 1).await {
                        Ok(v) if v == a + 1 => {}
                        other => lost.push((a, other)),
                    }
                }
                lost
            }
        })
    });
    let lost: Vec<_> = join_all(lanes).await.into_iter().flatten().collect();
    assert!(lost.is_empty(), "calls not answered: {lost:?}");
    let ran = one.probe.calls.load(Ordering::SeqCst) + two.probe.calls.load(Ordering::SeqCst);
    assert_eq!(
        ran as i64,
        CLIENTS * LANES * CALLS,
        "each request runs once"
    );
    for calc in &clients {
        assert_eq!(calc.client().dropped_replies(), 0, "no reply comes twice");
    }
    drop((one, two));
    for transport in transports {
        transport.close().await;
    }
}
