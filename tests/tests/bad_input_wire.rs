//! Bad input on the wire: requests published by hand (plain lapin) straight
//! onto a service's request queue. Each is answered with a typed error where
//! it names a reply address, ends in the dead-letter queue, never runs a
//! handler, and correct calls interleaved with them all succeed.

mod security_support;

use rpc_tests::noise::noise;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use rpc_core::{ContentType, Server};
use rpc_tests::broker::amqp_builder;
use rpc_tests::services::{CALC_DESCRIPTOR, CalcClient, CalcImpl, CalcProbe, CalcServer};
use rpc_transport_amqp::properties;

use security_support::{raw_connection, wait_depth};

/// The server's limit on request bodies.
const SERVER_LIMIT: usize = 64 * 1024;

/// One hand-made request and the status its reply must carry (`None`: it
/// names no reply address, so no reply can come).
struct Case {
    name: &'static str,
    props: BasicProperties,
    body: Vec<u8>,
    expected_status: Option<&'static str>,
}

fn cases(reply_to: &str) -> Vec<Case> {
    let base = |id: u32, method: &str| {
        BasicProperties::default()
            .with_correlation_id(id.to_string().into())
            .with_reply_to(reply_to.into())
            .with_type(method.into())
            .with_content_type(ContentType::Json.mime().into())
    };
    let mut says_request = FieldTable::default();
    says_request.insert(
        properties::KIND_HEADER.into(),
        AMQPValue::LongString("request".into()),
    );
    let mut oversized = br#"{"a":1,"b":2,"pad":""#.to_vec();
    oversized.resize(SERVER_LIMIT + 1024, b'x');
    oversized.extend_from_slice(br#""}"#);
    vec![
        Case {
            name: "random bytes",
            props: base(9001, "add"),
            body: noise(0x9e37_79b9_7f4a_7c15, 256),
            expected_status: Some("decode"),
        },
        Case {
            name: "truncated body",
            props: base(9002, "add"),
            body: br#"{"a":1,"b":"#.to_vec(),
            expected_status: Some("decode"),
        },
        Case {
            name: "wrong content type",
            props: base(9003, "add").with_content_type("text/plain".into()),
            body: br#"{"a":1,"b":2}"#.to_vec(),
            expected_status: Some("decode"),
        },
        Case {
            name: "unknown method",
            props: base(9004, "sqrt"),
            body: br#"{"x":2.0}"#.to_vec(),
            expected_status: Some("no_such_method"),
        },
        Case {
            name: "wrong argument types",
            props: base(9005, "add"),
            body: br#"{"a":"one","b":[2]}"#.to_vec(),
            expected_status: Some("decode"),
        },
        Case {
            name: "missing reply address",
            props: BasicProperties::default()
                .with_correlation_id("9006".into())
                .with_type("add".into())
                .with_content_type(ContentType::Json.mime().into())
                .with_headers(says_request),
            body: br#"{"a":1,"b":2}"#.to_vec(),
            expected_status: None,
        },
        Case {
            name: "oversized body",
            props: base(9007, "add"),
            body: oversized,
            expected_status: Some("too_large"),
        },
        // Any correlation id a foreign client picks is served and echoed
        // verbatim (rpc-transport-amqp/tests/plain_clients.rs): not bad input.
        Case {
            name: "missing correlation id",
            props: BasicProperties::default()
                .with_reply_to(reply_to.into())
                .with_type("add".into())
                .with_content_type(ContentType::Json.mime().into()),
            body: br#"{"a":1,"b":2}"#.to_vec(),
            expected_status: Some("decode"),
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_answered_dead_lettered_and_never_run() {
    let Some(builder) = amqp_builder("bad_input_wire").await else {
        return;
    };
    let transport = builder.connect().await.expect("connect");
    let (probe, _lines) = CalcProbe::new();
    let server = Server::builder(transport.clone())
        .concurrency(4)
        .max_message_size(SERVER_LIMIT)
        .serve(CalcServer::new(CalcImpl::new(1, probe.clone(), &transport)))
        .await
        .expect("serve");
    let calc = CalcClient::new(transport.clone());
    let queue = transport.request_queue(CALC_DESCRIPTOR.name);
    let dlq = transport.dead_letter_queue(CALC_DESCRIPTOR.name);

    let connection = raw_connection().await;
    let channel = connection.create_channel().await.expect("channel");
    let reply_queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("reply queue");
    let reply_to = reply_queue.name().as_str().to_owned();
    let mut replies = channel
        .basic_consume(
            reply_to.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume replies");

    let cases = cases(&reply_to);
    let mut good_calls = 0;
    for (n, case) in cases.iter().enumerate() {
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                Default::default(),
                &case.body,
                case.props.clone(),
            )
            .await
            .expect("publish")
            .await
            .expect("written");
        // A correct call right behind each bad one, through the same queue.
        let n = n as i64;
        assert_eq!(
            calc.add(n, 1000)
                .await
                .unwrap_or_else(|e| panic!("a good call after `{}` failed: {e}", case.name)),
            n + 1000
        );
        good_calls += 1;
    }

    // Every reply, keyed by the correlation id as it came back.
    let expected: Vec<&Case> = cases
        .iter()
        .filter(|c| c.expected_status.is_some())
        .collect();
    let mut got: HashMap<Option<String>, (String, String)> = HashMap::new();
    while got.len() < expected.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(10), replies.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {} replies came", got.len(), expected.len()))
            .expect("consumer open")
            .expect("delivery");
        let props = &delivery.properties;
        let headers = props.headers().clone().unwrap_or_default();
        let text = |key: &str| match headers.inner().get(key) {
            Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
            other => format!("{other:?}"),
        };
        got.insert(
            props.correlation_id().as_ref().map(|id| id.to_string()),
            (
                text(properties::STATUS_HEADER),
                text(properties::ERROR_HEADER),
            ),
        );
    }
    for case in &expected {
        let id = case
            .props
            .correlation_id()
            .as_ref()
            .map(|id| id.to_string());
        let (status, message) = got
            .get(&id)
            .unwrap_or_else(|| panic!("`{}`: no reply for correlation id {id:?}", case.name));
        eprintln!(
            "measured: bad-input/{}: status {status}: {message}",
            case.name
        );
        assert_eq!(
            Some(status.as_str()),
            case.expected_status,
            "`{}`",
            case.name
        );
    }

    let depth = wait_depth(&connection, &dlq, cases.len() as u32).await;
    eprintln!(
        "measured: bad-input: {} bad requests, {} replies, dead-letter depth {depth}, \
         {good_calls} interleaved good calls all answered, runtime rejected {}",
        cases.len(),
        got.len(),
        server.stats().rejected()
    );
    assert_eq!(
        depth as usize,
        cases.len(),
        "every bad request is dead-lettered"
    );
    // Whoever refused it (the transport, for unreadable properties; the
    // runtime, for the rest), every bad request is counted once.
    assert_eq!(
        server.stats().rejected(),
        cases.len() as u64,
        "refused by the transport: {}",
        server.stats().refused_by_transport()
    );
    assert!(server.stats().refused_by_transport() > 0);
    assert_eq!(
        probe.calls.load(Ordering::SeqCst),
        good_calls,
        "a handler ran for a bad request"
    );
    assert_eq!(security_support::depth(&connection, &queue).await, 0);

    let _ = connection.close(200, "done".into()).await;
    server.shutdown().await;
    transport.cleanup().await.expect("cleanup");
}
