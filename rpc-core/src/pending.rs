//! The pending-call table: correlation ids to the callers waiting on them.
//!
//! A call's answer is left in its entry and taken out by the caller, who
//! polls the table under the lock it takes anyway: no channel per call, so
//! no allocation, no reference count and no channel state to touch, and
//! the answer is moved once into the table and once out of it.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use rustc_hash::FxHashMap;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::envelope::Envelope;
use crate::error::RpcError;
use crate::transport::ReplyHandler;
use crate::transport::support::lock_unpoisoned;

/// What a call is answered with: the reply, or why none will come.
pub(crate) type Answer = Result<Envelope, RpcError>;

/// A call registered until its caller takes its answer or gives up.
#[derive(Debug)]
struct Entry {
    deadline: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    /// No answer yet; the waker of the caller's last poll, if it polled.
    Waiting(Option<Waker>),
    /// Answered (a reply, the deadline, a lost connection); the caller has
    /// not taken it yet.
    Answered(Answer),
}

/// Calls in flight on one client inbox, and their deadlines.
///
/// Every entry is answered at most once: by its reply, by its deadline (the
/// [watchdog](crate::watchdog)), by a connection loss or the table closing;
/// a second answer (a duplicate or late reply) is dropped and counted. An
/// entry is removed exactly once: by its caller's [`Reply`] taking the
/// answer, or by the caller's [`PendingGuard`] when the call future is
/// dropped or fails to send. So the table is empty whenever no call is in
/// flight.
#[derive(Debug)]
pub(crate) struct PendingTable {
    calls: Mutex<Calls>,
    /// Wakes the watchdog when a call's deadline is earlier than the one it
    /// sleeps towards, and when the table closes.
    pub(crate) alarm: Arc<Notify>,
    /// Whether a watchdog task is alive for this table.
    pub(crate) watched: AtomicBool,
    next_id: AtomicU64,
    dropped_replies: AtomicU64,
    closed: AtomicBool,
}

impl Default for PendingTable {
    fn default() -> Self {
        PendingTable {
            calls: Mutex::default(),
            alarm: Arc::default(),
            watched: AtomicBool::new(false),
            next_id: AtomicU64::new(first_id()),
            dropped_replies: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }
}

/// Where a table's correlation ids start: a random point of the 64-bit
/// space, so that ids of different clients do not meet in practice. A
/// server tells calls apart by id (with the reply address where it has one,
/// with the deadline for a cancel, which carries no reply address), and a
/// peer cannot guess another client's ids from its own.
fn first_id() -> u64 {
    // Each `RandomState` has keys of its own, drawn from the OS once per
    // thread and stepped for each new one; no dependency needed for this.
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Calls keyed by correlation id. The ids are this table's own sequence
/// numbers, so a fast non-keyed hash is safe: a peer can make us look ids
/// up, never insert them.
#[derive(Debug, Default)]
struct Calls {
    entries: FxHashMap<u64, Entry>,
    /// The deadline the watchdog sleeps until; `None` while it waits for
    /// the alarm only.
    wake_at: Option<Instant>,
}

/// An answer for a call that is unknown (never registered, or gone: its
/// caller took an answer or gave up) or answered already: it is dropped.
struct Unanswerable;

impl Calls {
    /// Answers the call `id` unless it is answered already; returns the
    /// waker to wake (outside the lock).
    #[inline]
    fn answer(
        &mut self,
        id: u64,
        answer: impl FnOnce() -> Answer,
    ) -> Result<Option<Waker>, Unanswerable> {
        match self.entries.get_mut(&id) {
            Some(entry) => entry.answer(answer),
            None => Err(Unanswerable),
        }
    }
}

impl Entry {
    #[inline]
    fn answer(&mut self, answer: impl FnOnce() -> Answer) -> Result<Option<Waker>, Unanswerable> {
        match &mut self.state {
            State::Waiting(waker) => {
                let waker = waker.take();
                // Made where it is stored: an answer is large, and each
                // move of it is a copy.
                self.state = State::Answered(answer());
                Ok(waker)
            }
            State::Answered(_) => Err(Unanswerable),
        }
    }

    fn is_waiting(&self) -> bool {
        matches!(self.state, State::Waiting(_))
    }
}

impl PendingTable {
    /// Registers a new call that times out at `deadline`; the guard removes
    /// it again on drop. Starts the watchdog if none is running.
    ///
    /// With `waker` (the waker of the task poll that registers), the call's
    /// answer wakes it, and the [`Reply`]'s first poll returns `Pending`
    /// without looking in the table: that poll must be in the same poll of
    /// the same task as this registration, so that the waker registered is
    /// still the one to wake. A reply cannot have come before the call
    /// registered, and one that comes after wakes the task to poll again.
    pub(crate) fn register(
        self: &Arc<Self>,
        deadline: Instant,
        waker: Option<Waker>,
    ) -> Result<(PendingGuard<'_>, Reply<'_>), RpcError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(RpcError::Closed);
        }
        if !self.watched.load(Ordering::Acquire) {
            crate::watchdog::start(self);
        }
        // 0 never names a call (a oneway call's id is 0 on the wire).
        let id = match self.next_id.fetch_add(1, Ordering::Relaxed) {
            0 => self.next_id.fetch_add(1, Ordering::Relaxed),
            id => id,
        };
        let earlier = {
            let mut calls = self.lock();
            let fresh = waker.is_some();
            // Ids are never reused: there is no old value to hand back.
            // The entry is built in the call that stores it, after the
            // look-up: built before it, it is copied whole (answer room
            // and all) from where it was built on the way into the table.
            if let std::collections::hash_map::Entry::Vacant(vacant) = calls.entries.entry(id) {
                vacant.insert(Entry {
                    deadline,
                    state: State::Waiting(waker),
                });
            }
            // With one timeout per client, deadlines only grow: the alarm
            // rings only for a call with a shorter timeout than the rest.
            let earlier = calls.wake_at.is_none_or(|at| deadline < at);
            if earlier {
                calls.wake_at = Some(deadline);
            }
            (earlier, fresh)
        };
        let (earlier, fresh) = earlier;
        if earlier {
            self.alarm.notify_one();
        }
        let reply = Reply {
            table: self,
            id,
            fresh,
        };
        Ok((PendingGuard { table: self, id }, reply))
    }

