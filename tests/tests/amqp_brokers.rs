//! Several broker addresses: the transport connects to the first that
//! answers and, when its connection is lost, moves on to the next live one,
//! servers and clients alike.

#[path = "amqp_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use rpc_core::Client;
use rpc_transport_amqp::AmqpTransport;
use support::{AddArgs, Relay};

/// A loopback URL nothing listens on (a port bound, then released).
async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

/// Polls until `transport` is connected to `broker` (a URL as configured);
/// reconnecting has no event visible from here.
async fn wait_connected_to(transport: &AmqpTransport, broker: &str) {
    let expected = broker.replace("guest:guest@", "guest:***@");
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if transport.connected_broker().as_deref() == Some(expected.as_str()) {
            return;
        }
        assert!(
            Instant::now() < until,
            "still on {:?}, expected {expected}",
            transport.connected_broker()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A call goes through, retried while the transports settle.
async fn calls_work(client: &Client<AmqpTransport>) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        match client
            .with_timeout(Duration::from_secs(2))
            .call::<_, i64>("calc", "add", &AddArgs { a: 40, b: 2 })
            .await
        {
            Ok(sum) => return assert_eq!(sum, 42),
            Err(error) if Instant::now() < until => {
                eprintln!("retrying after: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("calls still fail: {error:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_broker_that_answers_is_used() {
    let Some(builder) = support::builder("brokers_first").await else {
        return;
    };
    let dead = dead_url().await;
    let live = support::broker_url();
    // The comma-separated form of the builder's URL.
    let transport = AmqpTransport::builder(format!("{dead}, {live}"))
        .queue_prefix(support::unique_prefix("brokers_first"))
        .connect()
        .await
        .unwrap();
    drop(builder);
    wait_connected_to(&transport, &live).await;
    let _server = support::serve_calc(&transport).await;
    calls_work(&Client::new(transport.clone())).await;
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_answering_names_every_one() {
    let (a, b) = (dead_url().await, dead_url().await);
    let error = AmqpTransport::builder("")
        .urls([&a, &b])
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .unwrap_err();
    let text = error.to_string();
    for url in [&a, &b] {
        let redacted = url.replace("guest:guest@", "guest:***@");
        assert!(text.contains(&redacted), "{text}");
    }
    assert!(!text.contains("guest:guest"), "a password leaked: {text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_moves_to_the_next_live_broker() {
    let Some(builder) = support::builder("brokers_next").await else {
        return;
    };
    drop(builder);
    // Two "brokers": two relays to the one test broker.
    let first = Relay::start().await;
    let second = Relay::start().await;
    let urls = [first.url(), second.url()];
    let prefix = support::unique_prefix("brokers_next");
    let connect = || {
        AmqpTransport::builder("")
            .urls(&urls)
            .queue_prefix(prefix.clone())
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .connect()
    };
    // A server and a client, each with a transport of its own.
    let server_transport = connect().await.unwrap();
    let client_transport = connect().await.unwrap();
    let _server = support::serve_calc(&server_transport).await;
    let client = Client::new(client_transport.clone());
    calls_work(&client).await;
    wait_connected_to(&server_transport, &urls[0]).await;
    wait_connected_to(&client_transport, &urls[0]).await;

    // The first still answers, but the next one is tried first.
    assert!(first.cut() > 0);
    wait_connected_to(&server_transport, &urls[1]).await;
    wait_connected_to(&client_transport, &urls[1]).await;
    calls_work(&client).await;

    // The first is gone for good: the round goes past it, back to the second.
    drop(first);
    assert!(second.cut() > 0);
    calls_work(&client).await;
    wait_connected_to(&server_transport, &urls[1]).await;
    wait_connected_to(&client_transport, &urls[1]).await;
    assert!(server_transport.connection_generation() >= 3);
    assert!(client_transport.connection_generation() >= 3);

    client_transport.close().await;
    server_transport.cleanup().await.unwrap();
}
