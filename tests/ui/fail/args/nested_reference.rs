use rpc_core::rpc_service;

#[rpc_service]
pub trait Store {
    async fn put_all(&self, items: Vec<(String, &'static [u8])>);
}

fn main() {}
