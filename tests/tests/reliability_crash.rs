//! A server process killed (SIGKILL) in the middle of a handler: an
//! at-least-once request is redelivered to another server and answered
//! there; an `#[rpc(at_most_once)]` request runs no more; the caller gets
//! exactly one answer or a typed error, never two.
//!
//! Servers are `reliability_worker` processes (tests/src/bin), so the kill
//! is a real process death: the broker sees the TCP connection drop.

mod reliability_support;

#[path = "../src/bin/reliability_worker/crash.rs"]
mod crash;

use std::process::Stdio;
use std::time::{Duration, Instant};

use rpc_core::RpcError;
use rpc_tests::broker::amqp_url;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crash::CrashClient;
use reliability_support::{BrokerSetup, report};

/// How long a worker may take to say something we wait for.
const SAY_WITHIN: Duration = Duration::from_secs(15);

/// A running `reliability_worker` process and what it has said so far.
struct Worker {
    name: String,
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    said: Vec<String>,
}

impl Worker {
    /// Starts a worker and waits until it consumes.
    async fn start(broker: &BrokerSetup, name: &str, mode: &str) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_reliability_worker"))
            .env("RPC_WORKER_URL", amqp_url())
            .env("RPC_WORKER_PREFIX", &broker.prefix)
            .env("RPC_WORKER_NAME", broker.connection_name(name))
            .env("RPC_WORKER_MODE", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn reliability_worker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut worker = Worker {
            name: broker.connection_name(name),
            child,
            lines,
            said: Vec::new(),
        };
        worker.wait_for("ready").await;
        worker
    }

    /// Waits until the worker says `line`.
    async fn wait_for(&mut self, line: &str) {
        let heard = tokio::time::timeout(SAY_WITHIN, async {
            while let Some(said) = self.lines.recv().await {
                let done = said == line;
                self.said.push(said);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(
            heard,
            Ok(true),
            "{} did not say {line:?}; it said {:?}",
            self.name,
            self.said
        );
    }

    /// SIGKILL, and wait for the process to be gone.
    async fn kill(mut self) {
        self.child.kill().await.expect("kill the worker");
    }

    /// Stops the worker cleanly (it deletes its queues) and returns
    /// everything it said.
    async fn stop(mut self) -> Vec<String> {
        drop(self.child.stdin.take());
        self.wait_for("bye").await;
        let status = tokio::time::timeout(SAY_WITHIN, self.child.wait())
            .await
            .expect("the worker exits")
            .expect("wait for the worker");
        assert!(status.success(), "{}: {status}", self.name);
        self.said
    }
}

fn count(said: &[String], line: &str) -> usize {
    said.iter().filter(|s| *s == line).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_request_is_redelivered_after_a_kill() {
    let Some(broker) = BrokerSetup::new("crash_alo").await else {
        return;
    };
    let mut first = Worker::start(&broker, "first", "block").await;
    let caller = broker.direct("caller").connect().await.expect("connect");
    let crash = CrashClient::new(caller.clone()).with_timeout(Duration::from_secs(30));
    let call = tokio::spawn({
        let crash = crash.clone();
        async move { crash.work(1).await }
    });
    first.wait_for("started work 1").await;
    let first_runs = count(&first.said, "started work 1");
    // The second worker starts while the first holds the request unacked,
    // so it can only get it by redelivery.
    let second = Worker::start(&broker, "second", "answer").await;
    let killed = Instant::now();
    first.kill().await;

    let answer = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call hangs after the kill")
        .expect("call task");
    let redelivered_in = killed.elapsed();
    assert_eq!(answer.expect("answered"), second.name);
    // One more round trip through the only live worker: a second answer to
    // the first call would have arrived by now and been counted as dropped.
    assert_eq!(crash.ping().await.expect("ping"), second.name);
    assert_eq!(crash.client().dropped_replies(), 0, "a second answer came");
    assert_eq!(crash.client().pending_calls(), 0);

    let said = second.stop().await;
    let second_runs = count(&said, "started work 1");
    assert_eq!(second_runs, 1, "{said:?}");
    caller.cleanup().await.expect("delete the reply queue");
    report(
        "crash/at-least-once",
        format_args!(
            "handler runs: killed worker {first_runs}, other worker {second_runs}; caller got \
             1 answer {redelivered_in:?} after the kill; dropped replies {}",
            crash.client().dropped_replies()
        ),
    );
    assert_eq!(broker.queues(), Vec::new(), "queues left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_request_is_not_run_again_after_a_kill() {
    let Some(broker) = BrokerSetup::new("crash_amo").await else {
        return;
    };
    let mut first = Worker::start(&broker, "first", "block").await;
    let caller = broker.direct("caller").connect().await.expect("connect");
    let deadline = Duration::from_secs(6);
    let crash = CrashClient::new(caller.clone()).with_timeout(deadline);
    let call = tokio::spawn({
        let crash = crash.clone();
        async move { crash.charge(7).await }
    });
    first.wait_for("started charge 7").await;
    let first_runs = count(&first.said, "started charge 7");
    let second = Worker::start(&broker, "second", "answer").await;
    first.kill().await;

    let result = tokio::time::timeout(deadline + Duration::from_secs(10), call)
        .await
        .expect("the call hangs after the kill")
        .expect("call task");
    assert!(matches!(result, Err(RpcError::Timeout)), "{result:?}");
    // The second worker runs one request at a time in queue order: had the
    // charge been redelivered, it would have run before this ping.
    assert_eq!(crash.ping().await.expect("ping"), second.name);
    assert_eq!(crash.client().dropped_replies(), 0);
    assert_eq!(crash.client().pending_calls(), 0);

    let said = second.stop().await;
    let second_runs = count(&said, "started charge 7");
    assert_eq!(second_runs, 0, "ran again: {said:?}");
    caller.cleanup().await.expect("delete the reply queue");
    report(
        "crash/at-most-once",
        format_args!(
            "handler runs: killed worker {first_runs}, other worker {second_runs}; caller got \
             {result:?} at its {deadline:?} deadline; dropped replies {}",
            crash.client().dropped_replies()
        ),
    );
    assert_eq!(broker.queues(), Vec::new(), "queues left behind");
}
