//! Access to the three-node test cluster that `.ci/rabbit-cluster` starts:
//! its URLs, its nodes, the skip-or-fail policy, and node faults.
//!
//! The cluster is found through the variables `rabbit-cluster run` exports
//! (`RABBIT_CLUSTER_URLS`, comma-separated, one URL per node in node order,
//! and `RABBIT_CLUSTER_CTL`, the script itself). Without them the cluster
//! tests skip with a notice: the plain `cargo test --workspace` stage of CI
//! has a broker but no cluster. The cluster stage sets
//! `RPC_REQUIRE_CLUSTER=1`, which turns a missing or unreachable cluster
//! into a failure; a cluster that is named but unreachable also fails under
//! `RPC_REQUIRE_BROKER=1`.

use std::time::Duration;

use rpc_transport_amqp::{AmqpTransport, AmqpTransportBuilder, QueueKind};
use tokio::process::Command;
use tokio::sync::{Mutex, MutexGuard};

use crate::broker::{broker_required, unique_prefix};

/// The node letters the script knows, in the order of `RABBIT_CLUSTER_URLS`.
pub const NODES: [char; 3] = ['a', 'b', 'c'];

/// Tests that stop, start or pause nodes take this first, so that one
/// test's fault never lands in another's measurement.
static NODE_FAULTS: Mutex<()> = Mutex::const_new(());

/// Whether cluster tests must run (the CI cluster stage sets
/// `RPC_REQUIRE_CLUSTER=1`).
pub fn cluster_required() -> bool {
    std::env::var("RPC_REQUIRE_CLUSTER").as_deref() == Ok("1")
}

/// The running test cluster.
#[derive(Clone, Debug)]
pub struct Cluster {
    urls: Vec<String>,
    ctl: String,
}

