//! `rpc` end to end over NATS (`nats://`, `nats+jetstream://`): the
//! example calculator served on the test server (skipped with a notice
//! when none answers, failed when `RPC_REQUIRE_BROKER=1`).

mod common;

use common::{adds, describes, introspects_one_instance, rpc, stderr};
use rpc_core::ServerHandle;
use rpc_tests::broker::{nats_builder, nats_url, unique_prefix};
use rpc_transport_nats::{Mode, NatsTransport};

/// Serves the example calculator on the test NATS server in `mode`, under
/// a subject prefix of its own (returned); `None` after a notice when no
/// server answers.
async fn serve(test: &str, mode: Mode) -> Option<(NatsTransport, ServerHandle, String)> {
    let builder = nats_builder(test, mode).await?;
    let prefix = unique_prefix(test);
    let transport = builder
        .subject_prefix(prefix.clone())
        .connect()
        .await
        .expect("connect");
    let server = common::serve_calculator(&transport).await;
    Some((transport, server, prefix))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_pings_describes_and_calls_over_nats() {
    let Some((transport, server, prefix)) = serve("cli-nats", Mode::Core).await else {
        return;
    };
    let url = nats_url();
    assert!(url.starts_with("nats://"), "{url}");

    adds(&url, &prefix).await;
    describes(&url, &prefix).await;
    introspects_one_instance(&url, &prefix, "nats").await;

    // The prefix is the servers' subject prefix: without it, nobody serves.
    let elsewhere = rpc(&url, "", &["call", "calc.v1", "add", r#"{"a": 2, "b": 3}"#]).await;
    assert_eq!(elsewhere.status.code(), Some(5), "{}", stderr(&elsewhere));
    assert!(
        stderr(&elsewhere).starts_with("error[no_route]"),
        "{}",
        stderr(&elsewhere)
    );

    // Nothing listens on port 1: a connect error, exit 3.
    let down = rpc("nats://127.0.0.1:1", &prefix, &["ping", "calc.v1"]).await;
    assert_eq!(down.status.code(), Some(3), "{}", stderr(&down));
    assert!(
        stderr(&down).starts_with("error[connect]"),
        "{}",
        stderr(&down)
    );

    server.shutdown().await;
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_durable_servers_over_nats_jetstream() {
    let Some((transport, server, prefix)) = serve("cli-nats-js", Mode::Durable).await else {
        return;
    };
    let url = nats_url().replacen("nats://", "nats+jetstream://", 1);

    adds(&url, &prefix).await;
    describes(&url, &prefix).await;
    introspects_one_instance(&url, &prefix, "nats+jetstream").await;

    server.shutdown().await;
    let _ = transport.cleanup().await;
    transport.close().await;
}
