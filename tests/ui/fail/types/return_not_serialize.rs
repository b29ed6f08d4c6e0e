use rpc_core::rpc_service;

pub struct Report;

#[rpc_service]
pub trait Reports {
    async fn latest(&self) -> Report;
}

fn main() {}
