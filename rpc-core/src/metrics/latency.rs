//! A lock-free latency histogram for a server's own stats: log-spaced
//! buckets (four per power of two, so a percentile is within 19 %), read as
//! percentiles by introspection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two.
const SUB: usize = 4;
/// Powers of two of microseconds covered: 1 µs to about 2^36 µs (19 h).
const POWERS: usize = 36;
const BUCKETS: usize = POWERS * SUB;

/// Counts of durations by bucket.
pub(crate) struct LatencyHistogram {
    buckets: Box<[AtomicU64; BUCKETS]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

/// Percentiles of a latency histogram, in seconds (each an upper bound of
/// its bucket).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Durations counted.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest bucket reached.
    pub max: f64,
}

impl LatencyHistogram {
    /// Counts one duration.
    pub(crate) fn record(&self, elapsed: Duration) {
        self.buckets[bucket_of(elapsed.as_micros() as u64)].fetch_add(1, Ordering::Relaxed);
    }

    /// The percentiles of what was counted so far.
    pub(crate) fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return LatencySummary::default();
        }
        let at = |q: f64| {
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return upper_bound_secs(i);
                }
            }
            upper_bound_secs(BUCKETS - 1)
        };
        let max = counts
            .iter()
            .rposition(|n| *n > 0)
            .map_or(0.0, upper_bound_secs);
        LatencySummary {
            count,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max,
        }
    }
}

/// The bucket of `micros`: the power of two, then the next two bits.
fn bucket_of(micros: u64) -> usize {
    if micros < SUB as u64 {
        return micros as usize;
    }
    let power = 63 - micros.leading_zeros() as usize;
    let sub = ((micros >> (power - 2)) & 0b11) as usize;
    (power * SUB + sub).min(BUCKETS - 1)
}

/// The largest duration (seconds) that falls in bucket `index`.
fn upper_bound_secs(index: usize) -> f64 {
    if index < SUB {
        return (index + 1) as f64 / 1e6;
    }
    let (power, sub) = (index / SUB, index % SUB);
    let base = 1u64 << power;
    let step = base / SUB as u64;
    (base + step * (sub as u64 + 1)) as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bucket_holds_what_its_bound_says() {
        for micros in [0u64, 1, 3, 4, 5, 7, 8, 100, 1_000, 65_535, 1 << 30] {
            let bound = upper_bound_secs(bucket_of(micros)) * 1e6;
            assert!(bound > micros as f64, "{micros} over {bound}");
            assert!(
                bound <= (micros as f64 + 1.0) * 1.25 + 1.0,
                "{micros}: {bound}"
            );
        }
    }

    #[test]
    fn percentiles_split_the_counts() {
        let h = LatencyHistogram::default();
        for _ in 0..90 {
            h.record(Duration::from_micros(100));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(100));
        }
        let s = h.summary();
        assert_eq!(s.count, 100);
        assert!(s.p50 < 0.000_2 && s.p90 < 0.000_2, "{s:?}");
        assert!(s.p99 > 0.09 && s.max > 0.09, "{s:?}");
    }
}
