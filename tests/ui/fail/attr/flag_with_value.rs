use rpc_core::rpc_service;

#[rpc_service]
pub trait Logger {
    #[rpc(oneway = true)]
    async fn log(&self, line: String);
}

fn main() {}
