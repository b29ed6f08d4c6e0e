//! Every fault of `Faults`, at the transport level and through the full stack.

mod support;

use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use rpc_core::transport::{ServiceSpec, Settlement};
use rpc_core::{Address, Client, RpcError, Transport, TransportError};
use rpc_transport_mem::{Direction, MemRequests, MemTransport};
use support::{Add, Math, Recorder, math_stack, request, serve_math};
use tokio::time::Instant;

async fn served() -> (MemTransport, MemRequests) {
    let transport = MemTransport::new();
    let requests = transport.serve(&ServiceSpec::new("svc", 1)).await.unwrap();
    (transport, requests)
}

async fn inbox(
    transport: &MemTransport,
) -> (
    Address,
    rpc_transport_mem::MemInbox,
    std::sync::Arc<Recorder>,
) {
    let recorder = Recorder::new();
    let inbox = transport.open_inbox(recorder.sink()).await.unwrap();
    let address = inbox.address().clone();
    (address, inbox, recorder)
}

fn reply_to(address: &Address, id: u64) -> (Address, rpc_core::Envelope) {
    (address.clone(), support::reply(id))
}

async fn next_id(requests: &mut MemRequests) -> u64 {
    let delivery = requests.next().await.unwrap();
    let id = delivery.envelope().header.correlation_id;
    delivery.settle(Settlement::Ack).await.unwrap();
    id
}

#[tokio::test]
async fn drop_next_requests_loses_them_after_a_successful_send() {
    let (transport, mut requests) = served().await;
    transport.faults().drop_next(Direction::Requests, 2);
    for id in 1..=3 {
        transport.publish(request("svc", id)).unwrap();
    }
    assert_eq!(next_id(&mut requests).await, 3);
    assert!(requests.next().now_or_never().is_none());
    assert_eq!(transport.stats().dropped_requests, 2);
}

#[tokio::test]
async fn drop_next_still_reports_no_route_first() {
    let transport = MemTransport::new();
    transport.faults().drop_next(Direction::Requests, 1);
    assert!(matches!(
        transport.publish(request("svc", 1)),
        Err(TransportError::NoRoute { .. })
    ));
    assert_eq!(
        transport.stats().dropped_requests,
        0,
        "the drop is still pending"
    );
}

#[tokio::test]
async fn drop_next_replies_loses_them_and_counts() {
    let transport = MemTransport::new();
    let (address, _inbox, recorder) = inbox(&transport).await;
    transport.faults().drop_next(Direction::Replies, 1);
    for id in 1..=2 {
        let (to, reply) = reply_to(&address, id);
        transport.publish_reply(&to, reply).unwrap();
    }
    assert_eq!(recorder.ids(), vec![2]);
    let stats = transport.stats();
    assert_eq!((stats.dropped_replies, stats.lost_replies()), (1, 1));
}

