//! Requests gathered while a link has calls in flight, written to its
//! server as one `REQ` of several (tag, envelope) pairs.
//!
//! The client's half of what `outbox.rs` does for replies: zeromq's cost
//! is per message, so a request routed to a link that holds more than
//! `batch_above` calls is queued here, and the link's writer sends what
//! gathered as one message once the tasks that were ready when it was
//! woken have run (`gather.rs`). The calls whose replies came in one message make their
//! next requests in the same turn of the runtime, and those go together.
//! Below that a request is written at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use zeromq::SocketSend;

use crate::gather::Gather;
use crate::signal::Signal;
use crate::stats::Counters;
use crate::wire;
use rpc_core::transport::support::lock_unpoisoned;

/// One link's requests waiting for its writer.
#[derive(Default)]
pub(crate) struct Batch {
    /// (tag, envelope) frames, in the order the calls were routed.
    pairs: Mutex<Vec<Bytes>>,
    /// Raised by the first request queued after the writer last took them.
    ready: Signal,
    /// Calls in flight on the link when the last request was queued.
    in_flight: AtomicUsize,
}

impl Batch {
    /// Queues a request's tag and envelope frames; `in_flight` calls are
    /// on the link with it.
    pub(crate) fn push(&self, tag: Bytes, envelope: Bytes, in_flight: usize) {
        self.in_flight.store(in_flight, Ordering::Relaxed);
        let mut pairs = lock_unpoisoned(&self.pairs);
        let first = pairs.is_empty();
        pairs.extend([tag, envelope]);
        drop(pairs);
        if first {
            self.ready.raise();
        }
    }
}

/// Writes `batch` to the link's socket until `stop` is raised (the link
/// went down, or a write failed: the link task then fails the calls the
/// link held, these among them).
pub(crate) async fn write(
    batch: Arc<Batch>,
    sender: crate::client::Sender,
    stop: Arc<Signal>,
    counters: Arc<Counters>,
    max_size: usize,
) {
    let gather = Gather::here();
    loop {
        tokio::select! {
            biased;
            () = stop.raised() => return,
            () = batch.ready.take() => {}
        }
        // Let the calls that are ready to run now add their requests.
        gather
            .before_requests(batch.in_flight.load(Ordering::Relaxed))
            .await;
        let pairs = std::mem::take(&mut *lock_unpoisoned(&batch.pairs));
        Counters::add(&counters.batched_requests, (pairs.len() / 2) as u64);
        for frames in wire::batches(None, wire::REQ, pairs, max_size) {
            Counters::bump(&counters.batch_messages);
            if sender
                .lock()
                .await
                .send(wire::message(frames))
                .await
                .is_err()
            {
                stop.raise();
                return;
            }
        }
    }
}
