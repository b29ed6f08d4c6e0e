//! A plain NATS client, knowing nothing of this library, calls a JSON
//! service and serves a client of it: what `nats req calc.add
//! '{"a":2,"b":3}'` or nats-py do (docs/wire.md, NATS section).

use std::time::Duration;

use futures_util::StreamExt;
use rpc_core::{Client, ContentType, RpcError};
use rpc_tests::broker::nats_builder;
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;
use rpc_transport_nats::Mode;
use rpc_transport_nats::async_nats::HeaderMap;
use rpc_transport_nats::headers::{ERROR_HEADER, STATUS_HEADER, reply_tokens};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_request_calls_a_json_service() {
    let Some(builder) = nats_builder("interop_call", Mode::Core).await else {
        return;
    };
    let server = builder.clone().connect().await.unwrap();
    let _calc = serve_calc(server.clone(), 1, 4).await;
    let plain = builder.connect().await.unwrap();
    let subject = plain.method_subject("conformance.calc", "add");
    // async-nats' own `request`: a fresh inbox, no headers, like `nats req`.
    let reply = plain
        .client()
        .request(subject, r#"{"a":2,"b":3}"#.into())
        .await
        .unwrap();
    assert_eq!(&reply.payload[..], b"5");
    assert!(
        reply.headers.is_none(),
        "an ok JSON reply has no headers: {reply:?}"
    );

    let subject = plain.method_subject("conformance.calc", "sqrt");
    let reply = plain
        .client()
        .request(subject, "[2.0]".into())
        .await
        .unwrap();
    let headers = reply.headers.expect("an error reply says what failed");
    assert_eq!(
        headers.get(STATUS_HEADER).unwrap().as_str(),
        "no_such_method"
    );
    assert!(headers.get(ERROR_HEADER).is_some());
    server.close().await;
    plain.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_subscriber_serves_a_json_client() {
    let Some(builder) = nats_builder("interop_serve", Mode::Core).await else {
        return;
    };
    let plain = builder.clone().connect().await.unwrap();
    let subject = plain.method_subject("conformance.calc", "add");
    let mut requests = plain
        .client()
        .queue_subscribe(subject, "calc".to_owned())
        .await
        .unwrap();
    plain.client().flush().await.unwrap();
    let replier = plain.client().clone();
    let serving = tokio::spawn(async move {
        // A server in any language: read JSON, answer JSON on the reply
        // subject, no headers.
        let request = requests.next().await.unwrap();
        // Our call is a plain message: what it says about itself (codec,
        // deadline, trace, id) is in its reply subject.
        assert!(request.headers.is_none(), "{:?}", request.headers);
        let reply = request.reply.as_deref().unwrap();
        let stated = reply_tokens(reply).unwrap();
        assert_eq!(stated.codec, Some(ContentType::Json));
        assert!(
            stated.deadline_ms.is_some() && stated.trace.is_some(),
            "{reply}"
        );
        let body: serde_json::Value = serde_json::from_slice(&request.payload).unwrap();
        let sum = body["a"].as_i64().unwrap() + body["b"].as_i64().unwrap();
        replier
            .publish_with_headers(
                request.reply.unwrap(),
                HeaderMap::new(),
                sum.to_string().into(),
            )
            .await
            .unwrap();
    });
    let transport = builder.connect().await.unwrap();
    let calc = CalcClient::from_client(
        Client::new(transport.clone()).with_content_type(ContentType::Json),
    )
    .with_timeout(Duration::from_secs(5));
    assert_eq!(calc.add(40, 2).await.unwrap(), 42);
    serving.await.unwrap();
    // Nobody serves `div`: NATS says "no responders", the client `NoRoute`.
    assert!(matches!(
        calc.div(1, 1).await,
        Err(RpcError::NoRoute { .. })
    ));
    transport.close().await;
    plain.close().await;
}

/// With `trace_header(true)` a call also carries the W3C `traceparent`
/// header, for servers whose tracing reads it; the value is the one its
/// reply subject states. The default client above sends no header at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_header_option_writes_traceparent() {
    let Some(builder) = nats_builder("interop_trace_header", Mode::Core).await else {
        return;
    };
    let plain = builder.clone().connect().await.unwrap();
    let subject = plain.method_subject("conformance.calc", "add");
    let mut requests = plain.client().subscribe(subject).await.unwrap();
    plain.client().flush().await.unwrap();
    let replier = plain.client().clone();
    let serving = tokio::spawn(async move {
        let request = requests.next().await.unwrap();
        let reply = request.reply.clone().unwrap();
        let stated = reply_tokens(&reply).unwrap().trace.expect("a trace token");
        let headers = request.headers.expect("the traceparent header");
        assert_eq!(
            headers.get("traceparent").map(|v| v.as_str().to_owned()),
            Some(stated.traceparent().as_str().to_owned())
        );
        replier.publish(reply, "5".into()).await.unwrap();
    });
    let transport = builder.trace_header(true).connect().await.unwrap();
    let calc = CalcClient::from_client(
        Client::new(transport.clone()).with_content_type(ContentType::Json),
    )
    .with_timeout(Duration::from_secs(5));
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    serving.await.unwrap();
    transport.close().await;
    plain.close().await;
}

/// A caller of an earlier release wrote its call's deadline, trace and
/// codec as readable tokens (`<inbox>.d<ms>.<traceparent>.<codec>.<id>`)
/// where this one writes a call token: the server still reads that form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_subject_of_an_earlier_release_is_understood() {
    let Some(builder) = nats_builder("interop_older_caller", Mode::Core).await else {
        return;
    };
    let server = builder.clone().connect().await.unwrap();
    let _calc = serve_calc(server.clone(), 1, 4).await;
    let plain = builder.connect().await.unwrap();
    let client = plain.client();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(format!("{inbox}.>")).await.unwrap();
    client.flush().await.unwrap();
    let subject = plain.method_subject("conformance.calc", "add");
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let far = u64::MAX / 2;
    // A live call, and one whose deadline (1 ms after 1970) has passed.
    for (deadline, id) in [(far, 41), (1, 42)] {
        let reply = format!("{inbox}.d{deadline}.{trace}.json.{id}");
        client
            .publish_with_reply(subject.clone(), reply, r#"{"a":2,"b":3}"#.into())
            .await
            .unwrap();
    }
    let mut answers = Vec::new();
    for _ in 0..2 {
        let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
            .await
            .expect("a reply")
            .unwrap();
        let status = reply
            .headers
            .as_ref()
            .and_then(|h| h.get(STATUS_HEADER))
            .map(|v| v.as_str().to_owned());
        answers.push((reply.subject.to_string(), status, reply.payload.to_vec()));
    }
    let mut expected = vec![
        (
            format!("{inbox}.d{far}.{trace}.json.41"),
            None,
            b"5".to_vec(),
        ),
        (
            format!("{inbox}.d1.{trace}.json.42"),
            Some("timeout".to_owned()),
            Vec::new(),
        ),
    ];
    answers.sort();
    expected.sort();
    assert_eq!(answers, expected);
    server.close().await;
    plain.close().await;
}
