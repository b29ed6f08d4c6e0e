use rpc_core::rpc_service;

#[rpc_service]
pub trait Counter {
    async fn finish(self) -> u64;
}

fn main() {}
