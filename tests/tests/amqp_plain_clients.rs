//! Plain AMQP peers, written from docs/wire.md alone (raw lapin standing in
//! for pika): tutorial-style callers with their own correlation ids, a
//! queue declared by someone else with other arguments, servers whose
//! replies our client cannot read.

#[path = "amqp_support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use rpc_core::{Client, RpcError, Server};
use support::{AddArgs, Calc, raw_channel, reply_queue};

/// Calls `method` with a JSON body the way a tutorial client does, under
/// `correlation_id`, and returns the reply's properties and body.
async fn tutorial_call(
    channel: &Channel,
    queue: &str,
    method: &str,
    body: &[u8],
    correlation_id: &str,
) -> (BasicProperties, Vec<u8>) {
    let (reply_to, mut replies) = reply_queue(channel).await;
    let props = BasicProperties::default()
        .with_correlation_id(correlation_id.into())
        .with_reply_to(reply_to.as_str().into())
        .with_type(method.into())
        .with_content_type("application/json".into());
    support::publish_to_queue(channel, queue, body, props).await;
    let reply = support::next_reply(&mut replies, Duration::from_secs(10)).await;
    (reply.properties, reply.data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_correlation_id_comes_back_verbatim() {
    let Some((transport, _server)) = support::calc_on_broker("plain_corr").await else {
        return;
    };
    let queue = transport.request_queue("calc");
    let (_conn, channel) = raw_channel().await;
    let uuid = "9f1c3b2e-6d4a-4f7b-8e21-0c5d7a9b3e64";
    let long = "x".repeat(255);
    for id in ["007", uuid, "+1", long.as_str()] {
        let (props, body) = tutorial_call(&channel, &queue, "add", br#"{"a":40,"b":2}"#, id).await;
        assert_eq!(
            props.correlation_id().as_ref().map(ShortString::as_str),
            Some(id),
            "status {:?}",
            props.headers()
        );
        assert_eq!(body, b"42", "{}", String::from_utf8_lossy(&body));
    }
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_replies_to_json_calls_carry_a_json_body() {
    let Some((transport, _server)) = support::calc_on_broker("plain_errbody").await else {
        return;
    };
    let queue = transport.request_queue("calc");
    let (_conn, channel) = raw_channel().await;
    let (props, body) = tutorial_call(&channel, &queue, "nope", b"{}", "1").await;
    let status = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-rpc-status").cloned());
    assert!(
        matches!(&status, Some(AMQPValue::LongString(s)) if s.to_string() == "no_such_method"),
        "{status:?}"
    );
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(json["error"]["kind"], "no_such_method", "{json}");
    assert!(json["error"]["message"].is_string(), "{json}");
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_with_other_arguments_is_served_anyway() {
    let Some(builder) = support::builder("plain_args").await else {
        return;
    };
    let transport = builder.connect().await.unwrap();
    let queue = transport.request_queue("calc");
    let dead_letters = transport.dead_letter_queue("calc");
    // A worker in another language got there first, with its own idea of
    // the queues' arguments.
    let (_conn, channel) = raw_channel().await;
    let mut arguments = FieldTable::default();
    arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(10));
    for name in [&queue, &dead_letters] {
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments.clone(),
            )
            .await
            .unwrap();
    }
    let _server = Server::builder(transport.clone())
        .serve(Calc::new(1))
        .await
        .expect("a server serves a queue declared with other arguments");
    let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(10));
    assert_eq!(support::add(&client, 1, 2).await, 3);
    for name in [&queue, &dead_letters] {
        let _ = channel
            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    transport.cleanup().await.unwrap();
}

/// A foreign server that answers every request with `props` (its
/// correlation id copied in) and an empty body.
async fn bad_server(channel: Channel, queue: String, props: BasicProperties) {
    let mut requests = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    while let Some(Ok(request)) = requests.next().await {
        let mut reply = props.clone();
        if let Some(id) = request.properties.correlation_id() {
            reply = reply.with_correlation_id(id.clone());
        }
        let to = request.properties.reply_to().clone().unwrap();
        let _ = channel
            .basic_publish("".into(), to, BasicPublishOptions::default(), b"", reply)
            .await;
        let _ = request.ack(BasicAckOptions::default()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_reply_fails_its_call_at_once() {
    let Some(builder) = support::builder("plain_badreply").await else {
        return;
    };
    let transport = builder.connect().await.unwrap();
    let queue = transport.request_queue("calc");
    let (_conn, channel) = raw_channel().await;
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut unknown_status = FieldTable::default();
    unknown_status.insert("x-rpc-status".into(), AMQPValue::LongString("weird".into()));
    let cases = [
        (BasicProperties::default(), "content_type"),
        (
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_headers(unknown_status),
            "weird",
        ),
    ];
    let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(20));
    for (props, reason) in cases {
        // A connection per case, closed at its end. Not a channel per case
        // on one connection: the aborted server's dropped consumer has
        // lapin's own task send its cancel, which can reach the broker
        // after this test closed that channel; the broker then closes the
        // whole connection (`CHANNEL_ERROR - expected 'channel.open'`), and
        // the next case's consume failed with it (seen once in CI).
        let (server_conn, server_channel) = raw_channel().await;
        let server = tokio::spawn(bad_server(server_channel, queue.clone(), props));
        let started = Instant::now();
        let result = client
            .call::<_, i64>("calc", "add", &AddArgs { a: 1, b: 2 })
            .await;
        let took = started.elapsed();
        server.abort();
        let _ = server_conn.close(200, "done".into()).await;
        match result {
            Err(RpcError::Decode { message }) => assert!(message.contains(reason), "{message}"),
            other => panic!("{other:?} after {took:?}"),
        }
    }
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_queue_is_capped_by_count_and_bytes() {
    let Some((transport, _server)) = support::calc_on_broker("plain_dlqcap").await else {
        return;
    };
    let dead_letters = transport.dead_letter_queue("calc");
    // Queue arguments are not readable over AMQP; the broker's CLI shows them.
    let listing =
        rpc_tests::rabbitmqctl::rabbitmqctl(&["list_queues", "name", "arguments", "--silent"]);
    let line = listing
        .lines()
        .find(|line| line.split_whitespace().next() == Some(dead_letters.as_str()))
        .unwrap_or_else(|| panic!("{dead_letters} not listed"));
    assert!(line.contains(r#"{"x-max-length",100000}"#), "{line}");
    assert!(
        line.contains(r#"{"x-max-length-bytes",67108864}"#),
        "{line}"
    );
    transport.cleanup().await.unwrap();
}
