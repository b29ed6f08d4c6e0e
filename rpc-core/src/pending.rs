//! The pending-call table: correlation ids to the callers waiting on them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::oneshot;

use crate::envelope::Envelope;
use crate::error::RpcError;
use crate::transport::ReplyHandler;

type Waiter = oneshot::Sender<Result<Envelope, RpcError>>;

/// The table's hasher: correlation ids are this table's own sequence
/// numbers, so SipHash's resistance to chosen keys buys nothing (a peer can
/// only make us look ids up, never insert them), and it was a measurable
/// share of a memory-transport call (three hashes per call).
type Ids = BuildHasherDefault<IdHasher>;

/// Fibonacci hashing of one `u64`: a bijection that spreads sequential ids
/// over the high bits hashbrown uses for its tags.
#[derive(Clone, Copy, Debug, Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed here; this keeps any other use correct.
        for &byte in bytes {
            self.write_u64(self.0.rotate_left(8) ^ u64::from(byte));
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Where a registered call waits for its reply.
pub(crate) type ReplyReceiver = oneshot::Receiver<Result<Envelope, RpcError>>;

/// Calls in flight on one client inbox.
///
/// Every entry is removed exactly once: by its reply, by a connection loss,
/// or by the caller's [`PendingGuard`] when the call future completes, times
/// out or is dropped. So the table is empty whenever no call is in flight.
#[derive(Debug, Default)]
pub(crate) struct PendingTable {
    waiters: Mutex<HashMap<u64, Waiter, Ids>>,
    next_id: AtomicU64,
    dropped_replies: AtomicU64,
    closed: AtomicBool,
}

impl PendingTable {
    /// Registers a new call; the guard removes it again on drop.
    pub(crate) fn register(&self) -> Result<(PendingGuard<'_>, ReplyReceiver), RpcError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RpcError::Closed);
        }
        // Ids start at 1 so that 0 never names a call.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id, tx);
        Ok((PendingGuard { table: self, id }, rx))
    }

    /// Calls currently waiting for a reply.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Replies that matched no waiting call (duplicates, late or unknown).
    pub(crate) fn dropped_replies(&self) -> u64 {
        self.dropped_replies.load(Ordering::Relaxed)
    }

    fn fail_all(&self, error: fn() -> RpcError) {
        let waiters: Vec<Waiter> = self.lock().drain().map(|(_, w)| w).collect();
        for waiter in waiters {
            let _ = waiter.send(Err(error()));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter, Ids>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (every critical section is one map call), so poisoning is ignored.
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ReplyHandler for PendingTable {
    fn deliver(&self, envelope: Envelope) {
        let waiter = self.lock().remove(&envelope.header.correlation_id);
        match waiter {
            Some(waiter) => {
                // The caller may have just given up; then the reply is dropped.
                if waiter.send(Ok(envelope)).is_err() {
                    self.dropped_replies.fetch_add(1, Ordering::Relaxed);
                }
            }
            None => {
                self.dropped_replies.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    correlation_id = envelope.header.correlation_id,
                    "dropped a reply that no call is waiting for"
                );
            }
        }
    }

    fn connection_lost(&self) {
        self.fail_all(|| RpcError::ConnectionLost);
    }

    fn closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.fail_all(|| RpcError::Closed);
    }
}

/// Removes its call from the table when dropped, whatever ended the call.
#[derive(Debug)]
pub(crate) struct PendingGuard<'a> {
    table: &'a PendingTable,
    id: u64,
}

impl PendingGuard<'_> {
    /// The call's correlation id.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The call's waiter has been sent to (a reply, a connection loss, the
    /// table closing): whoever sent took the entry out, so there is nothing
    /// left to remove, and skipping the second lookup saves a lock and a
    /// hash per call.
    pub(crate) fn answered(self) {
        std::mem::forget(self);
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.table.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ContentType;
    use crate::envelope::Header;

    fn reply(id: u64) -> Envelope {
        let mut header = Header::request("s".into(), "m".into(), ContentType::Json);
        header.correlation_id = id;
        Envelope {
            header,
            body: Vec::new(),
        }
    }

    #[test]
    fn a_reply_completes_its_call_once() {
        let table = PendingTable::default();
        let (guard, mut rx) = table.register().unwrap();
        table.deliver(reply(guard.id()));
        table.deliver(reply(guard.id()));
        assert!(rx.try_recv().unwrap().is_ok());
        assert_eq!(table.dropped_replies(), 1);
        assert_eq!(table.len(), 0);
        guard.answered();
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn an_answered_guard_leaves_other_calls_alone() {
        let table = PendingTable::default();
        let (answered, _ra) = table.register().unwrap();
        let (waiting, _rw) = table.register().unwrap();
        table.deliver(reply(answered.id()));
        answered.answered();
        assert_eq!(table.len(), 1);
        table.deliver(reply(waiting.id()));
        assert_eq!(table.dropped_replies(), 0);
        drop(waiting);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn sequential_ids_hash_apart() {
        use std::collections::HashSet;
        let hash = |id: u64| {
            let mut hasher = IdHasher::default();
            hasher.write_u64(id);
            hasher.finish()
        };
        let hashes: HashSet<u64> = (0..4096).map(hash).collect();
        assert_eq!(hashes.len(), 4096);
        // hashbrown's tags are the top 7 bits: sequential ids must use them all.
        let tags: HashSet<u64> = (0..4096).map(|id| hash(id) >> 57).collect();
        assert_eq!(tags.len(), 128);
    }

    #[test]
    fn dropping_the_guard_empties_the_table() {
        let table = PendingTable::default();
        let (a, _ra) = table.register().unwrap();
        let (b, _rb) = table.register().unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(table.len(), 2);
        drop((a, b));
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn connection_loss_fails_every_waiter() {
        let table = PendingTable::default();
        let (_g, mut rx) = table.register().unwrap();
        table.connection_lost();
        assert!(matches!(rx.try_recv(), Ok(Err(RpcError::ConnectionLost))));
        assert_eq!(table.len(), 0);
        table.closed();
        assert!(matches!(table.register(), Err(RpcError::Closed)));
    }
}
