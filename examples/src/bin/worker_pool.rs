//! A worker pool on RabbitMQ: three servers consume one queue and share the
//! calls. Each worker has its own connection, as separate processes would.
//!
//! ```sh
//! cargo run -p rpc-examples --bin worker_pool
//! ```

use std::collections::BTreeMap;
use std::error::Error;

use rpc_core::Server;
use rpc_examples::calculator::{Calc, CalculatorClient, CalculatorServer};
use rpc_transport_amqp::{AmqpTransport, AmqpTransportBuilder};

const WORKERS: u32 = 3;
const CALLS: usize = 600;

fn broker() -> AmqpTransportBuilder {
    AmqpTransport::builder(rpc_examples::amqp_url())
        .queue_prefix(format!("examples.pool.{}.", std::process::id()))
        .durable(false)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let mut workers = Vec::new();
    for id in 1..=WORKERS {
        let transport = broker()
            .connection_name(format!("worker {id}"))
            .connect()
            .await?;
        let server = Server::builder(transport.clone())
            .concurrency(16)
            .serve(CalculatorServer::new(Calc::new(id)))
            .await?;
        workers.push((transport, server));
    }

    let transport = broker().connection_name("pool client").connect().await?;
    let calc = CalculatorClient::new(transport.clone());
    let mut in_flight = Vec::new();
    for _ in 0..CALLS {
        let calc = calc.clone();
        in_flight.push(tokio::spawn(async move { calc.worker().await }));
    }
    let mut share: BTreeMap<u32, usize> = BTreeMap::new();
    for call in in_flight {
        let (worker, _) = call.await??;
        *share.entry(worker).or_default() += 1;
    }
    for (worker, calls) in &share {
        println!(
            "worker {worker}: {calls} calls ({:.0}%)",
            100.0 * *calls as f64 / CALLS as f64
        );
    }
    assert_eq!(share.values().sum::<usize>(), CALLS);

    transport.close().await;
    // Stop every worker before deleting the queue: a worker still consuming
    // would take the deletion for a broker-side cancel and declare it again.
    let mut transports = Vec::new();
    for (transport, server) in workers {
        server.shutdown().await;
        transports.push(transport);
    }
    for transport in transports {
        transport.cleanup().await?;
    }
    Ok(())
}
