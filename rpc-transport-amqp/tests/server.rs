//! Server side over a real broker: settlement and dead-lettering, unreadable
//! deliveries, consumer re-establishment, cancel on drop, load balancing.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rpc_core::transport::{ServiceSpec, Transport};
use rpc_core::{Client, RpcError, Server};
use rpc_transport_amqp::AmqpTransport;
use rpc_transport_amqp::lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueDeclareOptions,
};
use rpc_transport_amqp::lapin::types::{AMQPValue, FieldTable};
use rpc_transport_amqp::lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use support::{AddArgs, Calc};

async fn raw_channel() -> (Connection, Channel) {
    let conn = Connection::connect(&support::broker_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

/// Messages waiting in `queue` (passive declare).
async fn depth(channel: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

async fn consumers(channel: &Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .consumer_count()
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
    let Some(builder) = support::builder("panic").await else {
        return;
    };
    let transport = builder.connect().await.unwrap();
    let _server = Server::builder(transport.clone())
        .serve(Calc::new(1))
        .await
        .unwrap();
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
    let sum: i64 = client
        .call("calc", "add", &AddArgs { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    assert_eq!(
        depth(&raw, &transport.request_queue("calc")).await,
        0,
        "acked, not requeued"
    );
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_delivery_gets_a_decode_error_and_goes_to_the_dlq() {
    let Some(builder) = support::builder("unreadable").await else {
        return;
    };
    let transport = builder.connect().await.unwrap();
    let _server = Server::builder(transport.clone())
        .serve(Calc::new(1))
        .await
        .unwrap();
    let (_conn, raw) = raw_channel().await;
    let reply_queue = raw
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replies = raw
        .basic_consume(
            reply_queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    // A uuid correlation id, as many foreign clients use: not ours.
    let props = BasicProperties::default()
        .with_correlation_id("6f1c-uuid".into())
        .with_reply_to(reply_queue.name().clone())
        .with_type("add".into())
        .with_content_type("application/json".into());
    raw.basic_publish(
        "".into(),
        transport.request_queue("calc").into(),
        BasicPublishOptions::default(),
        br#"{"a":1,"b":2}"#,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(2), replies.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
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
    let props = BasicProperties::default()
        .with_correlation_id("17".into())
        .with_reply_to(reply_queue.name().clone())
        .with_type("add".into())
        .with_content_type("application/json".into());
    raw.basic_publish(
        "".into(),
        transport.request_queue("calc").into(),
        BasicPublishOptions::default(),
        br#"{"a":40,"b":2}"#,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(2), replies.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        reply.properties.correlation_id().as_ref().unwrap().as_str(),
        "17"
    );
    assert_eq!(reply.data, b"42");
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_cancelled_by_the_broker_is_re_established() {
    let Some(builder) = support::builder("recancel").await else {
        return;
    };
    let transport = builder.connect().await.unwrap();
    let _server = Server::builder(transport.clone())
        .serve(Calc::new(1))
        .await
        .unwrap();
    let client = Client::new(transport.clone());
    let sum: i64 = client
        .call("calc", "add", &AddArgs { a: 1, b: 1 })
        .await
        .unwrap();
    assert_eq!(sum, 2);
    let (_conn, raw) = raw_channel().await;
    let queue = transport.request_queue("calc");
    raw.queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    // Until the server re-declares, calls fail fast with NoRoute; then they work.
    let ok = eventually(Duration::from_secs(5), async || {
        matches!(
            client
                .call::<_, i64>("calc", "add", &AddArgs { a: 2, b: 2 })
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
