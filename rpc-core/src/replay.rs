//! The answers a server sent recently, for requests delivered again.
//!
//! A fabric that tracks deliveries redelivers a request whose settlement it
//! never got: when a server's connection drops after the reply went out
//! but before the ack reached the broker, every such request comes back.
//! Running it again would run its handler twice for one call (and the
//! caller drops the second reply anyway). So a server keeps its recent
//! answers, keyed by where the reply went and the call's correlation id,
//! and a request found here gets the same reply again and the same
//! settlement, without running.
//!
//! The cache is this server's only: a request redelivered to another
//! server runs there. It is bounded by entries and by bytes, oldest out
//! first; a reply larger than the byte bound is not kept.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::envelope::{Header, Status};
use crate::name::Address;
use crate::service::Response;
use crate::transport::Settlement;
use crate::transport::support::lock_unpoisoned;

/// The default number of answers a server keeps.
pub const DEFAULT_REPLAY_ENTRIES: usize = 4096;

/// The default bound on the bytes of the reply bodies a server keeps.
pub const DEFAULT_REPLAY_BYTES: usize = 16 * 1024 * 1024;

/// How many times a server tries to send one answer before it gives up on
/// it (a send that fails hands the request back to the fabric, whose
/// redelivery the cache answers without running).
pub const MAX_FAILED_SENDS: u32 = 3;

/// One call: where its reply goes and its correlation id.
///
/// Hashed on the correlation id only: client ids start at a random point
/// (so they spread), and the address, which a peer chooses freely, is
/// compared but never hashed. A peer choosing colliding ids can only slow
/// lookups in a table this small.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReplayKey {
    reply_to: Address,
    correlation_id: u64,
}

impl Hash for ReplayKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.correlation_id.hash(state);
    }
}

/// A kept reply body: small ones (most replies) inline, so keeping an
/// answer allocates nothing for them.
type KeptBody = SmallVec<[u8; 24]>;

/// An answer as it was sent, and how its request was settled.
#[derive(Clone, Debug)]
pub(crate) struct Answer {
    pub(crate) status: Status,
    pub(crate) body: KeptBody,
    pub(crate) settlement: Settlement,
    /// Times its reply could not be sent.
    pub(crate) failed_sends: u32,
}

impl Answer {
    /// The response to send again.
    pub(crate) fn response(&self) -> Response {
        Response {
            status: self.status.clone(),
            body: self.body.to_vec(),
        }
    }
}

/// Recent answers of one server; see the module docs.
#[derive(Debug)]
pub(crate) struct ReplayCache {
    max_entries: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    answers: FxHashMap<ReplayKey, Answer>,
    order: VecDeque<ReplayKey>,
    bytes: usize,
}

impl ReplayCache {
    /// A cache of at most `max_entries` answers and `max_bytes` of bodies;
    /// zero entries keeps nothing.
    pub(crate) fn new(max_entries: usize, max_bytes: usize) -> Self {
        ReplayCache {
            max_entries,
            max_bytes,
            state: Mutex::default(),
        }
    }

    /// The answer already sent for the request `header`, if kept.
    pub(crate) fn get(&self, header: &Header) -> Option<Answer> {
        if self.max_entries == 0 {
            return None;
        }
        let key = key_of(header)?;
        self.lock().answers.get(&key).cloned()
    }

    /// Keeps a copy of `response`, the answer to the request `header`
    /// settled with `settlement`, if the request had a reply address.
    pub(crate) fn insert(&self, header: &Header, response: &Response, settlement: Settlement) {
        if self.max_entries == 0 || response.body.len() > self.max_bytes {
            return;
        }
        let Some(key) = key_of(header) else {
            return;
        };
        let answer = Answer {
            status: response.status.clone(),
            body: KeptBody::from_slice(&response.body),
            settlement,
            failed_sends: 0,
        };
        let mut state = self.lock();
        state.bytes += answer.body.len();
        if let Some(replaced) = state.answers.insert(key.clone(), answer) {
            state.bytes -= replaced.body.len();
        } else {
            state.order.push_back(key);
        }
        while state.answers.len() > self.max_entries || state.bytes > self.max_bytes {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some(evicted) = state.answers.remove(&oldest) {
                state.bytes -= evicted.body.len();
            }
        }
    }

