//! Connection loss: calls in flight end typed within a second, the transport
//! reconnects, re-declares and resumes serving; nothing hangs.

#[path = "amqp_support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rpc_core::{Client, RpcError, Server, ServerHandle};
use rpc_transport_amqp::{AmqpTransport, AmqpTransportBuilder};
use support::{AddArgs, Calc, Relay};

/// Starts `n` slow calls, waits until the server runs all of them, runs
/// `cut`, and checks each call ends with `ConnectionLost` within a second.
///
/// Each round's calls sleep for a length of their own, and only starts of
/// that length count: the broker hands the unacked requests of an earlier
/// round to the server again once it reconnects, and their starts must not
/// pass for this round's (the cut would then come before this round's calls
/// reach the server, and they would run on the new connection).
async fn in_flight_calls_fail_fast_when(
    client: &Client<AmqpTransport>,
    started: &mut tokio::sync::mpsc::UnboundedReceiver<u64>,
    n: usize,
    cut: impl FnOnce(),
) {
    static ROUND: AtomicU64 = AtomicU64::new(0);
    let sleep_ms = 20_000 + ROUND.fetch_add(1, Ordering::Relaxed);
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                let result = client.call::<_, u64>("calc", "sleep_ms", &sleep_ms).await;
                (result, Instant::now())
            })
        })
        .collect();
    let mut running = 0;
    while running < n {
        if started.recv().await.unwrap() == sleep_ms {
            running += 1;
        }
    }
    cut();
    // Measured from when the cut is done: rabbitmqctl itself takes seconds.
    let cut_at = Instant::now();
    for call in calls {
        let (result, ended) = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("call hangs")
            .unwrap();
        assert!(
            matches!(result, Err(RpcError::ConnectionLost)),
            "{result:?}"
        );
        let took = ended.duration_since(cut_at);
        assert!(
            took < Duration::from_secs(1),
            "ended {took:?} after the cut"
        );
    }
}

/// New calls work once the transport is back (polled: reconnecting has no
/// event visible from here but the calls themselves).
async fn calls_work_again(client: &Client<AmqpTransport>) {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        match client
            .with_timeout(Duration::from_secs(2))
            .call::<_, i64>("calc", "add", &AddArgs { a: 20, b: 22 })
            .await
        {
            Ok(sum) => {
                assert_eq!(sum, 42);
                return;
            }
            Err(error) if Instant::now() < until => {
                tracing_like_log(&error);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("calls still fail after reconnecting: {error:?}"),
        }
    }
}

/// Serves `Calc` on a transport from `server` and returns it with a client
/// on a transport of its own from `client`, once a call has gone through.
async fn serve_calc(
    server: AmqpTransportBuilder,
    client: AmqpTransportBuilder,
) -> (
    AmqpTransport,
    AmqpTransport,
    ServerHandle,
    Client<AmqpTransport>,
) {
    let server_transport = server.connect().await.unwrap();
    let client_transport = client.connect().await.unwrap();
    let handle = support::serve_calc(&server_transport).await;
    let client = Client::new(client_transport.clone());
    calls_work_again(&client).await;
    (server_transport, client_transport, handle, client)
}

