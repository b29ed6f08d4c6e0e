//! A handler that holds its thread (computes for long, or blocks) and the
//! calls beside it on a multi-thread runtime: by default a server runs its
//! first calls in flight inside its serve task, so such a handler holds up
//! the server's next requests until it returns; `spawn_calls(true)` runs
//! every call in a task of its own, and the server goes on serving on the
//! runtime's other worker. This is why `ServerBuilder::spawn_calls` exists,
//! and what its docs and docs/ARCHITECTURE.md ("How calls run") advise.

use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use rpc_core::{Server, ServerHandle, rpc_service};
use rpc_transport_mem::MemTransport;
use tokio::sync::mpsc as async_mpsc;

/// Long enough that no busy machine delays an answer this much, short
/// enough to keep the test quick: a fast call not answered within it is
/// held up by the blocked one, not slow.
const HELD_UP: Duration = Duration::from_millis(500);

/// A bound on every wait, so a failing test ends instead of hanging.
const GIVE_UP: Duration = Duration::from_secs(30);

/// A service with a handler that holds its thread, and one that answers at once.
#[rpc_service(name = "server.blocking")]
pub trait Blocking {
    /// Holds its thread until the test releases it, then returns 1.
    async fn hold(&self) -> u32;
    /// Answers at once.
    async fn ping(&self) -> u32;
}

struct BlockingImpl {
    /// Told when `hold` starts holding its thread.
    entered: async_mpsc::UnboundedSender<()>,
    /// Ends the hold.
    release: Mutex<Receiver<()>>,
}

impl Blocking for BlockingImpl {
    async fn hold(&self) -> u32 {
        let _ = self.entered.send(());
        // A blocking wait, no `.await`: the thread is held as a long
        // computation would hold it.
        let release = self.release.lock().expect("one hold at a time");
        release.recv_timeout(GIVE_UP).expect("released");
        1
    }

    async fn ping(&self) -> u32 {
        2
    }
}

/// A server of `Blocking` with `spawn_calls` as given (`None`: the
/// default), the receiver told when `hold` holds its thread, and the
/// sender that releases it.
async fn serve(
    transport: &MemTransport,
    spawn_calls: Option<bool>,
) -> (ServerHandle, async_mpsc::UnboundedReceiver<()>, Sender<()>) {
    let (entered_tx, entered) = async_mpsc::unbounded_channel();
    let (release, release_rx) = mpsc::channel();
    let service = BlockingImpl {
        entered: entered_tx,
        release: Mutex::new(release_rx),
    };
    let mut builder = Server::builder(transport.clone());
    if let Some(spawn_calls) = spawn_calls {
        builder = builder.spawn_calls(spawn_calls);
    }
    let server = builder
        .serve(BlockingServer::new(service))
        .await
        .expect("serve");
    (server, entered, release)
}

/// Starts a `hold` call, waits until its handler holds its thread, and
/// returns whether a `ping` sent then was answered within [`HELD_UP`]; then
/// releases the hold and checks that both calls were answered.
async fn ping_answered_while_held(spawn_calls: Option<bool>) -> bool {
    let transport = MemTransport::new();
    let (_server, mut entered, release) = serve(&transport, spawn_calls).await;
    let client = BlockingClient::new(transport);
    let hold = tokio::spawn({
        let client = client.clone();
        async move { client.hold().await }
    });
    tokio::time::timeout(GIVE_UP, entered.recv())
        .await
        .expect("the hold reaches its handler")
        .expect("the handler is alive");
    let ping = tokio::spawn({
        let client = client.clone();
        async move { client.ping().await }
    });
    let mut ping = std::pin::pin!(ping);
    let early = tokio::time::timeout(HELD_UP, &mut ping).await.ok();
    let answered_while_held = early.is_some();
    release.send(()).expect("the hold waits");
    assert_eq!(hold.await.expect("hold task").expect("hold answered"), 1);
    // Answered now if not before: held up, never lost.
    let ping = match early {
        Some(ping) => ping,
        None => tokio::time::timeout(GIVE_UP, ping)
            .await
            .expect("the ping is answered once the hold ends"),
    };
    assert_eq!(ping.expect("ping task").expect("ping answered"), 2);
    answered_while_held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_spawned_calls_a_held_thread_holds_up_no_other_call() {
    assert!(
        ping_answered_while_held(Some(true)).await,
        "the ping was served on the other worker while the hold held its thread"
    );
}

/// The control for the test above, and what the docs warn of: inline, the
/// held call holds the serve task, so the next request waits for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_held_thread_holds_up_the_calls_behind_it() {
    assert!(
        !ping_answered_while_held(None).await,
        "the ping waited for the hold, which runs in the serve task"
    );
}
