use rpc_core::{DeliveryMode, rpc_service};

#[rpc_service]
pub trait Ledger {
    #[rpc(run_to_completion)]
    async fn post(&self, cents: u64) -> u64;
    #[rpc(at_most_once, run_to_completion)]
    async fn settle(&self);
    async fn balance(&self) -> u64;
}

fn main() {
    let [post, settle, balance] = LEDGER_DESCRIPTOR.methods else {
        panic!("three methods");
    };
    assert!(post.run_to_completion);
    assert!(settle.run_to_completion && settle.delivery == DeliveryMode::AtMostOnce);
    assert!(!balance.run_to_completion);
}
