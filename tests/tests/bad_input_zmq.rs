//! A ZeroMQ server against bad input: garbage commands, wrong frame
//! counts, oversized messages, undecodable envelopes, and a peer speaking
//! another protocol on its port. Each is refused with a typed `ERROR`
//! reply (or, for a foreign protocol, a failed handshake), counted, and the
//! server keeps serving.

use std::time::Duration;

use bytes::Bytes;
use rpc_core::{ContentType, Envelope, FrameLimits, Header};
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;
use rpc_tests::zmq::ZmqFabric;
use rpc_transport_zmq::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeromq::prelude::*;
use zeromq::{DealerSocket, ZmqMessage};

const LIMIT: usize = 64 * 1024;

fn message(frames: Vec<Bytes>) -> ZmqMessage {
    wire::message(frames)
}

/// Waits for the next message that is not a heartbeat.
async fn next(dealer: &mut DealerSocket) -> Vec<Bytes> {
    loop {
        let got = tokio::time::timeout(Duration::from_secs(5), dealer.recv())
            .await
            .expect("an answer")
            .expect("a message")
            .into_vec();
        if got.first().map(|f| f.as_ref()) != Some(wire::HB) {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_are_refused_typed_and_counted() {
    let server = ZmqFabric::builder()
        .bind("tcp://127.0.0.1:0")
        .max_message_size(LIMIT)
        .build()
        .await
        .unwrap();
    let endpoint = server.endpoints()[0].clone();
    let _calc = serve_calc(server.clone(), 1, 4).await;

    let mut dealer = DealerSocket::new();
    dealer.connect(&endpoint).await.unwrap();
    let limits = FrameLimits::default();
    let good = {
        let mut header =
            Header::request("conformance.calc".into(), "add".into(), ContentType::Json);
        header.correlation_id = 1;
        Envelope {
            header,
            body: b"[1,2]".to_vec(),
        }
    };
    let good = wire::encode_envelope(&good, &limits).unwrap();
    let mut trailing = good.to_vec();
    trailing.push(0);
    let cases: Vec<(&str, Vec<Bytes>, &str)> = vec![
        (
            "garbage",
            vec![Bytes::from_static(b"\x00\xffgarbage")],
            "unknown command",
        ),
        (
            "a REQ with no envelope",
            vec![Bytes::from_static(wire::REQ), Bytes::from_static(b"t")],
            "takes an odd number",
        ),
        (
            "an extra frame",
            vec![
                Bytes::from_static(wire::REQ),
                Bytes::from_static(b"t"),
                good.clone(),
                Bytes::new(),
            ],
            "takes an odd number",
        ),
        (
            "oversized",
            vec![
                Bytes::from_static(wire::REQ),
                Bytes::from_static(b"t"),
                Bytes::from(vec![7; LIMIT * 2]),
            ],
            "exceeds the limit",
        ),
        (
            "not an envelope",
            vec![
                Bytes::from_static(wire::REQ),
                Bytes::from_static(b"t"),
                Bytes::from_static(b"GET / HTTP/1.1\r\n"),
            ],
            "bad envelope",
        ),
        (
            "bytes after the envelope",
            vec![
                Bytes::from_static(wire::REQ),
                Bytes::from_static(b"t"),
                Bytes::from(trailing),
            ],
            "bad envelope",
        ),
    ];
    for (n, (what, frames, reason)) in cases.into_iter().enumerate() {
        dealer.send(message(frames)).await.unwrap();
        let answer = next(&mut dealer).await;
        assert_eq!(
            answer.first().map(|f| f.as_ref()),
            Some(wire::ERROR),
            "{what}: {answer:?}"
        );
        let text = String::from_utf8_lossy(answer.last().unwrap()).into_owned();
        assert!(text.contains(reason), "{what}: {text}");
        assert_eq!(server.stats().refused_messages, n as u64 + 1, "{what}");
    }

    // The same connection still gets answers.
    dealer
        .send(message(vec![
            Bytes::from_static(wire::REQ),
            Bytes::from_static(b"t"),
            good.clone(),
        ]))
        .await
        .unwrap();
    let answer = next(&mut dealer).await;
    assert_eq!(answer[0].as_ref(), wire::REP);
    let reply = wire::decode_envelope(&answer[2], &limits).unwrap();
    assert_eq!(reply.body, b"3");

    // In a batch, a bad pair is refused alone (its tag in the `ERROR`) and
    // the good ones are answered; this peer said no `HELLO BATCH`, so each
    // reply comes in a `REP` of its own.
    let refused_before = server.stats().refused_messages;
    dealer
        .send(message(vec![
            Bytes::from_static(wire::REQ),
            Bytes::from_static(b"good-1"),
            good.clone(),
            Bytes::from_static(b"bad"),
            Bytes::from_static(b"GET / HTTP/1.1\r\n"),
            Bytes::from_static(b"good-2"),
            good,
        ]))
        .await
        .unwrap();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let answer = next(&mut dealer).await;
        assert_eq!(answer.len(), 3, "one pair per answer: {answer:?}");
        answers.push((answer[0].clone(), answer[1].clone()));
    }
    answers.sort();
    assert_eq!(
        answers,
        [
            (Bytes::from_static(wire::ERROR), Bytes::from_static(b"bad")),
            (Bytes::from_static(wire::REP), Bytes::from_static(b"good-1")),
            (Bytes::from_static(wire::REP), Bytes::from_static(b"good-2")),
        ]
    );
    assert_eq!(server.stats().refused_messages, refused_before + 1);

    // And so do real clients.
    let client = ZmqFabric::builder()
        .connect(endpoint)
        .build()
        .await
        .unwrap();
    assert_eq!(CalcClient::new(client).add(2, 2).await.unwrap(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_on_the_port_is_refused_and_counted() {
    let server = ZmqFabric::builder()
        .bind("tcp://127.0.0.1:0")
        .build()
        .await
        .unwrap();
    let endpoint = server.endpoints()[0].clone();
    let _calc = serve_calc(server.clone(), 1, 4).await;
    let address = endpoint.trim_start_matches("tcp://").to_owned();

    let mut http = tokio::net::TcpStream::connect(&address).await.unwrap();
    // Longer than a ZMTP greeting (64 bytes), so the greeting is read and refused.
    let request = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: {}\r\n\r\n",
        "x".repeat(64)
    );
    http.write_all(request.as_bytes()).await.unwrap();
    // The server closes the connection (it may first send its own greeting).
    let mut sink = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), http.read_to_end(&mut sink)).await;
    assert!(closed.is_ok(), "the server kept a foreign connection open");
    let counted = tokio::time::timeout(Duration::from_secs(5), async {
        while server.stats().refused_handshakes == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "not counted: {:?}", server.stats());

    let client = ZmqFabric::builder()
        .connect(endpoint)
        .build()
        .await
        .unwrap();
    assert_eq!(CalcClient::new(client).add(1, 2).await.unwrap(), 3);
}
