//! Routing at the transport level: service queues, competing consumers,
//! no-route detection, reply inboxes, limits.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use rpc_core::transport::{ServiceSpec, Settlement};
use rpc_core::{Address, Transport, TransportError};
use rpc_transport_mem::MemTransport;
use support::{Recorder, oneway, reply, request};

fn spec() -> ServiceSpec {
    ServiceSpec::new("svc", 1)
}

#[tokio::test]
async fn a_request_to_a_service_nobody_serves_is_no_route_at_once() {
    let transport = MemTransport::new();
    let started = Instant::now();
    let error = transport.publish(request("svc", 1)).unwrap_err();
    assert!(
        matches!(error, TransportError::NoRoute { ref address } if address == "svc"),
        "{error:?}"
    );
    let error = transport.publish(oneway("svc", 2)).unwrap_err();
    assert!(matches!(error, TransportError::NoRoute { .. }), "{error:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn the_last_consumer_leaving_makes_the_service_unroutable() {
    let transport = MemTransport::new();
    let requests = transport.serve(&spec()).await.unwrap();
    assert_eq!(transport.consumers("svc"), 1);
    transport.publish(request("svc", 1)).unwrap();
    drop(requests);
    assert_eq!(transport.consumers("svc"), 0);
    let error = transport.publish(request("svc", 2)).unwrap_err();
    assert!(matches!(error, TransportError::NoRoute { .. }), "{error:?}");
    assert_eq!(
        transport.queue_depth("svc"),
        1,
        "what was queued stays queued"
    );
}

#[tokio::test]
async fn competing_consumers_each_get_every_message_once() {
    let transport = MemTransport::new();
    let mut a = transport.serve(&spec()).await.unwrap();
    let mut b = transport.serve(&spec()).await.unwrap();
    for id in 1..=10 {
        transport.publish(request("svc", id)).unwrap();
    }
    let mut seen = Vec::new();
    // Alternate polls: whoever asks gets the next message in order.
    for turn in 0..10 {
        let stream = if turn % 2 == 0 { &mut a } else { &mut b };
        let delivery = stream.next().await.unwrap();
        seen.push(delivery.envelope().header.correlation_id);
        delivery.settle(Settlement::Ack).await.unwrap();
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    assert!(a.next().now_or_never().is_none(), "the queue is empty");
    assert_eq!(transport.queue_depth("svc"), 0);
}

#[tokio::test]
async fn whoever_is_free_takes_the_next_message() {
    let transport = MemTransport::new();
    let mut busy = transport.serve(&spec()).await.unwrap();
    let mut free = transport.serve(&spec()).await.unwrap();
    for id in 1..=3 {
        transport.publish(request("svc", id)).unwrap();
    }
    // `busy` takes one and never asks again; `free` drains the rest: no
    // message is set aside for a consumer that is not polling.
    let held = busy.next().await.unwrap();
    let rest: Vec<u64> = [free.next().await.unwrap(), free.next().await.unwrap()]
        .iter()
        .map(|d| d.envelope().header.correlation_id)
        .collect();
    assert_eq!(
        (held.envelope().header.correlation_id, rest),
        (1, vec![2, 3])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_on_other_threads_share_a_burst_exactly_once() {
    let transport = MemTransport::new();
    let total = 2_000u64;
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let transport = transport.clone();
            async move { transport.serve(&spec()).await.unwrap() }
        })
        .collect();
    let mut streams = Vec::new();
    for consumer in consumers {
        streams.push(consumer.await);
    }
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            let done = done_tx.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                while let Some(delivery) = stream.next().await {
                    ids.push(delivery.envelope().header.correlation_id);
                    delivery.settle(Settlement::Ack).await.unwrap();
                    done.send(()).unwrap();
                }
                ids
            })
        })
        .collect();
    for id in 0..total {
        transport.publish(request("svc", id)).unwrap();
    }
    for _ in 0..total {
        done_rx.recv().await.unwrap();
    }
    transport.close(); // ends the streams
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    assert_eq!(all.len() as u64, total);
    assert_eq!(all.into_iter().collect::<HashSet<_>>().len() as u64, total);
}

