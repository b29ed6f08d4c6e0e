//! Connecting never hangs: a closed port, wrong credentials, an unknown
//! vhost and failed TLS handshakes each end in `TransportError::Connect`
//! within the connect timeout.

mod security_support;

use std::time::{Duration, Instant};

use rpc_core::TransportError;
use rpc_tests::broker::amqp_builder;
use rpc_transport_amqp::AmqpTransport;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use security_support::BrokerUrl;

/// The connect timeout every case is given.
const TIMEOUT: Duration = Duration::from_secs(2);
/// What a failed connect may take beyond the timeout (scheduling, closing).
const MARGIN: Duration = Duration::from_millis(500);

/// Connects to `url` and asserts a `Connect` error within the timeout;
/// returns the error text and the time it took.
async fn refused(label: &str, url: String) -> (String, Duration) {
    let started = Instant::now();
    let result = AmqpTransport::builder(url)
        .connect_timeout(TIMEOUT)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(10))
        .connect()
        .await;
    let elapsed = started.elapsed();
    let error = match result {
        Err(error @ TransportError::Connect { .. }) => error,
        other => panic!("{label}: expected a Connect error, got {other:?}"),
    };
    assert!(
        elapsed < TIMEOUT + MARGIN,
        "{label}: took {elapsed:?}, timeout {TIMEOUT:?}"
    );
    eprintln!("measured: connect/{label}: Connect error after {elapsed:?}: {error}");
    (error.to_string(), elapsed)
}

/// A port nothing listens on: bound, then released.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_a_connect_error() {
    let port = closed_port().await;
    refused(
        "closed-port",
        format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_connect_error() {
    if amqp_builder("wrong_credentials").await.is_none() {
        return;
    }
    let url = BrokerUrl {
        password: "definitely-not-the-password".into(),
        ..BrokerUrl::from_env()
    };
    let (message, _) = refused("wrong-password", url.to_url()).await;
    assert!(message.contains("ACCESS_REFUSED"), "{message}");
    let url = BrokerUrl {
        user: "no-such-user-rpc-tests".into(),
        ..BrokerUrl::from_env()
    };
    refused("unknown-user", url.to_url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_vhost_is_a_connect_error() {
    if amqp_builder("unknown_vhost").await.is_none() {
        return;
    }
    let url = BrokerUrl {
        vhost: "no-such-vhost-rpc-tests".into(),
        ..BrokerUrl::from_env()
    };
    let (message, _) = refused("unknown-vhost", url.to_url()).await;
    assert!(
        message.contains("NOT_ALLOWED") || message.contains("vhost"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_to_a_garbage_speaking_server_is_a_connect_error() {
    // A server that answers the TLS ClientHello with bytes that are no TLS
    // record, then closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
            let _ = socket.shutdown().await;
        }
    });
    refused(
        "tls-garbage",
        format!("amqps://guest:guest@localhost:{port}/%2f"),
    )
    .await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_to_a_silent_server_is_a_connect_error_by_the_timeout() {
    // Accepts and never says a word: only the connect timeout ends this.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let (_, elapsed) = refused(
        "tls-silent",
        format!("amqps://guest:guest@localhost:{port}/%2f"),
    )
    .await;
    assert!(elapsed >= TIMEOUT - MARGIN, "ended early: {elapsed:?}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqps_to_the_plain_amqp_port_is_a_connect_error() {
    if amqp_builder("amqps_plain_port").await.is_none() {
        return;
    }
    let plain = BrokerUrl::from_env();
    refused(
        "tls-to-plain-port",
        format!("amqps://guest:guest@{}:{}/%2f", plain.host, plain.port),
    )
    .await;
}
