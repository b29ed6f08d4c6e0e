use rpc_core::rpc_service;

#[rpc_service]
pub trait Greeter {
    async fn hello(&self, name: &str) -> String;
}

fn main() {}
