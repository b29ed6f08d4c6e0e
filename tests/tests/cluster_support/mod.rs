//! Shared by the `cluster_*` tests: a service that records which requests
//! ran, a load of concurrent callers, and the tally the figures come from.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "a module of each test binary: each uses a subset, and `pub` is for them"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc_core::{RpcError, Server, ServerHandle, Transport, rpc_service};
use tokio::sync::{Notify, Semaphore};

/// The service the cluster tests call.
#[rpc_service(name = "cluster.ledger")]
pub trait Ledger {
    /// Records that request `id` ran, returns `id`.
    async fn record(&self, id: u64) -> u64;
    /// Records `id`, waits for a permit of the server's gate, returns `id`.
    async fn held(&self, id: u64) -> u64;
    /// [`held`](Ledger::held), acknowledged before it runs.
    #[rpc(at_most_once)]
    async fn held_once(&self, id: u64) -> u64;
}

/// Which request ids ran, and how often, over every server of a test.
#[derive(Debug, Default)]
pub struct Runs {
    counts: Mutex<HashMap<u64, u32>>,
}

impl Runs {
    fn add(&self, id: u64) {
        *self.counts.lock().unwrap().entry(id).or_default() += 1;
    }

    /// How often `id` ran.
    pub fn of(&self, id: u64) -> u32 {
        self.counts.lock().unwrap().get(&id).copied().unwrap_or(0)
    }
}

/// What one server's handlers see.
#[derive(Debug)]
pub struct Gate {
    /// `held` calls take a permit here.
    pub permits: Semaphore,
    /// Calls waiting inside `held` / `held_once` now.
    pub waiting: AtomicUsize,
    changed: Notify,
}

impl Gate {
    fn new(open: bool) -> Arc<Gate> {
        Arc::new(Gate {
            permits: Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 }),
            waiting: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    /// Waits until `n` calls wait in the gate, at most `limit`; whether they do.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> bool {
        tokio::time::timeout(limit, async {
            loop {
                let changed = self.changed.notified();
                if self.waiting.load(Ordering::SeqCst) >= n {
                    return;
                }
                changed.await;
            }
        })
        .await
        .is_ok()
    }

    async fn pass(&self) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        self.permits.acquire().await.expect("never closed").forget();
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The implementation of [`Ledger`] one server runs.
#[derive(Clone, Debug)]
struct LedgerImpl {
    runs: Arc<Runs>,
    gate: Arc<Gate>,
}

impl Ledger for LedgerImpl {
    async fn record(&self, id: u64) -> u64 {
        self.runs.add(id);
        id
    }

    async fn held(&self, id: u64) -> u64 {
        self.runs.add(id);
        self.gate.pass().await;
        id
    }

    async fn held_once(&self, id: u64) -> u64 {
        self.runs.add(id);
        self.gate.pass().await;
        id
    }
}

/// Starts a [`Ledger`] server on `transport` recording into `runs`, its
/// gate open or closed; returns it with its gate.
pub async fn serve_ledger<T: Transport>(
    transport: T,
    concurrency: usize,
    runs: Arc<Runs>,
    gate_open: bool,
) -> (ServerHandle, Arc<Gate>) {
    let gate = Gate::new(gate_open);
    let service = LedgerImpl {
        runs,
        gate: gate.clone(),
    };
    let server = Server::builder(transport)
        .concurrency(concurrency)
        .serve(LedgerServer::new(service))
        .await
        .expect("serve cluster.ledger");
    (server, gate)
}

/// The end of one call.
#[derive(Debug)]
struct Ended {
    id: u64,
    at: Instant,
    /// `None`: ok; `Some(kind)`: the error's kind; `Some("hung")`: no end.
    error: Option<&'static str>,
}

/// The kind of an error, for the tally.
pub fn kind(error: &RpcError) -> &'static str {
    match error {
        RpcError::Timeout => "Timeout",
        RpcError::NoRoute { .. } => "NoRoute",
        RpcError::NoSuchMethod { .. } => "NoSuchMethod",
        RpcError::Decode { .. } => "Decode",
        RpcError::Encode { .. } => "Encode",
        RpcError::Remote { .. } => "Remote",
        RpcError::Overloaded => "Overloaded",
        RpcError::ConnectionLost => "ConnectionLost",
        RpcError::Transport(_) => "Transport",
        RpcError::Closed => "Closed",
        RpcError::TooLarge { .. } => "TooLarge",
        _ => "other",
    }
}

/// Callers that call `record` in a loop, each with its own ids, until told
/// to stop.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Ended>>>,
    /// Successful calls so far, for waiting on progress.
    pub ok: Arc<AtomicU64>,
}

