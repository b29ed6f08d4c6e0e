//! ZeroMQ batches (docs/wire.md, "Batches"): with many calls in flight,
//! requests and replies go several to a message, each call is answered
//! once and correctly, and only a peer that said `HELLO BATCH` is sent a
//! `REP` of several replies.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use rpc_core::{ContentType, Envelope, FrameLimits, Header};
use rpc_tests::conformance::{CalcFixture, serve_calc};
use rpc_tests::services::CalcClient;
use rpc_tests::zmq::ZmqFabric;
use rpc_transport_zmq::{ZmqTransport, wire};
use zeromq::DealerSocket;
use zeromq::prelude::*;

const CALLS: i64 = 500;

/// A server transport on a loopback port.
async fn server_on_loopback() -> ZmqTransport {
    ZmqFabric::builder()
        .bind("tcp://127.0.0.1:0")
        .build()
        .await
        .unwrap()
}

/// A calculator served (concurrency 64) on a loopback port, and a client
/// transport connected to it, with `batch_above` when given: the server
/// transport, the served calculator, the client transport and its client.
async fn calc_pair(
    batch_above: Option<usize>,
) -> (
    ZmqTransport,
    CalcFixture,
    ZmqTransport,
    CalcClient<ZmqTransport>,
) {
    let server = server_on_loopback().await;
    let calc_server = serve_calc(server.clone(), 1, 64).await;
    let mut builder = ZmqFabric::builder().connect(server.endpoints()[0].clone());
    if let Some(calls) = batch_above {
        builder = builder.batch_above(calls);
    }
    let client = builder.build().await.unwrap();
    let calc = CalcClient::new(client.clone()).with_timeout(Duration::from_secs(30));
    (server, calc_server, client, calc)
}

/// 500 calls at once through a server of concurrency 64, the client
/// batching above 4 in flight: every answer right, every request run once,
/// and fewer messages than calls each way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_calls_in_flight_go_in_batches_each_answered_once() {
    let (server, calc_server, client, calc) = calc_pair(Some(4)).await;
    let calls = (0..CALLS).map(|i| {
        let calc = calc.clone();
        async move { calc.add(i, 1).await }
    });
    for (i, result) in (0..).zip(join_all(calls).await) {
        assert_eq!(result.unwrap(), i + 1, "call {i}");
    }
    assert_eq!(
        calc_server.probe.calls.load(Ordering::SeqCst),
        CALLS as usize
    );

    let (sent, served) = (client.stats(), server.stats());
    eprintln!(
        "figure: {} of {CALLS} requests in {} batch messages, {} replies in {}",
        sent.batched_requests, sent.batch_messages, served.batched_replies, served.batch_messages
    );
    assert!(
        sent.batched_requests > 0,
        "no request was batched: {sent:?}"
    );
    assert!(sent.batch_messages < sent.batched_requests, "{sent:?}");
    assert!(
        served.batched_replies > 0,
        "no reply was batched: {served:?}"
    );
    assert!(served.batch_messages < served.batched_replies, "{served:?}");
    assert_eq!(sent.refused_messages + served.refused_messages, 0);
}

/// With default settings a call alone goes alone, and the calls made in
/// one turn of the runtime go in one message each way. After a lone call's
/// reply, the first call of a wave finds nothing else in flight and goes at
/// once, the other 15 together; the next wave, woken by several replies,
/// goes whole. One task makes every call here, so the counts are exact.
#[tokio::test(flavor = "current_thread")]
async fn calls_made_together_travel_together_and_a_lone_call_alone() {
    let (server, calc_server, client, calc) = calc_pair(None).await;
    for i in 0..3 {
        assert_eq!(calc.add(i, 1).await.unwrap(), i + 1);
    }
    assert_eq!(client.stats().batch_messages, 0, "{:?}", client.stats());
    assert_eq!(server.stats().batch_messages, 0, "{:?}", server.stats());

    let wave = |base: i64| {
        join_all((0..16).map(|i| {
            let calc = calc.clone();
            async move { (base + i, calc.add(base + i, 1).await) }
        }))
    };
    let mut expected = [(15, 1), (31, 2)].into_iter();
    for base in [100, 200] {
        for (a, sum) in wave(base).await {
            assert_eq!(sum.unwrap(), a + 1, "call {a}");
        }
        let sent = client.stats();
        assert_eq!(
            Some((sent.batched_requests, sent.batch_messages)),
            expected.next(),
            "wave from {base}: {sent:?}"
        );
    }
    // Each batched request's reply went in a batch, the lone ones' alone.
    let served = server.stats();
    assert_eq!(served.batched_replies, 31, "{served:?}");
    assert!(served.batch_messages < 31, "{served:?}");
    assert_eq!(calc_server.probe.calls.load(Ordering::SeqCst), 3 + 32);
}

