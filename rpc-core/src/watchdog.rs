//! Call deadlines without a timer per call.
//!
//! Arming and cancelling a tokio timer for every call would cost, at 64 and
//! more calls in flight, several percent of a memory-transport call, and more
//! on a multi-threaded runtime, where a call often cancels its timer from
//! another worker than the one it was armed on. Instead each client has
//! one watchdog task: it sleeps until the earliest deadline in the pending
//! table, fails the calls that are due with `RpcError::Timeout` through
//! their pending entries, and sleeps again. Calls answered in time cost it
//! nothing: with one timeout per client, deadlines only grow, so it wakes
//! about once per timeout, and a call with an earlier deadline than the one
//! it sleeps towards rings its alarm.
//!
//! The watchdog runs on the runtime of the call that started it. If that
//! runtime shuts down, the task is dropped, its guard clears the table's
//! `watched` flag, and the next call starts a new one where it runs.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::pending::PendingTable;

/// Starts the watchdog of `table` unless one is running.
pub(crate) fn start(table: &Arc<PendingTable>) {
    if table
        .watched
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    let watched = Watched(Arc::downgrade(table));
    tokio::spawn(watch(watched, table.alarm.clone()));
}

/// The watchdog's hold on its table: a weak one, so a dropped client is
/// not kept alive; clears `watched` when the task ends or is dropped.
struct Watched(Weak<PendingTable>);

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(table) = self.0.upgrade() {
            table.watched.store(false, Ordering::Release);
        }
    }
}

async fn watch(watched: Watched, alarm: Arc<Notify>) {
    loop {
        // A ring of the alarm from now on wakes the wait below, and one
        // rung while nobody waited left a permit (`notify_one`): an earlier
        // deadline registered after the table is read is not missed.
        let rung = alarm.notified();
        let next = {
            // Not held across the wait: the client may go away meanwhile.
            let Some(table) = watched.0.upgrade() else {
                return;
            };
            if table.is_closed() {
                return;
            }
            table.expire(Instant::now())
        };
        match next {
            Some(deadline) => {
                tokio::select! {
                    () = tokio::time::sleep_until(deadline) => {}
                    () = rung => {}
                }
            }
            None => rung.await,
        }
    }
}
