//! Figures: one sample per measurement, medians and ranges over runs, and
//! ratios taken within a run.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::load::Measured;
use crate::systems::{Flavor, SystemId};

/// The percentiles kept for the latency distribution plot.
pub(crate) const SPECTRUM: [f64; 9] = [50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0];

/// What one system measured at one level in one run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Sample {
    /// The system.
    pub(crate) system: SystemId,
    /// The runtime it ran on.
    pub(crate) flavor: Flavor,
    /// Calls kept in flight.
    pub(crate) in_flight: usize,
    /// Which interleaved run (0-based).
    pub(crate) run: usize,
    /// Calls completed in the measured interval.
    pub(crate) calls: u64,
    /// Length of the measured interval, seconds.
    pub(crate) secs: f64,
    /// Calls completed per second.
    pub(crate) calls_per_sec: f64,
    /// Median latency, microseconds.
    pub(crate) p50_us: f64,
    /// 99th percentile latency, microseconds.
    pub(crate) p99_us: f64,
    /// `(percentile, microseconds)` at each of [`SPECTRUM`].
    pub(crate) spectrum: Vec<(f64, f64)>,
}

impl Sample {
    /// The figures of one measurement.
    pub(crate) fn new(
        system: SystemId,
        flavor: Flavor,
        in_flight: usize,
        run: usize,
        measured: &Measured,
    ) -> Self {
        let h = &measured.latency_ns;
        let us = |q: f64| h.value_at_percentile(q) as f64 / 1000.0;
        Sample {
            system,
            flavor,
            in_flight,
            run,
            calls: measured.calls,
            secs: measured.elapsed.as_secs_f64(),
            calls_per_sec: measured.calls_per_sec(),
            p50_us: us(50.0),
            p99_us: us(99.0),
            spectrum: SPECTRUM.iter().map(|&q| (q, us(q))).collect(),
        }
    }
}

/// The median and range of one figure over runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub(crate) struct Spread {
    /// The median (the mean of the middle two for an even count).
    pub(crate) median: f64,
    /// The smallest value.
    pub(crate) min: f64,
    /// The largest value.
    pub(crate) max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub(crate) fn of(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
        let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: values[0],
            max: values[n - 1],
        })
    }
}

/// Identifies one configuration: system, runtime, calls in flight.
pub(crate) type ConfigKey = (SystemId, Flavor, usize);

/// One configuration's figures over all runs.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Summary {
    /// The system.
    pub(crate) system: SystemId,
    /// The runtime.
    pub(crate) flavor: Flavor,
    /// Calls in flight.
    pub(crate) in_flight: usize,
    /// How many runs.
    pub(crate) runs: usize,
    /// Calls per second.
    pub(crate) calls_per_sec: Spread,
    /// Median latency, microseconds.
    pub(crate) p50_us: Spread,
    /// 99th percentile latency, microseconds.
    pub(crate) p99_us: Spread,
}

/// Medians and ranges per configuration, in a stable order.
pub(crate) fn summarize(samples: &[Sample]) -> Vec<Summary> {
    let mut groups: BTreeMap<ConfigKey, Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.system, s.flavor, s.in_flight))
            .or_default()
            .push(s);
    }
    groups
        .into_iter()
        .filter_map(|((system, flavor, in_flight), group)| {
            Some(Summary {
                system,
                flavor,
                in_flight,
                runs: group.len(),
                calls_per_sec: Spread::of(group.iter().map(|s| s.calls_per_sec))?,
                p50_us: Spread::of(group.iter().map(|s| s.p50_us))?,
                p99_us: Spread::of(group.iter().map(|s| s.p99_us))?,
            })
        })
        .collect()
}