/// Calls dropped while their requests wait in their link's queue, the
/// call due to flush it among them, strand no other call: each round
/// starts 16 calls, polls each once (so each has queued its request) and
/// drops every third, the first included; every call kept is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_dropped_while_queued_strand_no_other_call() {
    let (_, calc_server, client, calc) = calc_pair(None).await;
    let mut kept_total = 0;
    for round in 0..50i64 {
        let mut calls: Vec<_> = (0..16i64)
            .map(|i| {
                let calc = calc.clone();
                Box::pin(async move { (i, calc.add(i, round).await) })
            })
            .collect();
        for call in &mut calls {
            let _ = futures_util::poll!(call.as_mut());
        }
        let kept: Vec<_> = (0..).zip(calls).filter(|(i, _)| i % 3 != 0).collect();
        kept_total += kept.len();
        let answers = tokio::time::timeout(
            Duration::from_secs(10),
            join_all(kept.into_iter().map(|(_, call)| call)),
        )
        .await
        .unwrap_or_else(|_| panic!("round {round}: a kept call was never answered"));
        for (i, sum) in answers {
            assert_eq!(sum.unwrap(), i + round, "round {round}, call {i}");
        }
    }
    // Dropped calls may or may not have reached the server; kept ones all did.
    assert!(calc_server.probe.calls.load(Ordering::SeqCst) >= kept_total);
    assert!(client.stats().batched_requests > 0, "{:?}", client.stats());
}

/// A `REQ` of 8 requests: a peer that said `HELLO BATCH` gets the 8
/// replies in fewer messages; one that said plain `HELLO` gets each in a
/// `REP` of its own. On one thread, so that
/// the 8 handlers finish in one turn of the runtime.
#[tokio::test(flavor = "current_thread")]
async fn only_a_peer_that_asks_gets_batched_replies() {
    let server = server_on_loopback().await;
    let _calc = serve_calc(server.clone(), 1, 16).await;
    let endpoint = server.endpoints()[0].clone();

    for asks in [true, false] {
        let mut dealer = DealerSocket::new();
        dealer.connect(&endpoint).await.unwrap();
        dealer.send(wire::message(wire::hello(asks))).await.unwrap();
        let mut request = vec![Bytes::from_static(wire::REQ)];
        for i in 0..8u8 {
            request.push(Bytes::from(vec![i]));
            request.push(add(i64::from(i), 1));
        }
        dealer.send(wire::message(request)).await.unwrap();

        let mut replies = Vec::new();
        let mut messages = 0;
        while replies.len() < 8 {
            let frames = tokio::time::timeout(Duration::from_secs(5), dealer.recv())
                .await
                .expect("the replies")
                .unwrap()
                .into_vec();
            match frames[0].as_ref() {
                wire::REP => {
                    messages += 1;
                    for pair in frames[1..].chunks(2) {
                        let reply =
                            wire::decode_envelope(&pair[1], &FrameLimits::default()).unwrap();
                        replies.push((pair[0][0], reply.body));
                    }
                }
                wire::READY | wire::HB | wire::CREDIT => {}
                other => panic!("unexpected {:?}", String::from_utf8_lossy(other)),
            }
        }
        replies.sort();
        let expected: Vec<(u8, Vec<u8>)> = (0..8u8)
            .map(|i| (i, (i64::from(i) + 1).to_string().into_bytes()))
            .collect();
        assert_eq!(replies, expected, "asks for batches: {asks}");
        if asks {
            assert!(messages < 8, "8 replies in {messages} messages");
        } else {
            assert_eq!(messages, 8, "a peer that did not ask got a batch");
        }
    }
}

/// `add(a, b)` of the conformance calculator, as JSON.
fn add(a: i64, b: i64) -> Bytes {
    let mut header = Header::request("conformance.calc".into(), "add".into(), ContentType::Json);
    header.correlation_id = 1;
    let envelope = Envelope {
        header,
        body: format!(r#"{{"a":{a},"b":{b}}}"#).into_bytes(),
    };
    wire::encode_envelope(&envelope, &FrameLimits::default()).unwrap()
}
