//! One service, tested by swapping the transport.
//!
//! `check_inventory` is the test a team would write once. It runs here on the
//! in-memory transport, then again with faults injected (duplicated replies,
//! a disconnect), showing what the client sees. Pointing the same function at
//! a broker is a one-line change: here it runs once more on NATS (the server
//! at `NATS_URL`, default `nats://127.0.0.1:4222`, skipped with a notice when
//! none answers), in core and in durable (JetStream) mode, and over ZeroMQ
//! (one transport that serves on a loopback port and connects to itself); an
//! `AmqpTransport` would do the same for RabbitMQ.
//!
//! ```sh
//! cargo run -p rpc-examples --bin swap_transport
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::sync::Mutex;

use rpc_core::{RpcError, Server, Transport, rpc_service};
use rpc_transport_mem::{Direction, MemTransport};
use rpc_transport_nats::{Mode, NatsTransport};
use rpc_transport_zmq::ZmqTransport;

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

    println!("ZeroMQ transport (tcp loopback, no broker):");
    let transport = ZmqTransport::builder()
        .bind("tcp://127.0.0.1:0")
        .build()
        .await?;
    transport.connect(transport.endpoints()[0].clone()).await;
    check_inventory(transport).await?;

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
    // Made while disconnected, it never left the process: `NotSent` says
    // a retry is safe (a call cut off in flight gets `ConnectionLost`).
    assert!(matches!(cut, Err(RpcError::NotSent)));
    transport.faults().reconnect();
    assert_eq!(inventory.restock("pear".into(), 1).await?, 2);
    println!("  after reconnecting: ok");

    let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    for mode in [Mode::Core, Mode::Durable] {
        println!("NATS transport, {mode:?} mode:");
        // The one line that changes.
        let connected = NatsTransport::builder(url.as_str())
            .subject_prefix(format!("swap.{}.", std::process::id()))
            .mode(mode)
            .connect()
            .await;
        let transport = match connected {
            Ok(transport) => transport,
            Err(error) => {
                println!("  skipped: no NATS server at {url} ({error})");
                break;
            }
        };
        check_inventory(transport.clone()).await?;
        // Durable mode made a JetStream stream; leave nothing behind.
        transport.cleanup().await?;
    }
    Ok(())
}
