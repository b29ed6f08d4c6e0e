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
//! The anchor is kept as the millisecond the wall clock reads and the
//! monotonic instant that millisecond began. A reading inside that
//! millisecond needs two comparisons, no subtraction (a subtraction of
//! instants costs as much as the reading); one past it moves the anchor on
//! by whole milliseconds. Either way the result is the same, to the
//! nanosecond, as adding the anchor's age to its wall-clock time.
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

/// How long a thread derives the wall clock from one reading of it.
const ANCHOR_LIFETIME: Duration = Duration::from_secs(1);

const MILLISECOND: Duration = Duration::from_millis(1);

/// The time now, on both clocks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    /// For timers.
    pub(crate) instant: Instant,
    /// Milliseconds since the unix epoch (rounded down), for the wire.
    pub(crate) unix_ms: u64,
    /// The instant at which the wall clock began to read `unix_ms`.
    ms_began: Instant,
}

impl Now {
    /// The instant at which the wall clock reads `unix_ms` (rounded down):
    /// a timer set for it ends exactly when a peer reading the wall clock
    /// sees that deadline pass. A time already passed gives `self.instant`.
    pub(crate) fn instant_at(&self, unix_ms: u64) -> Instant {
        match unix_ms.checked_sub(self.unix_ms) {
            Some(ahead @ 1..) => self.ms_began + Duration::from_millis(ahead),
            _ => self.instant,
        }
    }

    /// Time left before a wire deadline (`0` is none); a passed deadline
    /// gives `Some(Duration::ZERO)`.
    pub(crate) fn until(&self, deadline_ms: u64) -> Option<Duration> {
        (deadline_ms != 0).then(|| Duration::from_millis(deadline_ms.saturating_sub(self.unix_ms)))
    }
}

/// A thread's anchor: the wall-clock millisecond `unix_ms` began at the
/// monotonic instant `began`, and the wall clock is read again at `stale`.
#[derive(Clone, Copy)]
struct Anchor {
    began: Instant,
    /// `began` plus a millisecond: readings before it are in `unix_ms`.
    ends: Instant,
    unix_ms: u64,
    stale: Instant,
}

impl Anchor {
    /// The anchor of the monotonic instant `at`, at which the wall clock
    /// read `wall` (since the epoch).
    fn new(at: Instant, wall: Duration) -> Option<Self> {
        let unix_ms = u64::try_from(wall.as_millis()).ok()?;
        let into_ms = wall - Duration::from_millis(unix_ms);
        let began = at.checked_sub(into_ms)?;
        Some(Anchor {
            began,
            ends: began.checked_add(MILLISECOND)?,
            unix_ms,
            stale: at.checked_add(ANCHOR_LIFETIME)?,
        })
    }

    /// This anchor moved on to the millisecond `instant` is in, if it is
    /// not stale by then (nor `instant` before it: a thread may go from one
    /// runtime's paused clock to another's).
    fn moved_to(self, instant: Instant) -> Option<Self> {
        if instant >= self.stale {
            return None;
        }
        let ms = instant.checked_duration_since(self.began)?.as_millis();
        let ms = u64::try_from(ms).ok()?;
        let began = self.began.checked_add(Duration::from_millis(ms))?;
        Some(Anchor {
            began,
            ends: began.checked_add(MILLISECOND)?,
            unix_ms: self.unix_ms.checked_add(ms)?,
            stale: self.stale,
        })
    }
}

/// The millisecond of a thread's anchor: all a reading inside it needs.
/// Kept apart from the [`Anchor`] so that such a reading, nearly every
/// one, copies these three fields out of thread-local storage and no more.
#[derive(Clone, Copy)]
struct Millisecond {
    began: Instant,
    ends: Instant,
    unix_ms: u64,
}

impl From<Anchor> for Millisecond {
    fn from(anchor: Anchor) -> Self {
        Millisecond {
            began: anchor.began,
            ends: anchor.ends,
            unix_ms: anchor.unix_ms,
        }
    }
}

thread_local! {
    static ANCHOR: Cell<Option<Anchor>> = const { Cell::new(None) };
    /// `ANCHOR`'s millisecond.
    static CURRENT_MS: Cell<Option<Millisecond>> = const { Cell::new(None) };
}

/// Now, as unix milliseconds (rounded down), derived from the monotonic
/// clock as the runtimes' own readings are (see the module's docs).
pub fn now_ms() -> u64 {
    now().unix_ms
}

