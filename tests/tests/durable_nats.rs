//! NATS durable mode (JetStream): a request whose server goes silent
//! mid-call is delivered again to another server; past its delivery limit
//! it is answered with an error and moved to the dead-letter stream.
//!
//! "Goes silent": server A talks to NATS through the test relay, which stops
//! forwarding (a black hole) while A holds the request, as a frozen or
//! killed process would; JetStream then delivers it again after the ack wait.
//! The ack wait here (3 s) is longer than a server's pull (2 s), as it must
//! be in use: a redelivery otherwise may go to the silent server's pull that
//! is still open, and be lost there.

use std::time::Duration;

use rpc_core::RpcError;
use rpc_tests::broker::{nats_builder, nats_url};
use rpc_tests::conformance::serve_calc;
use rpc_tests::relay::Relay;
use rpc_tests::services::CalcClient;
use rpc_transport_nats::{Mode, NatsTransport, NatsTransportBuilder};

/// What each case sets up: server A behind the relay holding one `gated`
/// call, then silenced; server B on a direct connection with its gate open.
struct Silenced {
    relay: Relay,
    a: rpc_tests::conformance::CalcFixture,
    b: rpc_tests::conformance::CalcFixture,
    b_transport: NatsTransport,
    call: tokio::task::JoinHandle<Result<u32, RpcError>>,
}

async fn silence_a_mid_call(builder: NatsTransportBuilder) -> Silenced {
    let upstream = nats_url().trim_start_matches("nats://").to_owned();
    let relay = Relay::start(upstream).await.unwrap();
    let a_transport = builder
        .clone()
        .url(format!("nats://{}", relay.addr()))
        .connect()
        .await
        .unwrap();
    let a = serve_calc(a_transport, 1, 4).await;
    let client = builder.clone().connect().await.unwrap();
    let calc = CalcClient::new(client).with_timeout(Duration::from_secs(20));
    let call = tokio::spawn(async move { calc.gated(7).await });
    tokio::time::timeout(Duration::from_secs(10), a.probe.wait_in_gate(1))
        .await
        .expect("server A takes the call");
    relay.black_hole();
    let b_transport = builder.connect().await.unwrap();
    let b = serve_calc(b_transport.clone(), 2, 4).await;
    b.probe.gate.add_permits(10);
    Silenced {
        relay,
        a,
        b,
        b_transport,
        call,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_server_goes_silent_is_delivered_to_another() {
    let Some(builder) = nats_builder("redelivery", Mode::Durable).await else {
        return;
    };
    let case = silence_a_mid_call(builder.ack_wait(Duration::from_secs(3))).await;
    let answer = tokio::time::timeout(Duration::from_secs(15), case.call)
        .await
        .expect("the call is answered by the other server")
        .unwrap();
    assert_eq!(answer.unwrap(), 7);
    assert_eq!(
        case.a.probe.calls.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        case.b.probe.calls.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    drop(case.relay);
    case.b_transport.cleanup().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_past_its_delivery_limit_is_answered_and_dead_lettered() {
    let Some(builder) = nats_builder("delivery_limit", Mode::Durable).await else {
        return;
    };
    let builder = builder.ack_wait(Duration::from_secs(3)).max_deliveries(1);
    let case = silence_a_mid_call(builder).await;
    let answer = tokio::time::timeout(Duration::from_secs(15), case.call)
        .await
        .expect("the call is answered")
        .unwrap();
    match answer {
        Err(RpcError::Remote { message }) => assert!(message.contains("dead letters"), "{message}"),
        other => panic!("expected a Remote error, got {other:?}"),
    }
    assert_eq!(
        case.b.probe.calls.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(case.b_transport.dead_lettered_requests(), 1);
    let service = "conformance.calc";
    let dead = case.b_transport.client().clone();
    let js = rpc_transport_nats::async_nats::jetstream::new(dead);
    let info = js
        .get_stream(case.b_transport.dead_letter_stream(service))
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.state.messages, 1);
    let requests = js
        .get_stream(case.b_transport.request_stream(service))
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(requests.state.messages, 0, "the work queue let it go");
    drop(case.relay);
    case.b_transport.cleanup().await.unwrap();
}
