use rpc_core::rpc_service;

#[rpc_service]
pub trait Counter {
    async fn create(start: u64) -> u64;
}

fn main() {}
