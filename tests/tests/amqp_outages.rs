//! Calls during connection trouble: a publish cut by a broker-side close is
//! `ConnectionLost`; a call made during an outage waits for the connection
//! up to its own deadline and, if none comes, fails `NotSent` (safe to retry).

#[path = "amqp_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{Client, RpcError, Server};
use rpc_transport_amqp::AmqpTransport;
use support::{AddArgs, Calc, Relay};

/// A short name for each outcome, for the figures.
fn kind(result: &Result<i64, RpcError>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(error) => format!("{error:?}")
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_cut_by_a_broker_side_close_are_connection_lost() {
    let Some(builder) = support::builder("midpublish").await else {
        return;
    };
    let name = format!("rpc-test-midpublish-{}", support::unique_prefix("n"));
    let server_transport = builder.clone().connect().await.unwrap();
    let client_transport = builder
        .connection_name(name.clone())
        .connect()
        .await
        .unwrap();
    let _server = Server::builder(server_transport.clone())
        .concurrency(64)
        .serve(Calc::new(1))
        .await
        .unwrap();
    let client = Client::new(client_transport.clone());
    client
        .call::<_, i64>("calc", "add", &AddArgs { a: 1, b: 1 })
        .await
        .unwrap();

    // 64 callers publish without pause, so every close finds publishes and
    // confirms under way.
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..64)
        .map(|i| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut outcomes = BTreeMap::<String, usize>::new();
                while !stop.load(Ordering::Relaxed) {
                    let result = client
                        .call::<_, i64>("calc", "add", &AddArgs { a: i, b: 1 })
                        .await;
                    if let Err(RpcError::Transport(error)) = &result {
                        eprintln!("untyped: {error:?}");
                    }
                    *outcomes.entry(kind(&result)).or_default() += 1;
                }
                outcomes
            })
        })
        .collect();
    let closes = 5;
    for _ in 0..closes {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(support::close_connections_named(&name), 1);
        client_transport.wait_connected().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = BTreeMap::<String, usize>::new();
    for caller in callers {
        for (kind, n) in caller.await.unwrap() {
            *outcomes.entry(kind).or_default() += n;
        }
    }
    eprintln!("figure: {closes} broker-side closes under 64 callers: {outcomes:?}");
    assert!(!outcomes.contains_key("Transport"), "{outcomes:?}");
    assert!(!outcomes.contains_key("Timeout"), "{outcomes:?}");
    assert!(
        outcomes.get("ConnectionLost").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
    client_transport.cleanup().await.unwrap();
    server_transport.cleanup().await.unwrap();
}

/// Waits until `transport` has noticed its connection is gone and failed
/// the calls in flight (the generation reads 0 from then until it is back).
async fn wait_disconnected(transport: &AmqpTransport) {
    let until = Instant::now() + Duration::from_secs(20);
    while transport.connection_generation() != 0 {
        assert!(Instant::now() < until, "the loss was never noticed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_during_an_outage_waits_up_to_its_deadline_then_is_not_sent() {
    let Some(builder) = support::builder("outage_deadline").await else {
        return;
    };
    let server_transport = builder.clone().connect().await.unwrap();
    let _server = support::serve_calc(&server_transport).await;
    let relay = Relay::start().await;
    let port = relay.port();
    let client_transport = builder
        .urls([relay.url()])
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    let client = Client::new(client_transport.clone());

    // An outage longer than the connect timeout but shorter than the
    // call's deadline: the call waits, then goes through.
    drop(relay);
    wait_disconnected(&client_transport).await;
    let call = tokio::spawn({
        let client = client.with_timeout(Duration::from_secs(15));
        async move {
            client
                .call::<_, i64>("calc", "add", &AddArgs { a: 2, b: 3 })
                .await
        }
    });
    // Three connect timeouts: calls used to fail after one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!call.is_finished(), "{:?}", call.await);
    let relay = Relay::start_on(port).await;
    assert_eq!(call.await.unwrap().unwrap(), 5);

    // An outage that outlasts the deadline: `NotSent`, at the deadline.
    drop(relay);
    wait_disconnected(&client_transport).await;
    let deadline = Duration::from_millis(1500);
    let started = Instant::now();
    let result = client
        .with_timeout(deadline)
        .call::<_, i64>("calc", "add", &AddArgs { a: 2, b: 3 })
        .await;
    let took = started.elapsed();
    assert!(matches!(result, Err(RpcError::NotSent)), "{result:?}");
    assert!(took >= deadline - Duration::from_millis(100), "{took:?}");

    client_transport.close().await;
    server_transport.cleanup().await.unwrap();
}
