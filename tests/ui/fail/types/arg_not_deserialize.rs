use rpc_core::rpc_service;

pub struct Query;

#[rpc_service]
pub trait Reports {
    async fn find(&self, query: Query) -> u64;
}

fn main() {}
