//! Delivery settlement: ack, requeue, dead-letter, and handles dropped unsettled.

mod support;

use futures_util::{FutureExt, StreamExt};
use rpc_core::transport::{ServiceSpec, Settlement};
use rpc_core::{Transport, TransportError};
use rpc_transport_mem::MemTransport;
use support::request;

async fn with_messages(ids: &[u64]) -> (MemTransport, rpc_transport_mem::MemRequests) {
    let transport = MemTransport::new();
    let requests = transport.serve(&ServiceSpec::new("svc", 1)).await.unwrap();
    for &id in ids {
        transport.publish(request("svc", id)).unwrap();
    }
    (transport, requests)
}

/// Deliveries of `svc` handed out and not settled, and requests waiting.
fn unacked_and_queued(transport: &MemTransport) -> (usize, usize) {
    (transport.unacked("svc"), transport.queue_depth("svc"))
}

#[tokio::test]
async fn deliveries_are_tracked_until_settled() {
    let (transport, mut requests) = with_messages(&[1, 2]).await;
    let delivery = requests.next().await.unwrap();
    assert!(delivery.is_tracked());
    assert_eq!(unacked_and_queued(&transport), (1, 1));
    delivery.settle(Settlement::Ack).await.unwrap();
    assert_eq!(unacked_and_queued(&transport), (0, 1));
}

#[tokio::test]
async fn an_acked_request_is_gone() {
    let (transport, mut requests) = with_messages(&[1]).await;
    let delivery = requests.next().await.unwrap();
    delivery.settle(Settlement::Ack).await.unwrap();
    assert!(requests.next().now_or_never().is_none());
    assert!(transport.dead_letters("svc").is_empty());
}

#[tokio::test]
async fn an_ack_before_the_run_is_gone_like_an_ack() {
    let (transport, mut requests) = with_messages(&[1]).await;
    let delivery = requests.next().await.unwrap();
    delivery.settle(Settlement::AckBeforeRun).await.unwrap();
    assert_eq!(unacked_and_queued(&transport), (0, 0));
    assert!(requests.next().now_or_never().is_none());
    assert!(transport.dead_letters("svc").is_empty());
}

#[tokio::test]
async fn a_requeued_request_comes_back_first() {
    let (transport, mut requests) = with_messages(&[1, 2]).await;
    let first = requests.next().await.unwrap();
    first.settle(Settlement::Requeue).await.unwrap();
    assert_eq!(transport.queue_depth("svc"), 2);
    let again = requests.next().await.unwrap();
    assert_eq!(
        again.envelope(),
        &request("svc", 1),
        "redelivered unchanged, ahead of 2"
    );
}

#[tokio::test]
async fn a_requeue_wakes_a_waiting_consumer() {
    let (transport, mut taker) = with_messages(&[1]).await;
    let mut waiter = transport.serve(&ServiceSpec::new("svc", 1)).await.unwrap();
    let delivery = taker.next().await.unwrap();
    let waiting = tokio::spawn(async move { waiter.next().await.map(|d| d.envelope().clone()) });
    tokio::task::yield_now().await; // let it park on the empty queue
    delivery.settle(Settlement::Requeue).await.unwrap();
    assert_eq!(waiting.await.unwrap(), Some(request("svc", 1)));
}

#[tokio::test]
async fn a_dead_lettered_request_is_kept_for_inspection() {
    let (transport, mut requests) = with_messages(&[1, 2]).await;
    let delivery = requests.next().await.unwrap();
    delivery.settle(Settlement::DeadLetter).await.unwrap();
    assert_eq!(transport.dead_letters("svc"), vec![request("svc", 1)]);
    assert_eq!(transport.queue_depth("svc"), 1, "not requeued");
    assert_eq!(transport.take_dead_letters("svc").len(), 1);
    assert!(transport.dead_letters("svc").is_empty());
    assert!(transport.dead_letters("unknown").is_empty());
}

#[tokio::test]
async fn a_handle_dropped_unsettled_requeues() {
    let (transport, mut requests) = with_messages(&[1, 2]).await;
    let delivery = requests.next().await.unwrap();
    drop(delivery);
    assert_eq!(unacked_and_queued(&transport), (0, 2));
    let again = requests.next().await.unwrap();
    assert_eq!(again.envelope().header.correlation_id, 1);
}

#[tokio::test]
async fn a_delivery_settled_early_stays_readable_and_is_not_settled_again() {
    let (transport, mut requests) = with_messages(&[1]).await;
    let mut delivery = requests.next().await.unwrap();
    delivery
        .settle_keeping_envelope(Settlement::AckBeforeRun)
        .await
        .unwrap();
    assert!(!delivery.is_tracked());
    assert_eq!(delivery.envelope(), &request("svc", 1));
    drop(delivery);
    assert_eq!(
        unacked_and_queued(&transport),
        (0, 0),
        "dropping it after the ack requeues nothing"
    );
}

#[tokio::test]
async fn taking_the_envelope_out_of_a_tracked_delivery_hands_it_back() {
    let (transport, mut requests) = with_messages(&[1]).await;
    let envelope = requests.next().await.unwrap().into_envelope();
    assert_eq!(envelope, request("svc", 1));
    assert_eq!(
        unacked_and_queued(&transport),
        (0, 1),
        "requeued, as a delivery dropped unsettled is"
    );
}

#[tokio::test]
async fn deliveries_outlive_their_stream() {
    let (transport, mut requests) = with_messages(&[1]).await;
    let delivery = requests.next().await.unwrap();
    drop(requests);
    delivery.settle(Settlement::DeadLetter).await.unwrap();
    assert_eq!(transport.dead_letters("svc").len(), 1);
}

#[tokio::test]
async fn settling_while_disconnected_fails_and_requeues() {
    let (transport, mut requests) = with_messages(&[1]).await;
    let delivery = requests.next().await.unwrap();
    transport.faults().disconnect();
    let error = delivery.settle(Settlement::Ack).await.unwrap_err();
    assert!(matches!(error, TransportError::ConnectionLost), "{error:?}");
    assert_eq!(transport.queue_depth("svc"), 1);
    transport.faults().reconnect();
    assert_eq!(
        requests
            .next()
            .await
            .unwrap()
            .envelope()
            .header
            .correlation_id,
        1
    );
}
