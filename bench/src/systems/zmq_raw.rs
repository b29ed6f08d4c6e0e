//! Baseline: a hand-written request/reply loop on the `zeromq` crate, the
//! library under our ZeroMQ transport.
//!
//! A ROUTER server answers `[correlation, a, b]` with `[correlation, a+b]`;
//! the client is one DEALER over TCP loopback, a table of waiting callers
//! keyed by correlation id, and one task reading replies. What it leaves
//! out (and ours pays for): envelopes, codecs, credit, heartbeats.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use zeromq::prelude::*;
use zeromq::{DealerSendHalf, DealerSocket, RouterSocket, ZmqMessage};

use super::Running;
use super::waiters::Waiters;
use crate::error::BenchError;
use crate::load::Caller;

/// A DEALER and the callers waiting on it.
#[derive(Clone)]
pub(crate) struct ZmqRawCaller {
    send: Arc<tokio::sync::Mutex<DealerSendHalf>>,
    waiters: Arc<Waiters>,
    next: Arc<AtomicU64>,
}

impl Caller for ZmqRawCaller {
    const NAME: &'static str = "raw zeromq";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let answer = self.waiters.register(id);
        let mut message = ZmqMessage::from(Bytes::copy_from_slice(&id.to_be_bytes()));
        message.push_back(Bytes::copy_from_slice(&a.to_be_bytes()));
        message.push_back(Bytes::copy_from_slice(&b.to_be_bytes()));
        self.send
            .lock()
            .await
            .send(message)
            .await
            .map_err(|e| self.waiters.fail(Self::NAME, id, e))?;
        self.waiters.wait(Self::NAME, id, answer).await
    }
}

fn number(frame: Option<&Bytes>) -> u64 {
    frame
        .and_then(|f| <[u8; 8]>::try_from(f.as_ref()).ok())
        .map_or(0, u64::from_be_bytes)
}

/// Binds a ROUTER on an ephemeral loopback port and connects one DEALER.
pub(crate) async fn start(_in_flight: usize) -> Result<Running<ZmqRawCaller>, BenchError> {
    let setup = |e| BenchError::setup(ZmqRawCaller::NAME, e);
    let mut router = RouterSocket::new();
    let endpoint = router.bind("tcp://127.0.0.1:0").await.map_err(setup)?;
    let server = tokio::spawn(async move {
        while let Ok(request) = router.recv().await {
            let frames = request.into_vec();
            let sum = number(frames.get(2)).wrapping_add(number(frames.get(3)));
            let mut reply = ZmqMessage::from(frames[0].clone());
            reply.push_back(frames[1].clone());
            reply.push_back(Bytes::copy_from_slice(&sum.to_be_bytes()));
            if router.send(reply).await.is_err() {
                break;
            }
        }
    });
    let mut dealer = DealerSocket::new();
    dealer.connect(&endpoint.to_string()).await.map_err(setup)?;
    let (send, mut receive) = dealer.split();
    let waiters: Arc<Waiters> = Arc::default();
    let reader = tokio::spawn({
        let waiters = waiters.clone();
        async move {
            while let Ok(reply) = receive.recv().await {
                let frames = reply.into_vec();
                waiters.answer(number(frames.first()), number(frames.get(1)));
            }
        }
    });
    let caller = ZmqRawCaller {
        send: Arc::new(tokio::sync::Mutex::new(send)),
        waiters,
        next: Arc::default(),
    };
    Ok(Running::new(caller, async move {
        reader.abort();
        server.abort();
        let _ = reader.await;
        let _ = server.await;
    }))
}
