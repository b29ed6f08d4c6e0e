//! Where a server runs its calls: by default inside its serve task, with
//! `ServerBuilder::spawn_calls(true)` each in a tokio task of its own (so
//! one server's handlers can run in parallel). Panics, concurrency and
//! graceful shutdown behave the same either way.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{RpcError, Server, ServerHandle, rpc_service};
use rpc_transport_mem::MemTransport;
use tokio::sync::{Barrier, Notify};

/// Tells which tokio task runs each call.
#[rpc_service(name = "server.spawn")]
pub trait WhereRun {
    /// The id of the task running this call, once `meet` callers are in.
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
        // Both calls are running at once before either answers, so the two
        // answers come from two calls in flight together.
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

async fn serve(transport: &MemTransport, spawn_calls: bool) -> (ServerHandle, Gate) {
    let gate = Gate {
        entered: Arc::new(Notify::new()),
        open: Arc::new(Notify::new()),
    };
    let service = WhereRunImpl {
        meet: Barrier::new(2),
        entered: gate.entered.clone(),
        gate: gate.open.clone(),
    };
    let server = Server::builder(transport.clone())
        .spawn_calls(spawn_calls)
        .serve(WhereRunServer::new(service))
        .await
        .expect("serve");
    (server, gate)
}

/// The task ids that two calls in flight together ran in.
async fn two_calls_ran_in(spawn_calls: bool) -> (String, String) {
    let transport = MemTransport::new();
    let (_server, _gate) = serve(&transport, spawn_calls).await;
    let client = WhereRunClient::new(transport);
    let (a, b) = tokio::join!(client.task(), client.task());
    (a.expect("first call"), b.expect("second call"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_calls_run_inside_the_serve_task() {
    let (a, b) = two_calls_ran_in(false).await;
    assert_eq!(a, b, "both calls ran in the one serve task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_calls_run_in_tasks_of_their_own() {
    let (a, b) = two_calls_ran_in(true).await;
    assert_ne!(a, b, "each call ran in its own task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_call_that_panics_is_answered_and_the_server_goes_on() {
    let transport = MemTransport::new();
    let (server, gate) = serve(&transport, true).await;
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
    let (server, gate) = serve(&transport, true).await;
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
