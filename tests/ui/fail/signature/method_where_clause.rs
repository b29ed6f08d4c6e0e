use rpc_core::rpc_service;

#[rpc_service]
pub trait Store {
    async fn len(&self) -> u64
    where
        Self: Sized;
}

fn main() {}
