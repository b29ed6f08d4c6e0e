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

use rpc_examples::calculator::serve_until_ctrl_c;
use rpc_transport_zmq::ZmqTransport;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let transport = ZmqTransport::builder()
        .bind(rpc_examples::zmq_endpoint())
        .build()
        .await?;
    let place = transport.endpoints()[0].clone();
    serve_until_ctrl_c(transport.clone(), &place).await?;
    transport.close();
    Ok(())
}
