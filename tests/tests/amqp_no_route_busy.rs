//! `NoRoute` on a busy machine. Its own test binary: it keeps both cores
//! busy on purpose, which must not slow the timing-sensitive tests that
//! share a binary with each other (test binaries run one at a time).

#[path = "amqp_support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rpc_core::{Client, RpcError};
use rpc_transport_amqp::ReplyMode;
use support::AddArgs;

/// `NoRoute` however the broker's word on a request comes: through the
/// confirm task, or already there on the publish's first poll, which
/// happens when the calling thread loses its core between handing lapin
/// the frames and looking for the confirm. Threads that keep both cores
/// busy make that frequent; in both reply modes every call must end
/// `NoRoute`, none by its deadline. (In direct reply-to mode a return found
/// on the first poll once reached no inbox, and its call waited for its
/// deadline.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_holds_when_the_confirm_is_there_on_the_first_poll() {
    let Some(builder) = support::builder("busyreturn").await else {
        return;
    };
    let stop = Arc::new(AtomicBool::new(false));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    for mode in [ReplyMode::DirectReplyTo, ReplyMode::ExclusiveQueue] {
        let transport = builder.clone().reply_mode(mode).connect().await.unwrap();
        let client = Client::new(transport.clone()).with_timeout(Duration::from_secs(20));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let client = client.clone();
                tokio::spawn(async move {
                    for _ in 0..80 {
                        let err = client
                            .call::<_, i64>("nobody", "add", &AddArgs { a: 1, b: 1 })
                            .await
                            .unwrap_err();
                        assert!(matches!(err, RpcError::NoRoute { .. }), "{mode:?}: {err:?}");
                    }
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        transport.cleanup().await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().unwrap();
    }
}
