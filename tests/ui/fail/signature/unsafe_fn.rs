use rpc_core::rpc_service;

#[rpc_service]
pub trait Store {
    async unsafe fn wipe(&self);
}

fn main() {}
