use rpc_core::rpc_service;

#[rpc_service]
pub trait Store
where
    Self: Sized,
{
    async fn len(&self) -> u64;
}

fn main() {}
