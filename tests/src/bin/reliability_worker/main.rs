//! A server process for the crash tests (`tests/reliability_crash.rs`).
//!
//! It serves `reliability.crash` over AMQP with concurrency 1 and reports on
//! stdout, one line each: `ready` once it consumes, `started <method> <n>`
//! when a handler starts, `bye` after a clean exit. In `block` mode every
//! `work` and `charge` handler blocks forever after reporting (the test
//! kills the process with SIGKILL); in `answer` mode it answers with the
//! worker's name. Closing its stdin stops it cleanly: it shuts the server
//! down and deletes the queues it declared.
//!
//! Configured by environment: `RPC_WORKER_URL`, `RPC_WORKER_PREFIX` (queue
//! prefix), `RPC_WORKER_NAME` (connection name and answer),
//! `RPC_WORKER_MODE` (`block` or `answer`).

mod crash;

use std::io::Read;
use std::process::ExitCode;
use std::time::Duration;

use rpc_core::Server;
use rpc_transport_amqp::AmqpTransport;

use crate::crash::{Crash, CrashServer};

/// What a handler does after reporting that it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Block,
    Answer,
}

struct Worker {
    name: String,
    mode: Mode,
}

impl Worker {
    async fn run(&self, method: &str, n: u64) -> String {
        say(&format!("started {method} {n}"));
        if self.mode == Mode::Block {
            std::future::pending::<()>().await;
        }
        self.name.clone()
    }
}

impl Crash for Worker {
    async fn work(&self, n: u64) -> String {
        self.run("work", n).await
    }

    async fn charge(&self, n: u64) -> String {
        self.run("charge", n).await
    }

    async fn ping(&self) -> String {
        self.name.clone()
    }
}

/// One line to the test; `println!` flushes at the newline.
fn say(line: &str) {
    println!("{line}");
}

fn env(key: &str) -> Result<String, String> {
    std::env::var(key).map_err(|_| format!("{key} is not set"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("reliability_worker: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), String> {
    let name = env("RPC_WORKER_NAME")?;
    let mode = match env("RPC_WORKER_MODE")?.as_str() {
        "block" => Mode::Block,
        "answer" => Mode::Answer,
        other => return Err(format!("unknown RPC_WORKER_MODE {other:?}")),
    };
    let transport = AmqpTransport::builder(env("RPC_WORKER_URL")?)
        .queue_prefix(env("RPC_WORKER_PREFIX")?)
        .connection_name(name.clone())
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let server = Server::builder(transport.clone())
        .concurrency(1)
        .drain_timeout(Duration::from_secs(1))
        .serve(CrashServer::new(Worker { name, mode }))
        .await
        .map_err(|e| format!("serve: {e}"))?;
    say("ready");

    // The test closes stdin to stop us; a read error means the same.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
    server.shutdown().await;
    transport
        .cleanup()
        .await
        .map_err(|e| format!("cleanup: {e}"))?;
    say("bye");
    Ok(())
}
