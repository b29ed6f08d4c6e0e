use rpc_core::rpc_service;

#[rpc_service]
pub trait Store {
    async fn get<'a>(&self, key: String) -> Option<String>;
}

fn main() {}
