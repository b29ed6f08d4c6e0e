//! The client half of a two-program ZeroMQ example: calls the calculator
//! that `zmq_server` serves. Start the server first; with several servers,
//! give each endpoint to `.connect` and calls are balanced over them.
//!
//! ```sh
//! cargo run -p rpc-examples --bin zmq_client
//! ```

use std::error::Error;
use std::time::Duration;

use rpc_core::RpcError;
use rpc_examples::calculator::{CalculatorClient, MathError};
use rpc_transport_zmq::ZmqTransport;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let transport = ZmqTransport::builder()
        .connect(rpc_examples::zmq_endpoint())
        .build()
        .await?;
    let calc = CalculatorClient::new(transport.clone()).with_timeout(Duration::from_secs(5));

    match calc.add(2, 3).await {
        Ok(sum) => println!("add(2, 3) = {sum}"),
        Err(RpcError::NoRoute { service }) => {
            eprintln!("no connected server serves {service}: start `zmq_server` first");
            std::process::exit(2);
        }
        Err(other) => return Err(other.into()),
    }
    let by_zero = calc.div(1, 0).await?;
    println!("div(1, 0) = {by_zero:?}");
    assert_eq!(by_zero, Err(MathError::DivideByZero));

    let mut last = 0;
    for i in 0..100 {
        last = calc.add(i, i).await?;
    }
    println!("100 calls answered; the last was add(99, 99) = {last}");
    transport.close();
    Ok(())
}
