//! The performance targets, checked against ratios measured within runs.

use serde::Serialize;

use crate::stats::Ratio;
use crate::systems::{Flavor, SystemId};

/// Which figure a target bounds.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum Figure {
    /// Calls/s ratio, at least `bound`.
    CallsPerSec,
    /// p50 ratio, at most `bound`.
    P50,
    /// Calls/s ratio within the benchmark's noise of 1: a median of at
    /// least `bound`, or a range over runs that holds 1.00x (the runs
    /// cannot tell candidate and baseline apart).
    CallsPerSecWithinNoise,
}

/// One target: a bound on one ratio.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Target {
    /// What it says, in words.
    pub(crate) text: String,
    /// The median ratio over runs.
    pub(crate) measured: f64,
    /// The worst ratio among runs (lowest calls/s ratio, highest p50 ratio).
    pub(crate) worst: f64,
    /// Whether the median meets the bound.
    pub(crate) met: bool,
}

struct Spec {
    candidate: SystemId,
    baseline: SystemId,
    in_flight: usize,
    figure: Figure,
    bound: f64,
    /// The one runtime flavor the target is judged on; `None`: every
    /// flavor the systems ran on.
    flavor: Option<Flavor>,
}

/// The issues' targets: the `metrics` facade with no recorder installed
/// within the benchmark's noise of a client and server built with metrics
/// off (a median of at least 0.97x, or runs that cannot tell them apart); memory within 2x of the minimal typed
/// path (calls/s at least half of it) at 1 in flight on current_thread, and
/// against tarpc's channel; through the broker, our defaults (confirms,
/// `mandatory`, a reply queue) against the fastest hand-written lapin loop,
/// the one with a reply queue and no confirms: sequential p50 at most 1.0x,
/// calls/s at 16 and 256 in flight at least 1.0x (a call waits for its
/// reply, not its confirm, so the defaults' fast `NoRoute` should cost no
/// speed); our defaults against the raw direct reply-to loop; and each of
/// our AMQP settings against the raw loop with the same settings. Over NATS,
/// ours in core mode against the raw async-nats request/reply loop; over
/// Kafka, ours against the raw rdkafka loop with the same settings.
///
/// ZeroMQ: ours against the hand-written ROUTER/DEALER loop on the same
/// library: sequential p50 within 1.10x, calls/s at least 0.90x at 16 and
/// 256 in flight.
const SPECS: &[Spec] = &[
    Spec {
        candidate: SystemId::OursZmq,
        baseline: SystemId::ZmqRaw,
        in_flight: 1,
        figure: Figure::P50,
        bound: 1.10,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursZmq,
        baseline: SystemId::ZmqRaw,
        in_flight: 16,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursZmq,
        baseline: SystemId::ZmqRaw,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursMem,
        baseline: SystemId::OursMemNoMetrics,
        in_flight: 1,
        figure: Figure::CallsPerSecWithinNoise,
        bound: 0.97,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursMem,
        baseline: SystemId::TypedMin,
        in_flight: 1,
        figure: Figure::CallsPerSec,
        bound: 0.5,
        flavor: Some(Flavor::CurrentThread),
    },
    Spec {
        candidate: SystemId::OursMem,
        baseline: SystemId::TarpcMem,
        in_flight: 1,
        figure: Figure::CallsPerSec,
        bound: 2.0,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursMem,
        baseline: SystemId::TarpcMem,
        in_flight: 64,
        figure: Figure::CallsPerSec,
        bound: 1.5,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursMem,
        baseline: SystemId::TarpcMem,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 1.5,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqp,
        baseline: SystemId::LapinQueue,
        in_flight: 1,
        figure: Figure::P50,
        bound: 1.0,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqp,
        baseline: SystemId::LapinQueue,
        in_flight: 16,
        figure: Figure::CallsPerSec,
        bound: 1.0,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqp,
        baseline: SystemId::LapinQueue,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 1.0,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqp,
        baseline: SystemId::LapinQueueConfirms,
        in_flight: 1,
        figure: Figure::P50,
        bound: 1.10,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqp,
        baseline: SystemId::LapinQueueConfirms,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqpNoConfirms,
        baseline: SystemId::LapinQueue,
        in_flight: 1,
        figure: Figure::P50,
        bound: 1.10,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqpNoConfirms,
        baseline: SystemId::LapinQueue,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqp,
        baseline: SystemId::LapinDirect,
        in_flight: 1,
        figure: Figure::P50,
        bound: 1.10,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqp,
        baseline: SystemId::LapinDirect,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqpDirectNoConfirms,
        baseline: SystemId::LapinDirect,
        in_flight: 1,
        figure: Figure::P50,
        bound: 1.10,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursAmqpDirectNoConfirms,
        baseline: SystemId::LapinDirect,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursNats,
        baseline: SystemId::NatsRaw,
        in_flight: 1,
        figure: Figure::P50,
        bound: 1.10,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursNats,
        baseline: SystemId::NatsRaw,
        in_flight: 16,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursNats,
        baseline: SystemId::NatsRaw,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursKafka,
        baseline: SystemId::KafkaRaw,
        in_flight: 16,
        figure: Figure::P50,
        bound: 1.10,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursKafka,
        baseline: SystemId::KafkaRaw,
        in_flight: 16,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursKafka,
        baseline: SystemId::KafkaRaw,
        in_flight: 256,
        figure: Figure::P50,
        bound: 1.10,
        flavor: None,
    },
    Spec {
        candidate: SystemId::OursKafka,
        baseline: SystemId::KafkaRaw,
        in_flight: 256,
        figure: Figure::CallsPerSec,
        bound: 0.90,
        flavor: None,
    },
];

