//! The message parsers against hostile input: a bounded property run (the
//! CI twin of the `zmq_wire` fuzz target) and one case per refusal.

use bytes::Bytes;
use proptest::prelude::*;
use rpc_core::{ContentType, Envelope, FrameLimits, Header};
use rpc_transport_zmq::WireError;
use rpc_transport_zmq::wire::{self, FromClient, FromServer};

fn limits() -> FrameLimits {
    FrameLimits {
        max_message_size: 4096,
        ..FrameLimits::default()
    }
}

fn request() -> Envelope {
    let mut header = Header::request("calc".into(), "add".into(), ContentType::Json);
    header.correlation_id = 7;
    Envelope {
        header,
        body: br#"{"a":1,"b":2}"#.to_vec(),
    }
}

fn frames(parts: &[&[u8]]) -> Vec<Bytes> {
    parts.iter().map(|p| Bytes::copy_from_slice(p)).collect()
}

#[test]
fn a_request_round_trips() {
    let bytes = wire::encode_envelope(&request(), &limits()).unwrap();
    let message = vec![
        Bytes::from_static(wire::REQ),
        Bytes::from_static(b"tag"),
        bytes,
    ];
    assert_eq!(
        wire::parse_from_client(&message, &limits()),
        Ok(FromClient::Request {
            tag: Bytes::from_static(b"tag"),
            envelope: request()
        })
    );
}

#[test]
fn control_messages_round_trip() {
    let ready = wire::ready([("calc", 8u32), ("echo", 1)].into_iter());
    assert_eq!(
        wire::parse_from_server(&ready, &limits()),
        Ok(FromServer::Ready(vec![
            ("calc".into(), 8),
            ("echo".into(), 1)
        ]))
    );
    assert_eq!(
        wire::parse_from_server(&wire::credit("calc", -4), &limits()),
        Ok(FromServer::Credit("calc".into(), -4))
    );
    assert_eq!(
        wire::parse_from_server(&wire::done(Bytes::from_static(b"t"), "calc", 9), &limits()),
        Ok(FromServer::Done {
            tag: Bytes::from_static(b"t"),
            service: "calc".into(),
            correlation_id: 9
        })
    );
}

#[test]
fn hello_says_whether_the_client_takes_batches() {
    for (batches, message) in [
        (false, wire::hello(false)),
        (true, wire::hello(true)),
        // Capability words a server does not know are ignored.
        (false, frames(&[b"HELLO", b"SOMEDAY"])),
        (true, frames(&[b"HELLO", b"SOMEDAY", b"BATCH"])),
    ] {
        assert_eq!(
            wire::parse_from_client(&message, &limits()),
            Ok(FromClient::Hello { batches }),
            "{message:?}"
        );
    }
}

/// A batch of pairs parses pair by pair: a bad envelope is refused alone.
#[test]
fn batched_requests_and_replies_parse_pair_by_pair() {
    let good = wire::encode_envelope(&request(), &limits()).unwrap();
    let pairs = vec![
        Bytes::from_static(b"t1"),
        good.clone(),
        Bytes::from_static(b"t2"),
        Bytes::from_static(b"\x00\x00\x00\x01\x09"),
        Bytes::from_static(b"t3"),
        good.clone(),
    ];
    let mut messages = wire::batches(None, wire::REQ, pairs.clone(), 4096);
    assert_eq!(messages.len(), 1);
    let Ok(FromClient::Requests(parsed)) = wire::parse_from_client(&messages.remove(0), &limits())
    else {
        panic!("not a batch of requests");
    };
    let tags: Vec<&[u8]> = parsed.iter().map(|(tag, _)| tag.as_ref()).collect();
    assert_eq!(tags, [b"t1".as_slice(), b"t2", b"t3"]);
    assert_eq!(parsed[0].1, Ok(request()));
    assert!(matches!(parsed[1].1, Err(WireError::Envelope(_))));
    assert_eq!(parsed[2].1, Ok(request()));

    let mut replies = wire::batches(None, wire::REP, pairs, 4096);
    let Ok(FromServer::Replies(parsed)) = wire::parse_from_server(&replies.remove(0), &limits())
    else {
        panic!("not a batch of replies");
    };
    assert_eq!(parsed.len(), 3);
}

