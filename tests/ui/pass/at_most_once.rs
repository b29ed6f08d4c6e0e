use rpc_core::{DeliveryMode, MethodKind, rpc_service};

#[rpc_service]
pub trait Billing {
    #[rpc(at_most_once)]
    async fn charge(&self, cents: u64) -> u64;
    #[rpc(oneway, at_most_once)]
    async fn audit(&self, line: String);
    async fn balance(&self) -> u64;
}

fn main() {
    let [charge, audit, balance] = BILLING_DESCRIPTOR.methods else {
        panic!("three methods");
    };
    assert_eq!((charge.kind, charge.delivery), (MethodKind::Call, DeliveryMode::AtMostOnce));
    assert_eq!((audit.kind, audit.delivery), (MethodKind::Oneway, DeliveryMode::AtMostOnce));
    assert_eq!(balance.delivery, DeliveryMode::AtLeastOnce);
}
