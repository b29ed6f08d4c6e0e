use rpc_core::rpc_service;

#[rpc_service]
pub trait Logger {
    #[rpc(one_way)]
    async fn log(&self, line: String);
}

fn main() {}