/// The (candidate, baseline) pair of every target: the report must take
/// their ratios, or the target is never judged.
#[cfg(test)]
pub(crate) fn judged_pairs() -> impl Iterator<Item = (SystemId, SystemId)> {
    SPECS.iter().map(|spec| (spec.candidate, spec.baseline))
}

/// Every target at every runtime flavor its systems ran on; targets whose
/// configurations did not run are left out.
pub(crate) fn evaluate(ratios: &[Ratio]) -> Vec<Target> {
    let mut targets = Vec::new();
    for spec in SPECS {
        for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
            if spec.flavor.is_some_and(|only| only != flavor) {
                continue;
            }
            let ratio = ratios.iter().find(|r| {
                r.candidate == spec.candidate
                    && r.baseline == spec.baseline
                    && r.flavor == flavor
                    && r.in_flight == spec.in_flight
            });
            let Some(ratio) = ratio else { continue };
            let (what, relation, spread, worst) = match spec.figure {
                Figure::CallsPerSec => (
                    "calls/s",
                    ">=",
                    ratio.calls_per_sec,
                    ratio.calls_per_sec.min,
                ),
                Figure::P50 => ("p50", "<=", ratio.p50, ratio.p50.max),
                Figure::CallsPerSecWithinNoise => (
                    "calls/s (or a range over runs holding 1.00x)",
                    ">=",
                    ratio.calls_per_sec,
                    ratio.calls_per_sec.min,
                ),
            };
            let met = match spec.figure {
                Figure::CallsPerSec => spread.median >= spec.bound,
                Figure::P50 => spread.median <= spec.bound,
                Figure::CallsPerSecWithinNoise => {
                    spread.median >= spec.bound || (spread.min..=spread.max).contains(&1.0)
                }
            };
            targets.push(Target {
                text: format!(
                    "{} {what} {relation} {:.2}x {} at {} in flight, {}",
                    spec.candidate,
                    spec.bound,
                    spec.baseline,
                    spec.in_flight,
                    flavor.label()
                ),
                measured: spread.median,
                worst,
                met,
            });
        }
    }
    targets
}
