//! Clients and servers built with metrics off report nothing to the
//! `metrics` facade, even with a recorder installed, while a server's own
//! counts (what `$stats` reports) go on.
//!
//! One test in this binary: the recorder is global to the process.

use metrics_util::debugging::{DebuggingRecorder, Snapshotter};
use rpc_core::metrics::names;
use rpc_core::{Client, ClientConfig, Server};
use rpc_tests::services::{CalcClient, CalcImpl, CalcProbe, CalcServer};
use rpc_transport_mem::MemTransport;

/// The names of the `rpc_` metrics the recorder holds.
fn recorded(snapshotter: &Snapshotter) -> Vec<String> {
    snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, ..)| key.key().name().to_owned())
        .filter(|name| name.starts_with("rpc_"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_off_reports_nothing_and_keeps_the_servers_own_counts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");

    let transport = MemTransport::new();
    let (probe, _lines) = CalcProbe::new();
    let calc = CalcImpl::new(1, probe, &transport);
    let server = Server::builder(transport.clone())
        .metrics(false)
        .serve(CalcServer::new(calc))
        .await
        .unwrap();
    let quiet = CalcClient::from_client(Client::with_config(
        transport.clone(),
        ClientConfig::default().metrics(false),
    ));
    for i in 0..4 {
        assert_eq!(quiet.add(i, 1).await.unwrap(), i + 1);
    }
    assert_eq!(server.stats().handled(), 4, "the server's own counts go on");
    assert_eq!(recorded(&snapshotter), Vec::<String>::new());

    // The control: the same recorder sees a client with metrics on.
    let loud = CalcClient::new(transport);
    assert_eq!(loud.add(1, 1).await.unwrap(), 2);
    let names = recorded(&snapshotter);
    assert!(
        names.iter().any(|n| n == names::CLIENT_CALLS_STARTED),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n == names::SERVER_REQUESTS_STARTED),
        "the server stays quiet: {names:?}"
    );
    server.shutdown().await;
}