    /// Fails every call whose deadline is not after `now` with
    /// [`RpcError::Timeout`]; returns the earliest deadline left, which the
    /// watchdog sleeps until.
    pub(crate) fn expire(&self, now: Instant) -> Option<Instant> {
        let mut wake = Vec::new();
        let next = {
            let mut calls = self.lock();
            let mut next: Option<Instant> = None;
            for entry in calls.entries.values_mut() {
                if !entry.is_waiting() {
                    continue;
                }
                if entry.deadline <= now {
                    if let Ok(Some(waker)) = entry.answer(|| Err(RpcError::Timeout)) {
                        wake.push(waker);
                    }
                } else if next.is_none_or(|at| entry.deadline < at) {
                    next = Some(entry.deadline);
                }
            }
            calls.wake_at = next;
            next
        };
        for waker in wake {
            waker.wake();
        }
        next
    }

    /// Whether the table has closed for good.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Calls currently waiting for an answer.
    pub(crate) fn len(&self) -> usize {
        let calls = self.lock();
        calls.entries.values().filter(|e| e.is_waiting()).count()
    }

    /// Replies that matched no waiting call (duplicates, late or unknown).
    pub(crate) fn dropped_replies(&self) -> u64 {
        self.dropped_replies.load(Ordering::Relaxed)
    }

    fn fail_all(&self, error: fn() -> RpcError) {
        let wake: Vec<Waker> = {
            let mut calls = self.lock();
            (calls.entries.values_mut())
                .filter_map(|entry| entry.answer(|| Err(error())).ok().flatten())
                .collect()
        };
        for waker in wake {
            waker.wake();
        }
    }

