use rpc_core::rpc_service;

#[rpc_service]
pub trait Greeter {
    async fn name(&self) -> &'static str;
}

fn main() {}
