//! A request delivered again after its answer was sent does not run again:
//! the server answers it from its replay cache and settles it as before.
//!
//! On the memory transport a duplicated request stands for the redelivery;
//! on RabbitMQ the server's connection is closed under load
//! (`rabbitmqctl close_connection`), which redelivers every request it had
//! answered but not yet acked. The same load runs with the cache off, for
//! the figure of duplicates per connection drop without it.

mod reliability_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::{Server, ServerHandle, Transport};
use rpc_transport_mem::{Direction, MemTransport};

use reliability_support::{BrokerSetup, WorkClient, WorkImpl, WorkProbe, WorkServer, report};

/// Connection drops per AMQP run.
const DROPS: usize = 3;
/// Callers in flight during the AMQP runs.
const CALLERS: u64 = 64;

async fn serve<T: Transport>(
    transport: T,
    concurrency: usize,
    cache: bool,
) -> (ServerHandle, Arc<WorkProbe>) {
    let service = WorkImpl::default();
    let probe = service.probe.clone();
    let mut builder = Server::builder(transport).concurrency(concurrency);
    if !cache {
        builder = builder.replay_cache(0, 0);
    }
    let server = builder
        .serve(WorkServer::new(service))
        .await
        .expect("serve reliability.work");
    (server, probe)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_request_delivered_again_is_answered_without_running_on_memory() {
    let transport = MemTransport::new();
    // One at a time, so the copy is taken after the first is answered, as a
    // redelivery would be.
    let (server, probe) = serve(transport.clone(), 1, true).await;
    let work = WorkClient::new(transport.clone());
    transport.faults().duplicate_next(Direction::Requests, 1);
    assert_eq!(work.echo(7).await.unwrap(), 7);
    // The copy's reply reaches the client too, which drops it as a duplicate.
    let dropped = async {
        while work.client().dropped_replies() == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the copy was answered");
    assert_eq!(
        probe.echo_runs.load(Ordering::SeqCst),
        1,
        "the copy ran again"
    );
    assert_eq!(server.stats().replayed(), 1);
    assert_eq!(
        transport.unacked("reliability.work"),
        0,
        "settled as before"
    );
    assert!(transport.dead_letters("reliability.work").is_empty());
}

/// Calls `echo` from [`CALLERS`] tasks while the server's connection is
/// closed [`DROPS`] times; returns (calls, handler runs, replayed).
async fn drops_under_load(broker: &BrokerSetup, role: &str, cache: bool) -> (u64, u64, u64) {
    let server_transport = broker.direct(role).connect().await.expect("connect");
    let client = broker
        .direct(&format!("{role}-client"))
        .connect()
        .await
        .expect("connect");
    let (server, probe) = serve(server_transport.clone(), 64, cache).await;
    let work = WorkClient::new(client.clone());
    work.client().connect().await.expect("open the reply inbox");
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (work, stop, calls) = (work.clone(), stop.clone(), calls.clone());
            tokio::spawn(async move {
                let mut n = caller << 32;
                while !stop.load(Ordering::Relaxed) {
                    // Every call is answered once the server is back: its
                    // request waits in the queue meanwhile.
                    assert_eq!(work.echo(n).await.expect("echo"), n);
                    calls.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            })
        })
        .collect();
    for _ in 0..DROPS {
        // Let the load run and the server's connection come back first.
        let before = calls.load(Ordering::Relaxed);
        while calls.load(Ordering::Relaxed) < before + 2_000 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let closer = broker.clone();
        let role = role.to_owned();
        let closed = tokio::task::spawn_blocking(move || closer.close_connections(&role))
            .await
            .expect("rabbitmqctl task");
        assert_eq!(closed, 1, "the server's connection was not found");
    }
    let before = calls.load(Ordering::Relaxed);
    while calls.load(Ordering::Relaxed) < before + 2_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        caller.await.expect("caller");
    }
    let replayed = server.stats().replayed();
    server.shutdown().await;
    client.cleanup().await.expect("delete the reply queue");
    server_transport.cleanup().await.expect("delete the queues");
    (
        calls.load(Ordering::Relaxed),
        probe.echo_runs.load(Ordering::SeqCst),
        replayed,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_requests_redelivered_after_a_server_connection_drop_do_not_run_again_on_amqp() {
    let Some(broker) = BrokerSetup::new("redelivery").await else {
        return;
    };
    let (calls_off, runs_off, _) = drops_under_load(&broker, "server-nocache", false).await;
    let (calls, runs, replayed) = drops_under_load(&broker, "server", true).await;
    let per_drop = |extra: u64| extra as f64 / DROPS as f64;
    report(
        "redelivery/amqp",
        format_args!(
            "{DROPS} server connection drops under {CALLERS} callers: duplicates executed per drop \
             {:.1} without the replay cache ({calls_off} calls, {runs_off} runs), {:.1} with it \
             ({calls} calls, {runs} runs, {replayed} answered from the cache)",
            per_drop(runs_off.saturating_sub(calls_off)),
            per_drop(runs.saturating_sub(calls)),
        ),
    );
    assert_eq!(
        runs, calls,
        "handlers ran again for requests already answered"
    );
}
