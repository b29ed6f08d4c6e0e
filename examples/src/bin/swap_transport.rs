//! One service, tested by swapping the transport.
//!
//! `check_inventory` is the test a team would write once. It runs here on the
//! in-memory transport, then again with faults injected (duplicated replies,
//! a disconnect), showing what the client sees. Pointing the same function at
//! RabbitMQ is a one-line change: pass an `AmqpTransport` instead.
//!
//! ```sh
//! cargo run -p rpc-examples --bin swap_transport
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::sync::Mutex;

use rpc_core::{RpcError, Server, Transport, rpc_service};
use rpc_transport_mem::{Direction, MemTransport};

/// Stock levels by product code.
#[rpc_service(name = "inventory.v1")]
pub trait Inventory {
    /// Adds `quantity` units of `sku`; returns the new level.
    async fn restock(&self, sku: String, quantity: u32) -> u32;
    /// Takes `quantity` units, or says how many there are.
    async fn take(&self, sku: String, quantity: u32) -> Result<u32, u32>;
}

#[derive(Default)]
struct Store(Mutex<HashMap<String, u32>>);

impl Inventory for Store {
    async fn restock(&self, sku: String, quantity: u32) -> u32 {
        let mut levels = self.0.lock().unwrap();
        let level = levels.entry(sku).or_default();
        *level += quantity;
        *level
    }

    async fn take(&self, sku: String, quantity: u32) -> Result<u32, u32> {
        let mut levels = self.0.lock().unwrap();
        let level = levels.entry(sku).or_default();
        if *level < quantity {
            return Err(*level);
        }
        *level -= quantity;
        Ok(*level)
    }
}

/// The behaviour under test, written once for any transport.
async fn check_inventory<T: Transport>(transport: T) -> Result<(), Box<dyn Error>> {
    let server = Server::builder(transport.clone())
        .serve(InventoryServer::new(Store::default()))
        .await?;
    let inventory = InventoryClient::new(transport);
    assert_eq!(inventory.restock("apple".into(), 5).await?, 5);
    assert_eq!(inventory.take("apple".into(), 3).await?, Ok(2));
    assert_eq!(inventory.take("apple".into(), 3).await?, Err(2));
    println!("  restock, take, and a refused take: ok");
    server.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    println!("memory transport:");
    check_inventory(MemTransport::new()).await?;

    println!("memory transport, every reply duplicated:");
    let transport = MemTransport::new();
    transport
        .faults()
        .duplicate_next(Direction::Replies, usize::MAX);
    check_inventory(transport).await?;

    println!("memory transport, disconnected:");
    let transport = MemTransport::new();
    let _server = Server::builder(transport.clone())
        .serve(InventoryServer::new(Store::default()))
        .await?;
    let inventory = InventoryClient::new(transport.clone());
    inventory.restock("pear".into(), 1).await?;
    transport.faults().disconnect();
    let cut = inventory.restock("pear".into(), 1).await;
    println!("  a call while disconnected: {cut:?}");
    assert!(matches!(cut, Err(RpcError::ConnectionLost)));
    transport.faults().reconnect();
    assert_eq!(inventory.restock("pear".into(), 1).await?, 2);
    println!("  after reconnecting: ok");
    Ok(())
}
