//! Baseline: the least a typed, serialized, correlated round trip costs.
//!
//! Every step a call over our memory transport must take, and nothing
//! else: the client encodes `(id, a, b)` with our bincode codec, parks a
//! oneshot under `id` in a reply table, sends the bytes down a bounded
//! channel; one server task decodes, adds, encodes the sum, takes the
//! waiting oneshot out of the table and sends the bytes on it; the client
//! decodes them. No envelope, names, deadline, metrics, trace context,
//! limits or cancellation: the floor our runtime is judged against
//! (issue #13 asks for ours within 2x of it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rpc_core::codec::{Bincode, Codec};
use rustc_hash::FxHashMap;
use tokio::sync::{mpsc, oneshot};

use super::Running;
use crate::error::BenchError;
use crate::load::Caller;

/// Calls waiting for their reply bytes, by id.
type ReplyTable = Mutex<FxHashMap<u64, oneshot::Sender<Vec<u8>>>>;

/// A client of the typed server.
#[derive(Clone)]
pub(crate) struct TypedMinCaller {
    requests: mpsc::Sender<Vec<u8>>,
    waiting: Arc<ReplyTable>,
    next_id: Arc<AtomicU64>,
}

impl Caller for TypedMinCaller {
    const NAME: &'static str = "minimal typed path";

    async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut request = Vec::new();
        Bincode::encode(&(id, a, b), &mut request).map_err(|e| BenchError::call(Self::NAME, e))?;
        let (reply, answer) = oneshot::channel();
        lock(&self.waiting).insert(id, reply);
        self.requests
            .send(request)
            .await
            .map_err(|_| BenchError::call(Self::NAME, "server gone"))?;
        let bytes = answer
            .await
            .map_err(|_| BenchError::call(Self::NAME, "reply dropped"))?;
        Bincode::decode(&bytes).map_err(|e| BenchError::call(Self::NAME, e))
    }
}

/// Starts the server task; it ends when the last caller is dropped.
pub(crate) async fn start(in_flight: usize) -> Result<Running<TypedMinCaller>, BenchError> {
    let (requests, mut incoming) = mpsc::channel::<Vec<u8>>(in_flight.max(1));
    let waiting = Arc::new(ReplyTable::default());
    let replies = Arc::clone(&waiting);
    let server = tokio::spawn(async move {
        while let Some(request) = incoming.recv().await {
            // Neither step can fail on what the callers encode.
            let Ok((id, a, b)) = Bincode::decode::<(u64, u64, u64)>(&request) else {
                continue;
            };
            let mut reply = Vec::new();
            if Bincode::encode(&a.wrapping_add(b), &mut reply).is_err() {
                continue;
            }
            if let Some(waiter) = lock(&replies).remove(&id) {
                let _ = waiter.send(reply);
            }
        }
    });
    let caller = TypedMinCaller {
        requests,
        waiting,
        next_id: Arc::new(AtomicU64::new(0)),
    };
    Ok(Running::new(caller, async move {
        let _ = server.await;
    }))
}

/// The reply table, whoever panicked while holding it (nobody does here).
fn lock(table: &ReplyTable) -> std::sync::MutexGuard<'_, FxHashMap<u64, oneshot::Sender<Vec<u8>>>> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
