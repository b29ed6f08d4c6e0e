//! Closing a Kafka transport destroys its rdkafka clients before it
//! returns, and `cleanup` deletes its topics only after its own consumers
//! of them are gone. A process that exited while librdkafka was still
//! tearing a client down on another thread crashed (SIGSEGV), as did a
//! client whose topic was deleted under it: the `rpc` CLI did, about one
//! run in ten on a loaded machine.

use std::time::Duration;

use rpc_tests::conformance::serve_calc;
use rpc_tests::kafka::kafka_builder;
use rpc_tests::services::CalcClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_returns_once_every_rdkafka_client_is_destroyed() {
    let Some(builder) = kafka_builder("kafka-close").await else {
        return;
    };
    let server_transport = builder.clone().connect().await.expect("connect");
    let client_transport = builder.connect().await.expect("connect");
    let calc = serve_calc(server_transport.clone(), 1, 4).await;
    let client = CalcClient::new(client_transport.clone()).with_timeout(Duration::from_secs(10));
    // The first call waits for the server's group to be joined.
    assert_eq!(client.add(2, 3).await.unwrap(), 5);

    // A producer and an admin client each; the server's request consumer;
    // the client's reply consumer.
    assert!(server_transport.live_clients() >= 3, "{server_transport:?}");
    assert!(client_transport.live_clients() >= 3, "{client_transport:?}");

    drop(client);
    client_transport.close().await;
    assert_eq!(client_transport.live_clients(), 0);
    // Its reply topic, deleted now that nothing reads it.
    assert_eq!(client_transport.cleanup().await.expect("cleanup"), 1);

    calc.server.shutdown().await;
    let topics = server_transport.created_topics();
    assert!(topics.len() >= 2, "{topics:?}");
    let deleted = server_transport.cleanup().await.expect("cleanup");
    assert_eq!(deleted, topics.len(), "{topics:?}");
    assert_eq!(server_transport.live_clients(), 0);
}
