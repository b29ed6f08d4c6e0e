use rpc_core::{RpcError, Transport, rpc_service};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub enum MathError {
    DivisionByZero,
}

#[rpc_service]
pub trait Calculator {
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
}

struct Calc;

impl Calculator for Calc {
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        a.checked_div(b).ok_or(MathError::DivisionByZero)
    }
}

// The application error is nested, not flattened into `RpcError`.
#[allow(dead_code)]
async fn call<T: Transport>(client: CalculatorClient<T>) -> Result<Result<i64, MathError>, RpcError> {
    client.div(1, 0).await
}

fn main() {
    let _server = CalculatorServer::new(Calc);
}
