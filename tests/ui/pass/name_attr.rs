use rpc_core::rpc_service;

#[rpc_service(name = "calc.v1")]
pub trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {
    assert_eq!(CALCULATOR_DESCRIPTOR.name, "calc.v1");
}