impl Cluster {
    /// The cluster, or `None` after printing a notice when it is not there
    /// (see the module docs for when that panics instead).
    pub async fn find(test: &str) -> Option<Cluster> {
        let urls: Vec<String> = std::env::var("RABBIT_CLUSTER_URLS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect();
        if urls.len() != NODES.len() {
            assert!(
                !cluster_required(),
                "RPC_REQUIRE_CLUSTER=1 but RABBIT_CLUSTER_URLS does not name {} nodes; \
                 run the tests under `.ci/rabbit-cluster run -- cargo test ...`",
                NODES.len()
            );
            eprintln!(
                "notice: skipping {test}: no test cluster (RABBIT_CLUSTER_URLS unset; \
                 run under `.ci/rabbit-cluster run -- ...`)"
            );
            return None;
        }
        let ctl = std::env::var("RABBIT_CLUSTER_CTL").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.ci/rabbit-cluster").to_owned()
        });
        // One node that answers is enough: a test that faults nodes brings
        // every node up first (`exclusive`), and a failed one may have left
        // a node stopped.
        let mut last_error = None;
        for url in &urls {
            let probe = AmqpTransport::builder(url.clone())
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await;
            match probe {
                Ok(probe) => {
                    probe.close().await;
                    last_error = None;
                    break;
                }
                Err(error) => last_error = Some(error),
            }
        }
        if let Some(error) = last_error {
            assert!(
                !(cluster_required() || broker_required()),
                "the test cluster is required but no node of {urls:?} answers: {error}"
            );
            eprintln!("notice: skipping {test}: no cluster node answers ({error})");
            return None;
        }
        Some(Cluster { urls, ctl })
    }

    /// The AMQP URL of `node` (`'a'`, `'b'` or `'c'`).
    pub fn url(&self, node: char) -> &str {
        &self.urls[node_index(node)]
    }

    /// A builder connected to `node`, with quorum queues, prefix `prefix`
    /// and short reconnect waits (a test measures recovery, not backoff).
    /// The connect timeout stays at its default (10 s): it also bounds
    /// `cleanup`, and deleting a quorum queue on a loaded machine took
    /// over 3 s.
    pub fn builder(&self, node: char, prefix: &str, role: &str) -> AmqpTransportBuilder {
        AmqpTransport::builder(self.url(node))
            .queue_prefix(prefix)
            .queue_kind(QueueKind::Quorum)
            .connection_name(format!("rpc-cluster-{}{role}", prefix))
            .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(250))
    }

    /// [`builder`](Cluster::builder) with every node's URL, `first` first:
    /// it connects to `first` and, when that connection is lost, moves on
    /// to the next node that answers.
    pub fn builder_all(&self, first: char, prefix: &str, role: &str) -> AmqpTransportBuilder {
        let start = node_index(first);
        let urls = (0..NODES.len()).map(|i| self.urls[(start + i) % NODES.len()].as_str());
        self.builder(first, prefix, role).urls(urls)
    }

    /// A queue prefix no other test uses.
    pub fn prefix(test: &str) -> String {
        unique_prefix(test)
    }

    /// Takes the right to fault nodes, after bringing every node back up
    /// (a test that failed half-way may have left one stopped or paused).
    pub async fn exclusive(&self) -> MutexGuard<'static, ()> {
        let guard = NODE_FAULTS.lock().await;
        for node in NODES {
            self.script(&["resume-node", &node.to_string()]).await.ok();
            self.script(&["start-node", &node.to_string()])
                .await
                .unwrap_or_else(|e| panic!("bring node {node} up: {e}"));
        }
        guard
    }

    /// Stops `node` gracefully (`rabbitmqctl stop`; the script kills it if
    /// that fails). Returns once the node's VM has exited.
    pub async fn stop_node(&self, node: char) {
        self.script(&["stop-node", &node.to_string()])
            .await
            .unwrap_or_else(|e| panic!("stop node {node}: {e}"));
    }

    /// Starts `node` again; returns once it has rejoined and runs.
    pub async fn start_node(&self, node: char) {
        self.script(&["start-node", &node.to_string()])
            .await
            .unwrap_or_else(|e| panic!("start node {node}: {e}"));
    }

    /// Pauses `node`'s VM (SIGSTOP): to the others it is unreachable, its
    /// sockets stay open.
    pub async fn suspend_node(&self, node: char) {
        self.script(&["suspend-node", &node.to_string()])
            .await
            .unwrap_or_else(|e| panic!("suspend node {node}: {e}"));
    }

    /// Resumes a paused node (SIGCONT).
    pub async fn resume_node(&self, node: char) {
        self.script(&["resume-node", &node.to_string()])
            .await
            .unwrap_or_else(|e| panic!("resume node {node}: {e}"));
    }

    /// The node that leads quorum queue `queue`.
    pub async fn leader(&self, queue: &str) -> char {
        let out = self
            .script(&["leader", queue])
            .await
            .unwrap_or_else(|e| panic!("leader of {queue}: {e}"));
        node_of(out.trim()).unwrap_or_else(|| panic!("unexpected leader {out:?}"))
    }

    /// The type (`quorum`, `classic`) and depth of `queue` as node `node`
    /// reports them, or `None` when it has no such queue.
    pub async fn queue_info(&self, node: char, queue: &str) -> Option<(String, u64)> {
        let out = self
            .script(&[
                "ctl",
                &node.to_string(),
                "list_queues",
                "name",
                "type",
                "messages",
                "--quiet",
                "--no-table-headers",
            ])
            .await
            .unwrap_or_else(|e| panic!("list queues: {e}"));
        out.lines().find_map(|line| {
            let mut fields = line.split('\t');
            if fields.next()? != queue {
                return None;
            }
            let kind = fields.next()?.trim().to_owned();
            let messages = fields.next()?.trim().parse().ok()?;
            Some((kind, messages))
        })
    }

    async fn script(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(&self.ctl)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("run {}: {e}", self.ctl))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "{} {args:?} exited with {}: {stdout}{}",
                self.ctl,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

/// The position of `node` in [`NODES`].
fn node_index(node: char) -> usize {
    NODES
        .iter()
        .position(|n| *n == node)
        .unwrap_or_else(|| panic!("no node {node:?}"))
}

/// The letter of a node name like `rabbit-b@localhost`.
fn node_of(name: &str) -> Option<char> {
    let letter = name.strip_prefix("rabbit-")?.chars().next()?;
    NODES.contains(&letter).then_some(letter)
}

/// The nodes other than `node`, in order.
pub fn others(node: char) -> [char; 2] {
    let mut rest = NODES.iter().copied().filter(|n| *n != node);
    [
        rest.next().expect("three nodes"),
        rest.next().expect("three nodes"),
    ]
}
