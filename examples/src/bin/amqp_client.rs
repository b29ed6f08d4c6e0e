//! The client half of a two-program AMQP example: calls the calculator that
//! `amqp_server` serves. Start the server first.
//!
//! ```sh
//! cargo run -p rpc-examples --bin amqp_client
//! ```

use std::error::Error;
use std::time::Duration;

use rpc_core::RpcError;
use rpc_examples::calculator::{CalculatorClient, MathError};
use rpc_transport_amqp::AmqpTransport;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let transport = AmqpTransport::builder(rpc_examples::amqp_url())
        .queue_prefix("examples.")
        .connection_name("rpc-examples amqp_client")
        .connect()
        .await?;
    let calc = CalculatorClient::new(transport.clone()).with_timeout(Duration::from_secs(5));

    match calc.add(2, 3).await {
        Ok(sum) => println!("add(2, 3) = {sum}"),
        Err(RpcError::NoRoute { service }) => {
            eprintln!("nobody serves {service}: start `amqp_server` first");
            std::process::exit(2);
        }
        Err(other) => return Err(other.into()),
    }
    let by_zero = calc.div(1, 0).await?;
    println!("div(1, 0) = {by_zero:?}");
    assert_eq!(by_zero, Err(MathError::DivideByZero));

    let calls = (0..100).map(|i| {
        let calc = calc.clone();
        async move { calc.add(i, i).await }
    });
    let mut sums = Vec::new();
    for call in calls {
        sums.push(call.await?);
    }
    println!(
        "100 calls answered; the last was add(99, 99) = {}",
        sums[99]
    );
    transport.close().await;
    Ok(())
}