    /// Answers the call `id` unless it is unknown or answered already.
    #[inline]
    fn answer(&self, id: u64, answer: impl FnOnce() -> Answer) -> Result<(), Unanswerable> {
        // Bound first: the guard must go before the wake below.
        let answered = self.lock().answer(id, answer);
        if let Some(waker) = answered? {
            waker.wake();
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Calls> {
        // A panic while holding this lock cannot leave the map half-updated
        // (every critical section is one map call or one pass over it), so
        // poisoning is ignored.
        lock_unpoisoned(&self.calls)
    }
}

impl ReplyHandler for PendingTable {
    fn deliver(&self, envelope: Envelope) {
        let id = envelope.header.correlation_id;
        // Written out rather than through `answer`: the reply is large, and
        // handed through its closure it was copied three times more on the
        // way into the entry.
        let mut calls = self.lock();
        if let Some(entry) = calls.entries.get_mut(&id)
            && let State::Waiting(waker) = &mut entry.state
        {
            let waker = waker.take();
            entry.state = State::Answered(Ok(envelope));
            drop(calls);
            if let Some(waker) = waker {
                waker.wake();
            }
        } else {
            drop(calls);
            drop(envelope);
            // A duplicate, or the caller gave up (or was answered by its
            // deadline) before the reply came: the reply is dropped.
            self.dropped_replies.fetch_add(1, Ordering::Relaxed);
            crate::metrics::reply_dropped();
            tracing::debug!(
                correlation_id = id,
                "dropped a reply that no call is waiting for"
            );
        }
    }

    fn connection_lost(&self) {
        self.fail_all(|| RpcError::ConnectionLost);
    }

    fn fail(&self, correlation_id: u64, error: RpcError) {
        if self.answer(correlation_id, || Err(error)).is_err() {
            self.dropped_replies.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn call_lost(&self, correlation_id: u64) {
        // The caller may have just given up; nothing to tell then.
        let _ = self.answer(correlation_id, || Err(RpcError::ConnectionLost));
    }

    fn closed(&self) {
        self.closed.store(true, Ordering::Release);
        self.fail_all(|| RpcError::Closed);
        // Lets the watchdog see the table closed and stop.
        self.alarm.notify_one();
    }
}

/// Where a registered call waits for its answer: resolves once it is
/// answered, and takes its entry out of the table.
#[derive(Debug)]
pub(crate) struct Reply<'a> {
    table: &'a PendingTable,
    id: u64,
    /// Registered with the waker of the task poll under way, and not
    /// polled since: the next poll is that same task poll's (see
    /// [`PendingTable::register`]), and has nothing to look at.
    fresh: bool,
}

impl Reply<'_> {
    /// Makes the next poll look in the table even if it is the first:
    /// for a caller that must know whether an answer came already.
    pub(crate) fn look_next_poll(&mut self) {
        self.fresh = false;
    }
}

impl Future for Reply<'_> {
    type Output = Answer;

    /// Inlined, the table's look-up not: a fresh reply's poll is a test.
    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer> {
        if std::mem::take(&mut self.fresh) {
            // The entry holds this poll's waker already, and an answer
            // that came since has woken it: no lock, no look-up.
            return Poll::Pending;
        }
        self.look(cx)
    }
}

impl Reply<'_> {
    /// Takes the answer if there is one, else leaves `cx`'s waker.
    fn look(&self, cx: &mut Context<'_>) -> Poll<Answer> {
        use std::collections::hash_map::Entry as Slot;
        let mut calls = self.table.lock();
        let Slot::Occupied(mut slot) = calls.entries.entry(self.id) else {
            // Taken already (polled after it resolved): no answer is coming.
            return Poll::Ready(Err(RpcError::Closed));
        };
        match &mut slot.get_mut().state {
            State::Waiting(Some(waker)) => waker.clone_from(cx.waker()),
            State::Waiting(waker) => *waker = Some(cx.waker().clone()),
            State::Answered(_) => {
                // The lock is held until the answer is in the caller's
                // place: released in between, the answer would be copied
                // to a place of its own first and then again. Nor does
                // anything panic with the removed entry in hand (its drop
                // on the way out would keep a copy of it alive): the
                // `Waiting` arm cannot be reached, since the entry was
                // matched as answered above, under this same lock.
                return Poll::Ready(match slot.remove().state {
                    State::Answered(answer) => answer,
                    State::Waiting(_) => Err(RpcError::Closed),
                });
            }
        }
        Poll::Pending
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

    /// The call's [`Reply`] has taken its answer, and its entry with it:
    /// there is nothing left to remove, and skipping the second lookup
    /// saves a lock and a hash per call.
    pub(crate) fn answered(self) {
        std::mem::forget(self);
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.table.lock().entries.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ContentType;
    use crate::envelope::Header;

    /// The answer, if the call has one, taken as a poll would take it.
    fn try_take(reply: &mut Reply<'_>) -> Option<Answer> {
        let mut cx = Context::from_waker(Waker::noop());
        match Pin::new(reply).poll(&mut cx) {
            Poll::Ready(answer) => Some(answer),
            Poll::Pending => None,
        }
    }

    fn table() -> Arc<PendingTable> {
        Arc::new(PendingTable::default())
    }

    /// A deadline no test reaches.
    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    fn reply(id: u64) -> Envelope {
        let mut header = Header::request("s".into(), "m".into(), ContentType::Json);
        header.correlation_id = id;
        Envelope {
            header,
            body: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_reply_completes_its_call_once() {
        let table = table();
        let (guard, mut rx) = table.register(later(), None).unwrap();
        table.deliver(reply(guard.id()));
        table.deliver(reply(guard.id()));
        assert!(try_take(&mut rx).unwrap().is_ok());
        assert_eq!(table.dropped_replies(), 1);
        assert_eq!(table.len(), 0);
        guard.answered();
        assert_eq!(table.len(), 0);
    }

    /// Counts its wakes.
    struct CountWakes(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test]
    async fn a_reply_wakes_its_caller_and_one_after_the_deadline_or_a_cancel_is_dropped() {
        let table = table();
        let wakes = Arc::new(CountWakes(Default::default()));
        let waker = Waker::from(wakes.clone());
        let (guard, mut rx) = table.register(later(), None).unwrap();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut rx).poll(&mut cx).is_pending());
        let mut sent = reply(guard.id());
        sent.body = b"answer".to_vec();
        table.deliver(sent);
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "the caller is woken");
        let Some(Ok(received)) = try_take(&mut rx) else {
            panic!("the reply answers the call");
        };
        assert_eq!(received.body, b"answer");
        guard.answered();

        let (timed_out, mut timed_out_rx) = table.register(Instant::now(), None).unwrap();
        table.expire(Instant::now());
        table.deliver(reply(timed_out.id()));
        assert_eq!(table.dropped_replies(), 1, "late: the deadline answered");
        assert!(matches!(
            try_take(&mut timed_out_rx),
            Some(Err(RpcError::Timeout))
        ));
        timed_out.answered();

        let (cancelled, _rx) = table.register(later(), None).unwrap();
        let id = cancelled.id();
        drop(cancelled);
        table.deliver(reply(id));
        assert_eq!(table.dropped_replies(), 2, "the caller gave up");
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn a_call_registered_with_its_waker_is_woken_without_a_first_look() {
        let table = table();
        let wakes = Arc::new(CountWakes(Default::default()));
        let waker = Waker::from(wakes.clone());
        let (guard, mut rx) = table.register(later(), Some(waker.clone())).unwrap();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut rx).poll(&mut cx).is_pending());
        table.deliver(reply(guard.id()));
        assert_eq!(
            wakes.0.load(Ordering::Relaxed),
            1,
            "the waker given at registration is woken"
        );
        assert!(matches!(try_take(&mut rx), Some(Ok(_))));
        guard.answered();
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn a_fresh_reply_told_to_look_finds_an_answer_that_came_already() {
        let table = table();
        let (guard, mut rx) = table
            .register(later(), Some(Waker::noop().clone()))
            .unwrap();
        table.deliver(reply(guard.id()));
        rx.look_next_poll();
        assert!(matches!(try_take(&mut rx), Some(Ok(_))));
        guard.answered();
    }

    #[tokio::test]
    async fn an_answered_guard_leaves_other_calls_alone() {
        let table = table();
        let (answered, _ra) = table.register(later(), None).unwrap();
        let (waiting, _rw) = table.register(later(), None).unwrap();
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
        let start = first_id();
        let hash = |id: u64| rustc_hash::FxBuildHasher.hash_one(start.wrapping_add(id));
        let hashes: HashSet<u64> = (0..4096).map(hash).collect();
        assert_eq!(hashes.len(), 4096);
        // hashbrown's tags are the top 7 bits: sequential ids must use them all.
        let tags: HashSet<u64> = (0..4096).map(|id| hash(id) >> 57).collect();
        assert_eq!(tags.len(), 128);
    }

    #[tokio::test]
    async fn dropping_the_guard_empties_the_table() {
        let table = table();
        let (a, _ra) = table.register(later(), None).unwrap();
        let (b, _rb) = table.register(later(), None).unwrap();
        assert_ne!(a.id(), b.id());
        let other = Arc::new(PendingTable::default());
        let (c, _rc) = other.register(later(), None).unwrap();
        assert!(
            c.id().abs_diff(a.id()) > 1 << 32,
            "another client's ids start elsewhere"
        );
        drop(c);
        assert_eq!(table.len(), 2);
        drop((a, b));
        assert_eq!(table.len(), 0);
    }

    #[tokio::test]
    async fn connection_loss_fails_every_waiter() {
        let table = table();
        let (_g, mut rx) = table.register(later(), None).unwrap();
        table.connection_lost();
        assert!(matches!(
            try_take(&mut rx),
            Some(Err(RpcError::ConnectionLost))
        ));
        assert_eq!(table.len(), 0);
        table.closed();
        assert!(matches!(
            table.register(later(), None),
            Err(RpcError::Closed)
        ));
    }

    #[tokio::test]
    async fn a_lost_call_fails_alone() {
        let table = table();
        let (lost, mut lost_rx) = table.register(later(), None).unwrap();
        let (_kept, mut kept_rx) = table.register(later(), None).unwrap();
        table.call_lost(lost.id());
        assert!(matches!(
            try_take(&mut lost_rx),
            Some(Err(RpcError::ConnectionLost))
        ));
        assert!(
            try_take(&mut kept_rx).is_none(),
            "the other call still waits"
        );
        lost.answered();
        assert_eq!(table.len(), 1);
    }

    #[tokio::test]
    async fn expiry_fails_the_calls_that_are_due_and_names_the_next_deadline() {
        let table = table();
        let now = Instant::now();
        let soon = now + std::time::Duration::from_millis(10);
        let (due, mut due_rx) = table.register(now, None).unwrap();
        let (waiting, mut waiting_rx) = table.register(soon, None).unwrap();
        assert_eq!(table.expire(now), Some(soon));
        assert!(matches!(
            try_take(&mut due_rx),
            Some(Err(RpcError::Timeout))
        ));
        assert!(try_take(&mut waiting_rx).is_none(), "not due yet");
        assert_eq!(table.len(), 1);
        due.answered();
        assert_eq!(table.expire(soon), None, "nothing left");
        assert!(matches!(
            try_take(&mut waiting_rx),
            Some(Err(RpcError::Timeout))
        ));
        waiting.answered();
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_answers_a_call_at_its_deadline_even_an_earlier_one_registered_later() {
        let table = table();
        let start = Instant::now();
        let (_late, _late_rx) = table
            .register(start + std::time::Duration::from_secs(30), None)
            .unwrap();
        // Let the watchdog go to sleep towards the 30 s deadline first.
        tokio::task::yield_now().await;
        let (early, early_rx) = table
            .register(start + std::time::Duration::from_millis(50), None)
            .unwrap();
        assert!(matches!(early_rx.await, Err(RpcError::Timeout)));
        assert_eq!(start.elapsed(), std::time::Duration::from_millis(50));
        early.answered();
    }

    #[test]
    fn a_watchdog_lost_with_its_runtime_is_started_again_by_the_next_call() {
        let table = table();
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        first.block_on(async {
            let (guard, _rx) = table.register(later(), None).unwrap();
            tokio::task::yield_now().await;
            drop(guard);
        });
        assert!(table.watched.load(Ordering::Acquire));
        drop(first);
        assert!(
            !table.watched.load(Ordering::Acquire),
            "the runtime dropped the task"
        );
        let second = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        second.block_on(async {
            let soon = Instant::now() + std::time::Duration::from_millis(20);
            let (guard, rx) = table.register(soon, None).unwrap();
            assert!(matches!(rx.await, Err(RpcError::Timeout)));
            guard.answered();
        });
    }
}
