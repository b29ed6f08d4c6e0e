//! An at-most-once server holds running plus unacked requests within its
//! concurrency, though each request is acked before it runs.

#[path = "amqp_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rpc_core::{
    Client, DeliveryMode, MethodDescriptor, MethodKind, Request, Response, Server, Service,
    ServiceDescriptor,
};
use tokio::sync::{Semaphore, mpsc};

static HOLDER: ServiceDescriptor = ServiceDescriptor {
    name: "holder",
    version: "0.0.0",
    docs: "holds calls until released",
    methods: &[MethodDescriptor {
        name: "hold",
        kind: MethodKind::Call,
        delivery: DeliveryMode::AtMostOnce,
        run_to_completion: false,
        signature: "",
        docs: "",
    }],
};

/// `hold()` reports that it started, then waits for a permit.
struct Holder {
    started: mpsc::UnboundedSender<()>,
    release: Arc<Semaphore>,
}

impl Service for Holder {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        &HOLDER
    }

    async fn call(&self, request: &Request) -> Response {
        let (started, release) = (self.started.clone(), self.release.clone());
        request
            .respond(|(): ()| async move {
                let _ = started.send(());
                release.acquire().await.unwrap().forget();
            })
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_plus_unacked_stay_within_the_concurrency() {
    let Some(builder) = support::builder("amo_prefetch").await else {
        return;
    };
    const CONCURRENCY: usize = 4;
    const CALLS: usize = 12;
    let transport = builder.connect().await.unwrap();
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Semaphore::new(0));
    let server = Server::builder(transport.clone())
        .concurrency(CONCURRENCY)
        .serve(Holder {
            started: started_tx,
            release: release.clone(),
        })
        .await
        .unwrap();
    let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(60));
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.call::<_, ()>("holder", "hold", &()).await })
        })
        .collect();
    for _ in 0..CONCURRENCY {
        started.recv().await.unwrap();
    }

    // Every slot runs an acked request; the broker must keep the rest
    // (less the one a prefetch limit cannot refuse: see requests.rs).
    // Watched for a while: what is checked is that something does not
    // happen, which no event announces.
    let (conn, channel) = support::raw_channel().await;
    let queue = transport.request_queue("holder");
    // The calls not running may still be on their way to the queue: first
    // wait (boundedly) for them to arrive, so that the watch below sees the
    // queue's settled depth, not a publish still in flight.
    let settled = (CALLS - CONCURRENCY - 1) as u32;
    let patience = Instant::now() + Duration::from_secs(10);
    while support::depth(&channel, &queue).await < settled && Instant::now() < patience {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut fewest_ready = u32::MAX;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let ready = support::depth(&channel, &queue).await;
        fewest_ready = fewest_ready.min(ready);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let held = CALLS - CONCURRENCY - fewest_ready as usize;
    eprintln!("figure: concurrency {CONCURRENCY}, {CONCURRENCY} running, {held} more held");
    assert!(
        held <= 1,
        "{held} requests held beyond the {CONCURRENCY} running"
    );

    release.add_permits(CALLS);
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(server.stats().handled(), CALLS as u64);
    let _ = conn.close(200, "done".into()).await;
    transport.cleanup().await.unwrap();
}
