//! One reading of the clock per call and side.
//!
//! A call needs the time twice: as an `Instant` for its timer and as
//! wall-clock milliseconds for the wire (deadlines cross processes, so they
//! are wall-clock). Reading both clocks is two clock reads per call on each
//! side, a measurable share of a memory-transport call, so the wall clock is
//! derived from the monotonic one instead: each thread keeps an anchor (one
//! reading of both, taken together) and reads the wall clock again once its
//! anchor is a second old, so a step of the wall clock shows within a second.
//!
//! This is the crate's one clock: the wire's wall-clock milliseconds
//! ([`now_ms`], re-exported as `envelope::now_ms`), the client's and the
//! server's timers, and a handler's [`Context`](crate::Context) all read it.
//!
//! The monotonic clock is tokio's, so calls made under paused test time
//! (`tokio::time::pause`) time out by that clock, as `tokio::time::timeout`
//! would have them.

use std::cell::Cell;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// How long a thread derives the wall clock from one anchor.
const ANCHOR_LIFETIME: Duration = Duration::from_secs(1);

/// The time now, on both clocks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    /// For timers.
    pub(crate) instant: Instant,
    /// Milliseconds since the unix epoch (rounded down), for the wire.
    pub(crate) unix_ms: u64,
    /// The exact wall-clock time, since the unix epoch.
    since_epoch: Duration,
}

impl Now {
    /// The instant at which the wall clock reads `unix_ms` (rounded down):
    /// a timer set for it ends exactly when a peer reading the wall clock
    /// sees that deadline pass.
    pub(crate) fn instant_at(&self, unix_ms: u64) -> Instant {
        let at = Duration::from_millis(unix_ms);
        self.instant + at.saturating_sub(self.since_epoch)
    }

    /// Time left before a wire deadline (`0` is none); a passed deadline
    /// gives `Some(Duration::ZERO)`.
    pub(crate) fn until(&self, deadline_ms: u64) -> Option<Duration> {
        (deadline_ms != 0).then(|| Duration::from_millis(deadline_ms.saturating_sub(self.unix_ms)))
    }
}

thread_local! {
    /// A monotonic reading and the wall-clock time (since the epoch) at it.
    static ANCHOR: Cell<Option<(Instant, Duration)>> = const { Cell::new(None) };
}

/// Now, as unix milliseconds (rounded down), derived from the monotonic
/// clock as the runtimes' own readings are (see the module's docs).
pub fn now_ms() -> u64 {
    now().unix_ms
}

/// Reads the clock once.
pub(crate) fn now() -> Now {
    let instant = Instant::now();
    // One subtraction gives both the anchor's age and the offset to add.
    let fresh = |(at, wall): (Instant, Duration)| {
        let age = instant.checked_duration_since(at)?;
        (age < ANCHOR_LIFETIME).then(|| wall + age)
    };
    let since_epoch = ANCHOR.with(|anchor| match anchor.get().and_then(fresh) {
        Some(since_epoch) => since_epoch,
        None => {
            let (at, wall) = read_both();
            anchor.set(Some((at, wall)));
            wall + instant.saturating_duration_since(at)
        }
    });
    Now {
        instant,
        unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        since_epoch,
    }
}

/// A monotonic and a wall-clock reading taken together. A thread
/// preempted between the two would pair readings milliseconds apart, and
/// every time derived from them would be off by as much, so the wall clock
/// is read between two monotonic readings, again if they are far apart.
fn read_both() -> (Instant, Duration) {
    const TOGETHER: Duration = Duration::from_micros(20);
    let mut best: Option<(Duration, Instant, Duration)> = None;
    for _ in 0..4 {
        let before = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let after = Instant::now();
        let apart = after.saturating_duration_since(before);
        // The wall reading sits between the two: pair it with the middle.
        let middle = before + apart / 2;
        if best.is_none_or(|(closest, ..)| apart < closest) {
            best = Some((apart, middle, wall));
        }
        if apart <= TOGETHER {
            break;
        }
    }
    let (_, at, wall) = best.expect("read at least once");
    (at, wall)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wall clock read directly.
    fn system_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    #[test]
    fn the_derived_wall_clock_matches_the_real_one() {
        for _ in 0..1000 {
            let before = system_ms();
            let derived = now_ms();
            let after = system_ms();
            // Within a millisecond either side: the anchor truncates nothing,
            // but the two clocks tick apart by up to a millisecond.
            assert!(
                derived + 1 >= before && derived <= after + 1,
                "{before} <= {derived} <= {after}"
            );
        }
    }

    #[test]
    fn time_left_before_a_deadline() {
        let now = Now {
            instant: Instant::now(),
            unix_ms: 10_000,
            since_epoch: Duration::from_micros(10_000_400),
        };
        assert_eq!(now.until(0), None, "no deadline");
        assert_eq!(now.until(10_250), Some(Duration::from_millis(250)));
        assert_eq!(now.until(9_000), Some(Duration::ZERO), "passed");
        assert_eq!(
            now.instant_at(10_250) - now.instant,
            Duration::from_micros(249_600),
            "when the wall clock reads 10.250 s"
        );
    }
}
