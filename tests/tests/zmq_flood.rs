//! A ZeroMQ server under a flood from one peer keeps its other clients:
//! a raw DEALER sends as fast as it can (and never reads what it is sent)
//! while a client with a short heartbeat sits idle; the idle client must
//! keep its link (`servers_lost` 0) and its next call must succeed, as in
//! the control run without the flooder. The server's router task reads
//! the flood from zeromq's buffer without going to the runtime, so unless
//! it yields in turn the tasks that write heartbeats to the idle client
//! wait behind it.
//!
//! The flooder runs on a thread and runtime of its own, as a foreign
//! process would: it is not scheduled with the server's tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;
use rpc_transport_zmq::{ZmqTransport, wire};
use tokio::sync::{oneshot, watch};
use zeromq::DealerSocket;
use zeromq::prelude::*;

/// Short, so that a router held for a few intervals drops its clients.
const HEARTBEAT: Duration = Duration::from_millis(50);
const LIVENESS: u32 = 3;

/// How long the client sits idle under the flood: 20 heartbeat intervals.
const IDLE: Duration = Duration::from_millis(1_000);

/// Messages the flooder sends before the idle period starts: enough that
/// the server is reading the flood.
const BEFORE_IDLE: u64 = 20_000;

#[derive(Clone, Copy, Debug)]
enum Flood {
    /// `HB` after `HB`: the server reads each and answers none.
    Heartbeats,
    /// `HELLO` first (the server then sends it heartbeats), then `HB`s;
    /// it never reads.
    HelloThenHeartbeats,
    /// An unknown command after another: the server answers each with an
    /// `ERROR` the flooder never reads (in a second, fewer than zeromq
    /// queues for a peer: the queue does not fill here).
    Garbage,
}

/// What the idle client saw.
#[derive(Debug)]
struct Outcome {
    servers_lost: u64,
    call: Result<i64, String>,
    call_took: Duration,
    flooded: u64,
    /// Messages the server refused.
    refused: u64,
}

/// Starts the flooder on its own thread; `started` fires once it has sent
/// `BEFORE_IDLE` messages.
fn flood(
    endpoint: String,
    kind: Flood,
    mut stop: watch::Receiver<bool>,
    sent: Arc<AtomicU64>,
    started: oneshot::Sender<()>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("flooder runtime");
        runtime.block_on(async move {
            let mut dealer = DealerSocket::new();
            dealer.connect(&endpoint).await.expect("flooder connects");
            let frame: &'static [u8] = match kind {
                Flood::Heartbeats | Flood::HelloThenHeartbeats => wire::HB,
                Flood::Garbage => b"\x00\xffgarbage",
            };
            if let Flood::HelloThenHeartbeats = kind {
                let hello = wire::message(vec![Bytes::from_static(wire::HELLO)]);
                dealer.send(hello).await.expect("flooder says HELLO");
            }
            let mut started = Some(started);
            loop {
                let message = wire::message(vec![Bytes::from_static(frame)]);
                // A send that cannot complete (the server no longer reads)
                // is given up when the test ends.
                let send = dealer.send(message);
                let sent_now = tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => false,
                    sent = send => sent.is_ok(),
                };
                if !sent_now {
                    break;
                }
                if sent.fetch_add(1, Ordering::Relaxed) + 1 == BEFORE_IDLE
                    && let Some(started) = started.take()
                {
                    let _ = started.send(());
                }
            }
        });
    })
}

fn builder() -> rpc_transport_zmq::ZmqTransportBuilder {
    ZmqTransport::builder()
        .heartbeat_interval(HEARTBEAT)
        .liveness(LIVENESS)
        .reconnect_interval(HEARTBEAT)
        .connect_timeout(Duration::from_secs(2))
}

async fn run(kind: Option<Flood>) -> Outcome {
    let server = builder().bind("tcp://127.0.0.1:0").build().await.unwrap();
    let endpoint = server.endpoints()[0].clone();
    let _calc = serve_calc(server.clone(), 1, 4).await;
    let client = builder().connect(endpoint.clone()).build().await.unwrap();
    let calc = CalcClient::new(client.clone());
    assert_eq!(calc.add(1, 2).await.expect("a call before the flood"), 3);

    let (stop, stopped) = watch::channel(false);
    let sent = Arc::new(AtomicU64::new(0));
    let flooder = kind.map(|kind| {
        let (started, flooding) = oneshot::channel();
        let thread = flood(endpoint.clone(), kind, stopped, sent.clone(), started);
        (thread, flooding)
    });
    let thread = match flooder {
        Some((thread, flooding)) => {
            tokio::time::timeout(Duration::from_secs(30), flooding)
                .await
                .expect("the flooder got its first messages out")
                .expect("the flooder is running");
            Some(thread)
        }
        None => None,
    };

    // The subject: the client does nothing for many heartbeat intervals.
    tokio::time::sleep(IDLE).await;
    let began = Instant::now();
    let call = tokio::time::timeout(Duration::from_secs(5), calc.add(2, 3))
        .await
        .map_err(|_| "no answer in 5 s".to_owned())
        .and_then(|answer| answer.map_err(|error| format!("{error:?}")));
    let call_took = began.elapsed();
    let servers_lost = client.stats().servers_lost;
    let server_stats = server.stats();
    stop.send_replace(true);
    client.close();
    server.close();
    if let Some(thread) = thread {
        thread.join().expect("flooder thread");
    }
    Outcome {
        servers_lost,
        call,
        call_took,
        flooded: sent.load(Ordering::Relaxed),
        refused: server_stats.refused_messages,
    }
}

async fn check(kind: Option<Flood>) {
    let outcome = run(kind).await;
    println!(
        "FIGURES {kind:?}: servers_lost {}, call {:?} in {:?}, flooder sent {}, server refused {}",
        outcome.servers_lost, outcome.call, outcome.call_took, outcome.flooded, outcome.refused
    );
    assert_eq!(outcome.call, Ok(5), "{kind:?}: {outcome:?}");
    assert_eq!(outcome.servers_lost, 0, "{kind:?}: {outcome:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_without_a_flooder() {
    check(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_flood_keeps_idle_clients() {
    check(Some(Flood::Heartbeats)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooder_that_said_hello_and_never_reads_keeps_idle_clients() {
    check(Some(Flood::HelloThenHeartbeats)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_flood_keeps_idle_clients() {
    check(Some(Flood::Garbage)).await;
}

/// Server, idle client and the test on one thread: the router reading the
/// flood must leave the thread to the rest in turn.
#[tokio::test(flavor = "current_thread")]
async fn a_heartbeat_flood_at_a_one_thread_server_keeps_idle_clients() {
    check(Some(Flood::Heartbeats)).await;
}
