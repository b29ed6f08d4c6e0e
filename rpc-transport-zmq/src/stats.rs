//! Counters of one transport, read through [`ZmqStats`].

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters; [`Counters::snapshot`] reads them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) refused_messages: AtomicU64,
    pub(crate) refused_handshakes: AtomicU64,
    pub(crate) errors_received: AtomicU64,
    pub(crate) servers_lost: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) undeliverable_replies: AtomicU64,
    pub(crate) batched_requests: AtomicU64,
    pub(crate) batched_replies: AtomicU64,
    pub(crate) batch_messages: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(counter: &AtomicU64, count: u64) {
        counter.fetch_add(count, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ZmqStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ZmqStats {
            refused_messages: read(&self.refused_messages),
            refused_handshakes: read(&self.refused_handshakes),
            errors_received: read(&self.errors_received),
            servers_lost: read(&self.servers_lost),
            connects: read(&self.connects),
            connect_failures: read(&self.connect_failures),
            undeliverable_replies: read(&self.undeliverable_replies),
            batched_requests: read(&self.batched_requests),
            batched_replies: read(&self.batched_replies),
            batch_messages: read(&self.batch_messages),
        }
    }
}

/// Counters of one transport, from [`ZmqTransport::stats`](crate::ZmqTransport::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ZmqStats {
    /// Messages refused as malformed: unknown command, wrong frame count,
    /// oversized, undecodable envelope (either side).
    pub refused_messages: u64,
    /// Connections refused before the first message: the peer does not
    /// speak ZMTP (another protocol on the port) or failed the handshake.
    pub refused_handshakes: u64,
    /// `ERROR` messages received from servers (they refused something we sent).
    pub errors_received: u64,
    /// Servers declared dead (heartbeats stopped) or lost.
    pub servers_lost: u64,
    /// Links established to servers (first connects and reconnects).
    pub connects: u64,
    /// Connection attempts that failed or timed out.
    pub connect_failures: u64,
    /// Replies that matched no open inbox, or could not be sent back to a
    /// client that had gone.
    pub undeliverable_replies: u64,
    /// Requests written in a `REQ` of several: those made in the same
    /// turn of the runtime on one link (docs/wire.md, "Batches").
    pub batched_requests: u64,
    /// Replies written by the server's outbox, to requests that came in a
    /// batch, with the others to the same client that finished in the same
    /// turn of the runtime.
    pub batched_replies: u64,
    /// `REQ` and `REP` messages the batchers wrote: with the two counts
    /// above, how many calls a message carried on average.
    pub batch_messages: u64,
}
