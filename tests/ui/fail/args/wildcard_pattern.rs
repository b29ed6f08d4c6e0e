use rpc_core::rpc_service;

#[rpc_service]
pub trait Geometry {
    async fn norm(&self, _: f64) -> f64;
}

fn main() {}
