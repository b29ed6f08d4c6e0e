use std::collections::HashMap;

use rpc_core::rpc_service;

#[rpc_service]
pub trait Inventory {
    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        sku: String,
        count: u32,
        price: f64,
        tags: Vec<String>,
        attrs: HashMap<String, String>,
        note: Option<String>,
        when: (u64, u32),
        flags: [bool; 4],
    ) -> Result<u64, String>;
}

fn main() {
    assert_eq!(
        INVENTORY_DESCRIPTOR.methods[0].signature,
        "async fn record(&self, sku: String, count: u32, price: f64, tags: Vec<String>, \
         attrs: HashMap<String, String>, note: Option<String>, when: (u64, u32), \
         flags: [bool; 4]) -> Result<u64, String>"
    );
}
