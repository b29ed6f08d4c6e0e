use rpc_core::rpc_service;

#[rpc_service]
pub trait Store {
    async fn put(&self, mut key: String);
}

fn main() {}
