//! The reply inbox a serve stream answered last, kept so that the next
//! reply to it is not looked up by name again.
//!
//! A server's replies mostly go to a few clients, one after another to the
//! same one; looking each inbox up in the broker's directory (a snapshot
//! load, a hash of its name, a string compare) was about 200 instructions
//! a reply. The kept sink is used only while the directory has not changed
//! since it was found: any inbox opening or closing sends the next reply
//! through the directory again, so a reply to a closed inbox is dropped
//! and counted exactly as before.

use std::sync::Mutex;

use rpc_core::Address;
use rpc_core::transport::ReplySink;
use rpc_core::transport::support::lock_unpoisoned;

use crate::directory::Directory;

/// The inbox one serve stream replied to last; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct LastInbox(Mutex<Option<Found>>);

/// An inbox found in the directory, and the directory's generation then.
#[derive(Debug)]
struct Found {
    generation: u64,
    address: Address,
    sink: ReplySink,
}

impl LastInbox {
    /// The sink of the open inbox at `to`, if any: the one kept if `to` is
    /// the inbox last found and `inboxes` has not changed since, else
    /// looked up (and kept).
    #[inline]
    pub(crate) fn sink(&self, to: &Address, inboxes: &Directory<ReplySink>) -> Option<ReplySink> {
        // Read before the look-up below: a change after this reading makes
        // the generation kept with its result stale, never the reverse.
        let generation = inboxes.generation();
        let mut last = lock_unpoisoned(&self.0);
        if let Some(found) = &*last
            && found.generation == generation
            && same(&found.address, to)
        {
            return Some(found.sink.clone());
        }
        let sink = inboxes.read().get(to.as_str()).cloned()?;
        *last = Some(Found {
            generation,
            address: to.clone(),
            sink: sink.clone(),
        });
        Some(sink)
    }
}

/// Equal addresses: the same text in memory (a client's requests all carry
/// clones of one address), else equal text.
fn same(a: &Address, b: &Address) -> bool {
    let (a, b) = (a.as_str(), b.as_str());
    std::ptr::eq(a, b) || a == b
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use rpc_core::transport::ReplyHandler;
    use rpc_core::{ContentType, Envelope, Header};

    use super::*;

    /// Counts the replies it is given.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl ReplyHandler for Counting {
        fn deliver(&self, _: Envelope) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn connection_lost(&self) {}
        fn closed(&self) {}
    }

    fn reply() -> Envelope {
        Envelope {
            header: Header::request("svc".into(), "m".into(), ContentType::Json),
            body: Vec::new(),
        }
    }

    #[test]
    fn a_kept_inbox_is_dropped_once_any_inbox_opens_or_closes() {
        let inboxes = Directory::new();
        let (a, b) = (Address::new("mem.inbox.1"), Address::new("mem.inbox.2"));
        let counting = Arc::new(Counting::default());
        let sink = ReplySink::new(counting.clone());
        inboxes.update(|map| map.insert(a.name().clone(), sink));
        let last = LastInbox::default();
        for _ in 0..2 {
            last.sink(&a, &inboxes).expect("open").deliver(reply());
        }
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        assert!(last.sink(&b, &inboxes).is_none(), "never opened");
        inboxes.update(|map| map.remove(a.as_str()));
        assert!(
            last.sink(&a, &inboxes).is_none(),
            "closed since it was kept"
        );
    }
}
