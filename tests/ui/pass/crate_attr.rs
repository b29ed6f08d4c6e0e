// A crate that re-exports rpc-core points the macro at its own path; the
// user's crate need not depend on rpc-core (or serde) by name.
mod facade {
    pub use ::rpc_core as rpc;
}

#[facade::rpc::rpc_service(crate = crate::facade::rpc)]
pub trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
}

fn main() {
    assert_eq!(CALCULATOR_DESCRIPTOR.methods.len(), 1);
}
