use rpc_core::rpc_service;

#[rpc_service]
pub trait Dispatcher {
    async fn call(&self, target: String) -> String;
}

fn main() {}