impl Load {
    /// Starts `callers` callers on `client`; a call that has not ended
    /// `grace` after the client's deadline counts as hung.
    pub fn start<T: Transport>(client: &LedgerClient<T>, callers: usize, grace: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let next = Arc::new(AtomicU64::new(1));
        let tasks = (0..callers)
            .map(|_| {
                let (client, stop, ok, next) =
                    (client.clone(), stop.clone(), ok.clone(), next.clone());
                tokio::spawn(async move {
                    let mut ended = Vec::new();
                    while !stop.load(Ordering::SeqCst) {
                        let id = next.fetch_add(1, Ordering::SeqCst);
                        let error = match tokio::time::timeout(grace, client.record(id)).await {
                            Ok(Ok(answer)) => {
                                assert_eq!(answer, id, "an answer to another call");
                                ok.fetch_add(1, Ordering::SeqCst);
                                None
                            }
                            Ok(Err(error)) => Some(kind(&error)),
                            Err(_) => Some("hung"),
                        };
                        if error.is_some() {
                            // A failing node answers at once; do not spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        ended.push(Ended {
                            id,
                            at: Instant::now(),
                            error,
                        });
                    }
                    ended
                })
            })
            .collect();
        Load { stop, tasks, ok }
    }

    /// Waits until `n` more calls succeeded, at most `limit`; whether they did.
    pub async fn wait_ok(&self, n: u64, limit: Duration) -> bool {
        let target = self.ok.load(Ordering::SeqCst) + n;
        let start = Instant::now();
        while self.ok.load(Ordering::SeqCst) < target {
            if start.elapsed() > limit {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stops the callers and waits for the calls they have in flight.
    pub async fn stop(self) -> Calls {
        self.stop.store(true, Ordering::SeqCst);
        let mut ended = Vec::new();
        for task in self.tasks {
            ended.extend(task.await.expect("caller task"));
        }
        ended.sort_by_key(|e| e.at);
        Calls { ended }
    }
}

/// Every call a stopped [`Load`] made, in the order they ended.
#[derive(Debug)]
pub struct Calls {
    ended: Vec<Ended>,
}

impl Calls {
    /// Calls that ended `Timeout` although no server ran their request.
    pub fn unrun_timeouts(&self, runs: &Runs) -> usize {
        self.ended
            .iter()
            .filter(|call| call.error == Some("Timeout") && runs.of(call.id) == 0)
            .count()
    }

    /// Tallies the calls against what the servers ran; `fault` is when the
    /// fault began, `expired` the requests that outlived their deadline
    /// before a server ran them (see [`Tally::expired`]).
    pub fn tally(&self, fault: Instant, runs: &Runs, expired: u64) -> Tally {
        let mut tally = Tally {
            expired: expired as usize,
            ..Tally::default()
        };
        let mut last_ok = fault;
        let mut never_ran: usize = 0;
        for call in &self.ended {
            tally.calls += 1;
            match call.error {
                None => {
                    tally.ok += 1;
                    if call.at > fault {
                        tally.outage = tally.outage.max(call.at - last_ok);
                        last_ok = call.at;
                    }
                }
                Some("hung") => tally.hung += 1,
                Some(kind) => {
                    *tally.errors.entry(kind).or_default() += 1;
                    if kind == "Timeout" && runs.of(call.id) == 0 {
                        never_ran += 1;
                    }
                }
            }
        }
        tally.lost = never_ran.saturating_sub(tally.expired);
        tally.duplicates = self
            .ended
            .iter()
            .filter(|call| runs.of(call.id) > 1)
            .count();
        tally
    }
}

/// How the calls of a [`Load`] ended.
#[derive(Debug, Default)]
pub struct Tally {
    /// Calls made.
    pub calls: usize,
    /// Calls answered.
    pub ok: usize,
    /// Calls that failed, by error kind.
    pub errors: BTreeMap<&'static str, usize>,
    /// Calls that had not ended well after their deadline.
    pub hung: usize,
    /// Requests that outlived their deadline before any server ran them:
    /// found expired by a server (`ServerStats::expired`) or expired in
    /// their queue, which dead-letters them. Kept and accounted for, so
    /// not lost; their calls ended `Timeout`.
    pub expired: usize,
    /// Calls that timed out although no server ever ran their request,
    /// beyond those [`expired`](Tally::expired): the request vanished.
    pub lost: usize,
    /// Requests that ran more than once.
    pub duplicates: usize,
    /// The longest time without a successful answer, from the fault on:
    /// how long until calls succeed again.
    pub outage: Duration,
}

impl Tally {
    /// Prints the figure line the docs quote.
    pub fn print(&self, test: &str) {
        println!(
            "figure: {test}: calls {}, ok {}, errors {:?}, hung {}, expired {}, lost {}, \
             duplicates executed {}, calls succeed again after {:.2} s",
            self.calls,
            self.ok,
            self.errors,
            self.hung,
            self.expired,
            self.lost,
            self.duplicates,
            self.outage.as_secs_f64()
        );
    }
}
