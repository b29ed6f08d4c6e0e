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
use futures_util::future::join_all;
use rpc_core::{Client, ContentType, Kind, RpcError, Server, ServerHandle, Transport};

use crate::services::{
    CalcClient, CalcImpl, CalcNextClient, CalcProbe, CalcServer, EchoClient, EchoImpl, EchoServer,
    MathError, Order, OrderLine, OrderStatus,
};
use crate::tap::Tap;

/// How a transport under test is set up and torn down.
pub trait Fixture: Send + Sync + Sized + 'static {
    /// The transport under test.
    type Transport: Transport;

    /// A transport for one participant. Every call on one fixture reaches
    /// the same fabric and namespace; each may be its own connection.
    fn transport(&self) -> impl Future<Output = Self::Transport> + Send;

    /// Removes what the test left on the fabric.
    fn finish(self) -> impl Future<Output = ()> + Send;
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
    let service = CalcImpl {
        id,
        probe: probe.clone(),
        client: CalcClient::new(transport.clone()),
    };
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
    let big: Vec<u8> = (0..NEAR_LIMIT).map(|i| (i % 251) as u8).collect();
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
    assert!(
        took <= control + Duration::from_millis(50),
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
    let calls: Vec<_> = (0..10u32)
        .map(|n| {
            let calc = calc.clone();
            tokio::spawn(async move { calc.gated(n).await })
        })
        .collect();
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
    let one = serve_calc(f.transport().await, 1, 4).await;
    let two = serve_calc(f.transport().await, 2, 4).await;
    let calc = CalcClient::new(f.transport().await);
    let calls: Vec<_> = (0..8u32)
        .map(|n| {
            let calc = calc.clone();
            tokio::spawn(async move { calc.gated(n).await })
        })
        .collect();
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

/// A call to a service nobody serves fails fast with `NoRoute`, not by timeout.
pub async fn unserved_service_fails_fast<F: Fixture>(f: &F) {
    let echo = EchoClient::new(f.transport().await);
    let started = Instant::now();
    let result = echo.text("anyone?".into()).await;
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

/// Generates one `#[tokio::test]` per conformance case for a fixture.
///
/// `$fixture` is an expression of type `impl Future<Output = Option<F>>`;
/// `None` means "skip" (the fixture has printed why).
#[macro_export]
macro_rules! conformance_suite {
    ($fixture:expr) => {
        $crate::conformance_suite!(@cases $fixture;
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
        );
    };
    (@cases $fixture:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $fixture.await else { return };
                $crate::conformance::$case(&fixture).await;
                $crate::conformance::Fixture::finish(fixture).await;
            }
        )*
    };
}
