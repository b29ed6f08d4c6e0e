use rpc_core::rpc_service;

#[rpc_service]
pub trait Store {
    async fn __len(&self) -> u64;
}

fn main() {}
