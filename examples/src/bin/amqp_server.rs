//! The server half of a two-program AMQP example: serves the calculator on
//! RabbitMQ until Ctrl-C, then shuts down gracefully.
//!
//! ```sh
//! cargo run -p rpc-examples --bin amqp_server     # in one terminal
//! cargo run -p rpc-examples --bin amqp_client     # in another
//! ```
//!
//! `AMQP_URL` picks the broker (default: the local RabbitMQ), `RPC_QUEUE_PREFIX`
//! the prefix of its queue names (default `examples.`). With `METRICS_ADDR`
//! (e.g. `127.0.0.1:9464`) it serves its metrics for Prometheus at
//! `http://METRICS_ADDR/metrics`.

use std::error::Error;

use rpc_examples::calculator::serve_until_ctrl_c;
use rpc_examples::metrics_endpoint;
use rpc_transport_amqp::AmqpTransport;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    // The recorder goes in before the server starts: its meters register
    // with whatever recorder is installed then.
    if let Ok(addr) = std::env::var("METRICS_ADDR") {
        let bound = metrics_endpoint::serve(addr.parse()?).await?;
        println!("metrics on http://{bound}/metrics");
    }
    let prefix = std::env::var("RPC_QUEUE_PREFIX").unwrap_or_else(|_| "examples.".to_owned());
    let transport = AmqpTransport::builder(rpc_examples::amqp_url())
        .queue_prefix(prefix)
        .connection_name("rpc-examples amqp_server")
        .connect()
        .await?;
    let place = format!("queue {}", transport.request_queue("calc.v1"));
    serve_until_ctrl_c(transport.clone(), &place).await?;
    transport.close().await;
    Ok(())
}
