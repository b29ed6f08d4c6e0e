use rpc_core::rpc_service;

#[rpc_service]
pub trait Geometry {
    async fn norm(&self, (x, y): (f64, f64)) -> f64;
}

fn main() {}
