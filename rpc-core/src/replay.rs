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
use std::collections::hash_map::Entry;
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

/// A copy of an answer, made before its reply is sent, for a cache that
/// may keep it only once the reply is out
/// ([`Delivery::final_settlement`](crate::transport::Delivery::final_settlement)).
#[derive(Debug)]
pub(crate) struct AnswerCopy {
    status: Status,
    body: KeptBody,
}

impl AnswerCopy {
    fn of(response: &Response) -> Self {
        AnswerCopy {
            status: response.status.clone(),
            body: KeptBody::from_slice(&response.body),
        }
    }
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

/// The answers kept, by correlation id: the calls of one id, almost always
/// one (client ids start at random points of the 64-bit space), each told
/// apart by where its reply went.
///
/// Keyed on the correlation id only: the address, which a peer chooses
/// freely, is compared but never hashed, and a peer choosing colliding ids
/// can only lengthen the short list of one id, in a table this small.
#[derive(Debug, Default)]
struct State {
    answers: FxHashMap<u64, SmallVec<[Kept; 1]>>,
    /// Kept answers, oldest first, by correlation id and sequence number.
    order: VecDeque<(u64, u64)>,
    next_sequence: u64,
    entries: usize,
    bytes: usize,
}

/// One kept answer.
#[derive(Debug)]
struct Kept {
    reply_to: Address,
    /// Where it stands in [`State::order`].
    sequence: u64,
    answer: Answer,
}

impl State {
    fn find(&self, correlation_id: u64, reply_to: &Address) -> Option<&Kept> {
        let kept = self.answers.get(&correlation_id)?;
        kept.iter().find(|kept| kept.reply_to == *reply_to)
    }

    fn find_mut(&mut self, correlation_id: u64, reply_to: &Address) -> Option<&mut Kept> {
        let kept = self.answers.get_mut(&correlation_id)?;
        kept.iter_mut().find(|kept| kept.reply_to == *reply_to)
    }

    /// Forgets the oldest answer; `false` when none is kept.
    fn evict_oldest(&mut self) -> bool {
        let Some((correlation_id, sequence)) = self.order.pop_front() else {
            return false;
        };
        if let Entry::Occupied(mut calls) = self.answers.entry(correlation_id) {
            let kept = calls.get_mut();
            if let Some(at) = kept.iter().position(|kept| kept.sequence == sequence) {
                let evicted = kept.swap_remove(at);
                self.entries -= 1;
                self.bytes -= evicted.answer.body.len();
            }
            if kept.is_empty() {
                calls.remove();
            }
        }
        true
    }
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
        let reply_to = header.reply_to.as_ref()?;
        let state = self.lock();
        let kept = state.find(header.correlation_id, reply_to)?;
        Some(kept.answer.clone())
    }

    /// Keeps a copy of `response`, the answer to the request `header`
    /// settled with `settlement`, if the request had a reply address.
    pub(crate) fn insert(&self, header: &Header, response: &Response, settlement: Settlement) {
        if self.max_entries == 0 || response.body.len() > self.max_bytes {
            return;
        }
        self.insert_copy(header, AnswerCopy::of(response), settlement);
    }

    /// A copy of `response` to [`insert_copy`](Self::insert_copy) later;
    /// `None` when this cache would not keep it.
    pub(crate) fn copy(&self, response: &Response) -> Option<AnswerCopy> {
        (self.max_entries != 0 && response.body.len() <= self.max_bytes)
            .then(|| AnswerCopy::of(response))
    }

    /// [`insert`](Self::insert), of an answer copied before its reply was sent.
    pub(crate) fn insert_copy(&self, header: &Header, copy: AnswerCopy, settlement: Settlement) {
        if self.max_entries == 0 || copy.body.len() > self.max_bytes {
            return;
        }
        let Some(reply_to) = &header.reply_to else {
            return;
        };
        let answer = Answer {
            status: copy.status,
            body: copy.body,
            settlement,
            failed_sends: 0,
        };
        let correlation_id = header.correlation_id;
        let mut guard = self.lock();
        let state = &mut *guard;
        state.bytes += answer.body.len();
        // One lookup finds the id's calls or makes room for them: a lookup
        // to find and another to insert would hash the id twice per answer.
        let calls = state.answers.entry(correlation_id).or_default();
        if let Some(kept) = calls.iter_mut().find(|kept| kept.reply_to == *reply_to) {
            // Kept again in place: its age is its first answer's.
            let replaced = std::mem::replace(&mut kept.answer, answer);
            state.bytes -= replaced.body.len();
        } else {
            let sequence = state.next_sequence;
            state.next_sequence += 1;
            calls.push(Kept {
                reply_to: reply_to.clone(),
                sequence,
                answer,
            });
            state.order.push_back((correlation_id, sequence));
            state.entries += 1;
        }
        while state.entries > self.max_entries || state.bytes > self.max_bytes {
            if !state.evict_oldest() {
                break;
            }
        }
    }

    /// Counts a failed send of the kept answer to `header`; returns how many
    /// sends of it have failed, or `None` when no answer is kept for it.
    pub(crate) fn send_failed(&self, header: &Header) -> Option<u32> {
        if self.max_entries == 0 {
            return None;
        }
        let reply_to = header.reply_to.as_ref()?;
        let mut state = self.lock();
        let answer = &mut state.find_mut(header.correlation_id, reply_to)?.answer;
        answer.failed_sends += 1;
        Some(answer.failed_sends)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Each critical section leaves the map, the order and the byte
        // count consistent before anything that could panic.
        lock_unpoisoned(&self.state)
    }
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
    fn calls_of_one_id_from_two_inboxes_are_kept_and_evicted_apart() {
        let cache = ReplayCache::new(2, 1024);
        cache.insert(&request(1, "a"), &answer(b"a1"), Settlement::Ack);
        cache.insert(&request(1, "b"), &answer(b"b1"), Settlement::Ack);
        assert_eq!(cache.get(&request(1, "a")).unwrap().body.as_slice(), b"a1");
        assert_eq!(cache.get(&request(1, "b")).unwrap().body.as_slice(), b"b1");
        // Answered again: replaced in place, and still the oldest.
        cache.insert(&request(1, "a"), &answer(b"a2"), Settlement::Ack);
        assert_eq!(cache.get(&request(1, "a")).unwrap().body.as_slice(), b"a2");
        cache.insert(&request(2, "a"), &answer(b"c"), Settlement::Ack);
        assert!(cache.get(&request(1, "a")).is_none(), "the oldest went");
        assert!(cache.get(&request(1, "b")).is_some());
        assert!(cache.get(&request(2, "a")).is_some());
        assert_eq!(cache.lock().bytes, 3);
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
