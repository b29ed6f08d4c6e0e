//! Node failures on the three-node test cluster, under load, with quorum
//! queues. Each test prints a `figure:` line (calls, ok, errors by kind,
//! hung, expired, lost, duplicates executed, time until calls succeed
//! again) and asserts hung = 0, lost = 0 and that calls succeed again. A
//! call whose request outlived its deadline in the queue (a leader election
//! longer than the deadline) ends `Timeout` and counts as expired, not lost.
//!
//! - Leader stop: the node that leads the service's request queue stops
//!   gracefully while 64 callers call; client and servers sit on the other
//!   two nodes.
//! - Client's node stop: the node a client is connected to stops under
//!   load; the client, given every node's URL, reconnects to another node
//!   by itself.
//! - Server's node stop: a server holds at-least-once and at-most-once
//!   calls in its handler when its node stops; the at-least-once ones are
//!   redelivered to a server on another node and answered, the
//!   at-most-once ones never run twice. The server itself, given every
//!   node's URL, reconnects to another node.
//! - Pause: the leader's node is paused (SIGSTOP) for 20 s, under load,
//!   then resumed. Shorter than `net_ticktime` (60 s): a longer pause is a
//!   partition, which the script's `autoheal` setting resolves by
//!   restarting the minority.
//! - Pause beyond the deadline: the same with a 2 s deadline, shorter than
//!   the election: the calls sent just after the pause end `Timeout`, and
//!   their requests are counted expired (dead-lettered or refused unrun).
//!
//! - Broker restart: the node a server and a client know as their only
//!   broker stops and starts again; the figure is how long after it runs
//!   again the first call is answered.
//!
//! Runs under `.ci/rabbit-cluster run -- cargo test -p rpc-tests --test
//! cluster_failover`; skips with a notice without a cluster. The tests take
//! turns (`Cluster::exclusive`), and each starts with every node up.

mod cluster_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_support::{LedgerClient, Load, Runs, Tally, kind, serve_ledger};
use rpc_core::{RpcError, ServerHandle};
use rpc_tests::cluster::{Cluster, others};
use rpc_transport_amqp::{AmqpTransport, QueueKind};
use tokio::sync::MutexGuard;

const CALLERS: usize = 64;
/// The deadline of every call: longer than a leader election, so a request
/// that waits out the fault in its queue is still run.
const DEADLINE: Duration = Duration::from_secs(10);
/// A call not ended this long after its deadline counts as hung.
const GRACE: Duration = Duration::from_secs(15);
/// How long calls must succeed again within, after the fault. Liveness, not
/// speed: the figures give the time.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);
/// How long the broker may take to dead-letter the requests that expired
/// in their queue before the tally counts the rest as lost.
const DEAD_LETTERING: Duration = Duration::from_secs(20);
/// How long the load runs before and after the fault.
const STEADY: Duration = Duration::from_secs(2);

/// Declares the test's queues from node `a` and returns the request
/// queue's name, the dead-letter queue's, and the node leading the first.
async fn declare(cluster: &Cluster, prefix: &str) -> (String, String, char) {
    let transport = cluster
        .builder('a', prefix, "declare")
        .connect()
        .await
        .expect("connect a");
    let (server, _) = serve_ledger(transport.clone(), 1, Arc::default(), true).await;
    server.shutdown().await;
    let queue = transport.request_queue("cluster.ledger");
    let dead_letters = transport.dead_letter_queue("cluster.ledger");
    transport.close().await;
    let leader = cluster.leader(&queue).await;
    (queue, dead_letters, leader)
}

/// One test's turn on the cluster: every node up and no other test
/// faulting nodes until it drops, the test's queues declared, and the
/// record of which requests ran on any of its servers.
struct Turn {
    test: &'static str,
    cluster: Cluster,
    prefix: String,
    /// The service's request queue.
    queue: String,
    /// The service's dead-letter queue.
    dead_letters: String,
    /// The node leading [`Turn::queue`] at the start.
    leader: char,
    runs: Arc<Runs>,
    _exclusive: MutexGuard<'static, ()>,
}

impl Turn {
    /// Takes the cluster for `test`, its queues named under a prefix made
    /// from `name`; `None` (after a notice) when there is no cluster.
    async fn take(test: &'static str, name: &str) -> Option<Turn> {
        let cluster = Cluster::find(test).await?;
        let exclusive = cluster.exclusive().await;
        let prefix = Cluster::prefix(name);
        let (queue, dead_letters, leader) = declare(&cluster, &prefix).await;
        Some(Turn {
            test,
            cluster,
            prefix,
            queue,
            dead_letters,
            leader,
            runs: Arc::new(Runs::default()),
            _exclusive: exclusive,
        })
    }

