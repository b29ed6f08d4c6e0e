//! Bad input on a NATS request subject, sent by a plain NATS client: random
//! bytes, wrong headers, a request without a reply subject. Each gets a typed
//! error reply where it says where to send one (or, in durable mode, goes to
//! the dead letters), each refusal is counted, and the server keeps serving.
//! Prints the figures docs/reliability.md quotes.

use rpc_tests::noise::noise;
use std::time::Duration;

use futures_util::StreamExt;
use rpc_tests::broker::nats_builder;
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;
use rpc_transport_nats::async_nats::{self, HeaderMap};
use rpc_transport_nats::headers::{
    CONTENT_TYPE_HEADER, DEADLINE_HEADER, KIND_HEADER, REPLY_TO_HEADER, STATUS_HEADER,
};
use rpc_transport_nats::{Mode, NatsTransport};

/// Messages of each kind sent.
const EACH: usize = 100;

/// Sends one raw message to `subject` the way the mode's callers do: core
/// with a NATS reply subject, durable into the stream with the reply
/// subject in a header.
async fn send_raw(
    transport: &NatsTransport,
    subject: &str,
    reply: Option<String>,
    mut headers: HeaderMap,
    body: Vec<u8>,
) {
    let client = transport.client().clone();
    match transport.mode() {
        Mode::Core => match reply {
            Some(reply) => client
                .publish_with_reply_and_headers(subject.to_owned(), reply, headers, body.into())
                .await
                .unwrap(),
            None => client
                .publish_with_headers(subject.to_owned(), headers, body.into())
                .await
                .unwrap(),
        },
        _ => {
            if let Some(reply) = reply {
                headers.insert(REPLY_TO_HEADER, reply.as_str());
            }
            async_nats::jetstream::new(client)
                .publish_with_headers(subject.to_owned(), headers, body.into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    }
}

async fn bad_input_case(mode: Mode) {
    let Some(builder) = nats_builder("bad_input", mode).await else {
        return;
    };
    let server_transport = builder.clone().connect().await.unwrap();
    let calc_server = serve_calc(server_transport.clone(), 1, 16).await;
    let raw = builder.connect().await.unwrap();
    let subject = raw.method_subject("conformance.calc", "add");
    let inbox = raw.client().new_inbox();
    let mut replies = raw.client().subscribe(format!("{inbox}.*")).await.unwrap();
    raw.client().flush().await.unwrap();

    let wrong_headers: [(&str, &str); 5] = [
        (KIND_HEADER, "teapot"),
        (DEADLINE_HEADER, "tomorrow"),
        (CONTENT_TYPE_HEADER, "text/plain"),
        (STATUS_HEADER, "bogus"),
        ("x-rpc-version", "9"),
    ];
    let mut n = 0u64;
    // Random bytes as the body of a JSON call: the server cannot decode the
    // arguments.
    for i in 0..EACH {
        n += 1;
        let body = noise(n, 1 + i % 64);
        send_raw(
            &raw,
            &subject,
            Some(format!("{inbox}.{n}")),
            HeaderMap::new(),
            body,
        )
        .await;
    }
    // Headers that do not parse: the transport refuses the message.
    for i in 0..EACH {
        n += 1;
        let (key, value) = wrong_headers[i % wrong_headers.len()];
        let mut headers = HeaderMap::new();
        headers.insert(key, value);
        send_raw(
            &raw,
            &subject,
            Some(format!("{inbox}.{n}")),
            headers,
            b"{}".to_vec(),
        )
        .await;
    }
    // A request that says it is one but has no reply subject: refused,
    // with nobody to tell.
    for _ in 0..EACH {
        let mut headers = HeaderMap::new();
        headers.insert(KIND_HEADER, "request");
        send_raw(&raw, &subject, None, headers, br#"{"a":1,"b":2}"#.to_vec()).await;
    }

    let mut decode_errors = 0;
    let wanted = 2 * EACH;
    let collect = async {
        while decode_errors < wanted {
            let message = replies.next().await.unwrap();
            let status = message.headers.as_ref().and_then(|h| h.get(STATUS_HEADER));
            assert_eq!(status.map(|s| s.as_str()), Some("decode"), "{message:?}");
            decode_errors += 1;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), collect)
        .await
        .expect("every bad request with a reply subject is answered");
    // The missing-reply ones were sent last; once the server answers a good
    // call after them, all were seen (one server, one subscription, in order
    // in core mode; in durable mode the stream keeps their order).
    let calc = CalcClient::new(raw.clone());
    assert_eq!(calc.add(20, 22).await.unwrap(), 42);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while server_transport.refused_requests() < (2 * EACH) as u64 {
        assert!(
            std::time::Instant::now() < until,
            "refused {}",
            server_transport.refused_requests()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let refused = server_transport.refused_requests();
    let dead = server_transport.dead_lettered_requests();
    println!(
        "{mode:?}: {EACH} random-byte bodies -> {EACH} decode replies from the runtime; \
         {EACH} wrong headers + {EACH} without reply subject -> {refused} refused by the transport \
         ({} answered decode), {dead} dead-lettered; no handler ran on them: {} calls ran",
        decode_errors - EACH,
        calc_server
            .probe
            .calls
            .load(std::sync::atomic::Ordering::SeqCst)
    );
    assert_eq!(
        calc_server
            .probe
            .calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(refused, (2 * EACH) as u64);
    // The server's stats count both: what the transport refused before
    // dispatch and what the runtime could not decode.
    let stats = calc_server.server.stats();
    assert_eq!(stats.refused_by_transport(), refused);
    assert_eq!(stats.rejected(), refused + EACH as u64);
    // Durable mode moves what it refuses, and what the runtime refused to
    // decode, to the dead letters; core mode has nowhere to keep them.
    let expected_dead = if mode == Mode::Durable { 3 * EACH } else { 0 };
    assert_eq!(dead, expected_dead as u64);
    server_transport.cleanup().await.unwrap();
    raw.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_bad_input_is_refused_typed_and_counted() {
    bad_input_case(Mode::Core).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_bad_input_is_refused_typed_and_counted() {
    bad_input_case(Mode::Durable).await;
}
