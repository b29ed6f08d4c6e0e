//! The conformance suite: behaviours every transport must show, written once.
//!
//! Each case is a generic async function over a [`Fixture`]; the
//! [`conformance_suite!`](crate::conformance_suite) macro turns the list of
//! cases into `#[tokio::test]`s for one transport.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use futures_util::StreamExt;
use futures_util::future::join_all;
use rpc_core::introspection::Introspector;
use rpc_core::{
    Client, ContentType, Kind, RpcError, Server, ServerHandle, ServiceSpec, Transport,
    TransportError,
};

use crate::services::{
    CALC_DESCRIPTOR, CalcClient, CalcImpl, CalcNextClient, CalcProbe, CalcServer, EchoClient,
    EchoImpl, EchoServer, MathError, Order, OrderLine, OrderStatus, spawn_gated,
};
use crate::tap::Tap;

/// How a transport under test is set up and torn down.
///
/// A new transport gets the whole suite by implementing the two required
/// methods; the others describe what its kind of fabric promises (see the
/// table in `rpc_core::transport`) and give the suite the faults it needs.
pub trait Fixture: Send + Sync + Sized + 'static {
    /// The transport under test.
    type Transport: Transport;

    /// A transport for one participant. Every call on one fixture reaches
    /// the same fabric and namespace; each may be its own connection.
    fn transport(&self) -> impl Future<Output = Self::Transport> + Send;

    /// Removes what the test left on the fabric.
    fn finish(self) -> impl Future<Output = ()> + Send;

    /// What this kind of fabric promises where kinds differ.
    fn fabric(&self) -> Fabric {
        Fabric::QUEUE_BROKER
    }

    /// Breaks the connection of `transport` to the fabric, as a failed link
    /// does; the transport must notice and recover by itself. Resolves to
    /// `false` when the fixture cannot break connections (the case is then
    /// skipped with a notice).
    fn break_connection(&self, transport: &Self::Transport) -> impl Future<Output = bool> + Send {
        let _ = transport;
        std::future::ready(false)
    }

    /// The largest body the fabric carries in one message; the suite's
    /// biggest call stays under it. Default [`NEAR_LIMIT`]; a NATS server
    /// refuses messages over its `max_payload` (1 MiB unless configured).
    fn max_body(&self) -> usize {
        NEAR_LIMIT
    }

    /// Whether a server takes no more requests than it has free slots
    /// (AMQP prefetch, JetStream pulls). Default `true`. Core NATS queue
    /// groups spread requests at random instead, and a busy server queues
    /// what it gets; the load-sharing case then checks the spread only.
    fn shares_by_credit(&self) -> bool {
        true
    }

    /// Whether the transport broadcasts to every server of a service
    /// (`Transport::serve_broadcast`): AMQP (a fanout exchange) and memory.
    /// Default `false`: a broadcast then fails at once with
    /// `TransportError::Unsupported`, and introspection reaches one
    /// instance at a time.
    fn broadcasts(&self) -> bool {
        false
    }
}

/// The transports a fixture handed out, kept for its `finish` to clean up.
#[derive(Debug)]
pub struct Opened<T>(std::sync::Mutex<Vec<T>>);

impl<T: Clone> Opened<T> {
    /// Keeps a clone of `transport` and hands it back.
    pub fn keep(&self, transport: T) -> T {
        rpc_core::transport::support::lock_unpoisoned(&self.0).push(transport.clone());
        transport
    }

    /// How many transports were kept so far.
    pub fn len(&self) -> usize {
        rpc_core::transport::support::lock_unpoisoned(&self.0).len()
    }

    /// Whether none was kept yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every transport kept so far, in the order they were opened.
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *rpc_core::transport::support::lock_unpoisoned(&self.0))
    }
}

impl<T> Default for Opened<T> {
    fn default() -> Self {
        Opened(std::sync::Mutex::new(Vec::new()))
    }
}

/// What a fabric promises where kinds of fabric differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Fabric {
    /// A request whose delivery was dropped unsettled reaches another
    /// server: queue brokers, JetStream, Kafka. Core NATS and ZeroMQ keep
    /// no copy, so such a request is lost (its caller gets an error or its
    /// deadline).
    pub redelivers_abandoned: bool,
}

impl Fabric {
    /// A queue broker (AMQP, the memory transport): every rule holds.
    pub const QUEUE_BROKER: Fabric = Fabric {
        redelivers_abandoned: true,
    };

    /// A fabric that keeps no copy of a request once delivered (core NATS,
    /// ZeroMQ).
    pub const AT_MOST_ONCE: Fabric = Fabric {
        redelivers_abandoned: false,
    };
}

