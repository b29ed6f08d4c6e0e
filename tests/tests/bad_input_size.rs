//! Size limits: a call over the client's limit is refused before it is
//! published; a request over the server's limit is refused unread (the
//! handler never runs), answered `TooLarge` and dead-lettered.

mod security_support;

use std::sync::atomic::Ordering;

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use rpc_core::{Client, ClientConfig, RpcError, Server};
use rpc_tests::broker::amqp_builder;
use rpc_tests::services::{CALC_DESCRIPTOR, CalcClient, CalcImpl, CalcProbe, CalcServer};

use security_support::{depth, raw_connection, wait_depth};

const LIMIT: usize = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_the_client_limit_is_never_published() {
    let Some(builder) = amqp_builder("size_client").await else {
        return;
    };
    let transport = builder.connect().await.expect("connect");
    // A queue with no server: whatever is published stays there to count.
    let queue = transport.request_queue(CALC_DESCRIPTOR.name);
    let connection = raw_connection().await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .expect("declare");

    let config = ClientConfig::default().max_message_size(LIMIT);
    let calc = CalcClient::from_client(Client::with_config(transport.clone(), config));
    match calc.boom("x".repeat(2 * LIMIT)).await {
        Err(RpcError::TooLarge { size, limit }) => {
            assert_eq!(limit, LIMIT);
            assert!(size > LIMIT, "{size}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(depth(&connection, &queue).await, 0, "it was published");
    // The control: a call that fits does reach the queue (nobody serves it,
    // so it waits there), so the zero above means something.
    let pending = tokio::spawn(async move { calc.add(1, 2).await });
    assert_eq!(wait_depth(&connection, &queue, 1).await, 1);
    pending.abort();
    eprintln!(
        "measured: size/client: 2 KiB call refused TooLarge, queue depth 0; fitting call reached it"
    );

    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let _ = connection.close(200, "done".into()).await;
    transport.cleanup().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_server_limit_is_refused_unread() {
    let Some(builder) = amqp_builder("size_server").await else {
        return;
    };
    let transport = builder.connect().await.expect("connect");
    let (probe, _lines) = CalcProbe::new();
    let server = Server::builder(transport.clone())
        .max_message_size(LIMIT)
        .serve(CalcServer::new(CalcImpl::new(1, probe.clone(), &transport)))
        .await
        .expect("serve");
    // The client's own limit is the 16 MiB default: only the server refuses.
    let calc = CalcClient::new(transport.clone());
    // `boom` panics if it ever runs: TooLarge proves it did not.
    match calc.boom("x".repeat(4 * LIMIT)).await {
        Err(RpcError::TooLarge { .. }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(calc.add(2, 2).await.expect("the server keeps serving"), 4);
    let connection = raw_connection().await;
    let dlq = transport.dead_letter_queue(CALC_DESCRIPTOR.name);
    let dead = wait_depth(&connection, &dlq, 1).await;
    eprintln!(
        "measured: size/server: 4 KiB request over a 1 KiB limit: TooLarge, handler runs {}, \
         dead-letter depth {dead}",
        probe.calls.load(Ordering::SeqCst) - 1
    );
    assert_eq!(dead, 1);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1, "only `add` ran");
    assert_eq!(server.stats().rejected(), 1);
    assert_eq!(server.stats().panicked(), 0);

    let _ = connection.close(200, "done".into()).await;
    server.shutdown().await;
    transport.cleanup().await.expect("cleanup");
}
