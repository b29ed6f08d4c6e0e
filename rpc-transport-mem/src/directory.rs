//! The broker's name-keyed maps: read on every message, written when a
//! service is first served or an inbox opens or closes.
//!
//! A lock, even a read lock, writes to shared memory on every lookup: with
//! senders on two threads its cache line moves between the cores on each
//! message, the largest share of a send on a multi-threaded runtime. Here
//! readers load a snapshot through `arc-swap`, which writes only to memory
//! of the reading thread; writers copy the map, change the copy and publish
//! it, one writer at a time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::{ArcSwap, Guard};
use rpc_core::Name;
use rpc_core::transport::support::lock_unpoisoned;

/// One snapshot of a [`Directory`].
///
/// Keyed by names this process registered itself (a lookup with a foreign
/// name just misses), so a fast non-keyed hash is safe here: SipHash's
/// defence against chosen keys buys nothing, and it was about a tenth of
/// the broker's own time per call (two lookups per call).
pub(crate) type Entries<V> = HashMap<Name, V, rustc_hash::FxBuildHasher>;

/// A map from names to `V`, read without locking.
#[derive(Debug)]
pub(crate) struct Directory<V> {
    current: ArcSwap<Entries<V>>,
    /// Counts the changes published: what was found in the map holds while
    /// this has not moved (see `last_inbox.rs`).
    generation: AtomicU64,
    /// Serializes writers (so none loses another's change), and lets a
    /// reader see a snapshot no writer is about to replace.
    writer: Mutex<()>,
}

impl<V: Clone> Directory<V> {
    pub(crate) fn new() -> Self {
        Directory {
            current: ArcSwap::from_pointee(Entries::default()),
            generation: AtomicU64::new(0),
            writer: Mutex::new(()),
        }
    }

    /// The current entries; a snapshot, so a change made meanwhile is not seen.
    pub(crate) fn read(&self) -> Guard<Arc<Entries<V>>> {
        self.current.load()
    }

    /// How many changes have been published. Read before a look-up, it
    /// dates the look-up's result: while it reads the same, no change was
    /// published since (one being published may be missed, as a
    /// [`read`](Self::read) just before it would miss it).
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Changes the map: `change` edits a copy, which then replaces it.
    pub(crate) fn update<R>(&self, change: impl FnOnce(&mut Entries<V>) -> R) -> R {
        let _writer = self.lock_writers();
        let mut entries = Entries::clone(&self.current.load());
        let result = change(&mut entries);
        self.current.store(Arc::new(entries));
        // After the store: a reader that sees the new count sees the new map.
        self.generation.fetch_add(1, Ordering::Release);
        result
    }

    /// Reads the map while no writer can change it: whatever a writer does
    /// next happens after `read` has seen the entries.
    pub(crate) fn read_between_writes<R>(&self, read: impl FnOnce(&Entries<V>) -> R) -> R {
        let _writer = self.lock_writers();
        read(&self.current.load())
    }

    fn lock_writers(&self) -> MutexGuard<'_, ()> {
        // The guarded data is `()`: nothing can be left half-done.
        lock_unpoisoned(&self.writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_keeps_what_it_saw_and_later_reads_see_the_change() {
        let directory = Directory::new();
        directory.update(|map| map.insert(Name::from_static("a"), 1));
        let before = directory.read();
        directory.update(|map| map.insert(Name::from_static("b"), 2));
        assert_eq!(before.len(), 1);
        assert_eq!(directory.read().get("b"), Some(&2));
        assert_eq!(
            directory.read_between_writes(|map| map.len()),
            2,
            "both writes kept"
        );
    }
}
