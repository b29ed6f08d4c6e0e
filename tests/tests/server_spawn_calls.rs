//! Where a server runs its calls: with `ServerBuilder::spawn_calls(false)`
//! inside its serve task, with `spawn_calls(true)` each in a tokio task of
//! its own (so one server's handlers can run in parallel); by default
//! inline on a `current_thread` runtime, and on a multi-thread runtime
//! inline up to `SPAWN_CALLS_BEYOND` calls in flight and in tasks of their
//! own beyond. Panics, concurrency and graceful shutdown behave the same
//! either way.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use rpc_core::{RpcError, SPAWN_CALLS_BEYOND, Server, ServerHandle, rpc_service};
use rpc_transport_mem::MemTransport;
use tokio::sync::{Barrier, Notify};

/// Tells which tokio task runs each call.
#[rpc_service(name = "server.spawn")]
pub trait WhereRun {
    /// The id of the task running this call, once every caller the
    /// server waits for is in.
    async fn task(&self) -> String;
    /// Panics.
    async fn boom(&self);
    /// Returns once the test opens the gate.
    async fn gated(&self) -> u32;
}

struct WhereRunImpl {
    meet: Barrier,
    entered: Arc<Notify>,
    gate: Arc<Notify>,
}

/// The test's side of the `gated` handler.
struct Gate {
    /// Signalled when a `gated` call is in its handler.
    entered: Arc<Notify>,
    /// Lets one `gated` call return.
    open: Arc<Notify>,
}

impl WhereRun for WhereRunImpl {
    async fn task(&self) -> String {
        // Every call is running at once before any answers, so the answers
        // come from calls in flight together.
        self.meet.wait().await;
        format!(
            "{:?}",
            tokio::task::try_id().expect("a handler runs in a task")
        )
    }

    async fn boom(&self) {
        panic!("boom");
    }

    async fn gated(&self) -> u32 {
        self.entered.notify_one();
        self.gate.notified().await;
        7
    }
}

/// Serves on `transport`, with `spawn_calls` set as given (`None`: the
/// default); `task` calls wait until `meet` of them are in.
async fn serve(
    transport: &MemTransport,
    spawn_calls: Option<bool>,
    meet: usize,
) -> (ServerHandle, Gate) {
    let gate = Gate {
        entered: Arc::new(Notify::new()),
        open: Arc::new(Notify::new()),
    };
    let service = WhereRunImpl {
        meet: Barrier::new(meet),
        entered: gate.entered.clone(),
        gate: gate.open.clone(),
    };
    let mut builder = Server::builder(transport.clone());
    if let Some(spawn_calls) = spawn_calls {
        builder = builder.spawn_calls(spawn_calls);
    }
    let server = builder
        .serve(WhereRunServer::new(service))
        .await
        .expect("serve");
    (server, gate)
}

/// How many of `n` calls in flight together ran in each task, largest
/// share first.
async fn calls_per_task(spawn_calls: Option<bool>, n: usize) -> Vec<usize> {
    let transport = MemTransport::new();
    let (_server, _gate) = serve(&transport, spawn_calls, n).await;
    let client = WhereRunClient::new(transport);
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.task().await })
        })
        .collect();
    let mut per_task = HashMap::<String, usize>::new();
    for call in calls {
        let task = call.await.expect("call task").expect("answered");
        *per_task.entry(task).or_default() += 1;
    }
    let mut shares: Vec<usize> = per_task.into_values().collect();
    shares.sort_unstable_by(|a, b| b.cmp(a));
    shares
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unspawned_calls_run_inside_the_serve_task() {
    assert_eq!(
        calls_per_task(Some(false), 2).await,
        [2],
        "both calls ran in the one serve task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_calls_run_in_tasks_of_their_own() {
    assert_eq!(
        calls_per_task(Some(true), 2).await,
        [1, 1],
        "each call ran in its own task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_multi_thread_server_spawns_the_calls_beyond_a_few() {
    let shares = calls_per_task(None, SPAWN_CALLS_BEYOND + 2).await;
    assert_eq!(
        shares,
        [SPAWN_CALLS_BEYOND, 1, 1],
        "the first {SPAWN_CALLS_BEYOND} in the serve task, each later one in its own"
    );
}

#[tokio::test]
async fn by_default_a_current_thread_server_runs_every_call_inline() {
    let n = SPAWN_CALLS_BEYOND + 2;
    assert_eq!(calls_per_task(None, n).await, [n], "all in the serve task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_call_that_panics_is_answered_and_the_server_goes_on() {
    let transport = MemTransport::new();
    let (server, gate) = serve(&transport, Some(true), 2).await;
    let client = WhereRunClient::new(transport);
    match client.boom().await {
        Err(RpcError::Remote { message }) => assert!(message.contains("boom"), "{message}"),
        other => panic!("expected a Remote error, got {other:?}"),
    }
    let answer = tokio::spawn({
        let client = client.clone();
        async move { client.gated().await }
    });
    // The gate remembers one permit, so opening it before the call arrives
    // still lets that call through.
    gate.open.notify_one();
    assert_eq!(answer.await.expect("call task").expect("served"), 7);
    assert_eq!(server.stats().panicked(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_spawned_calls() {
    let transport = MemTransport::new();
    let (server, gate) = serve(&transport, Some(true), 2).await;
    let client = WhereRunClient::new(transport);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.gated().await }
    });
    tokio::time::timeout(Duration::from_secs(10), gate.entered.notified())
        .await
        .expect("the call reaches its handler");
    let shutdown = tokio::spawn(server.shutdown());
    gate.open.notify_one();
    let report = shutdown.await.expect("shutdown task");
    assert!(report.drained, "{report:?}");
    assert_eq!(report.abandoned, 0);
    assert_eq!(call.await.expect("call task").expect("answered"), 7);
}