fn tracing_like_log(error: &RpcError) {
    eprintln!("retrying after: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_fails_calls_in_flight_and_recovers() {
    let Some(builder) = support::builder("relaycut").await else {
        return;
    };
    let relay = Relay::start().await;
    // Client and server share one transport, through the relay.
    let transport = AmqpTransport::builder(relay.url())
        .queue_prefix(support::unique_prefix("relaycut"))
        .heartbeat(Duration::from_secs(5))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect()
        .await
        .unwrap();
    drop(builder);
    let (calc, mut started) = Calc::reporting(1);
    let _server = Server::builder(transport.clone())
        .serve(calc)
        .await
        .unwrap();
    let client = Client::new(transport.clone());
    calls_work_again(&client).await;

    in_flight_calls_fail_fast_when(&client, &mut started, 8, || assert!(relay.cut() > 0)).await;
    calls_work_again(&client).await;
    assert_eq!(transport.connection_generation(), 2);
    assert_eq!(client.pending_calls(), 0);

    // And once more, to show recovery is not one-shot.
    in_flight_calls_fail_fast_when(&client, &mut started, 4, || assert!(relay.cut() > 0)).await;
    calls_work_again(&client).await;
    assert_eq!(transport.connection_generation(), 3);
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_side_close_fails_calls_in_flight_and_recovers() {
    let Some(builder) = support::builder("brokerclose").await else {
        return;
    };
    let name = format!(
        "rpc-test-brokerclose-{}-{}",
        std::process::id(),
        support::unique_prefix("n")
    );
    let client_transport = builder
        .clone()
        .connection_name(name.clone())
        .connect()
        .await
        .unwrap();
    // The server has its own connection, which stays up.
    let server_transport = builder
        .connection_name("rpc-test-brokerclose-server")
        .connect()
        .await
        .unwrap();
    let (calc, mut started) = Calc::reporting(1);
    let _server = Server::builder(server_transport.clone())
        .serve(calc)
        .await
        .unwrap();
    let client = Client::new(client_transport.clone());
    calls_work_again(&client).await;

    in_flight_calls_fail_fast_when(&client, &mut started, 8, || {
        assert_eq!(support::close_connections_named(&name), 1);
    })
    .await;
    calls_work_again(&client).await;
    assert_eq!(client_transport.connection_generation(), 2);
    client_transport.cleanup().await.unwrap();
    server_transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_connection_is_closed_resumes_serving() {
    let Some(builder) = support::builder("serverclose").await else {
        return;
    };
    let name = format!("rpc-test-serverclose-{}", support::unique_prefix("n"));
    let (server_transport, client_transport, server, client) =
        serve_calc(builder.clone().connection_name(name.clone()), builder).await;
    assert_eq!(support::close_connections_named(&name), 1);
    calls_work_again(&client).await;
    assert_eq!(server_transport.connection_generation(), 2);
    assert!(server.stats().handled() >= 2);
    client_transport.cleanup().await.unwrap();
    server_transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_channel_the_broker_closed_is_replaced() {
    let Some(builder) = support::builder("channelclose").await else {
        return;
    };
    let exchange = format!("rpc-test-channelclose-{}", support::unique_prefix("x"));
    let prefix = support::unique_prefix("channelclose");
    let builder = builder
        .queue_prefix(prefix.clone())
        .exchange(exchange.clone())
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200));
    let (server_transport, client_transport, _server, client) =
        serve_calc(builder.clone(), builder).await;

    // A publish to an exchange that no longer exists makes the broker
    // close the publishing channel (404) while the connection stays up.
    let (admin, channel) = support::raw_channel().await;
    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();
    let refused = client
        .with_timeout(Duration::from_secs(5))
        .call::<_, i64>("calc", "add", &AddArgs { a: 1, b: 2 })
        .await;
    assert!(
        matches!(&refused, Err(error) if !matches!(error, RpcError::Timeout)),
        "a refused publish fails at once, typed: {refused:?}"
    );

    // The exchange comes back (as the server's topology declares it);
    // calls must work again, on a new session.
    let queue = format!("{prefix}calc");
    channel
        .exchange_declare(
            exchange.as_str().into(),
            lapin::ExchangeKind::Direct,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            queue.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    calls_work_again(&client).await;
    assert_eq!(client_transport.connection_generation(), 2);

    channel
        .exchange_delete(exchange.as_str().into(), Default::default())
        .await
        .unwrap();
    let _ = admin.close(200, "done".into()).await;
    client_transport.cleanup().await.unwrap();
    server_transport.cleanup().await.unwrap();
}

/// How long after `since` the first call succeeds, polling with short calls.
async fn first_success_after(client: &Client<AmqpTransport>, since: Instant) -> Duration {
    calls_work_again(client).await;
    since.elapsed()
}

/// Recovery follows the broker, not the backoff: after a 3 s outage (the
/// relay down, connections refused) service is back within about one
/// backoff cap (1 s by default) plus a connect. The figure in
/// docs/reliability.md comes from this test's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_an_outage_waits_at_most_about_one_backoff_cap() {
    let Some(builder) = support::builder("outage").await else {
        return;
    };
    drop(builder);
    let relay = Relay::start().await;
    let port = relay.port();
    let transport = AmqpTransport::builder(relay.url())
        .queue_prefix(support::unique_prefix("outage"))
        .connect()
        .await
        .unwrap();
    let _server = support::serve_calc(&transport).await;
    let client = Client::new(transport.clone());
    calls_work_again(&client).await;

    let outage = Duration::from_secs(3);
    drop(relay);
    tokio::time::sleep(outage).await;
    let relay = Relay::start_on(port).await;
    let back = Instant::now();
    let recovery = first_success_after(&client, back).await;
    // Control: a fresh transport's connect through the same relay, now.
    let started = Instant::now();
    let fresh = AmqpTransport::connect(&relay.url()).await.unwrap();
    let connect = started.elapsed();
    fresh.close().await;
    eprintln!(
        "figure: outage {outage:?}; first call ok {recovery:?} after the broker was back \
         (a fresh connect takes {connect:?}; backoff cap 1 s)"
    );
    // One full backoff wait, then the reconnect (a connect, the reply queue
    // and request queue re-declared, a call): bounded by the cap plus a few
    // connects, with a second of slack for a loaded machine.
    let bound = Duration::from_secs(1) + connect * 4 + Duration::from_secs(1);
    assert!(recovery < bound, "{recovery:?} >= {bound:?}");
    transport.cleanup().await.unwrap();
}

/// A broker-side close of every connection of a server and a client (what
/// `rabbitmqctl close_all_connections` does, limited to this test's
/// connections): the time until calls succeed again. The figure in
/// docs/reliability.md comes from this test's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_after_a_broker_side_close_of_both_sides() {
    let Some(builder) = support::builder("closeboth").await else {
        return;
    };
    let name = format!("rpc-test-closeboth-{}", support::unique_prefix("n"));
    let builder = builder.connection_name(name.clone());
    let (server_transport, client_transport, _server, client) =
        serve_calc(builder.clone(), builder).await;
    let mut figures = Vec::new();
    for _ in 0..3 {
        assert_eq!(support::close_connections_named(&name), 2);
        let closed = Instant::now();
        figures.push(first_success_after(&client, closed).await);
    }
    eprintln!("figure: calls succeed again {figures:?} after rabbitmqctl close_connection returns");
    client_transport.cleanup().await.unwrap();
    server_transport.cleanup().await.unwrap();
}