/// The largest body the suite sends: just under the default 16 MiB limit.
pub const NEAR_LIMIT: usize = 16 * 1024 * 1024 - 64 * 1024;

/// A running `Calc` server and what it exposes to tests.
pub struct CalcFixture {
    /// Stops the server.
    pub server: ServerHandle,
    /// What its handlers observed.
    pub probe: Arc<CalcProbe>,
    /// Lines its `log` received.
    pub lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

/// Starts a `Calc` server with instance id `id` on `transport`.
pub async fn serve_calc<T: Transport>(transport: T, id: u32, concurrency: usize) -> CalcFixture {
    let (probe, lines) = CalcProbe::new();
    let service = CalcImpl::new(id, probe.clone(), &transport);
    let server = Server::builder(transport)
        .concurrency(concurrency)
        .serve(CalcServer::new(service))
        .await
        .expect("serve calc");
    CalcFixture {
        server,
        probe,
        lines,
    }
}

fn sample_order() -> Order {
    Order {
        id: u64::MAX,
        customer: "Zoë Ωmega — 東京 🦀".into(),
        lines: vec![
            OrderLine {
                sku: "A-1".into(),
                quantity: 3,
                price: 9.99,
            },
            OrderLine {
                sku: String::new(),
                quantity: 0,
                price: -0.5,
            },
        ],
        tags: HashMap::from([("priority".into(), 1), ("région".into(), -7)]),
        status: Some(OrderStatus::Cancelled {
            reason: "changed mind".into(),
            refund: Some(-42),
        }),
    }
}

/// Values of many types survive both codecs unchanged, up to a body near the size limit.
pub async fn round_trip_types<F: Fixture>(f: &F) {
    let _server = Server::builder(f.transport().await)
        .serve(EchoServer::new(EchoImpl))
        .await
        .expect("serve echo");
    let transport = f.transport().await;
    for codec in [ContentType::Bincode, ContentType::Json] {
        let echo = EchoClient::from_client(Client::new(transport.clone()).with_content_type(codec));
        let order = sample_order();
        assert_eq!(echo.order(order.clone()).await.unwrap(), order);
        let mut open = sample_order();
        open.status = Some(OrderStatus::Shipped("DHL".into()));
        open.tags.clear();
        assert_eq!(echo.order(open.clone()).await.unwrap(), open);
        open.status = None;
        assert_eq!(echo.order(open.clone()).await.unwrap(), open);
        let text = "héllo, 世界 🦀 \u{0} \"quoted\" \\ \n".to_string();
        assert_eq!(echo.text(text.clone()).await.unwrap(), text);
        let many = (
            -128i8,
            u128::MAX,
            Some("x".to_string()),
            (true, 'é'),
            vec![None, Some(7u16)],
        );
        let back = echo
            .many(many.0, many.1, many.2.clone(), many.3, many.4.clone())
            .await
            .unwrap();
        assert_eq!(back, many);
        echo.nothing().await.unwrap();
    }
    // JSON writes bytes as decimal text, so only the compact codec can carry
    // a body near the limit.
    let echo = EchoClient::new(transport);
    let big: Vec<u8> = (0..f.max_body()).map(|i| (i % 251) as u8).collect();
    assert_eq!(echo.bytes(big.clone()).await.unwrap(), big);
}

/// A server answers in the codec it was called with.
pub async fn server_answers_in_callers_codec<F: Fixture>(f: &F) {
    let server_transport = Tap::new(f.transport().await);
    let _calc = serve_calc(server_transport.clone(), 1, 16).await;
    let transport = f.transport().await;
    for codec in [ContentType::Json, ContentType::Bincode] {
        let calc = CalcClient::from_client(Client::new(transport.clone()).with_content_type(codec));
        assert_eq!(calc.add(2, 3).await.unwrap(), 5);
        let replies: Vec<_> = server_transport
            .sent()
            .into_iter()
            .filter(|(kind, _)| *kind == Kind::Reply)
            .collect();
        assert_eq!(replies.last(), Some(&(Kind::Reply, codec)));
    }
}

/// Application errors arrive typed, inside `Ok`.
pub async fn application_errors<F: Fixture>(f: &F) {
    let _calc = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    assert_eq!(calc.div(7, 2).await.unwrap(), Ok(3));
    assert_eq!(calc.div(7, 0).await.unwrap(), Err(MathError::DivideByZero));
    assert_eq!(
        calc.div(i64::MIN, -1).await.unwrap(),
        Err(MathError::Overflow {
            operation: "div".into()
        })
    );
}

/// A oneway call reaches the server; nobody waits for a reply.
pub async fn oneway_calls_arrive<F: Fixture>(f: &F) {
    let mut calc_server = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    calc.log("first".into()).await.unwrap();
    calc.log("second".into()).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let line = tokio::time::timeout(Duration::from_secs(5), calc_server.lines.recv())
            .await
            .expect("oneway call arrives");
        got.push(line.unwrap());
    }
    got.sort();
    assert_eq!(got, ["first", "second"]);
    assert_eq!(calc.client().pending_calls(), 0);
}

