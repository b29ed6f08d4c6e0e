//! The server half of a two-program AMQP example: serves the calculator on
//! RabbitMQ until Ctrl-C, then shuts down gracefully.
//!
//! ```sh
//! cargo run -p rpc-examples --bin amqp_server     # in one terminal
//! cargo run -p rpc-examples --bin amqp_client     # in another
//! ```
//!
//! `AMQP_URL` picks the broker (default: the local RabbitMQ).

use std::error::Error;

use rpc_core::Server;
use rpc_examples::calculator::{Calc, CalculatorServer};
use rpc_transport_amqp::AmqpTransport;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let transport = AmqpTransport::builder(rpc_examples::amqp_url())
        .queue_prefix("examples.")
        .connection_name("rpc-examples amqp_server")
        .connect()
        .await?;
    let server = Server::builder(transport.clone())
        .concurrency(64)
        .serve(CalculatorServer::new(Calc::new(1)))
        .await?;
    println!(
        "serving calc.v1 on queue {} (Ctrl-C to stop)",
        transport.request_queue("calc.v1")
    );
    tokio::signal::ctrl_c().await?;
    let report = server.shutdown().await;
    println!("stopped: {report:?}");
    transport.close().await;
    Ok(())
}
