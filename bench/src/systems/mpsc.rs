//! Baseline: the least an in-process round trip can cost on tokio.
//!
//! A bounded mpsc channel carries `(a, b, reply sender)` to one server task,
//! which answers inline on a oneshot. No encoding, no correlation table, no
//! task per request: a floor, not a competitor.

use tokio::sync::{mpsc, oneshot};

use super::Running;
use crate::error::BenchError;
use crate::load::Caller;

type Job = (u64, u64, oneshot::Sender<u64>);

/// A client of the channel server.
#[derive(Clone)]
pub(crate) struct MpscCaller(mpsc::Sender<Job>);

impl Caller for MpscCaller {
    const NAME: &'static str = "tokio mpsc+oneshot";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        let (reply, answer) = oneshot::channel();
        self.0
            .send((a, b, reply))
            .await
            .map_err(|_| BenchError::call(Self::NAME, "server gone"))?;
        answer
            .await
            .map_err(|_| BenchError::call(Self::NAME, "reply dropped"))
    }
}

/// Starts the server task; it ends when the last caller is dropped.
pub(crate) async fn start(in_flight: usize) -> Result<Running<MpscCaller>, BenchError> {
    let (requests, mut incoming) = mpsc::channel::<Job>(in_flight.max(1));
    let server = tokio::spawn(async move {
        while let Some((a, b, reply)) = incoming.recv().await {
            let _ = reply.send(a.wrapping_add(b));
        }
    });
    Ok(Running::new(MpscCaller(requests), async move {
        let _ = server.await;
    }))
}