    /// A transport connected to `node` alone, for `role`.
    async fn connect(&self, node: char, role: &str) -> AmqpTransport {
        self.cluster
            .builder(node, &self.prefix, role)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect {node}: {e}"))
    }

    /// A transport connected to `first` that knows every node's URL (so it
    /// reconnects to another node by itself), for `role`.
    async fn connect_all(&self, first: char, role: &str) -> AmqpTransport {
        self.cluster
            .builder_all(first, &self.prefix, role)
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect {role} to {first} (all nodes known): {e}"))
    }

    /// Ledger servers on the two `(node, role)`s, each on a transport of
    /// its own and serving 32 calls at a time, gates open.
    async fn serve_pair(&self, on: [(char, &str); 2]) -> ServerPair {
        let transports = [
            self.connect(on[0].0, on[0].1).await,
            self.connect(on[1].0, on[1].1).await,
        ];
        let serve = async |transport: &AmqpTransport| {
            serve_ledger(transport.clone(), 32, self.runs.clone(), true)
                .await
                .0
        };
        let servers = [serve(&transports[0]).await, serve(&transports[1]).await];
        ServerPair {
            transports,
            servers,
        }
    }

    /// Ledger servers on the two nodes that do not lead the request queue
    /// (`server-near` and `server-far`, in [`others`]' order).
    async fn serve_off_leader(&self) -> ServerPair {
        let [near, far] = others(self.leader);
        self.serve_pair([(near, "server-near"), (far, "server-far")])
            .await
    }

    /// Stops `node` under load: when the fault began and how long the stop
    /// took.
    async fn stop_node_timed(&self, node: char) -> (Instant, Duration) {
        let fault = Instant::now();
        self.cluster.stop_node(node).await;
        (fault, fault.elapsed())
    }

    /// Lets `load` run [`STEADY`] more, then stops and tallies it.
    async fn settle_and_tally(
        &self,
        load: Load,
        fault: Instant,
        servers: &[&ServerHandle],
        live: char,
    ) -> Tally {
        tokio::time::sleep(STEADY).await;
        self.tally(load, fault, servers, live).await
    }

    /// Stops `load` and tallies it; `servers` are every server of the
    /// test, `live` a node that runs now.
    async fn tally(
        &self,
        load: Load,
        fault: Instant,
        servers: &[&ServerHandle],
        live: char,
    ) -> Tally {
        let calls = load.stop().await;
        // A quorum queue dead-letters on the broker's own time: give the
        // count a while to catch up with the calls that timed out unrun.
        let unrun = calls.unrun_timeouts(&self.runs) as u64;
        let give_up = Instant::now() + DEAD_LETTERING;
        let mut expired = self.expired(servers, live).await;
        while expired < unrun && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(250)).await;
            expired = self.expired(servers, live).await;
        }
        calls.tally(fault, &self.runs, expired)
    }

    /// Requests that outlived their deadline unrun: those `servers` found
    /// expired, and those the broker dead-lettered on expiry (nothing
    /// else reaches the dead-letter queue: `record` never fails), as node
    /// `live` reports them.
    async fn expired(&self, servers: &[&ServerHandle], live: char) -> u64 {
        let by_servers: u64 = servers.iter().map(|s| s.stats().expired()).sum();
        let in_queue = self
            .cluster
            .queue_info(live, &self.dead_letters)
            .await
            .map_or(0, |(_, depth)| depth);
        by_servers + in_queue
    }

    /// Stops `node` under a load of calls by `client` (see
    /// [`steady_load`]), asserts that calls succeed again, lets them run
    /// [`STEADY`] more and tallies them against `servers`; with how long
    /// the stop took.
    async fn stop_node_under_load(
        &self,
        client: &LedgerClient<AmqpTransport>,
        node: char,
        servers: &ServerPair,
    ) -> (Tally, Duration) {
        let load = steady_load(client).await;
        let (fault, stopped_after) = self.stop_node_timed(node).await;
        assert_calls_succeed_again(&load).await;
        let [live, _] = others(node);
        let tally = self
            .settle_and_tally(load, fault, &servers.handles(), live)
            .await;
        (tally, stopped_after)
    }

    /// Prints the test's figure line and asserts that no call hung and
    /// none was lost.
    fn report(&self, tally: &Tally) {
        tally.print(self.test);
        assert_eq!(tally.hung, 0);
        assert_eq!(tally.lost, 0);
    }

    /// Ends a test with a [`ServerPair`]: shuts the servers down, brings
    /// `stopped` back up (deleting a quorum queue waits for its members),
    /// and deletes the test's queues.
    async fn clean_up(&self, pair: ServerPair, stopped: Option<char>, client: &AmqpTransport) {
        for server in pair.servers {
            server.shutdown().await;
        }
        if let Some(node) = stopped {
            self.cluster.start_node(node).await;
        }
        let [first, second] = pair.transports;
        client.cleanup().await.ok();
        second.cleanup().await.ok();
        first.cleanup().await.expect("delete the test's queues");
    }
}

