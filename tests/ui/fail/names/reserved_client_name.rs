use rpc_core::rpc_service;

#[rpc_service]
pub trait Session {
    async fn with_timeout(&self, millis: u64);
}

fn main() {}
