use rpc_core::rpc_service;

#[rpc_service]
pub trait Geometry {
    async fn origin(&self) -> Box<Self>;
}

fn main() {}