/// Two ledger servers of a test, on two nodes (see [`Turn::serve_pair`]).
struct ServerPair {
    transports: [AmqpTransport; 2],
    servers: [ServerHandle; 2],
}

impl ServerPair {
    fn handles(&self) -> [&ServerHandle; 2] {
        [&self.servers[0], &self.servers[1]]
    }
}

/// A ledger client on `transport` whose calls have the [`DEADLINE`].
fn ledger_client(transport: &AmqpTransport) -> LedgerClient<AmqpTransport> {
    LedgerClient::new(transport.clone()).with_timeout(DEADLINE)
}

/// Starts [`CALLERS`] callers on `client` and lets them run [`STEADY`]
/// before the fault.
async fn steady_load(client: &LedgerClient<AmqpTransport>) -> Load {
    let load = Load::start(client, CALLERS, DEADLINE + GRACE);
    tokio::time::sleep(STEADY).await;
    load
}

/// Asserts that calls succeed again (1 000 more) within
/// [`RECOVERY_LIMIT`] of now.
async fn assert_calls_succeed_again(load: &Load) {
    assert!(
        load.wait_ok(1_000, RECOVERY_LIMIT).await,
        "calls do not succeed again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_node_stops_under_load() {
    let Some(turn) = Turn::take("leader_node_stops_under_load", "leader-stop").await else {
        return;
    };
    let leader = turn.leader;
    let servers = turn.serve_off_leader().await;
    let [near, _] = others(leader);
    let client_transport = turn.connect(near, "client").await;
    let client = ledger_client(&client_transport);

    let (tally, stopped_after) = turn.stop_node_under_load(&client, leader, &servers).await;
    // Asked once calls succeed again, while the old leader is still down.
    let new_leader = turn.cluster.leader(&turn.queue).await;
    println!(
        "figure: leader {leader} stopped in {:.1} s, new leader {new_leader}",
        stopped_after.as_secs_f64()
    );
    turn.report(&tally);
    assert_ne!(new_leader, leader);

    turn.clean_up(servers, Some(leader), &client_transport)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_node_stops_under_load() {
    let Some(turn) = Turn::take("client_node_stops_under_load", "client-stop").await else {
        return;
    };
    let leader = turn.leader;
    // The client's node leads nothing of ours and serves nothing.
    let [doomed, other] = others(leader);
    let servers = turn
        .serve_pair([(leader, "server-leader"), (other, "server-other")])
        .await;
    let client_transport = turn.connect_all(doomed, "client").await;
    let client = ledger_client(&client_transport);

    let (tally, stopped_after) = turn.stop_node_under_load(&client, doomed, &servers).await;
    println!(
        "figure: client's node {doomed} stopped in {:.1} s",
        stopped_after.as_secs_f64()
    );
    turn.report(&tally);

    turn.clean_up(servers, Some(doomed), &client_transport)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_node_stops_with_calls_held() {
    const HELD: u64 = 8;
    let Some(turn) = Turn::take("server_node_stops_with_calls_held", "server-stop").await else {
        return;
    };
    // The doomed server's node leads nothing of ours: this test is about
    // the server's connection, the leader test about the queue.
    let [doomed, client_node] = others(turn.leader);
    let runs = &turn.runs;
    let doomed_transport = turn.connect_all(doomed, "server-doomed").await;
    let survivor_transport = turn.connect(client_node, "server-survivor").await;
    let client_transport = turn.connect(client_node, "client").await;
    let client = ledger_client(&client_transport);

    // The doomed server takes all the held calls, and nothing else.
    let (doomed_server, doomed_gate) = serve_ledger(
        doomed_transport.clone(),
        2 * HELD as usize,
        runs.clone(),
        false,
    )
    .await;
    let held: Vec<_> = (0..HELD)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.held(1_000_000 + i).await })
        })
        .collect();
    let held_once: Vec<_> = (0..HELD)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.held_once(2_000_000 + i).await })
        })
        .collect();
    assert!(
        doomed_gate
            .wait_for(2 * HELD as usize, Duration::from_secs(20))
            .await,
        "the held calls never reached the server"
    );
    let (survivor, _) = serve_ledger(survivor_transport.clone(), 32, runs.clone(), true).await;
    let load = steady_load(&client).await;

    let (fault, stopped_after) = turn.stop_node_timed(doomed).await;
    assert_calls_succeed_again(&load).await;
    // The doomed handlers wake now: their answers have no connection to go by.
    doomed_gate.permits.add_permits(2 * HELD as usize);

    let mut held_ok = 0;
    let mut held_errors = Vec::new();
    for (i, call) in held.into_iter().enumerate() {
        match call.await.expect("held call task") {
            Ok(id) => {
                assert_eq!(id, 1_000_000 + i as u64);
                held_ok += 1;
            }
            Err(error) => held_errors.push(kind(&error)),
        }
    }
    let mut once_outcomes = Vec::new();
    for call in held_once {
        match call.await.expect("held_once call task") {
            Ok(_) => once_outcomes.push("ok"),
            Err(error) => once_outcomes.push(kind(&error)),
        }
    }
    let once_twice = (0..HELD).filter(|i| runs.of(2_000_000 + i) > 1).count();
    let held_twice = (0..HELD).filter(|i| runs.of(1_000_000 + i) > 1).count();
    let tally = turn
        .settle_and_tally(load, fault, &[&doomed_server, &survivor], client_node)
        .await;
    println!(
        "figure: server's node {doomed} stopped in {:.1} s; at-least-once held {HELD}: answered \
         {held_ok}, errors {held_errors:?}, run twice {held_twice}; at-most-once held {HELD}: \
         outcomes {once_outcomes:?}, run twice {once_twice}",
        stopped_after.as_secs_f64()
    );
    turn.report(&tally);
    assert_eq!(
        held_ok, HELD as usize,
        "at-least-once calls are redelivered and answered"
    );
    assert_eq!(once_twice, 0, "an at-most-once request ran twice");
    // Each ran once, on the doomed server: its handler, woken after the
    // server reconnected to another node, answers through the new
    // connection (ok); had it no connection, the call would end `Timeout`.
    assert!(
        once_outcomes
            .iter()
            .all(|e| ["ok", "Timeout", "ConnectionLost"].contains(e)),
        "at-most-once calls end answered or typed: {once_outcomes:?}"
    );

    survivor.shutdown().await;
    drop(doomed_server);
    // Before the node returns: this transport would reconnect to it.
    doomed_transport.close().await;
    // Deleting a quorum queue waits for its members: the node comes back first.
    turn.cluster.start_node(doomed).await;
    client_transport.cleanup().await.ok();
    survivor_transport
        .cleanup()
        .await
        .expect("delete the test's queues");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_node_paused_and_resumed() {
    let Some(turn) = Turn::take("leader_node_paused_and_resumed", "pause").await else {
        return;
    };
    pause_the_leader(turn, DEADLINE).await;
}

