//! Server side over a real broker: settlement and dead-lettering, unreadable
//! deliveries, consumer re-establishment, cancel on drop, load balancing.

#[path = "amqp_support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use rpc_core::transport::{ServiceSpec, Transport};
use rpc_core::{Client, RpcError, Server};
use rpc_transport_amqp::AmqpTransport;
use support::{Calc, consumers, depth, raw_channel};

/// A foreign `add` request under `correlation_id` with `content_type`,
/// replies to `reply_to`.
fn foreign_add(correlation_id: &str, reply_to: &str, content_type: &str) -> BasicProperties {
    BasicProperties::default()
        .with_correlation_id(correlation_id.into())
        .with_reply_to(reply_to.into())
        .with_type("add".into())
        .with_content_type(content_type.into())
}

/// Polls `check` until it holds or `limit` passes (for broker-side state
/// that has no event to wait on).
async fn eventually<F: AsyncFnMut() -> bool>(limit: Duration, mut check: F) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_is_answered_and_its_request_dead_lettered() {
    let Some((transport, _server)) = support::calc_on_broker("panic").await else {
        return;
    };
    let client = Client::new(transport.clone());
    let err = client
        .call::<_, ()>("calc", "panic", &())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Remote { ref message } if message.contains("boom")),
        "{err:?}"
    );
    let (_conn, raw) = raw_channel().await;
    let dlq = transport.dead_letter_queue("calc");
    assert!(
        eventually(Duration::from_secs(2), async || depth(&raw, &dlq).await
            == 1)
        .await
    );
    // And it keeps serving.
    assert_eq!(support::add(&client, 1, 1).await, 2);
    assert_eq!(
        depth(&raw, &transport.request_queue("calc")).await,
        0,
        "acked, not requeued"
    );
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_delivery_gets_a_decode_error_and_goes_to_the_dlq() {
    let Some((transport, _server)) = support::calc_on_broker("unreadable").await else {
        return;
    };
    let queue = transport.request_queue("calc");
    let (_conn, raw) = raw_channel().await;
    let (reply_to, mut replies) = support::reply_queue(&raw).await;
    // A content type no codec reads, under a uuid correlation id (as many
    // foreign clients use), which the refusal echoes.
    let props = foreign_add("6f1c-uuid", &reply_to, "text/plain");
    support::publish_to_queue(&raw, &queue, br#"{"a":1,"b":2}"#, props).await;
    let reply = support::next_reply(&mut replies, Duration::from_secs(2)).await;
    assert_eq!(
        reply.properties.correlation_id().as_ref().unwrap().as_str(),
        "6f1c-uuid"
    );
    let headers = reply.properties.headers().clone().unwrap();
    let status = headers.inner().get("x-rpc-status").unwrap();
    assert_eq!(status, &AMQPValue::LongString("decode".into()));
    let dlq = transport.dead_letter_queue("calc");
    assert!(
        eventually(Duration::from_secs(2), async || depth(&raw, &dlq).await
            == 1)
        .await
    );
    let dead = raw
        .basic_get(dlq.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(dead.delivery.data, br#"{"a":1,"b":2}"#);

    // And a well-formed foreign call (plain properties, JSON) is served.
    let props = foreign_add("17", &reply_to, "application/json");
    support::publish_to_queue(&raw, &queue, br#"{"a":40,"b":2}"#, props).await;
    let reply = support::next_reply(&mut replies, Duration::from_secs(2)).await;
    assert_eq!(
        reply.properties.correlation_id().as_ref().unwrap().as_str(),
        "17"
    );
    assert_eq!(reply.data, b"42");
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_cancelled_by_the_broker_is_re_established() {
    let Some((transport, _server)) = support::calc_on_broker("recancel").await else {
        return;
    };
    let client = Client::new(transport.clone());
    assert_eq!(support::add(&client, 1, 1).await, 2);
    let (_conn, raw) = raw_channel().await;
    let queue = transport.request_queue("calc");
    raw.queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    // Until the server re-declares, calls fail fast with NoRoute; then they work.
    let ok = eventually(Duration::from_secs(5), async || {
        matches!(
            client
                .call::<_, i64>("calc", "add", &support::AddArgs { a: 2, b: 2 })
                .await,
            Ok(4)
        )
    })
    .await;
    assert!(ok, "the server never came back");
    assert_eq!(consumers(&raw, &queue).await, 1);
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_request_stream_cancels_the_consumer() {
    let Some(builder) = support::builder("dropstream").await else {
        return;
    };
    let transport = builder.connect().await.unwrap();
    let requests = transport.serve(&ServiceSpec::new("calc", 8)).await.unwrap();
    let (_conn, raw) = raw_channel().await;
    let queue = transport.request_queue("calc");
    assert_eq!(consumers(&raw, &queue).await, 1);
    drop(requests);
    assert!(
        eventually(Duration::from_secs(2), async || consumers(&raw, &queue)
            .await
            == 0)
        .await
    );
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_share_the_load() {
    let Some(builder) = support::builder("balance").await else {
        return;
    };
    let client_transport = builder.clone().connect().await.unwrap();
    let mut servers = Vec::new();
    let mut server_transports = Vec::new();
    for id in 0..3 {
        let transport: AmqpTransport = builder.clone().connect().await.unwrap();
        servers.push(
            Server::builder(transport.clone())
                .concurrency(32)
                .serve(Calc::new(id))
                .await
                .unwrap(),
        );
        server_transports.push(transport);
    }
    let client = Client::new(client_transport.clone());
    let counts = futures_util::stream::iter(0..3000)
        .map(|_| {
            let client = client.clone();
            async move { client.call::<_, u32>("calc", "whoami", &()).await.unwrap() }
        })
        .buffer_unordered(64)
        .fold(HashMap::<u32, usize>::new(), async |mut counts, id| {
            *counts.entry(id).or_default() += 1;
            counts
        })
        .await;
    for id in 0..3 {
        let n = counts.get(&id).copied().unwrap_or(0);
        assert!(n > 600, "server {id} took {n} of 3000: {counts:?}");
    }
    drop(servers);
    for transport in server_transports {
        transport.cleanup().await.unwrap();
    }
    client_transport.cleanup().await.unwrap();
}
