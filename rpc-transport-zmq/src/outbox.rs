//! Replies to batches of requests, written to each peer as one `REP` of
//! several (tag, envelope) pairs.
//!
//! zeromq's cost is per message, not per byte: a ROUTER's send looks its
//! peer up, queues the message on the peer's channel and wakes its writer,
//! and the client's DEALER does as much again to read it. A reply to a
//! request that came in a batch, from a peer that said `HELLO BATCH`, is
//! therefore queued here, and the outbox's writer sends what gathered for
//! each peer as one message: it waits until the tasks that were ready when
//! it was woken have run (`gather.rs`), so the replies of the calls that
//! finish in the same turn of the runtime go together. A reply to a
//! request that came alone is written at once: a client with one call in
//! flight never waits for the writer.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use zeromq::SocketSend;

use crate::gather::Gather;
use crate::server::ServerSide;
use crate::signal::Signal;
use crate::stats::Counters;
use crate::wire;
use rpc_core::transport::support::lock_unpoisoned;

/// Replies waiting for the writer, per peer.
#[derive(Default)]
pub(crate) struct Outbox {
    /// Peers, each with its (tag, envelope) frames in the order queued.
    /// A few peers at a time: a list, searched from its end (a peer's
    /// replies come in runs), not a map whose look-up hashes an identity.
    queued: Mutex<Vec<(Bytes, Vec<Bytes>)>>,
    /// Raised by the first reply queued after the writer last took them.
    ready: Signal,
}

impl Outbox {
    /// Queues a reply to `peer`.
    pub(crate) fn push(&self, peer: &Bytes, tag: Bytes, envelope: Bytes) {
        let mut queued = lock_unpoisoned(&self.queued);
        let first = queued.is_empty();
        match queued.iter_mut().rev().find(|(p, _)| p == peer) {
            Some((_, frames)) => frames.extend([tag, envelope]),
            None => queued.push((peer.clone(), vec![tag, envelope])),
        }
        drop(queued);
        if first {
            self.ready.raise();
        }
    }

    fn take(&self) -> Vec<(Bytes, Vec<Bytes>)> {
        std::mem::take(&mut *lock_unpoisoned(&self.queued))
    }
}

/// The outbox's writer: runs until the transport's tasks are aborted.
pub(crate) async fn write(server: Arc<ServerSide>) {
    let max_size = server.config.limits.max_message_size;
    let gather = Gather::here();
    loop {
        server.outbox.ready.take().await;
        // Let the calls that are ready to finish now add their replies.
        gather.before_replies().await;
        for (peer, pairs) in server.outbox.take() {
            let count = pairs.len() / 2;
            for frames in wire::batches(Some(&peer), wire::REP, pairs, max_size) {
                let replies = (frames.len() - 2) / 2;
                Counters::bump(&server.counters.batch_messages);
                if server
                    .sender
                    .clone()
                    .send(wire::message(frames))
                    .await
                    .is_err()
                {
                    // The client went (closed or died): nobody waits for these.
                    Counters::add(&server.counters.undeliverable_replies, replies as u64);
                }
            }
            Counters::add(&server.counters.batched_replies, count as u64);
        }
    }
}