/// As [`leader_node_paused_and_resumed`], with a deadline shorter than the
/// election: the requests sent just after the pause wait out their
/// deadline in the queue. Their calls end `Timeout`; the requests expire
/// there and are dead-lettered (or found expired by a server), none lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_node_paused_beyond_the_deadline() {
    /// Well under the election timeout (about 6-10 s here).
    const SHORT: Duration = Duration::from_secs(2);
    let Some(turn) = Turn::take("leader_node_paused_beyond_the_deadline", "pause-short").await
    else {
        return;
    };
    let tally = pause_the_leader(turn, SHORT).await;
    let timeouts = tally.errors.get("Timeout").copied().unwrap_or(0);
    assert!(
        tally.expired > 0,
        "no request outlived a {SHORT:?} deadline through the election"
    );
    assert!(
        tally.expired <= timeouts,
        "more requests expired ({}) than calls timed out ({timeouts})",
        tally.expired
    );
}

/// Pauses the leader's node (SIGSTOP) for 20 s under a load of calls with
/// `deadline`, then resumes it; asserts that calls succeed while it is
/// paused and after, reports and cleans up. Returns the tally.
async fn pause_the_leader(turn: Turn, deadline: Duration) -> Tally {
    /// Well under `net_ticktime` (60 s): the node comes back, not split off.
    const PAUSE: Duration = Duration::from_secs(20);
    let leader = turn.leader;
    let servers = turn.serve_off_leader().await;
    let [_, far] = others(leader);
    let client_transport = turn.connect(far, "client").await;
    let client = LedgerClient::new(client_transport.clone()).with_timeout(deadline);

    let load = Load::start(&client, CALLERS, deadline + GRACE);
    tokio::time::sleep(STEADY).await;
    let fault = Instant::now();
    turn.cluster.suspend_node(leader).await;
    // Calls succeed again while the node is still paused (a new leader
    // takes over after Ra's election timeout, about 6 s here)...
    tokio::time::sleep(PAUSE - STEADY * 4).await;
    let during = load.wait_ok(200, STEADY * 3).await;
    tokio::time::sleep(PAUSE.saturating_sub(fault.elapsed())).await;
    turn.cluster.resume_node(leader).await;
    assert!(during, "calls do not succeed while the leader is paused");
    // And they keep succeeding once the paused node is back.
    assert!(
        load.wait_ok(1_000, RECOVERY_LIMIT).await,
        "calls fail after the resume"
    );
    let new_leader = turn.cluster.leader(&turn.queue).await;
    let tally = turn.tally(load, fault, &servers.handles(), far).await;
    println!(
        "figure: leader {leader} paused {} s, deadline {} s, then leader {new_leader}",
        PAUSE.as_secs(),
        deadline.as_secs()
    );
    turn.report(&tally);

    turn.clean_up(servers, None, &client_transport).await;
    tally
}