/// Against a server that never replies, a call ends with `Timeout` within deadline + 50 ms.
///
/// Measured against a control, a bare tokio timer of the same deadline run
/// beside the call: a machine busy elsewhere delays every timer, and the
/// library answers for what it adds to the runtime's own lateness.
pub async fn timeout_within_deadline<F: Fixture>(f: &F) {
    let _calc = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    calc.client().connect().await.unwrap();
    let deadline = Duration::from_millis(200);
    let started = Instant::now();
    let call = async {
        let result = calc.with_timeout(deadline).hang().await;
        (result, started.elapsed())
    };
    let control = async {
        tokio::time::sleep(deadline).await;
        started.elapsed()
    };
    // The call first: when both timers have fired, the call is measured first.
    let ((result, took), control) = tokio::join!(biased; call, control);
    assert!(matches!(result, Err(RpcError::Timeout)), "{result:?}");
    assert!(took >= deadline, "ended early: {took:?}");
    // The call ends after two wake-ups (the watchdog's, then this task's),
    // its control after one: a machine that delays a wake-up by as much as
    // the control was late may delay the call by that once more.
    let control_late = control.saturating_sub(deadline);
    assert!(
        took <= control + control_late + Duration::from_millis(50),
        "ended late: {took:?} (a bare timer of the same deadline: {control:?})"
    );
    assert_eq!(calc.client().pending_calls(), 0);
}

/// A client built from a newer trait gets `NoSuchMethod` for a method the server lacks.
pub async fn unknown_method_is_typed<F: Fixture>(f: &F) {
    let _calc = serve_calc(f.transport().await, 1, 16).await;
    let next = CalcNextClient::new(f.transport().await);
    match next.sqrt(2.0).await {
        Err(RpcError::NoSuchMethod { service, method }) => {
            assert_eq!(service, "conformance.calc");
            assert_eq!(method, "sqrt");
        }
        other => panic!("expected NoSuchMethod, got {other:?}"),
    }
}

/// Arguments of the wrong types get a `Decode` error reply, and the server keeps serving.
pub async fn undecodable_arguments_are_typed<F: Fixture>(f: &F) {
    let calc_server = serve_calc(f.transport().await, 1, 16).await;
    let transport = f.transport().await;
    for codec in [ContentType::Bincode, ContentType::Json] {
        let next =
            CalcNextClient::from_client(Client::new(transport.clone()).with_content_type(codec));
        let result = next.add("not a".into(), "number at all".into()).await;
        assert!(
            matches!(result, Err(RpcError::Decode { .. })),
            "{codec:?}: {result:?}"
        );
    }
    assert_eq!(calc_server.probe.calls.load(Ordering::SeqCst), 0);
    let calc = CalcClient::new(transport);
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
}

/// A handler panic becomes a `Remote` error and the server keeps serving.
pub async fn panics_become_remote_errors<F: Fixture>(f: &F) {
    let calc_server = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    for _ in 0..3 {
        match calc.boom("kaboom".into()).await {
            Err(RpcError::Remote { message }) => assert!(message.contains("kaboom"), "{message}"),
            other => panic!("expected Remote, got {other:?}"),
        }
        assert_eq!(calc.add(20, 22).await.unwrap(), 42);
    }
    assert_eq!(calc_server.server.stats().panicked(), 3);
}

/// 1,000 concurrent calls over one client each get their own answer.
pub async fn concurrent_calls_get_their_own_answers<F: Fixture>(f: &F) {
    let _calc = serve_calc(f.transport().await, 1, 256).await;
    let calc = CalcClient::new(f.transport().await);
    let calls = (0..1000i64).map(|i| {
        let calc = calc.clone();
        async move { (i, calc.add(i, 1_000_000 * i).await) }
    });
    for (i, result) in join_all(calls).await {
        assert_eq!(result.unwrap(), i + 1_000_000 * i);
    }
    assert_eq!(calc.client().pending_calls(), 0);
}

