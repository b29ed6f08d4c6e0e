//! A poison request (its handler always panics): the caller gets one
//! `Remote` error, the server keeps serving, and the request ends in the
//! dead-letter queue after one run, with no redelivery loop.

mod reliability_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rpc_core::{RpcError, Transport};
use rpc_transport_mem::MemTransport;

use reliability_support::{BrokerSetup, POISON, WORK_DESCRIPTOR, WorkClient, report, serve_work};

/// Calls made after the poison one; each passes through the same queue, so
/// a poison request put back there would run again among them.
const AFTER: u64 = 50;

async fn poison_is_dead_lettered_once<T: Transport>(
    label: &str,
    server: T,
    client: T,
    dead_letters: impl AsyncFn() -> usize,
) {
    let (server, probe) = serve_work(server, 4).await;
    let work = WorkClient::new(client);
    match work.poison(POISON).await {
        Err(RpcError::Remote { message }) => {
            assert!(message.contains("poison input"), "{message}");
        }
        other => panic!("{label}: expected Remote, got {other:?}"),
    }
    for n in (0..=AFTER).filter(|&n| n != POISON) {
        assert_eq!(work.poison(n).await.expect("the server keeps serving"), n);
    }

    // The dead-letter queue is filled by the broker after the reject; wait
    // for it, bounded (no event reaches us from there).
    let since = Instant::now();
    let mut depth = dead_letters().await;
    while depth == 0 && since.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        depth = dead_letters().await;
    }
    let runs = probe.poison_runs.load(Ordering::SeqCst);
    report(
        &format!("poison/{label}"),
        format_args!(
            "1 poison call: caller got Remote once; handler ran {runs} time(s); dead-letter \
             depth {depth}; {AFTER} later calls all answered; server panics counted {}",
            server.stats().panicked()
        ),
    );
    assert_eq!(depth, 1, "{label}: dead-letter depth");
    assert_eq!(runs, 1, "{label}: the poison request ran again");
    assert_eq!(server.stats().panicked(), 1);
    assert_eq!(work.client().dropped_replies(), 0, "a second reply came");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_request_on_memory() {
    let transport = MemTransport::new();
    let inspect = transport.clone();
    poison_is_dead_lettered_once("memory", transport.clone(), transport, async || {
        let letters = inspect.dead_letters(WORK_DESCRIPTOR.name);
        assert!(letters.iter().all(|e| &*e.header.method == "poison"));
        letters.len()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_request_on_amqp() {
    let Some(broker) = BrokerSetup::new("poison").await else {
        return;
    };
    let server = broker.direct("server").connect().await.expect("connect");
    let client = broker.direct("client").connect().await.expect("connect");
    let dlq = server.dead_letter_queue(WORK_DESCRIPTOR.name);
    let inspect = broker.clone();
    poison_is_dead_lettered_once("amqp", server.clone(), client.clone(), async || {
        let (inspect, dlq) = (inspect.clone(), dlq.clone());
        tokio::task::spawn_blocking(move || inspect.queue(&dlq).map_or(0, |q| q.ready as usize))
            .await
            .expect("rabbitmqctl task")
    })
    .await;
    client.cleanup().await.expect("delete the reply queue");
    server.cleanup().await.expect("delete the service queues");
}
