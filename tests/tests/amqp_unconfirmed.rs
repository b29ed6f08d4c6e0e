//! A request's call does not wait for the broker's confirm (its reply
//! proves the broker took it); what a confirm says otherwise still ends the
//! call, typed: an unknown service is `NoRoute` as fast as a served call
//! answers, a return fails its own call even when the broker confirms it
//! in one batch with others, and a call in flight when the connection
//! drops is `ConnectionLost`.

#[path = "amqp_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{Client, RpcError, Server};
use support::{AddArgs, Calc, Relay};

/// Calls timed on each side of the comparison.
const TIMED_CALLS: u32 = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_service_is_no_route_as_fast_as_a_served_call_answers() {
    let Some((transport, _server)) = support::calc_on_broker("noroute_speed").await else {
        return;
    };
    // A deadline far above either figure: a `NoRoute` left to it would
    // show as `Timeout`, and as seconds against milliseconds.
    let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(5));
    support::add(&client, 0, 0).await;

    // The control: served calls, one after another.
    let started = Instant::now();
    for i in 0..TIMED_CALLS {
        assert_eq!(
            support::add(&client, i64::from(i), 1).await,
            i64::from(i) + 1
        );
    }
    let served = started.elapsed();

    let started = Instant::now();
    for _ in 0..TIMED_CALLS {
        let err = client
            .call::<_, i64>("nobody", "add", &AddArgs { a: 1, b: 1 })
            .await
            .unwrap_err();
        assert!(
            matches!(err, RpcError::NoRoute { ref service } if service == "nobody"),
            "{err:?}"
        );
    }
    let unrouted = started.elapsed();
    eprintln!("figure: {TIMED_CALLS} served calls {served:?}, {TIMED_CALLS} unrouted {unrouted:?}");
    // An unrouted call takes one broker round trip, a served call two and a
    // handler: five times the control leaves room for a loaded machine, and
    // none for a call that waits for anything but the broker's return.
    assert!(
        unrouted < served * 5,
        "no route took {unrouted:?} against {served:?} for served calls"
    );
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_return_fails_its_own_call_among_calls_confirmed_together() {
    let Some((transport, _server)) = support::calc_on_broker("noroute_mixed").await else {
        return;
    };
    let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(10));
    support::add(&client, 0, 0).await;
    // Hundreds at once on one channel: the broker confirms them with
    // `multiple` acks, and lapin hands each return with whichever confirm
    // of its batch it settles first.
    for round in 0..5 {
        let calls = (0..200i64).map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let service = if i % 3 == 0 { "nobody" } else { "calc" };
                let result = client
                    .call::<_, i64>(service, "add", &AddArgs { a: i, b: round })
                    .await;
                (i, service, result)
            })
        });
        let oneways = (0..50i64).map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.notify("calc", "add", &AddArgs { a: i, b: 0 }).await })
        });
        let oneways: Vec<_> = oneways.collect();
        for call in calls.collect::<Vec<_>>() {
            let (i, service, result) = call.await.unwrap();
            match service {
                "calc" => assert_eq!(result.unwrap(), i + round, "call {i}"),
                _ => assert!(
                    matches!(result, Err(RpcError::NoRoute { .. })),
                    "call {i}: {result:?}"
                ),
            }
        }
        for oneway in oneways {
            oneway
                .await
                .unwrap()
                .expect("a oneway call to a served service");
        }
    }
    assert_eq!(client.dropped_replies(), 0, "a call had two outcomes");
    assert_eq!(client.pending_calls(), 0);
    transport.cleanup().await.unwrap();
}

/// A short name for each outcome.
fn kind(result: &Result<i64, RpcError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(RpcError::NoRoute { .. }) => "NoRoute",
        Err(RpcError::ConnectionLost) => "ConnectionLost",
        Err(RpcError::NotSent) => "NotSent",
        Err(RpcError::Timeout) => "Timeout",
        Err(_) => "other",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_in_flight_when_the_connection_drops_end_typed() {
    let Some(builder) = support::builder("unconfirmed_cut").await else {
        return;
    };
    let relay = Relay::start().await;
    let server_transport = builder.clone().connect().await.unwrap();
    let client_transport = builder
        .urls([relay.url()])
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    let (calc, mut started) = Calc::reporting(1);
    let _server = Server::builder(server_transport.clone())
        .concurrency(64)
        .serve(calc)
        .await
        .unwrap();
    let client = Client::new(client_transport.clone()).with_timeout(Duration::from_secs(10));
    support::add(&client, 0, 0).await;

    // One call surely in flight: running on the server when the cut comes.
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, u64>("calc", "sleep_ms", &3_000u64).await }
    });
    tokio::time::timeout(Duration::from_secs(10), started.recv())
        .await
        .expect("the held call reaches its handler");

    // And callers publishing without pause, to a served and to an unknown
    // service, so the cut finds requests whose confirms are outstanding.
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..32i64)
        .map(|i| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let service = if i % 4 == 0 { "nobody" } else { "calc" };
                let mut outcomes = BTreeMap::<&'static str, usize>::new();
                while !stop.load(Ordering::Relaxed) {
                    let result = client
                        .call::<_, i64>(service, "add", &AddArgs { a: i, b: 1 })
                        .await;
                    if let Ok(sum) = result {
                        assert_eq!(sum, i + 1);
                    }
                    *outcomes.entry(kind(&result)).or_default() += 1;
                }
                (service, outcomes)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cut_at = Instant::now();
    assert!(relay.cut() > 0, "nothing to cut");

    let held = held.await.unwrap();
    assert!(
        matches!(held, Err(RpcError::ConnectionLost)),
        "the call in flight: {held:?}"
    );
    let noticed = cut_at.elapsed();
    client_transport.wait_connected().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut served = BTreeMap::<&'static str, usize>::new();
    let mut unrouted = BTreeMap::<&'static str, usize>::new();
    for caller in callers {
        let (service, outcomes) = caller.await.unwrap();
        let tally = if service == "calc" {
            &mut served
        } else {
            &mut unrouted
        };
        for (kind, n) in outcomes {
            *tally.entry(kind).or_default() += n;
        }
    }
    eprintln!(
        "figure: held call failed {noticed:?} after the cut; served calls {served:?}; \
         calls to an unknown service {unrouted:?}"
    );
    let typed = |allowed: &[&str], tally: &BTreeMap<&str, usize>| {
        tally.keys().all(|kind| allowed.contains(kind))
    };
    assert!(
        typed(&["ok", "ConnectionLost", "NotSent"], &served),
        "{served:?}"
    );
    assert!(
        typed(&["NoRoute", "ConnectionLost", "NotSent"], &unrouted),
        "{unrouted:?}"
    );
    assert!(served.get("ok").copied().unwrap_or(0) > 0, "{served:?}");
    assert!(
        unrouted.get("NoRoute").copied().unwrap_or(0) > 0,
        "{unrouted:?}"
    );
    assert_eq!(client.pending_calls(), 0);
    client_transport.cleanup().await.unwrap();
    server_transport.cleanup().await.unwrap();
}
