use rpc_core::rpc_service;

#[rpc_service]
pub trait Store {
    async fn put<V: serde::Serialize>(&self, key: String, value: V);
}

fn main() {}