/// Batches hold at most `MAX_BATCH` pairs and about the size limit, keep
/// the pairs' order, and put the peer first when there is one.
#[test]
fn batches_are_bounded_by_count_and_size() {
    let pair = |i: usize, size: usize| {
        [
            Bytes::from(i.to_be_bytes().to_vec()),
            Bytes::from(vec![0; size]),
        ]
    };
    let many: Vec<Bytes> = (0..wire::MAX_BATCH * 2 + 1)
        .flat_map(|i| pair(i, 1))
        .collect();
    let messages = wire::batches(None, wire::REQ, many, 1 << 20);
    let counts: Vec<usize> = messages.iter().map(|m| (m.len() - 1) / 2).collect();
    assert_eq!(counts, [wire::MAX_BATCH, wire::MAX_BATCH, 1]);
    let order: Vec<Bytes> = messages
        .iter()
        .flat_map(|m| m[1..].chunks(2).map(|p| p[0].clone()).collect::<Vec<_>>())
        .collect();
    let expected: Vec<Bytes> = (0..wire::MAX_BATCH * 2 + 1)
        .map(|i| pair(i, 0)[0].clone())
        .collect();
    assert_eq!(order, expected);

    // 3 pairs of ~1,000 bytes under a 2,100-byte limit: two, then one; a
    // pair larger than the limit alone goes alone.
    let sized: Vec<Bytes> = [1000, 1000, 1000, 5000]
        .into_iter()
        .enumerate()
        .flat_map(|(i, n)| pair(i, n))
        .collect();
    let peer = Bytes::from_static(b"peer");
    let messages = wire::batches(Some(&peer), wire::REP, sized, 2100);
    let counts: Vec<usize> = messages.iter().map(|m| (m.len() - 2) / 2).collect();
    assert_eq!(counts, [2, 1, 1]);
    assert!(
        messages
            .iter()
            .all(|m| m[0] == peer && m[1].as_ref() == wire::REP)
    );
    assert!(wire::batches(None, wire::REQ, Vec::new(), 100).is_empty());
}

/// Whether a refusal is the expected one.
type Expected = fn(&WireError) -> bool;

#[test]
fn each_refusal_is_typed() {
    let envelope = wire::encode_envelope(&request(), &limits()).unwrap();
    let cases: Vec<(Vec<Bytes>, Expected)> = vec![
        (vec![], |e| matches!(e, WireError::Empty)),
        (frames(&[b"GET / HTTP/1.1"]), |e| {
            matches!(e, WireError::UnknownCommand(_))
        }),
        (frames(&[b"REQ", b"tag"]), |e| {
            matches!(e, WireError::FrameCount { got: 2, .. })
        }),
        (frames(&[b"HB", b"x"]), |e| {
            matches!(e, WireError::FrameCount { .. })
        }),
        (frames(&[b"REQ", b"tag", b"envelope", b"tag"]), |e| {
            matches!(e, WireError::FrameCount { got: 4, .. })
        }),
        (frames(&[b"REQ", b"tag", b"\x00\x00\x00\x01\x09"]), |e| {
            matches!(e, WireError::Envelope(_))
        }),
        (
            vec![
                Bytes::from_static(wire::REQ),
                Bytes::new(),
                Bytes::from(vec![0; 8192]),
            ],
            |e| matches!(e, WireError::TooLarge { .. }),
        ),
        (
            {
                let mut trailing = envelope.to_vec();
                trailing.push(0);
                vec![Bytes::from_static(wire::ONEWAY), Bytes::from(trailing)]
            },
            |e| matches!(e, WireError::Envelope(_)),
        ),
    ];
    for (message, expected) in cases {
        let error = wire::parse_from_client(&message, &limits()).unwrap_err();
        assert!(expected(&error), "{message:?}: {error:?}");
    }
    let bad_credit = frames(&[b"CREDIT", b"calc", b"\x01"]);
    assert_eq!(
        wire::parse_from_server(&bad_credit, &limits()),
        Err(WireError::Field("credit change"))
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary messages, and real ones with bytes flipped: never a panic,
    /// and whatever envelope parses re-encodes to its frame.
    #[test]
    fn parsers_never_panic(
        raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let raw: Vec<Bytes> = raw.into_iter().map(Bytes::from).collect();
        let _ = wire::parse_from_client(&raw, &limits());
        let _ = wire::parse_from_server(&raw, &limits());

        let mut envelope = wire::encode_envelope(&request(), &limits()).unwrap().to_vec();
        for (at, byte) in flips {
            let at = at % envelope.len();
            envelope[at] = byte;
        }
        let message = vec![Bytes::from_static(wire::REQ), Bytes::new(), Bytes::from(envelope.clone())];
        if let Ok(FromClient::Request { envelope: parsed, .. }) = wire::parse_from_client(&message, &limits()) {
            let again = wire::encode_envelope(&parsed, &limits()).unwrap();
            prop_assert_eq!(again.as_ref(), &envelope[..]);
        }
    }
}