/// The broker a server and a client are connected to restarts. Each knows
/// only that broker's URL, as against a single-node deployment, so both
/// must wait for it to come back; both use the default reconnect backoff
/// (50 ms doubling to 1 s, jittered). The queue is quorum and led
/// elsewhere, so it and its requests survive the restart.
///
/// Figure: how long after the node runs again the first call is answered.
/// Asserted: a call made while the node is down fails typed (never hangs),
/// and calls succeed again within [`RECOVERY_LIMIT`] without any restart
/// of ours.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_recovery_time() {
    let Some(turn) = Turn::take("broker_restart_recovery_time", "restart").await else {
        return;
    };
    let [node, _] = others(turn.leader);
    let connect = |role: &str| {
        AmqpTransport::builder(turn.cluster.url(node))
            .queue_prefix(&turn.prefix)
            .queue_kind(QueueKind::Quorum)
            .connection_name(format!("rpc-cluster-{}{role}", turn.prefix))
            .connect()
    };
    let server_transport = connect("server").await.expect("connect the server");
    let (server, _gate) = serve_ledger(server_transport.clone(), 16, turn.runs.clone(), true).await;
    let client_transport = connect("client").await.expect("connect the client");
    let client = LedgerClient::new(client_transport.clone()).with_timeout(Duration::from_secs(2));
    assert_eq!(client.record(1).await.unwrap(), 1);

    let stopping = Instant::now();
    turn.cluster.stop_node(node).await;
    let stop_took = stopping.elapsed();
    let while_down = client.record(2).await;
    assert!(
        matches!(
            while_down,
            Err(RpcError::NotSent | RpcError::ConnectionLost | RpcError::Timeout)
        ),
        "a call while the broker is down: {while_down:?}"
    );

    turn.cluster.start_node(node).await;
    let back = Instant::now();
    let mut id = 3;
    let mut failed = 0;
    loop {
        match client.record(id).await {
            Ok(answer) => {
                assert_eq!(answer, id);
                break;
            }
            Err(error) => {
                failed += 1;
                assert!(
                    back.elapsed() < RECOVERY_LIMIT,
                    "calls do not succeed again: {error:?}"
                );
                // A fast failure (the connection refused) would spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        id += 1;
    }
    let recovered = back.elapsed();
    println!(
        "figure: broker {node} restarted (its stop took {:.1} s); first call answered {:.2} s \
         after it ran again ({failed} calls failed in between, typed); default backoff",
        stop_took.as_secs_f64(),
        recovered.as_secs_f64()
    );

    server.shutdown().await;
    client_transport.cleanup().await.ok();
    server_transport
        .cleanup()
        .await
        .expect("delete the test's queues");
}