/// Duplicated replies are dropped and counted; each call completes once.
pub async fn duplicate_replies_are_dropped<F: Fixture>(f: &F) {
    let server_transport = Tap::new(f.transport().await);
    server_transport.duplicate_replies(true);
    let _calc = serve_calc(server_transport, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    for i in 0..50 {
        assert_eq!(calc.add(i, i).await.unwrap(), 2 * i);
    }
    // The last duplicate may still be on its way; wait for it, bounded.
    let waited = tokio::time::timeout(Duration::from_secs(5), async {
        while calc.client().dropped_replies() < 50 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "dropped {}",
        calc.client().dropped_replies()
    );
    assert_eq!(calc.client().dropped_replies(), 50);
    assert_eq!(calc.client().pending_calls(), 0);
}

/// Dropped (cancelled) call futures and timed-out calls leave nothing behind.
pub async fn cancelled_calls_leave_nothing_behind<F: Fixture>(f: &F) {
    let _calc = serve_calc(f.transport().await, 1, 256).await;
    let calc = CalcClient::new(f.transport().await);
    calc.client().connect().await.unwrap();
    let mut calls: Vec<_> = (0..50).map(|_| Box::pin(calc.hang())).collect();
    for call in &mut calls {
        assert!(call.as_mut().now_or_never().is_none());
    }
    assert_eq!(calc.client().pending_calls(), 50);
    drop(calls);
    assert_eq!(calc.client().pending_calls(), 0);

    let short = calc.with_timeout(Duration::from_millis(20));
    let results = join_all((0..20).map(|_| short.hang())).await;
    assert!(results.iter().all(|r| matches!(r, Err(RpcError::Timeout))));
    assert_eq!(calc.client().pending_calls(), 0);
}

/// Past the client's cap on calls in flight, calls fail at once with `Overloaded`.
pub async fn client_cap_gives_overloaded<F: Fixture>(f: &F) {
    let _calc = serve_calc(f.transport().await, 1, 16).await;
    let config = rpc_core::ClientConfig::default().max_in_flight(4);
    let calc = CalcClient::from_client(Client::with_config(f.transport().await, config));
    calc.client().connect().await.unwrap();
    let mut calls: Vec<_> = (0..4).map(|_| Box::pin(calc.hang())).collect();
    for call in &mut calls {
        assert!(call.as_mut().now_or_never().is_none());
    }
    assert!(matches!(calc.add(1, 1).await, Err(RpcError::Overloaded)));
    drop(calls);
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
}

/// Graceful shutdown finishes every call in flight; none is lost.
pub async fn graceful_shutdown_loses_nothing<F: Fixture>(f: &F) {
    let calc_server = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    let calls = spawn_gated(&calc, 0..10u32);
    let probe = calc_server.probe.clone();
    tokio::time::timeout(Duration::from_secs(10), probe.wait_in_gate(10))
        .await
        .expect("all calls reach the handler");
    let shutdown = tokio::spawn(calc_server.server.shutdown());
    tokio::task::yield_now().await;
    probe.gate.add_permits(10);
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as u32);
    }
    let report = shutdown.await.unwrap();
    assert!(report.drained, "{report:?}");
    assert_eq!(report.abandoned, 0);
}

/// Two servers of one service share the calls.
///
/// Each server runs 4 calls at once and the calls are held in their
/// handlers, so 8 of them can only all be running when both servers take a
/// share. (Counting who answered many quick calls instead depended on how
/// fast each server's path was scheduled, and failed on a loaded machine.)
pub async fn two_servers_share_the_load<F: Fixture>(f: &F) {
    if !f.shares_by_credit() {
        return two_servers_share_at_random(f).await;
    }
    let one = serve_calc(f.transport().await, 1, 4).await;
    let two = serve_calc(f.transport().await, 2, 4).await;
    let calc = CalcClient::new(f.transport().await);
    let calls = spawn_gated(&calc, 0..8u32);
    let both_full = async {
        one.probe.wait_in_gate(4).await;
        two.probe.wait_in_gate(4).await;
    };
    tokio::time::timeout(Duration::from_secs(10), both_full)
        .await
        .expect("each server runs four of the held calls");
    one.probe.gate.add_permits(4);
    two.probe.gate.add_permits(4);
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as u32);
    }
}

