use rpc_core::rpc_service;

#[rpc_service]
pub trait Store {
    async extern "C" fn len(&self) -> u64;
}

fn main() {}