#[tokio::test]
async fn a_dropped_reply_times_the_call_out() {
    let (transport, _server, client) = math_stack().await;
    let client = client.with_timeout(Duration::from_millis(50));
    transport.faults().drop_next(Direction::Replies, 1);
    let error = client
        .call::<_, i64>("math", "add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::Timeout), "{error:?}");
    let sum: i64 = client
        .call("math", "add", &Add { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2, "only one reply was dropped");
}

#[tokio::test]
async fn duplicate_next_requests_delivers_twice() {
    let (transport, mut requests) = served().await;
    transport.faults().duplicate_next(Direction::Requests, 1);
    transport.publish(request("svc", 1)).unwrap();
    transport.publish(request("svc", 2)).unwrap();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(next_id(&mut requests).await);
    }
    assert_eq!(ids, vec![1, 1, 2]);
}

#[tokio::test]
async fn a_duplicated_reply_is_dropped_by_the_client() {
    let (transport, _server, client) = math_stack().await;
    transport.faults().duplicate_next(Direction::Replies, 1);
    let sum: i64 = client
        .call("math", "add", &Add { a: 2, b: 2 })
        .await
        .unwrap();
    assert_eq!(sum, 4);
    assert_eq!(client.dropped_replies(), 1);
}

#[tokio::test]
async fn reorder_next_swaps_a_pair_of_replies() {
    let transport = MemTransport::new();
    let (address, _inbox, recorder) = inbox(&transport).await;
    transport.faults().reorder_next(Direction::Replies, 1);
    for id in 1..=3 {
        let (to, reply) = reply_to(&address, id);
        transport.publish_reply(&to, reply).unwrap();
        if id == 1 {
            assert!(recorder.ids().is_empty(), "the first reply is held");
        }
    }
    assert_eq!(recorder.ids(), vec![2, 1, 3]);
}

#[tokio::test]
async fn reorder_next_swaps_requests_and_release_held_lets_go() {
    let (transport, mut requests) = served().await;
    let faults = transport.faults();
    faults.reorder_next(Direction::Requests, 2);
    for id in 1..=3 {
        transport.publish(request("svc", id)).unwrap();
    }
    // 1 swapped with 2; 3 is held with nothing after it.
    assert_eq!(next_id(&mut requests).await, 2);
    assert_eq!(next_id(&mut requests).await, 1);
    assert!(requests.next().now_or_never().is_none());
    faults.release_held();
    assert_eq!(next_id(&mut requests).await, 3);
}

#[tokio::test]
async fn reordered_replies_reach_the_right_calls() {
    let (transport, _server, client) = math_stack().await;
    transport.faults().reorder_next(Direction::Replies, 1);
    let (a, b) = tokio::join!(
        client.call::<_, i64>("math", "add", &Add { a: 1, b: 0 }),
        client.call::<_, i64>("math", "add", &Add { a: 2, b: 0 }),
    );
    assert_eq!((a.unwrap(), b.unwrap()), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn delay_replies_holds_them_back_without_blocking_the_sender() {
    let transport = MemTransport::new();
    let (address, _inbox, recorder) = inbox(&transport).await;
    transport
        .faults()
        .delay(Direction::Replies, Duration::from_millis(100));
    let started = Instant::now();
    let (to, reply) = reply_to(&address, 1);
    transport.publish_reply(&to, reply).unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO, "the send did not wait");
    assert!(recorder.ids().is_empty());
    recorder.wait_for(1).await;
    assert_eq!(started.elapsed(), Duration::from_millis(100));
    assert_eq!(recorder.ids(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn delay_requests_holds_them_back_and_zero_turns_it_off() {
    let (transport, mut requests) = served().await;
    let faults = transport.faults();
    faults.delay(Direction::Requests, Duration::from_millis(30));
    let started = Instant::now();
    transport.publish(request("svc", 1)).unwrap();
    assert_eq!(transport.queue_depth("svc"), 0, "not queued yet");
    assert_eq!(next_id(&mut requests).await, 1);
    assert_eq!(started.elapsed(), Duration::from_millis(30));

    faults.delay(Direction::Requests, Duration::ZERO);
    transport.publish(request("svc", 2)).unwrap();
    assert_eq!(transport.queue_depth("svc"), 1, "queued at once");
}

#[tokio::test(start_paused = true)]
async fn a_delayed_reply_does_not_hold_up_other_calls() {
    let (transport, server, client) = math_stack().await;
    client.connect().await.unwrap();
    let faults = transport.faults();
    faults.delay(Direction::Replies, Duration::from_secs(1));
    let started = Instant::now();
    let slow = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call::<_, i64>("math", "add", &Add { a: 1, b: 1 })
                .await
        }
    });
    // The handler replies in the same poll that counts it as handled, so
    // once it is counted the slow reply is on its timer: lift the delay.
    while server.stats().handled() == 0 {
        tokio::task::yield_now().await;
    }
    faults.delay(Direction::Replies, Duration::ZERO);
    let fast: i64 = client
        .call("math", "add", &Add { a: 2, b: 2 })
        .await
        .unwrap();
    assert_eq!(fast, 4);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the fast call was not held up"
    );
    assert_eq!(slow.await.unwrap().unwrap(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
}

#[tokio::test]
async fn no_consumer_makes_a_served_service_unroutable() {
    let (transport, _requests) = served().await;
    let faults = transport.faults();
    faults.no_consumer("svc");
    assert!(matches!(
        transport.publish(request("svc", 1)),
        Err(TransportError::NoRoute { .. })
    ));
    assert_eq!(transport.consumers("svc"), 1, "the consumer is still there");
    faults.restore_consumer("svc");
    transport.publish(request("svc", 2)).unwrap();
}

#[tokio::test]
async fn no_consumer_through_the_client_is_a_fast_no_route() {
    let transport = MemTransport::new();
    let _server = serve_math(&transport, Math::new(1)).await;
    let client = Client::new(transport.clone()); // 30 s deadline
    transport.faults().no_consumer("math");
    let error = client
        .call::<_, i64>("math", "add", &Add { a: 1, b: 1 })
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::NoRoute { .. }), "{error:?}");
}

#[tokio::test]
async fn disconnect_tells_inboxes_fails_sends_and_pauses_streams() {
    let (transport, mut requests) = served().await;
    let (address, _inbox, recorder) = inbox(&transport).await;
    transport.publish(request("svc", 1)).unwrap();
    let faults = transport.faults();

    faults.disconnect();
    faults.disconnect(); // idempotent
    assert!(!faults.is_connected());
    assert_eq!(recorder.connection_losses(), 1);
    assert!(matches!(
        transport.publish(request("svc", 2)),
        Err(TransportError::NotSent)
    ));
    let (to, reply) = reply_to(&address, 9);
    assert!(matches!(
        transport.publish_reply(&to, reply),
        Err(TransportError::NotSent)
    ));
    assert!(matches!(
        transport.serve(&ServiceSpec::new("svc", 1)).await,
        Err(TransportError::ConnectionLost)
    ));
    assert!(matches!(
        transport.open_inbox(recorder.sink()).await,
        Err(TransportError::ConnectionLost)
    ));

    // The stream pauses, keeping the queued request...
    let paused = tokio::spawn(async move {
        let id = next_id(&mut requests).await;
        (id, requests)
    });
    tokio::task::yield_now().await;
    assert!(!paused.is_finished());
    assert_eq!(transport.queue_depth("svc"), 1);

    // ...and resumes on reconnect; the inbox is still open.
    faults.reconnect();
    let (id, _requests) = paused.await.unwrap();
    assert_eq!(id, 1);
    let (to, reply) = reply_to(&address, 10);
    transport.publish_reply(&to, reply).unwrap();
    assert_eq!(recorder.ids(), vec![10]);
}

#[tokio::test]
async fn clear_removes_every_message_fault() {
    let (transport, mut requests) = served().await;
    let faults = transport.faults();
    faults.drop_next(Direction::Requests, 5);
    faults.duplicate_next(Direction::Requests, 5);
    faults.reorder_next(Direction::Requests, 1);
    faults.delay(Direction::Requests, Duration::from_secs(60));
    faults.no_consumer("svc");
    faults.clear();
    transport.publish(request("svc", 1)).unwrap();
    transport.publish(request("svc", 2)).unwrap();
    assert_eq!(next_id(&mut requests).await, 1);
    assert_eq!(next_id(&mut requests).await, 2);
    assert!(requests.next().now_or_never().is_none());
}

#[tokio::test]
async fn clear_releases_a_held_message() {
    let (transport, mut requests) = served().await;
    let faults = transport.faults();
    faults.reorder_next(Direction::Requests, 1);
    transport.publish(request("svc", 1)).unwrap();
    assert_eq!(transport.queue_depth("svc"), 0);
    faults.clear();
    assert_eq!(next_id(&mut requests).await, 1);
}