/// Without credit, two servers of one service each get some of 16 held
/// calls (all 16 on one server by chance: 2 in 65,536).
async fn two_servers_share_at_random<F: Fixture>(f: &F) {
    let one = serve_calc(f.transport().await, 1, 16).await;
    let two = serve_calc(f.transport().await, 2, 16).await;
    let calc = CalcClient::new(f.transport().await);
    let calls = spawn_gated(&calc, 0..16u32);
    let all_held = async {
        loop {
            let (a, b) = (one.probe.entered.notified(), two.probe.entered.notified());
            let held =
                one.probe.in_gate.load(Ordering::SeqCst) + two.probe.in_gate.load(Ordering::SeqCst);
            if held == 16 {
                return;
            }
            tokio::select! { () = a => {}, () = b => {} }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), all_held)
        .await
        .expect("all held calls reach a handler");
    let (a, b) = (
        one.probe.in_gate.load(Ordering::SeqCst),
        two.probe.in_gate.load(Ordering::SeqCst),
    );
    assert!(a > 0 && b > 0, "one server got every call: {a} and {b}");
    one.probe.gate.add_permits(16);
    two.probe.gate.add_permits(16);
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as u32);
    }
}

/// A call to a service nobody serves fails fast with `NoRoute`, not by timeout.
pub async fn unserved_service_fails_fast<F: Fixture>(f: &F) {
    let echo = EchoClient::new(f.transport().await);
    fails_fast_with_no_route(echo.text("anyone?".into())).await;
}

