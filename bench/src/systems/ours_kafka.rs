//! Ours: the `#[rpc_service]` client and server over `KafkaTransport` in
//! its default settings (4 partitions, fetch wait 5 ms), and whatever
//! `RPC_BENCH_KAFKA_SET` gives the raw loops too. Server and client each get
//! their own transport, as two processes would.

use rpc_transport_kafka::KafkaTransport;

use super::Running;
use super::ours::{OursCaller, OursTransport, serve, setup_error};
use crate::error::BenchError;
use crate::load::Caller;

impl OursTransport for KafkaTransport {
    const NAME: &'static str = "ours: kafka";
}

/// Starts a server (concurrency `in_flight`) and a client; the server has
/// joined its group when this returns.
pub(crate) async fn start(
    in_flight: usize,
    bootstrap: &str,
) -> Result<Running<OursCaller<KafkaTransport>>, BenchError> {
    static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = format!(
        "rpc-bench.{}.{}.",
        std::process::id(),
        RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let connect = || async {
        let builder = KafkaTransport::builder(bootstrap).topic_prefix(prefix.clone());
        super::kafka_raw::extra_settings()
            .iter()
            .fold(builder, |builder, (key, value)| builder.set(key, value))
            .connect()
            .await
            .map_err(|e| setup_error::<KafkaTransport>(&e))
    };
    let server_transport = connect().await?;
    let server = serve(in_flight, server_transport.clone()).await?;
    let client_transport = connect().await?;
    let caller = OursCaller::new(client_transport.clone());
    caller.add(1, 1).await?;
    Ok(Running::new(caller, async move {
        server.shutdown().await;
        // Each returns once librdkafka has destroyed the transport's clients
        // (the process may end soon after, and one that ended while
        // librdkafka still tore a client down crashed), then deletes the
        // topics it made: tansu keeps every topic and record in memory, and
        // its CPU per call grows with them. A failure is only said, as the
        // run is over.
        for transport in [client_transport, server_transport] {
            if let Err(error) = transport.cleanup().await {
                eprintln!(
                    "notice: {}'s topics were not deleted: {error}",
                    KafkaTransport::NAME
                );
            }
        }
    }))
}

/// Whether a Kafka broker answers at `bootstrap`.
pub(crate) async fn broker_reachable(bootstrap: &str) -> Result<(), String> {
    let transport = KafkaTransport::builder(bootstrap)
        .connect_timeout(std::time::Duration::from_secs(3))
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    transport.close().await;
    Ok(())
}
