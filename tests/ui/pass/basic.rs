use rpc_core::rpc_service;

#[rpc_service]
pub trait Calculator {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

fn main() {
    let _server = CalculatorServer::new(Calc);
    let _args = CalculatorAddArgs { a: 1, b: 2 };
    assert_eq!(CALCULATOR_DESCRIPTOR.name, "Calculator");
}
