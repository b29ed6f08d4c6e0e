//! The calculator service of the AMQP examples.

use std::sync::atomic::{AtomicU64, Ordering};

use rpc_core::{Server, ShutdownReport, Transport, rpc_service};
use serde::{Deserialize, Serialize};

/// Why a division failed.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
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
    /// Which worker answered, and how many calls it has answered so far.
    async fn worker(&self) -> (u32, u64);
}

/// A calculator that knows which worker of a pool it is.
#[derive(Debug, Default)]
pub struct Calc {
    id: u32,
    answered: AtomicU64,
}

impl Calc {
    /// Worker number `id`.
    pub fn new(id: u32) -> Self {
        Calc {
            id,
            answered: AtomicU64::new(0),
        }
    }
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        self.answered.fetch_add(1, Ordering::Relaxed);
        a + b
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        self.answered.fetch_add(1, Ordering::Relaxed);
        a.checked_div(b).ok_or(MathError::DivideByZero)
    }

    async fn worker(&self) -> (u32, u64) {
        let answered = self.answered.fetch_add(1, Ordering::Relaxed) + 1;
        // Give the other workers a turn at the queue.
        tokio::task::yield_now().await;
        (self.id, answered)
    }
}

/// Serves the calculator as worker 1, 64 calls at a time, on `transport`
/// until Ctrl-C; prints `serving calc.v1 on {place}` once it serves, and
/// what shutting down finished. The example servers of every transport run
/// this.
pub async fn serve_until_ctrl_c<T: Transport>(
    transport: T,
    place: &str,
) -> Result<ShutdownReport, Box<dyn std::error::Error>> {
    let server = Server::builder(transport)
        .concurrency(64)
        .serve(CalculatorServer::new(Calc::new(1)))
        .await?;
    println!("serving calc.v1 on {place} (Ctrl-C to stop)");
    tokio::signal::ctrl_c().await?;
    let report = server.shutdown().await;
    println!("stopped: {report:?}");
    Ok(report)
}
