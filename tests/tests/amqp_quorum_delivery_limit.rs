//! Quorum queues stop a request that keeps coming back: after the delivery
//! limit it goes to the dead-letter queue. Runs on the shared broker (a
//! quorum queue works on one node); the cluster tests show the rest.

use std::time::Duration;

use futures_util::StreamExt;
use rpc_core::{Client, ServiceSpec, Settlement, Transport};
use rpc_tests::broker::amqp_builder;
use rpc_tests::rabbitmqctl::list_queues;
use rpc_transport_amqp::QueueKind;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_the_delivery_limit_is_dead_lettered() {
    let Some(builder) = amqp_builder("delivery_limit").await else {
        return;
    };
    let transport = builder
        .queue_kind(QueueKind::Quorum)
        .delivery_limit(2)
        .connect()
        .await
        .expect("connect");
    let mut requests = transport
        .serve(&ServiceSpec::new("limited", 1))
        .await
        .expect("serve");
    let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(20));
    let call = tokio::spawn(async move { client.call::<_, u64>("limited", "m", &1u64).await });

    // Each delivery is handed back, as a server that crashed would leave it.
    let mut deliveries = 0;
    while let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_secs(3), requests.next()).await
    {
        deliveries += 1;
        delivery.settle(Settlement::Requeue).await.expect("requeue");
        assert!(deliveries <= 10, "the request keeps coming back");
    }
    assert_eq!(deliveries, 3, "delivered once, then twice more (the limit)");

    // Dead-lettering from a quorum queue happens after the last delivery is
    // refused, on the broker's own time: read the depth until it shows.
    let dead_letters = transport.dead_letter_queue("limited");
    let mut depth = None;
    for _ in 0..20 {
        let name = dead_letters.clone();
        depth = tokio::task::spawn_blocking(move || {
            list_queues()
                .into_iter()
                .find(|q| q.name == name)
                .map(|q| q.ready)
        })
        .await
        .unwrap();
        if depth == Some(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(depth, Some(1), "the request is in the dead-letter queue");
    call.abort();
    transport.cleanup().await.expect("delete the test's queues");
}