    /// Counts a failed send of the kept answer to `header`; returns how many
    /// sends of it have failed, or `None` when no answer is kept for it.
    pub(crate) fn send_failed(&self, header: &Header) -> Option<u32> {
        if self.max_entries == 0 {
            return None;
        }
        let key = key_of(header)?;
        let mut state = self.lock();
        let answer = state.answers.get_mut(&key)?;
        answer.failed_sends += 1;
        Some(answer.failed_sends)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Each critical section leaves the map, the order and the byte
        // count consistent before anything that could panic.
        lock_unpoisoned(&self.state)
    }
}

fn key_of(header: &Header) -> Option<ReplayKey> {
    Some(ReplayKey {
        reply_to: header.reply_to.clone()?,
        correlation_id: header.correlation_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ContentType;

    fn request(id: u64, to: &'static str) -> Header {
        let mut header = Header::request("s".into(), "m".into(), ContentType::Json);
        header.correlation_id = id;
        header.reply_to = Some(Address::new(to));
        header
    }

    fn answer(body: &[u8]) -> Response {
        Response::ok(body.to_vec())
    }

    #[test]
    fn an_answer_is_found_by_address_and_id() {
        let cache = ReplayCache::new(8, 1024);
        cache.insert(&request(1, "a"), &answer(b"one"), Settlement::Ack);
        assert_eq!(cache.get(&request(1, "a")).unwrap().body.as_slice(), b"one");
        assert!(cache.get(&request(1, "b")).is_none(), "another inbox");
        assert!(cache.get(&request(2, "a")).is_none(), "another call");
        let mut oneway = request(1, "a");
        oneway.reply_to = None;
        assert!(cache.get(&oneway).is_none(), "nothing to answer");
    }

    #[test]
    fn the_oldest_answers_go_first_past_either_bound() {
        let cache = ReplayCache::new(2, 10);
        for id in 1..=3 {
            cache.insert(&request(id, "a"), &answer(b"xx"), Settlement::Ack);
        }
        assert!(cache.get(&request(1, "a")).is_none());
        assert!(cache.get(&request(3, "a")).is_some());
        cache.insert(&request(4, "a"), &answer(b"123456789"), Settlement::Ack);
        assert!(cache.get(&request(3, "a")).is_none(), "over the byte bound");
        assert!(cache.get(&request(4, "a")).is_some());
        cache.insert(&request(5, "a"), &answer(b"12345678901"), Settlement::Ack);
        assert!(
            cache.get(&request(5, "a")).is_none(),
            "larger than the bound"
        );
        assert_eq!(cache.lock().bytes, 9);
    }

    #[test]
    fn failed_sends_are_counted_per_kept_answer() {
        let cache = ReplayCache::new(8, 1024);
        assert_eq!(cache.send_failed(&request(1, "a")), None, "nothing kept");
        cache.insert(&request(1, "a"), &answer(b"one"), Settlement::Ack);
        assert_eq!(cache.send_failed(&request(1, "a")), Some(1));
        assert_eq!(cache.send_failed(&request(1, "a")), Some(2));
        assert_eq!(cache.get(&request(1, "a")).unwrap().failed_sends, 2);
        assert_eq!(cache.send_failed(&request(1, "b")), None, "another inbox");
    }

    #[test]
    fn zero_entries_keeps_nothing() {
        let cache = ReplayCache::new(0, 1024);
        cache.insert(&request(1, "a"), &answer(b"one"), Settlement::Ack);
        assert!(cache.get(&request(1, "a")).is_none());
    }
}
