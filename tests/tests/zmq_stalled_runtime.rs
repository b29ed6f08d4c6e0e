//! ZeroMQ liveness judges a peer by the heartbeats this side could hear.
//! A runtime that cannot run for a while (a handler computing on its
//! thread, here with client and server on one `current_thread` runtime; a
//! machine too busy to schedule it) must not take its peers for dead once
//! it runs again: the stall counts as one heartbeat interval, not as the
//! peer's silence. Judged by the clock instead, a call in flight across
//! the stall failed `ConnectionLost` as soon as the runtime ran again.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{Server, rpc_service};
use rpc_tests::zmq::{HEARTBEAT, ZmqFabric};
use tokio::sync::Notify;

/// Many times the liveness period (3 heartbeats, 300 ms): by the clock,
/// each side is silent for this long.
const STALL: Duration = Duration::from_millis(1_500);

/// How long calls go on after the stall: many heartbeat intervals, enough
/// for either side to drop the other if it had judged it dead.
const AFTER_STALL: Duration = Duration::from_millis(1_000);

/// A service whose calls wait without holding the thread.
#[rpc_service(name = "zmq.stall")]
pub trait Wait {
    /// Answers `ms` after waiting `ms` milliseconds (a timer, not the thread).
    async fn wait(&self, ms: u64) -> u64;
}

struct WaitImpl {
    /// Told when a call is in its handler.
    entered: Arc<Notify>,
}

impl Wait for WaitImpl {
    async fn wait(&self, ms: u64) -> u64 {
        self.entered.notify_one();
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }
}

// current_thread: the stall holds the client and the server alike, as an
// overloaded process holds both its ends.
#[tokio::test]
async fn a_stalled_runtime_takes_no_peer_for_dead() {
    let server_side = ZmqFabric::builder()
        .bind("tcp://127.0.0.1:0")
        .build()
        .await
        .expect("bind");
    let entered = Arc::new(Notify::new());
    let service = WaitImpl {
        entered: entered.clone(),
    };
    let _server = Server::builder(server_side.clone())
        .serve(WaitServer::new(service))
        .await
        .expect("serve");
    let endpoint = server_side.endpoints()[0].clone();
    let client_side = ZmqFabric::builder()
        .connect(endpoint)
        .build()
        .await
        .expect("connect");
    let waiter = WaitClient::new(client_side.clone());
    assert_eq!(waiter.wait(0).await.expect("a call before the stall"), 0);

    // A call whose answer comes after the stall, so nothing from the server
    // is there to read when the runtime runs again.
    let ms = (STALL + 3 * HEARTBEAT).as_millis() as u64;
    let call = tokio::spawn({
        let waiter = waiter.clone();
        async move { waiter.wait(ms).await }
    });
    entered.notified().await;
    // The stall: this thread runs every task of the test, and holds them
    // all. Not a stand-in for a signal: the held thread is the subject.
    std::thread::sleep(STALL);
    let answer = call.await.expect("call task");
    assert_eq!(answer.expect("the call in flight across the stall"), ms);

    let until = tokio::time::Instant::now() + AFTER_STALL;
    let mut calls = 0;
    while tokio::time::Instant::now() < until {
        assert_eq!(waiter.wait(0).await.expect("a call after the stall"), 0);
        calls += 1;
        tokio::time::sleep(HEARTBEAT / 4).await;
    }
    assert!(calls > 0);
    let stats = client_side.stats();
    assert_eq!(stats.servers_lost, 0, "{stats:?}");
}