/// Reads the clock once.
///
/// Inlined, with the anchor's moves out of line: a reading inside the
/// anchor's millisecond is two comparisons.
#[inline]
pub(crate) fn now() -> Now {
    let instant = Instant::now();
    match CURRENT_MS.with(Cell::get) {
        Some(ms) if ms.began <= instant && instant < ms.ends => Now {
            instant,
            unix_ms: ms.unix_ms,
            ms_began: ms.began,
        },
        _ => moved(instant),
    }
}

/// The time at `instant`, past the anchor's millisecond (or before it, or
/// with no anchor yet): moves the anchor on, or takes a new one.
#[cold]
#[inline(never)]
fn moved(instant: Instant) -> Now {
    let anchor = ANCHOR.with(|cell| {
        let anchor = (cell.get())
            .and_then(|anchor| anchor.moved_to(instant))
            .or_else(|| reanchor(instant));
        cell.set(anchor);
        CURRENT_MS.set(anchor.map(Millisecond::from));
        anchor
    });
    // Only a clock at the very ends of its range has no anchor.
    let mut anchor = anchor.unwrap_or(Anchor {
        began: instant,
        ends: instant,
        unix_ms: 0,
        stale: instant,
    });
    // A new anchor is read just after `instant`, and may begin a
    // millisecond that began after it: read as that millisecond's start,
    // as a reading at the anchor would be.
    anchor.began = anchor.began.min(instant);
    Now {
        instant,
        unix_ms: anchor.unix_ms,
        ms_began: anchor.began,
    }
}

/// A fresh anchor for `instant`, from a new reading of both clocks.
#[cold]
fn reanchor(instant: Instant) -> Option<Anchor> {
    let (at, wall) = read_both();
    let anchor = Anchor::new(at, wall)?;
    anchor.moved_to(instant).or(Some(anchor))
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
        let instant = Instant::now();
        let now = Now {
            instant,
            unix_ms: 10_000,
            ms_began: instant - Duration::from_micros(400),
        };
        assert_eq!(now.until(0), None, "no deadline");
        assert_eq!(now.until(10_250), Some(Duration::from_millis(250)));
        assert_eq!(now.until(9_000), Some(Duration::ZERO), "passed");
        assert_eq!(
            now.instant_at(10_250) - now.instant,
            Duration::from_micros(249_600),
            "when the wall clock reads 10.250 s"
        );
        assert_eq!(now.instant_at(10_000), now.instant, "now");
    }

    #[test]
    fn an_anchor_moves_on_by_whole_milliseconds() {
        let at = Instant::now();
        let anchor = Anchor::new(at, Duration::from_micros(10_000_400)).unwrap();
        assert_eq!(anchor.unix_ms, 10_000);
        assert_eq!(anchor.began, at - Duration::from_micros(400));
        assert_eq!(anchor.ends, at + Duration::from_micros(600));

        let later = anchor.moved_to(at + Duration::from_micros(2_700)).unwrap();
        assert_eq!(later.unix_ms, 10_003, "10.0031 s");
        assert_eq!(later.began, at + Duration::from_micros(2_600));
        assert_eq!(later.ends, at + Duration::from_micros(3_600));

        assert!(
            anchor.moved_to(at + ANCHOR_LIFETIME).is_none(),
            "stale: the wall clock is read again"
        );
        assert!(
            anchor.moved_to(at - Duration::from_millis(1)).is_none(),
            "an instant before the anchor's (another runtime's paused clock)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn readings_step_through_milliseconds_in_and_out_of_the_anchors() {
        let first = now();
        let into = first.instant - first.ms_began;
        for _ in 0..40 {
            tokio::time::advance(Duration::from_micros(250)).await;
            let next = now();
            let since = into + (next.instant - first.instant);
            assert_eq!(
                next.unix_ms - first.unix_ms,
                since.as_millis() as u64,
                "{since:?} after the first reading's millisecond began"
            );
            assert!(next.ms_began <= next.instant && next.instant - next.ms_began < MILLISECOND);
            assert_eq!(
                now().unix_ms,
                next.unix_ms,
                "a second reading, in the same millisecond"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn paused_time_moves_the_derived_wall_clock() {
        let before = now();
        tokio::time::advance(Duration::from_millis(250)).await;
        let after = now();
        assert_eq!(after.instant - before.instant, Duration::from_millis(250));
        assert!(
            (249..=251).contains(&(after.unix_ms - before.unix_ms)),
            "{} ms",
            after.unix_ms - before.unix_ms
        );
    }
}