/// How one of ours compares with one baseline at one configuration,
/// ratio taken within each run, then summarized over runs.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Ratio {
    /// Ours.
    pub(crate) candidate: SystemId,
    /// What it is compared with.
    pub(crate) baseline: SystemId,
    /// The runtime both ran on.
    pub(crate) flavor: Flavor,
    /// Calls in flight.
    pub(crate) in_flight: usize,
    /// Candidate calls/s over baseline calls/s (higher is better for ours).
    pub(crate) calls_per_sec: Spread,
    /// Candidate p50 over baseline p50 (lower is better for ours).
    pub(crate) p50: Spread,
    /// Candidate p99 over baseline p99 (lower is better for ours).
    pub(crate) p99: Spread,
}

/// Ratios of `candidate` to `baseline` at every configuration both ran.
pub(crate) fn ratios(samples: &[Sample], candidate: SystemId, baseline: SystemId) -> Vec<Ratio> {
    let mut by_key: BTreeMap<(Flavor, usize), Vec<(&Sample, &Sample)>> = BTreeMap::new();
    for c in samples.iter().filter(|s| s.system == candidate) {
        let twin = samples.iter().find(|b| {
            b.system == baseline
                && b.flavor == c.flavor
                && b.in_flight == c.in_flight
                && b.run == c.run
        });
        if let Some(b) = twin {
            by_key
                .entry((c.flavor, c.in_flight))
                .or_default()
                .push((c, b));
        }
    }
    by_key
        .into_iter()
        .filter_map(|((flavor, in_flight), pairs)| {
            Some(Ratio {
                candidate,
                baseline,
                flavor,
                in_flight,
                calls_per_sec: Spread::of(
                    pairs.iter().map(|(c, b)| c.calls_per_sec / b.calls_per_sec),
                )?,
                p50: Spread::of(pairs.iter().map(|(c, b)| c.p50_us / b.p50_us))?,
                p99: Spread::of(pairs.iter().map(|(c, b)| c.p99_us / b.p99_us))?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(system: SystemId, run: usize, calls_per_sec: f64, p50_us: f64) -> Sample {
        Sample {
            system,
            flavor: Flavor::CurrentThread,
            in_flight: 1,
            run,
            calls: 1,
            secs: 1.0,
            calls_per_sec,
            p50_us,
            p99_us: p50_us * 2.0,
            spectrum: Vec::new(),
        }
    }

    #[test]
    fn spread_takes_the_middle_and_the_ends() {
        let s = Spread::of([3.0, 1.0, 2.0]).expect("values");
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        let even = Spread::of([4.0, 1.0, 2.0, 3.0]).expect("values");
        assert_eq!(even.median, 2.5);
        assert_eq!(Spread::of([]), None);
    }

    #[test]
    fn ratios_pair_runs_not_medians() {
        // Run 0 is fast for both, run 1 slow for both: each run's ratio is 2.
        let samples = [
            sample(SystemId::OursMem, 0, 200.0, 5.0),
            sample(SystemId::TarpcMem, 0, 100.0, 10.0),
            sample(SystemId::OursMem, 1, 20.0, 50.0),
            sample(SystemId::TarpcMem, 1, 10.0, 100.0),
        ];
        let ratios = ratios(&samples, SystemId::OursMem, SystemId::TarpcMem);
        assert_eq!(ratios.len(), 1);
        let r = &ratios[0];
        assert_eq!((r.calls_per_sec.min, r.calls_per_sec.max), (2.0, 2.0));
        assert_eq!(r.p50.median, 0.5);
    }

    #[test]
    fn summaries_group_runs_of_one_configuration() {
        let samples = [
            sample(SystemId::OursMem, 0, 100.0, 5.0),
            sample(SystemId::OursMem, 1, 300.0, 7.0),
            sample(SystemId::Mpsc, 0, 1000.0, 1.0),
        ];
        let summaries = summarize(&samples);
        assert_eq!(summaries.len(), 2);
        let ours = summaries
            .iter()
            .find(|s| s.system == SystemId::OursMem)
            .expect("ours");
        assert_eq!(ours.runs, 2);
        assert_eq!(ours.calls_per_sec.median, 200.0);
    }
}
