//! The full stack: `rpc_core::Client` -> `MemTransport` -> `rpc_core::Server`
//! and back, with a hand-written service: what is particular to the memory
//! fabric (its queue and dead-letter counters, its faults). What every
//! transport must do is the conformance suite's (tests/tests/conformance_mem.rs).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_core::{Client, RpcError, Server};
use rpc_transport_mem::MemTransport;
use support::{Add, Math, NoArgs, Sleep, math_stack, serve_math};

#[tokio::test]
async fn a_call_round_trips() {
    let (transport, server, client) = math_stack().await;

    let sum: i64 = client
        .call("math", "add", &Add { a: 2, b: 3 })
        .await
        .unwrap();
    assert_eq!(sum, 5);
    assert_eq!(server.stats().handled(), 1);
    assert_eq!(client.pending_calls(), 0);
    assert_eq!(transport.unacked("math"), 0, "the request was acked");
    assert_eq!(transport.queue_depth("math"), 0);
    assert_eq!(transport.open_inboxes(), 1);
    drop(client);
    assert_eq!(
        transport.open_inboxes(),
        0,
        "the last client clone closed its inbox"
    );
}

#[tokio::test]
async fn a_oneway_call_runs_without_a_reply() {
    let transport = MemTransport::new();
    let math = Math::new(1);
    let server = serve_math(&transport, math.clone()).await;
    let client = Client::new(transport.clone());
    client.notify("math", "count", &NoArgs {}).await.unwrap();
    math.0.count_seen.notified().await;
    let report = server.shutdown().await;
    assert!(report.drained);
    assert_eq!(math.0.counted.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(transport.unacked("math"), 0, "the oneway call was acked");
    assert_eq!(
        transport.stats().undeliverable_replies,
        0,
        "no reply was sent"
    );
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_remote_error_and_a_dead_letter() {
    let (transport, server, client) = math_stack().await;

    let error = client
        .call::<_, ()>("math", "panic", &NoArgs {})
        .await
        .unwrap_err();
    match error {
        RpcError::Remote { message } => assert!(message.contains("boom"), "{message}"),
        other => panic!("expected a remote error, got {other:?}"),
    }
    assert_eq!(server.stats().panicked(), 1);
    let dead = transport.dead_letters("math");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].header.method, "panic");
    // The server survives its handler's panic.
    let sum: i64 = client
        .call("math", "add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
}

#[tokio::test]
async fn an_unknown_method_gets_a_typed_reply() {
    let (transport, _server, client) = math_stack().await;
    let error = client
        .call::<_, ()>("math", "sqrt", &NoArgs {})
        .await
        .unwrap_err();
    assert!(
        matches!(error, RpcError::NoSuchMethod { ref method, .. } if method == "sqrt"),
        "{error:?}"
    );
    assert_eq!(transport.dead_letters("math").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_handler_times_the_call_out() {
    let (_transport, server, client) = math_stack().await;
    let client = client.with_timeout(Duration::from_millis(50));

    let started = tokio::time::Instant::now();
    let error = client
        .call::<_, ()>("math", "sleep", &Sleep { ms: 10_000 })
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::Timeout), "{error:?}");
    // The call gives up when the wall clock passes the deadline it sent,
    // which is rounded up to the next millisecond.
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(50)..=Duration::from_millis(51)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(
        client.pending_calls(),
        0,
        "the timed-out call left the table"
    );

    // The server drops the handler at the same deadline and answers
    // `Timeout`: that reply and the client's own timer end the call at one
    // instant, whichever comes first (the other reply is dropped). Nothing
    // comes when the handler would have finished.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        client.dropped_replies() <= 1,
        "{}",
        client.dropped_replies()
    );
    assert_eq!(server.stats().cut_at_deadline(), 1);
}

#[tokio::test]
async fn a_service_whose_last_server_left_fails_fast() {
    // (A service never served is a conformance case.)
    let transport = MemTransport::new();
    let client = Client::new(transport.clone()); // default 30 s deadline
    let server = serve_math(&transport, Math::new(1)).await;
    drop(server);
    tokio::task::yield_now().await;
    let error = client
        .call::<_, i64>("math", "add", &Add { a: 1, b: 2 })
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::NoRoute { .. }), "{error:?}");
}

#[tokio::test]
async fn a_busy_server_leaves_requests_to_a_free_one() {
    let transport = MemTransport::new();
    let math = Math::new(1);
    let busy = Server::builder(transport.clone())
        .concurrency(1)
        .serve(math.clone())
        .await
        .unwrap();
    let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(10));

    // Occupy the only server's only permit.
    let held = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, ()>("math", "hold", &NoArgs {}).await }
    });
    math.0.held.notified().await;

    // The next request waits in the queue, not inside the busy server...
    let queued = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call::<_, i64>("math", "add", &Add { a: 4, b: 4 })
                .await
        }
    });
    while transport.queue_depth("math") == 0 {
        tokio::task::yield_now().await;
    }
    // ...so a server that starts now takes it.
    let free = serve_math(&transport, math.clone()).await;
    assert_eq!(queued.await.unwrap().unwrap(), 8);
    assert_eq!((busy.stats().handled(), free.stats().handled()), (0, 1));

    math.0.release.notify_waiters();
    held.await.unwrap().unwrap();
}

#[tokio::test]
async fn disconnect_fails_calls_in_flight_and_reconnect_resumes() {
    let transport = MemTransport::new();
    let math = Math::new(1);
    let server = serve_math(&transport, math.clone()).await;
    let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(10));

    let in_flight = tokio::spawn({
        let client = client.clone();
        async move { client.call::<_, ()>("math", "hold", &NoArgs {}).await }
    });
    math.0.held.notified().await;
    transport.faults().disconnect();
    let error = in_flight.await.unwrap().unwrap_err();
    assert!(matches!(error, RpcError::ConnectionLost), "{error:?}");

    let error = client
        .call::<_, i64>("math", "add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    // Refused before it left: not sent, so safe to retry.
    assert!(matches!(error, RpcError::NotSent), "{error:?}");

    // The held handler finishes while disconnected: its reply cannot be
    // sent and its ack fails, so the request goes back to the queue (as on
    // AMQP). After the reconnect it is answered from the server's replay
    // cache, not run again.
    math.0.release.notify_waiters();
    while transport.queue_depth("math") == 0 {
        tokio::task::yield_now().await;
    }
    transport.faults().reconnect();
    while server.stats().replayed() == 0 {
        tokio::task::yield_now().await;
    }

    let sum: i64 = client
        .call("math", "add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    assert_eq!(server.stats().handled(), 2, "hold once, add once");
    assert_eq!(math.0.holding.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn closing_the_transport_ends_servers_and_fails_clients() {
    let (transport, server, client) = math_stack().await;
    client.connect().await.unwrap();
    transport.close();
    let report = server.shutdown().await;
    assert!(report.drained);
    let error = client
        .call::<_, i64>("math", "add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::Closed), "{error:?}");
}
