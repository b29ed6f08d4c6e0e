//! A ZeroMQ server process for the reliability tests
//! (`tests/reliability_zmq.rs`): the tests kill it with SIGKILL, stop it
//! with SIGSTOP (a hung server), and start it again on the same endpoint.
//!
//! Usage: `zmq_worker <endpoint> <id> <concurrency>`. It serves the
//! conformance `Calc` service with that instance id and concurrency, prints
//! `ready <bound endpoint>` once it serves, and runs until killed or until
//! its stdin closes.

use std::io::Read;
use std::process::ExitCode;

use rpc_core::Server;
use rpc_tests::services::{CalcImpl, CalcProbe, CalcServer};
use rpc_tests::zmq::ZmqFabric;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, endpoint, id, concurrency] = &args[..] else {
        eprintln!("usage: zmq_worker <endpoint> <id> <concurrency>");
        return ExitCode::FAILURE;
    };
    let (Ok(id), Ok(concurrency)) = (id.parse::<u32>(), concurrency.parse::<usize>()) else {
        eprintln!("zmq_worker: id and concurrency are numbers");
        return ExitCode::FAILURE;
    };
    let transport = match ZmqFabric::builder().bind(endpoint.clone()).build().await {
        Ok(transport) => transport,
        Err(error) => {
            eprintln!("zmq_worker: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (probe, _lines) = CalcProbe::new();
    let service = CalcImpl::new(id, probe, &transport);
    let server = Server::builder(transport.clone())
        .concurrency(concurrency)
        .serve(CalcServer::new(service))
        .await
        .expect("serve calc");
    println!("ready {}", transport.endpoints()[0]);
    // Stdin closing (the test ended) stops the worker.
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read(&mut [0u8; 1])).await;
    server.shutdown().await;
    ExitCode::SUCCESS
}
