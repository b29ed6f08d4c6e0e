use rpc_core::rpc_service;

macro_rules! getter {
    ($name:ident) => {
        async fn $name(&self) -> u64;
    };
}

#[rpc_service]
pub trait Store {
    getter!(len);
}

fn main() {}
