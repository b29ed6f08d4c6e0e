//! Quorum queues on the three-node test cluster: what a service declares,
//! and poison requests dead-lettering across nodes.
//!
//! Runs under `.ci/rabbit-cluster run -- cargo test -p rpc-tests --test
//! cluster_quorum`; skips with a notice without a cluster.

use std::time::Duration;

use rpc_core::RpcError;
use rpc_tests::cluster::Cluster;
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;

/// A server on node b, a caller on node c: the request queue and its
/// dead-letter queue are quorum queues with a member on every node, a
/// panicking request ends `Remote` and lands in the dead-letter queue once,
/// and the server goes on answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_queues_are_quorum_and_poison_dead_letters() {
    let Some(cluster) = Cluster::find("service_queues_are_quorum").await else {
        return;
    };
    let prefix = Cluster::prefix("quorum");
    let server_transport = cluster
        .builder('b', &prefix, "server")
        .connect()
        .await
        .expect("b");
    let client_transport = cluster
        .builder('c', &prefix, "client")
        .connect()
        .await
        .expect("c");
    let server = serve_calc(server_transport.clone(), 1, 4).await;
    let calc = CalcClient::new(client_transport.clone()).with_timeout(Duration::from_secs(10));

    let queue = server_transport.request_queue("conformance.calc");
    let dead_letters = server_transport.dead_letter_queue("conformance.calc");
    for name in [&queue, &dead_letters] {
        let (kind, _) = cluster.queue_info('a', name).await.expect("queue exists");
        assert_eq!(kind, "quorum", "{name}");
    }

    match calc.boom("poison".into()).await {
        Err(RpcError::Remote { message }) => assert!(message.contains("poison"), "{message}"),
        other => panic!("expected Remote, got {other:?}"),
    }
    assert_eq!(calc.add(2, 3).await.expect("answers after the poison"), 5);
    // Dead-lettering is asynchronous; read until the message is there.
    let mut depth = 0;
    for _ in 0..40 {
        depth = cluster.queue_info('a', &dead_letters).await.expect("dlq").1;
        if depth > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(depth, 1, "the poison request is dead-lettered once");
    // boom and add: the poison ran once, not in a redelivery loop.
    assert_eq!(
        server.probe.calls.load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    server.server.shutdown().await;
    client_transport.cleanup().await.ok();
    server_transport
        .cleanup()
        .await
        .expect("delete the test's queues");
}
