//! `rpc` end to end over ZeroMQ (`zmq+tcp://`, `zmq+ipc://`): no broker,
//! so these always run. The example calculator binds a loopback endpoint
//! (port 0, or an ipc path in a temporary directory) and the CLI connects
//! to it.

mod common;

use common::{adds, describes, failure, introspects_one_instance, rpc, stderr, stdout};
use rpc_tests::zmq::ZmqFabric;

/// Serves the calculator on a fresh endpoint of `fabric`; runs the CLI
/// through the `zmq+` URL of the endpoint it bound.
async fn serve_and_ask(fabric: &ZmqFabric, scheme: &str) {
    let transport = ZmqFabric::builder()
        .bind(fabric.endpoint())
        .build()
        .await
        .expect("bind a loopback endpoint");
    let server = common::serve_calculator(&transport).await;
    let endpoint = transport.endpoints()[0].clone();
    let url = format!("zmq+{endpoint}");
    assert!(url.starts_with(&format!("{scheme}://")), "{url}");

    adds(&url, "").await;
    describes(&url, "").await;
    introspects_one_instance(&url, "", scheme).await;

    // ZeroMQ names nothing a prefix could apply to.
    let prefixed = rpc(&url, "staging.", &["ping", "calc.v1"]).await;
    assert_eq!(prefixed.status.code(), Some(2), "{}", stderr(&prefixed));
    assert!(
        stderr(&prefixed).starts_with("error[usage]: ZeroMQ names no queues"),
        "{}",
        stderr(&prefixed)
    );

    // One of two endpoints answers: the call goes there, with a note.
    let dead = format!("{url},zmq+ipc:///nonexistent/rpc-cli-test.sock");
    let sum = rpc(
        &dead,
        "",
        &["call", "calc.v1", "add", r#"{"a": 2, "b": 3}"#],
    )
    .await;
    assert!(sum.status.success(), "{}", failure(&sum));
    assert_eq!(stdout(&sum).trim(), "5");
    assert!(
        stderr(&sum).contains("note: no ZeroMQ server answered at ipc:///nonexistent/"),
        "{}",
        stderr(&sum)
    );

    server.shutdown().await;
    transport.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pings_describes_and_calls_over_zmq_tcp() {
    let fabric = ZmqFabric::tcp();
    serve_and_ask(&fabric, "zmq+tcp").await;
    fabric.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pings_describes_and_calls_over_zmq_ipc() {
    let fabric = ZmqFabric::ipc();
    serve_and_ask(&fabric, "zmq+ipc").await;
    fabric.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_when_no_zmq_server_answers() {
    let url = "zmq+ipc:///nonexistent/rpc-cli-test.sock";
    let down = rpc(url, "", &["ping", "calc.v1"]).await;
    assert_eq!(down.status.code(), Some(3), "{}", stderr(&down));
    assert_eq!(
        stderr(&down).trim(),
        "error[connect]: no ZeroMQ server answered at ipc:///nonexistent/rpc-cli-test.sock"
    );
    let wrong = rpc("zmq+inproc://calc", "", &["ping", "calc.v1"]).await;
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
}
