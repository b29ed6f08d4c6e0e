use rpc_core::rpc_service;

#[rpc_service]
pub trait Store<V> {
    async fn get(&self, key: String) -> Option<V>;
}

fn main() {}