/// Asserts `call` fails with `NoRoute`, and in under a second: a thirtieth
/// of the client's default deadline, so only a call left to time out could
/// miss it, however loaded the machine.
pub async fn fails_fast_with_no_route<R: std::fmt::Debug>(
    call: impl Future<Output = Result<R, RpcError>>,
) {
    let started = Instant::now();
    let result = call.await;
    assert!(
        matches!(result, Err(RpcError::NoRoute { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// A handler sees its deadline, correlation id and metadata, and its onward
/// calls inherit the remaining deadline.
pub async fn context_reaches_the_handler<F: Fixture>(f: &F) {
    let _calc = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await)
        .with_metadata("tenant", "acme")
        .with_timeout(Duration::from_secs(2));
    let seen = calc.context().await.unwrap();
    assert_eq!(seen.tenant.as_deref(), Some("acme"));
    assert_eq!(seen.method, "context");
    assert_ne!(seen.correlation_id, 0);
    let left = seen.remaining_ms.expect("a deadline");
    assert!(left > 0 && left <= 2_000, "{left}");

    // The server's own client has the 30 s default; inherited, the inner
    // call gets at most what the outer call had.
    let inner = calc.onward().await.unwrap();
    let left = inner.remaining_ms.expect("a deadline");
    assert!(
        left <= 2_000,
        "inner call did not inherit the deadline: {left} ms"
    );
    assert_eq!(inner.tenant, None, "metadata is per call, not inherited");
}

/// A request whose deadline passed before the server got it is not run.
pub async fn expired_requests_are_not_run<F: Fixture>(f: &F) {
    let calc_server = serve_calc(f.transport().await, 1, 1).await;
    let late = Tap::new(f.transport().await);
    late.delay_requests(Some(Duration::from_millis(150)));
    let calc = CalcClient::new(late.clone()).with_timeout(Duration::from_millis(30));
    assert!(matches!(calc.add(1, 2).await, Err(RpcError::Timeout)));
    late.wait_delayed_sent(1).await;
    // The server runs one request at a time, in order: once this call is
    // answered, the late one has been seen (or dropped by the fabric).
    let on_time = CalcClient::new(f.transport().await);
    assert_eq!(on_time.add(2, 2).await.unwrap(), 4);
    assert_eq!(calc_server.probe.calls.load(Ordering::SeqCst), 1);
}

/// Methods marked `#[rpc(at_most_once)]` still answer normally.
pub async fn at_most_once_methods_answer<F: Fixture>(f: &F) {
    let _calc = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    assert_eq!(calc.charge(1234).await.unwrap(), 1234);
}

/// A server keeps its transport open: one given the only handle on it
/// still serves.
pub async fn server_keeps_its_transport_open<F: Fixture>(f: &F) {
    let _server = Server::builder(f.transport().await)
        .serve(EchoServer::new(EchoImpl))
        .await
        .expect("serve echo");
    let echo = EchoClient::new(f.transport().await).with_timeout(Duration::from_secs(10));
    assert_eq!(
        echo.text("still there?".into()).await.unwrap(),
        "still there?"
    );
}

/// Competing consumers: with two servers, every request runs exactly once.
pub async fn each_request_runs_once<F: Fixture>(f: &F) {
    let one = serve_calc(f.transport().await, 1, 16).await;
    let two = serve_calc(f.transport().await, 2, 16).await;
    let calc = CalcClient::new(f.transport().await);
    let calls = (0..200i64).map(|i| {
        let calc = calc.clone();
        async move { calc.add(i, i).await }
    });
    for (i, result) in join_all(calls).await.into_iter().enumerate() {
        assert_eq!(result.unwrap(), 2 * i as i64);
    }
    let ran = one.probe.calls.load(Ordering::SeqCst) + two.probe.calls.load(Ordering::SeqCst);
    assert_eq!(ran, 200, "requests ran {ran} times in all");
}

/// Replies reach the inbox of the client that called, and no other.
pub async fn replies_reach_their_own_client<F: Fixture>(f: &F) {
    let calc = serve_calc(f.transport().await, 1, 64).await;
    let first = CalcClient::new(f.transport().await);
    let second = CalcClient::new(f.transport().await);
    let calls = (0..100i64).map(|i| {
        let (first, second) = (first.clone(), second.clone());
        async move { tokio::join!(first.add(i, 1), second.add(i, 1_000)) }
    });
    let results = join_all(calls).await;
    // A call that failed says which side lost it: whether its handler ran
    // (every request reached the server) or not.
    let ran = calc.probe.calls.load(Ordering::SeqCst);
    for (i, (a, b)) in (0..).zip(results) {
        for (client, result, want) in [("first", a, i + 1), ("second", b, i + 1_000)] {
            match result {
                Ok(sum) => assert_eq!(sum, want, "the {client} client's call {i}"),
                Err(error) => panic!(
                    "the {client} client's call {i} failed: {error:?}; \
                     the server ran {ran} of 200 requests"
                ),
            }
        }
    }
    assert_eq!(first.client().dropped_replies(), 0);
    assert_eq!(second.client().dropped_replies(), 0);
}

/// A oneway call to a service nobody serves fails fast with `NoRoute`.
pub async fn oneway_to_unserved_service_fails_fast<F: Fixture>(f: &F) {
    let calc = CalcClient::new(f.transport().await);
    fails_fast_with_no_route(calc.log("anyone?".into())).await;
}

/// A request whose delivery is dropped unsettled goes to another server
/// (on fabrics that keep a copy); on the others its caller is not left
/// hanging past its deadline.
pub async fn abandoned_requests_go_to_another_server<F: Fixture>(f: &F) {
    let first = f.transport().await;
    let mut requests = first
        .serve(&ServiceSpec::new("conformance.calc", 1))
        .await
        .expect("serve");
    let calc = CalcClient::new(f.transport().await).with_timeout(Duration::from_secs(10));
    let call = tokio::spawn({
        let calc = calc.clone();
        async move { calc.add(2, 3).await }
    });
    let delivery = tokio::time::timeout(Duration::from_secs(10), requests.next())
        .await
        .expect("the request arrives")
        .expect("the stream is open");
    // Stop receiving, then abandon the one taken.
    drop(requests);
    drop(delivery);
    let second = serve_calc(f.transport().await, 2, 16).await;
    let result = call.await.unwrap();
    if f.fabric().redelivers_abandoned {
        assert_eq!(result.unwrap(), 5);
        assert_eq!(second.probe.calls.load(Ordering::SeqCst), 1);
    } else {
        assert!(result.is_err(), "a lost request answered: {result:?}");
    }
}

/// A reply the transport could not send is sent again: the request goes
/// back to the fabric, and its redelivery is answered from the server's
/// replay cache without running the handler again. A fabric that does not
/// redeliver cannot: the call ends typed, at its deadline or when the
/// fabric reports it ended unanswered (ZeroMQ's `DONE`).
pub async fn unsent_replies_are_sent_again<F: Fixture>(f: &F) {
    let server_transport = Tap::new(f.transport().await);
    server_transport.fail_replies(1);
    let server = serve_calc(server_transport, 1, 16).await;
    let redelivers = f.fabric().redelivers_abandoned;
    let deadline = Duration::from_secs(if redelivers { 20 } else { 2 });
    let calc = CalcClient::new(f.transport().await).with_timeout(deadline);
    let result = calc.add(2, 3).await;
    if redelivers {
        assert_eq!(result.unwrap(), 5);
        assert_eq!(
            server.probe.calls.load(Ordering::SeqCst),
            1,
            "the handler ran once"
        );
    } else {
        assert!(
            matches!(result, Err(RpcError::Timeout | RpcError::ConnectionLost)),
            "{result:?}"
        );
    }
}

/// When a client's connection breaks, its calls in flight fail at once with
/// `ConnectionLost`, and calls work again once the transport has recovered.
pub async fn connection_loss_fails_calls_then_recovers<F: Fixture>(f: &F) {
    let calc_server = serve_calc(f.transport().await, 1, 16).await;
    let transport = f.transport().await;
    let calc = CalcClient::new(transport.clone());
    let calls = spawn_gated(&calc, 0..3u32);
    tokio::time::timeout(Duration::from_secs(10), calc_server.probe.wait_in_gate(3))
        .await
        .expect("the calls reach the handler");
    if !f.break_connection(&transport).await {
        eprintln!("notice: this fixture cannot break connections; case skipped");
        calc_server.probe.gate.add_permits(3);
        return;
    }
    for call in calls {
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("a call in flight ends once the connection is lost")
            .unwrap();
        assert!(
            matches!(result, Err(RpcError::ConnectionLost)),
            "{result:?}"
        );
    }
    calc_server.probe.gate.add_permits(3);
    let recovered = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match calc.with_timeout(Duration::from_secs(2)).add(1, 1).await {
                Ok(sum) => return sum,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("calls work again after the transport recovers");
    assert_eq!(recovered, 2);
}

/// How long a test waits for what the server does on its own (a handler
/// dropped) before calling it a hang: a guard, not a timing assertion.
const HANG: Duration = Duration::from_secs(10);

/// Waits until `done` holds, checking every few milliseconds, for counters
/// that have no signal of their own; panics with `what` after [`HANG`].
async fn eventually(what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(HANG, wait)
        .await
        .unwrap_or_else(|_| panic!("{what}"));
}

/// Waits until the server answers a call: some fabrics take a while before
/// a new server receives (a consumer group's join, on Kafka), and the short
/// deadlines of the cases below are for the handler, not for that.
async fn wait_served<T: Transport>(calc: &CalcClient<T>) {
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
}

/// Every server answers introspection with no code from its author: one
/// instance through the service's own requests on every fabric; every
/// instance at once where the transport broadcasts
/// ([`Fixture::broadcasts`]). Elsewhere a broadcast fails at once with
/// `Unsupported` rather than gathering nothing until its deadline.
pub async fn servers_answer_introspection<F: Fixture>(f: &F) {
    let one = serve_calc(f.transport().await, 1, 4).await;
    let two = serve_calc(f.transport().await, 2, 4).await;
    let calc = CalcClient::new(f.transport().await);
    wait_served(&calc).await;
    let mut ask = Introspector::new(f.transport().await).await.unwrap();
    let name = CALC_DESCRIPTOR.name;

    let ping = ask.ping(name, INTROSPECTION_TIMEOUT).await.unwrap();
    assert_eq!(ping.service, name);
    assert_eq!(ping.version, CALC_DESCRIPTOR.version);
    let info = ask.info(name, INTROSPECTION_TIMEOUT).await.unwrap();
    assert_eq!(info.methods.len(), CALC_DESCRIPTOR.methods.len());
    let add = info.methods.iter().find(|m| m.name == "add").unwrap();
    assert!(add.signature.contains("fn add"), "{add:?}");
    let stats = ask.stats(name, INTROSPECTION_TIMEOUT).await.unwrap();
    assert!(stats.methods.iter().any(|m| m.method == "add"), "{stats:?}");

    let gathered = ask.ping_all(Some(name), INTROSPECTION_GATHER).await;
    if f.broadcasts() {
        let fleet = gathered.expect("a broadcast ping");
        let instances: std::collections::BTreeSet<_> =
            fleet.iter().map(|p| p.instance.clone()).collect();
        assert_eq!(instances.len(), 2, "both servers answer: {fleet:?}");
        assert!(instances.contains(&ping.instance));
    } else {
        assert!(
            matches!(
                gathered,
                Err(RpcError::Transport(TransportError::Unsupported { .. }))
            ),
            "{gathered:?}"
        );
    }
    drop(calc);
    one.server.shutdown().await;
    two.server.shutdown().await;
}

/// How long one introspection query may take (a Kafka group may still be
/// rebalancing onto the second server).
const INTROSPECTION_TIMEOUT: Duration = Duration::from_secs(20);

/// How long a broadcast gathers answers: every live server answers well
/// within it on a loaded machine.
const INTROSPECTION_GATHER: Duration = Duration::from_millis(1500);

/// At its call's deadline the server drops the handler's future.
pub async fn a_handler_is_dropped_at_its_deadline<F: Fixture>(f: &F) {
    let calc_server = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    wait_served(&calc).await;
    let short = calc.with_timeout(Duration::from_millis(100));
    assert!(matches!(short.linger().await, Err(RpcError::Timeout)));
    tokio::time::timeout(HANG, calc_server.probe.wait_lingering(0))
        .await
        .expect("the handler outlived its deadline");
    // Counted just after the handler's future is dropped.
    eventually("counted as cut at the deadline", || {
        calc_server.server.stats().cut_at_deadline() == 1
    })
    .await;
}

/// A call future dropped before its answer sends a cancel, and the server
/// (here the only one) drops the handler's future.
pub async fn a_dropped_call_cancels_its_handler<F: Fixture>(f: &F) {
    let calc_server = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    let mut call = Box::pin(calc.linger());
    tokio::select! {
        ended = &mut call => panic!("linger returned: {ended:?}"),
        () = calc_server.probe.wait_lingering(1) => {}
    }
    drop(call);
    tokio::time::timeout(HANG, calc_server.probe.wait_lingering(0))
        .await
        .expect("the handler outlived its cancelled call");
    eventually("counted as cancelled", || {
        calc_server.server.stats().cancelled() == 1
    })
    .await;
    // The cancel is acked, not refused as a stray message.
    assert_eq!(calc_server.server.stats().rejected(), 0);
    assert_eq!(calc.add(1, 1).await.unwrap(), 2);
}

/// A method marked `#[rpc(run_to_completion)]` finishes past its deadline.
pub async fn run_to_completion_outlives_the_deadline<F: Fixture>(f: &F) {
    let calc_server = serve_calc(f.transport().await, 1, 16).await;
    let calc = CalcClient::new(f.transport().await);
    wait_served(&calc).await;
    // The deadline leaves the request time to reach the handler on a
    // loaded machine over a broker (Kafka's fetch waits included); the
    // handler runs well past it.
    let calc = calc.with_timeout(Duration::from_millis(300));
    let calls_before = calc_server.probe.calls.load(Ordering::SeqCst);
    assert!(matches!(calc.work(1_000).await, Err(RpcError::Timeout)));
    assert_eq!(
        calc_server.probe.calls.load(Ordering::SeqCst),
        calls_before + 1,
        "the request reached its handler before its deadline"
    );
    eventually("the handler was cut short", || {
        calc_server.probe.worked.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(calc_server.server.stats().cut_at_deadline(), 0);
}

/// Generates one `#[tokio::test]` per conformance case for a fixture.
///
/// `$fixture` is an expression of type `impl Future<Output = Option<F>>`;
/// `None` means "skip" (the fixture has printed why). Cases a fabric is
/// known to fail now and then can be run `#[ignore]`d, each with its
/// reason, and stay runnable with `--ignored`:
///
/// ```text
/// rpc_tests::conformance_suite!(KafkaFixture::new("conformance"); ignore {
///     replies_reach_their_own_client: "one call of 200 is lost in some runs",
/// });
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::conformance_suite!($fixture; ignore {});
    };
    ($fixture:expr; ignore { $($ignored:ident: $reason:literal),* $(,)? }) => {
        // `$` goes in as a token, for the case macro below to use.
        $crate::conformance_suite!(@each [$] ($fixture) [$($ignored: $reason),*];
            round_trip_types,
            server_answers_in_callers_codec,
            application_errors,
            oneway_calls_arrive,
            timeout_within_deadline,
            unknown_method_is_typed,
            undecodable_arguments_are_typed,
            panics_become_remote_errors,
            concurrent_calls_get_their_own_answers,
            duplicate_replies_are_dropped,
            cancelled_calls_leave_nothing_behind,
            client_cap_gives_overloaded,
            graceful_shutdown_loses_nothing,
            two_servers_share_the_load,
            unserved_service_fails_fast,
            context_reaches_the_handler,
            expired_requests_are_not_run,
            at_most_once_methods_answer,
            each_request_runs_once,
            server_keeps_its_transport_open,
            replies_reach_their_own_client,
            oneway_to_unserved_service_fails_fast,
            abandoned_requests_go_to_another_server,
            unsent_replies_are_sent_again,
            connection_loss_fails_calls_then_recovers,
            a_handler_is_dropped_at_its_deadline,
            a_dropped_call_cancels_its_handler,
            run_to_completion_outlives_the_deadline,
            servers_answer_introspection,
        );
    };
    (@each [$d:tt] ($fixture:expr) [$($ignored:ident: $reason:literal),*]; $($case:ident),* $(,)?) => {
        // A macro with an arm per ignored case, matched by its name, before
        // the arm every other case takes.
        macro_rules! __conformance_case {
            $(
                ($ignored) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    #[ignore = $reason]
                    async fn $ignored() {
                        $crate::conformance_suite!(@run $fixture; $ignored);
                    }
                };
            )*
            ($d case:ident) => {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $d case() {
                    $crate::conformance_suite!(@run $fixture; $d case);
                }
            };
        }
        $( __conformance_case!($case); )*
    };
    (@run $fixture:expr; $case:ident) => {
        let Some(fixture) = $fixture.await else { return };
        $crate::conformance::$case(&fixture).await;
        $crate::conformance::Fixture::finish(fixture).await;
    };
}