#[tokio::test]
async fn dropping_a_stream_leaves_its_messages_for_others() {
    let transport = MemTransport::new();
    let mut waiting = transport.serve(&spec()).await.unwrap();
    let leaving = transport.serve(&spec()).await.unwrap();
    // `waiting` is parked on the empty queue...
    assert!(waiting.next().now_or_never().is_none());
    transport.publish(request("svc", 1)).unwrap();
    transport.publish(request("svc", 2)).unwrap();
    drop(leaving);
    let ids = [waiting.next().await.unwrap(), waiting.next().await.unwrap()]
        .map(|d| d.envelope().header.correlation_id);
    assert_eq!(ids, [1, 2]);
}

#[tokio::test]
async fn a_reply_reaches_its_sink_within_the_send() {
    let transport = MemTransport::new();
    let recorder = Recorder::new();
    let inbox = transport.open_inbox(recorder.sink()).await.unwrap();
    let address = inbox.address().clone();
    assert!(address.as_str().starts_with("mem.inbox."), "{address}");
    assert_eq!(inbox.address(), &address);
    assert_eq!(transport.open_inboxes(), 1);

    // No task runs between the send and the check: delivery is synchronous.
    let sent = Some(transport.publish_reply(&address, reply(7)));
    assert!(matches!(sent, Some(Ok(()))));
    assert_eq!(recorder.ids(), vec![7]);
}

#[tokio::test]
async fn inboxes_have_distinct_addresses_and_close_on_drop() {
    let transport = MemTransport::new();
    let (first, second) = (Recorder::new(), Recorder::new());
    let a_inbox = transport.open_inbox(first.sink()).await.unwrap();
    let b_inbox = transport.open_inbox(second.sink()).await.unwrap();
    let (a, b) = (a_inbox.address().clone(), b_inbox.address().clone());
    assert_ne!(a, b);
    transport.publish_reply(&b, reply(2)).unwrap();
    assert_eq!((first.ids(), second.ids()), (vec![], vec![2]));

    drop(a_inbox);
    assert_eq!(transport.open_inboxes(), 1);
    transport.publish_reply(&a, reply(1)).unwrap();
    assert!(first.ids().is_empty());
    assert_eq!(transport.stats().undeliverable_replies, 1);
}

#[tokio::test]
async fn replies_to_unknown_inboxes_are_dropped_and_counted() {
    let transport = MemTransport::new();
    transport
        .publish_reply(&Address::from_static("mem.inbox.999"), reply(1))
        .unwrap();
    assert_eq!(transport.stats().undeliverable_replies, 1);
    assert_eq!(transport.stats().lost_replies(), 1);
}

#[tokio::test]
async fn brokers_are_isolated_and_clones_share_one() {
    let first = MemTransport::new();
    let second = MemTransport::new();
    let _requests = first.serve(&spec()).await.unwrap();
    assert!(matches!(
        second.publish(request("svc", 1)),
        Err(TransportError::NoRoute { .. })
    ));
    first.clone().publish(request("svc", 1)).unwrap();
    assert_eq!(first.queue_depth("svc"), 1);
    assert_eq!(second.queue_depth("svc"), 0);
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let transport = MemTransport::builder().max_message_size(4).build();
    let _requests = transport.serve(&spec()).await.unwrap();
    let mut big = request("svc", 1);
    big.body = vec![0; 5];
    let error = transport.publish(big).unwrap_err();
    assert!(
        matches!(error, TransportError::TooLarge { size: 5, limit: 4 }),
        "{error:?}"
    );
    let mut fits = request("svc", 2);
    fits.body = vec![0; 4];
    transport.publish(fits).unwrap();
}

#[tokio::test]
async fn close_ends_streams_and_tells_inboxes() {
    let transport = MemTransport::new();
    let recorder = Recorder::new();
    let _inbox = transport.open_inbox(recorder.sink()).await.unwrap();
    let mut requests = transport.serve(&spec()).await.unwrap();
    let waiting = tokio::spawn(async move { requests.next().await.is_none() });
    tokio::task::yield_now().await; // let it park on the empty queue
    transport.close();
    assert!(waiting.await.unwrap(), "the parked stream ended");
    assert_eq!(recorder.closes(), 1);
    assert!(matches!(
        transport.publish(request("svc", 1)),
        Err(TransportError::Closed)
    ));
    assert!(matches!(
        transport.serve(&spec()).await,
        Err(TransportError::Closed)
    ));
    assert!(matches!(
        transport.open_inbox(recorder.sink()).await,
        Err(TransportError::Closed)
    ));
}
