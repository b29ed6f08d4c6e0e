//! The closed-loop load driver: N workers, each with one call in flight.
//!
//! Every system is driven by this same code, so the only difference between
//! two measurements is the system under test. Each worker is its own tokio
//! task (as independent callers in an application would be), calls
//! `add(i, 1)`, checks the answer, and appends the call's latency to its own
//! list. The lists become one histogram after the clock stops: recording
//! shares nothing and costs a push, and neither zeroing 256 histograms
//! before nor merging them after lands inside the measured time.

use std::future::Future;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::error::BenchError;

/// Latencies above this are clamped (a call that slow is a failure anyway).
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Something that answers `add(a, b)`: a client of one system under test.
pub(crate) trait Caller: Clone + Send + Sync + 'static {
    /// The system's name, for errors.
    const NAME: &'static str;
    /// One call.
    fn add(&self, a: u64, b: u64) -> impl Future<Output = Result<u64, BenchError>> + Send;
}

/// What one measured interval produced.
#[derive(Debug)]
pub(crate) struct Measured {
    /// Calls completed.
    pub(crate) calls: u64,
    /// From the first call's start to the last call's end.
    pub(crate) elapsed: Duration,
    /// Latency of every call, in nanoseconds (empty for a call budget).
    pub(crate) latency_ns: Histogram<u64>,
}

impl Measured {
    /// Completed calls per second.
    pub(crate) fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }
}

/// Warms `caller` up for `warmup`, then measures it for `measure`, with
/// `in_flight` calls outstanding at all times.
pub(crate) async fn measure<C: Caller>(
    caller: &C,
    in_flight: usize,
    warmup: Duration,
    measure: Duration,
) -> Result<Measured, BenchError> {
    drive(caller, in_flight, Budget::Time(warmup)).await?;
    drive(caller, in_flight, Budget::Time(measure)).await
}

/// When a drive stops.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Budget {
    /// Start no call after this much time.
    Time(Duration),
    /// Make exactly this many calls in all, recording no latency (for the
    /// memory check: a list of latencies would be the growth it measures).
    Calls(u64),
}

/// Runs `in_flight` workers until the budget is spent.
pub(crate) async fn drive<C: Caller>(
    caller: &C,
    in_flight: usize,
    budget: Budget,
) -> Result<Measured, BenchError> {
    let in_flight = in_flight.max(1);
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for worker in 0..in_flight {
        let caller = caller.clone();
        // Worker w makes calls w, w + N, w + 2N, ...: disjoint arguments, so
        // a reply delivered to the wrong caller shows up as a wrong answer.
        let record = matches!(budget, Budget::Time(_));
        let (end, count) = match budget {
            Budget::Time(duration) => (Some(start + duration), u64::MAX),
            Budget::Calls(total) => {
                let n = in_flight as u64;
                let w = worker as u64;
                (None, total / n + u64::from(w < total % n))
            }
        };
        workers.spawn(async move {
            let mut latencies_ns: Vec<u64> = Vec::with_capacity(if record { 1024 } else { 0 });
            let mut calls = 0u64;
            let mut a = worker as u64;
            for _ in 0..count {
                let sent = Instant::now();
                if end.is_some_and(|end| sent >= end) {
                    break;
                }
                let got = caller.add(a, 1).await?;
                let took = sent.elapsed();
                if got != a.wrapping_add(1) {
                    return Err(BenchError::WrongAnswer {
                        system: C::NAME,
                        a,
                        got,
                    });
                }
                calls += 1;
                if record {
                    latencies_ns.push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
                }
                a += in_flight as u64;
            }
            Ok::<_, BenchError>((calls, latencies_ns, Instant::now()))
        });
    }
    let mut lists = Vec::with_capacity(in_flight);
    let mut calls = 0;
    let mut last_reply = start;
    while let Some(worker) = workers.join_next().await {
        let (made, latencies_ns, finished) = worker??;
        calls += made;
        last_reply = last_reply.max(finished);
        lists.push(latencies_ns);
    }
    let elapsed = last_reply - start;
    let mut latency_ns = new_histogram();
    for ns in lists.iter().flatten() {
        latency_ns.saturating_record((*ns).clamp(1, MAX_LATENCY_NS));
    }
    Ok(Measured {
        calls,
        elapsed,
        latency_ns,
    })
}

fn new_histogram() -> Histogram<u64> {
    // Three significant digits: 0.1% resolution at any magnitude.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).expect("constant bounds are valid")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[derive(Clone, Default)]
    struct Counting(Arc<AtomicU64>);

    impl Caller for Counting {
        const NAME: &'static str = "counting";
        async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
            self.0.fetch_add(1, Ordering::Relaxed);
            tokio::task::yield_now().await;
            Ok(a + b)
        }
    }

    #[derive(Clone)]
    struct OffByOne;

    impl Caller for OffByOne {
        const NAME: &'static str = "off-by-one";
        async fn add(&self, a: u64, b: u64) -> Result<u64, BenchError> {
            Ok(a + b + u64::from(a == 5))
        }
    }

    #[tokio::test]
    async fn a_call_budget_makes_exactly_that_many_calls() {
        let caller = Counting::default();
        let measured = drive(&caller, 7, Budget::Calls(1000))
            .await
            .expect("no failure");
        assert_eq!(measured.calls, 1000);
        assert_eq!(caller.0.load(Ordering::Relaxed), 1000);
    }

    #[tokio::test]
    async fn a_time_budget_stops_and_counts_what_it_made() {
        let caller = Counting::default();
        let measured = drive(&caller, 4, Budget::Time(Duration::from_millis(20)))
            .await
            .expect("no failure");
        assert!(measured.calls > 0);
        assert_eq!(measured.calls, caller.0.load(Ordering::Relaxed));
        assert!(measured.elapsed >= Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_wrong_sum_fails_the_run() {
        let error = drive(&OffByOne, 2, Budget::Calls(100))
            .await
            .expect_err("a = 5 is wrong");
        assert!(matches!(
            error,
            BenchError::WrongAnswer { a: 5, got: 7, .. }
        ));
    }
}
