//! The full stack: `rpc_core::Client` -> `MemTransport` -> `rpc_core::Server`
//! and back, with a hand-written service.

mod support;

use std::time::{Duration, Instant};

use rpc_core::{Client, RpcError, Server};
use rpc_transport_mem::MemTransport;
use support::{Add, Math, NoArgs, Sleep};

#[tokio::test]
async fn a_call_round_trips() {
    let transport = MemTransport::new();
    let server = Server::builder(transport.clone())
        .serve(Math::new(1))
        .await
        .unwrap();
    let client = Client::new(transport.clone());

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
async fn many_concurrent_calls_on_one_client() {
    let transport = MemTransport::new();
    let _server = Server::builder(transport.clone())
        .serve(Math::new(1))
        .await
        .unwrap();
    let client = Client::new(transport);
    let calls = (0..100).map(|i| {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call::<_, i64>("math", "add", &Add { a: i, b: i })
                .await
        })
    });
    for (i, call) in calls.enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), 2 * i as i64);
    }
}

#[tokio::test]
async fn a_oneway_call_runs_without_a_reply() {
    let transport = MemTransport::new();
    let math = Math::new(1);
    let server = Server::builder(transport.clone())
        .serve(math.clone())
        .await
        .unwrap();
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
    let transport = MemTransport::new();
    let server = Server::builder(transport.clone())
        .serve(Math::new(1))
        .await
        .unwrap();
    let client = Client::new(transport.clone());

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
    let transport = MemTransport::new();
    let _server = Server::builder(transport.clone())
        .serve(Math::new(1))
        .await
        .unwrap();
    let client = Client::new(transport.clone());
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
    let transport = MemTransport::new();
    let _server = Server::builder(transport.clone())
        .serve(Math::new(1))
        .await
        .unwrap();
    let client = Client::new(transport.clone()).with_timeout(Duration::from_millis(50));

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

    // The late reply arrives once the handler finishes, and is dropped.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(client.dropped_replies(), 1);
}

#[tokio::test]
async fn calling_an_unserved_service_fails_fast() {
    let transport = MemTransport::new();
    let client = Client::new(transport.clone()); // default 30 s deadline
    let started = Instant::now();
    let error = client
        .call::<_, i64>("math", "add", &Add { a: 1, b: 2 })
        .await
        .unwrap_err();
    assert!(
        matches!(error, RpcError::NoRoute { ref service } if service == "math"),
        "{error:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "NoRoute must not wait for a timeout"
    );

    // Likewise once the last server has gone.
    let server = Server::builder(transport.clone())
        .serve(Math::new(1))
        .await
        .unwrap();
    drop(server);
    tokio::task::yield_now().await;
    let error = client
        .call::<_, i64>("math", "add", &Add { a: 1, b: 2 })
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::NoRoute { .. }), "{error:?}");
}

#[tokio::test]
async fn two_servers_share_one_queue() {
    let transport = MemTransport::new();
    // Both calls must be inside `rendezvous` at once to finish, and each
    // server runs one call at a time: they finish only if the servers
    // share the queue.
    let math = Math::new(2);
    let a = Server::builder(transport.clone())
        .concurrency(1)
        .serve(math.clone())
        .await
        .unwrap();
    let b = Server::builder(transport.clone())
        .concurrency(1)
        .serve(math.clone())
        .await
        .unwrap();
    assert_eq!(transport.consumers("math"), 2);
    let client = Client::new(transport).with_timeout(Duration::from_secs(10));
    let (first, second) = tokio::join!(
        client.call::<_, ()>("math", "rendezvous", &NoArgs {}),
        client.call::<_, ()>("math", "rendezvous", &NoArgs {}),
    );
    first.unwrap();
    second.unwrap();
    assert_eq!((a.stats().handled(), b.stats().handled()), (1, 1));
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
    let free = Server::builder(transport.clone())
        .serve(math.clone())
        .await
        .unwrap();
    assert_eq!(queued.await.unwrap().unwrap(), 8);
    assert_eq!((busy.stats().handled(), free.stats().handled()), (0, 1));

    math.0.release.notify_waiters();
    held.await.unwrap().unwrap();
}

#[tokio::test]
async fn disconnect_fails_calls_in_flight_and_reconnect_resumes() {
    let transport = MemTransport::new();
    let math = Math::new(1);
    let server = Server::builder(transport.clone())
        .serve(math.clone())
        .await
        .unwrap();
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
    assert!(matches!(error, RpcError::ConnectionLost), "{error:?}");

    // The held handler finishes while disconnected: its reply cannot be
    // sent and its ack fails, so the request goes back to the queue (as on
    // AMQP) and runs again after the reconnect.
    math.0.release.notify_waiters();
    while transport.queue_depth("math") == 0 {
        tokio::task::yield_now().await;
    }
    transport.faults().reconnect();
    math.0.held.notified().await;
    math.0.release.notify_waiters();

    let sum: i64 = client
        .call("math", "add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    assert_eq!(server.stats().handled(), 3, "hold twice, add once");
}

#[tokio::test]
async fn closing_the_transport_ends_servers_and_fails_clients() {
    let transport = MemTransport::new();
    let server = Server::builder(transport.clone())
        .serve(Math::new(1))
        .await
        .unwrap();
    let client = Client::new(transport.clone());
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

#[tokio::test]
async fn calls_survive_the_frame_round_trip() {
    let transport = MemTransport::builder().frame_round_trip(true).build();
    let _server = Server::builder(transport.clone())
        .serve(Math::new(1))
        .await
        .unwrap();
    let client = Client::new(transport.clone()).with_metadata("tenant", "a");
    let sum: i64 = client
        .call("math", "add", &Add { a: 20, b: 22 })
        .await
        .unwrap();
    assert_eq!(sum, 42);
    let error = client
        .call::<_, ()>("math", "panic", &NoArgs {})
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::Remote { .. }), "{error:?}");
}
