use rpc_core::{RpcError, Transport, rpc_service};

#[rpc_service]
pub trait Health {
    async fn ping(&self);
    async fn uptime(&self) -> u64;
}

#[allow(dead_code)]
async fn call<T: Transport>(client: HealthClient<T>) -> Result<u64, RpcError> {
    client.ping().await?;
    client.uptime().await
}

fn main() {
    // Zero-argument methods still get an (empty) argument struct.
    let _ = HealthPingArgs {};
    assert_eq!(HEALTH_DESCRIPTOR.methods[0].signature, "async fn ping(&self)");
}
