//! The hand-over both off-call-path tasks share (the confirm task,
//! confirms.rs, and the settlers, settlements.rs): work handed over a
//! channel and settled strictly in the order it came.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

/// Moves what has been handed over onto the back of `waiting`.
///
/// Only an empty queue waits for the channel (registers `cx` with it):
/// behind an item still to be settled, a new one can wait for that item
/// to wake the task, since lapin writes a channel's frames, and the broker
/// confirms them, in the order they were queued. So handing one over
/// wakes the task only when it has nothing else to wait for.
///
/// `Ready(true)` when `waiting` holds something, `Ready(false)` once the
/// channel is closed and nothing waits, `Pending` when both are empty.
pub(crate) fn take_handed<T>(
    handed: &mut mpsc::UnboundedReceiver<T>,
    waiting: &mut VecDeque<T>,
    cx: &mut Context<'_>,
) -> Poll<bool> {
    if waiting.is_empty() {
        match handed.poll_recv(cx) {
            Poll::Ready(Some(item)) => waiting.push_back(item),
            Poll::Ready(None) => return Poll::Ready(false),
            Poll::Pending => return Poll::Pending,
        }
    }
    while let Ok(item) = handed.try_recv() {
        waiting.push_back(item);
    }
    Poll::Ready(true)
}
