use rpc_core::rpc_service;

#[rpc_service]
pub unsafe trait Store {
    async fn len(&self) -> u64;
}

fn main() {}
