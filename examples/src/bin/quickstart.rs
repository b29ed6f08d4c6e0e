//! The quickstart: a calculator service called over the in-memory transport,
//! or over RabbitMQ or NATS when given a server URL. Nothing else changes.
//!
//! ```sh
//! cargo run -p rpc-examples --bin quickstart
//! cargo run -p rpc-examples --bin quickstart -- amqp://guest:guest@127.0.0.1:5672/%2f
//! cargo run -p rpc-examples --bin quickstart -- nats://127.0.0.1:4222
//! ```

use std::error::Error;
use std::time::Duration;

use rpc_core::{RpcError, Server, Transport, rpc_service};
use rpc_transport_amqp::AmqpTransport;
use rpc_transport_mem::MemTransport;
use rpc_transport_nats::NatsTransport;
use serde::{Deserialize, Serialize};

/// Why a division failed.
#[derive(Debug, Serialize, Deserialize)]
pub enum MathError {
    /// The divisor was zero.
    DivideByZero,
}

/// A calculator, served over any transport.
#[rpc_service(name = "calc.v1")]
pub trait Calculator {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Divides; dividing by zero is an application error, returned typed.
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Writes a line to the server's log; nobody waits for it.
    #[rpc(oneway)]
    async fn log(&self, line: String);
    /// Takes its time.
    async fn slow(&self, millis: u64) -> u64;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_div(b).ok_or(MathError::DivideByZero)
    }

    async fn log(&self, line: String) {
        println!("server log: {line}");
    }

    async fn slow(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

/// Serves the calculator on `transport`, calls it, and shuts down.
async fn run<T: Transport>(transport: T) -> Result<(), Box<dyn Error>> {
    let server = Server::builder(transport.clone())
        .serve(CalculatorServer::new(Calc))
        .await?;
    let calc = CalculatorClient::new(transport);

    let sum = calc.add(2, 3).await?;
    println!("add(2, 3) = {sum}");
    assert_eq!(sum, 5);

    let quotient = calc.div(7, 2).await?;
    println!("div(7, 2) = {quotient:?}");
    let by_zero = calc.div(1, 0).await?;
    println!("div(1, 0) = {by_zero:?}");
    assert!(matches!(by_zero, Err(MathError::DivideByZero)));

    calc.log("hello from the quickstart".into()).await?;
    println!("log(..) sent");

    let impatient = calc.with_timeout(Duration::from_millis(50));
    let late = impatient.slow(500).await;
    println!("slow(500) with a 50 ms deadline = {late:?}");
    assert!(matches!(late, Err(RpcError::Timeout)));

    let report = server.shutdown().await;
    println!("server stopped: {report:?}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    match std::env::args().nth(1) {
        None => {
            println!("transport: memory");
            run(MemTransport::new()).await
        }
        Some(url) if url.starts_with("nats://") || url.starts_with("tls://") => {
            println!("transport: NATS");
            let transport = NatsTransport::builder(url)
                .subject_prefix(format!("quickstart.{}.", std::process::id()))
                .connect()
                .await?;
            run(transport.clone()).await?;
            transport.close().await;
            Ok(())
        }
        Some(url) => {
            println!("transport: AMQP");
            let transport = AmqpTransport::builder(url)
                .queue_prefix(format!("quickstart.{}.", std::process::id()))
                .durable(false)
                .connect()
                .await?;
            run(transport.clone()).await?;
            // Leave nothing behind on the broker.
            transport.cleanup().await?;
            Ok(())
        }
    }
}
