//! [`Ticker`]: the heartbeat timer of the router and link tasks.
//!
//! Those tasks poll their timer each time they wait for a message, once or
//! more per message. A `tokio::time::Interval` goes to its timer entry on
//! each of those polls; a [`Ticker`] whose timer is already set with the
//! task's waker only reads whether it has fired.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Ticks every `period`, the first at once; a tick late because its task
/// was busy moves the next ones later (`MissedTickBehavior::Delay`).
pub(crate) struct Ticker {
    sleep: Pin<Box<Sleep>>,
    period: Duration,
    /// The waker the timer was last polled with: while the task polls with
    /// the same one, the timer will wake it, and a poll needs only to ask
    /// whether it has fired.
    waker: Option<Waker>,
}

impl Ticker {
    pub(crate) fn new(period: Duration) -> Self {
        Ticker {
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            period,
            waker: None,
        }
    }

    /// Ready once per tick.
    pub(crate) fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.sleep.is_elapsed()
            && self
                .waker
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.sleep.as_mut().reset(Instant::now() + self.period);
                self.waker = None;
                Poll::Ready(())
            }
            Poll::Pending => {
                self.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test]
    async fn ticks_at_once_then_every_period() {
        let period = Duration::from_millis(20);
        let mut ticker = Ticker::new(period);
        let start = Instant::now();
        poll_fn(|cx| ticker.poll_tick(cx)).await;
        let first = Instant::now();
        assert!(first - start < period);
        for _ in 0..3 {
            let before = Instant::now();
            poll_fn(|cx| ticker.poll_tick(cx)).await;
            assert!(Instant::now() - before >= period - Duration::from_millis(1));
        }
    }

    #[tokio::test]
    async fn a_poll_between_ticks_waits_and_the_timer_still_wakes() {
        let mut ticker = Ticker::new(Duration::from_millis(20));
        poll_fn(|cx| ticker.poll_tick(cx)).await;
        // Polled again and again by the same task, as the router polls it
        // once per message: pending each time, and the tick still comes.
        let mut polls = 0;
        poll_fn(|cx| {
            polls += 1;
            let first = ticker.poll_tick(cx);
            assert!(first.is_pending() || polls > 1);
            if first.is_pending() {
                // A second poll in the same wake answers from the flag.
                assert!(ticker.poll_tick(cx).is_pending());
            }
            first
        })
        .await;
        assert!(polls >= 2);
    }
}
