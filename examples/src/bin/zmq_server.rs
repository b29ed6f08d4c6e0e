//! The server half of a two-program ZeroMQ example: serves the calculator
//! on a ZeroMQ endpoint until Ctrl-C. No broker: the client connects to
//! this process directly.
//!
//! ```sh
//! cargo run -p rpc-examples --bin zmq_server     # in one terminal
//! cargo run -p rpc-examples --bin zmq_client     # in another
//! ```
//!
//! `ZMQ_ENDPOINT` picks the endpoint (default `tcp://127.0.0.1:5555`; an
//! `ipc://` path works too).

use std::error::Error;

use rpc_core::Server;
use rpc_examples::calculator::{Calc, CalculatorServer};
use rpc_transport_zmq::ZmqTransport;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let transport = ZmqTransport::builder()
        .bind(rpc_examples::zmq_endpoint())
        .build()
        .await?;
    let server = Server::builder(transport.clone())
        .concurrency(64)
        .serve(CalculatorServer::new(Calc::new(1)))
        .await?;
    println!(
        "serving calc.v1 on {} (Ctrl-C to stop)",
        transport.endpoints()[0]
    );
    tokio::signal::ctrl_c().await?;
    let report = server.shutdown().await;
    println!("stopped: {report:?}");
    transport.close();
    Ok(())
}
