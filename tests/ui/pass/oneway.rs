use rpc_core::{MethodKind, RpcError, Transport, rpc_service};

#[rpc_service]
pub trait Logger {
    #[rpc(oneway)]
    async fn log(&self, line: String);
    /// `-> ()` written out is still nothing to reply with.
    #[rpc(oneway)]
    async fn flush(&self) -> ();
}

#[allow(dead_code)]
async fn call<T: Transport>(client: LoggerClient<T>) -> Result<(), RpcError> {
    client.log("hello".to_owned()).await?;
    client.flush().await
}

fn main() {
    assert_eq!(LOGGER_DESCRIPTOR.methods[0].kind, MethodKind::Oneway);
    assert_eq!(LOGGER_DESCRIPTOR.methods[1].kind, MethodKind::Oneway);
}
