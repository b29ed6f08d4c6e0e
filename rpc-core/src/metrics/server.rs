//! A server's per-method meters: the `metrics` handles, and the counts its
//! own `stats` introspection reports.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use ::metrics::{Counter, Gauge};
use serde::{Deserialize, Serialize};

use super::latency::LatencyHistogram;
use super::{FinishedMeters, Outcome, UNKNOWN_METHOD, names};
use crate::descriptor::ServiceDescriptor;

/// Every method of one served service, plus one slot for unknown methods.
pub(crate) struct ServerMeter {
    methods: Box<[MethodMeter]>,
    unknown: MethodMeter,
}

struct MethodMeter {
    service: &'static str,
    method: &'static str,
    /// The `metrics` handles; `None` for a server built with metrics off.
    facade: Option<FacadeMeters>,
    outcomes: [AtomicU64; Outcome::ALL.len()],
    in_flight: AtomicI64,
    latency: LatencyHistogram,
}

/// One method's handles in the `metrics` facade.
struct FacadeMeters {
    started: Counter,
    in_flight: Gauge,
    finished: FinishedMeters,
}

/// One method's counts, as the `stats` introspection reports them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerMethodStats {
    /// The method (`_unknown` for requests naming none of the service's).
    pub method: String,
    /// Requests answered with a value.
    pub handled: u64,
    /// Requests that ended otherwise, by outcome label.
    pub errors: BTreeMap<String, u64>,
    /// Requests running now.
    pub in_flight: i64,
    /// Time from taking a request to its outcome.
    pub latency: super::LatencySummary,
}

/// Every method's counts of one server.
pub type MethodStats = Vec<ServerMethodStats>;

impl ServerMeter {
    /// The meters of `descriptor`'s methods; with `facade`, reporting to
    /// the `metrics` facade as well.
    pub(crate) fn new(descriptor: &'static ServiceDescriptor, facade: bool) -> Self {
        ServerMeter {
            methods: descriptor
                .methods
                .iter()
                .map(|m| MethodMeter::new(descriptor.name, m.name, facade))
                .collect(),
            unknown: MethodMeter::new(descriptor.name, UNKNOWN_METHOD, facade),
        }
    }

    /// Counts a request to the method at `index` among the descriptor's
    /// methods (`None`: a method the service does not have), taken at
    /// `started`, as started; the returned meter counts it as finished.
    /// By index: the server has looked the method up already.
    pub(crate) fn start(
        &self,
        index: Option<usize>,
        started: tokio::time::Instant,
    ) -> CallMeter<'_> {
        let meter = index
            .and_then(|index| self.methods.get(index))
            .unwrap_or(&self.unknown);
        if let Some(facade) = &meter.facade {
            facade.started.increment(1);
            facade.in_flight.increment(1.0);
        }
        meter.in_flight.fetch_add(1, Ordering::Relaxed);
        CallMeter {
            meter,
            started: started.into_std(),
        }
    }

    /// Every method's counts so far (unknown methods only once seen).
    pub(crate) fn stats(&self) -> MethodStats {
        self.methods
            .iter()
            .chain(std::iter::once(&self.unknown))
            .filter(|m| m.method != UNKNOWN_METHOD || m.seen())
            .map(MethodMeter::stats)
            .collect()
    }
}

impl MethodMeter {
    fn new(service: &'static str, method: &'static str, facade: bool) -> Self {
        let labels = [("service", service), ("method", method)];
        MethodMeter {
            service,
            method,
            facade: facade.then(|| FacadeMeters {
                started: ::metrics::counter!(names::SERVER_REQUESTS_STARTED, &labels),
                in_flight: ::metrics::gauge!(names::SERVER_REQUESTS_IN_FLIGHT, &labels),
                finished: FinishedMeters::new(
                    names::SERVER_REQUESTS_FINISHED,
                    names::SERVER_REQUEST_DURATION,
                ),
            }),
            outcomes: std::array::from_fn(|_| AtomicU64::new(0)),
            in_flight: AtomicI64::new(0),
            latency: LatencyHistogram::default(),
        }
    }

    fn seen(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) != 0
            || self.outcomes.iter().any(|n| n.load(Ordering::Relaxed) > 0)
    }

    fn stats(&self) -> ServerMethodStats {
        let count = |o: Outcome| self.outcomes[o.index()].load(Ordering::Relaxed);
        ServerMethodStats {
            method: self.method.to_owned(),
            handled: count(Outcome::Ok),
            errors: Outcome::ALL
                .into_iter()
                .filter(|o| *o != Outcome::Ok && count(*o) > 0)
                .map(|o| (o.as_str().to_owned(), count(o)))
                .collect(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            latency: self.latency.summary(),
        }
    }
}

/// One request being served; counted as finished by [`finish`](Self::finish),
/// and only taken out of the in-flight count if dropped before.
pub(crate) struct CallMeter<'a> {
    meter: &'a MethodMeter,
    started: Instant,
}

impl CallMeter<'_> {
    /// Counts the request's outcome, reached at `at`; `dead_lettered` when
    /// it was refused for good.
    pub(crate) fn finish(&self, outcome: Outcome, dead_lettered: bool, at: tokio::time::Instant) {
        let meter = self.meter;
        let elapsed = at.into_std().saturating_duration_since(self.started);
        meter.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        meter.latency.record(elapsed);
        let Some(facade) = &meter.facade else { return };
        facade
            .finished
            .record(meter.service, meter.method, outcome, elapsed);
        if dead_lettered {
            ::metrics::counter!(
                names::SERVER_REQUESTS_DEAD_LETTERED,
                "service" => meter.service,
                "method" => meter.method,
                "outcome" => outcome.as_str(),
            )
            .increment(1);
        }
    }
}

impl Drop for CallMeter<'_> {
    fn drop(&mut self) {
        if let Some(facade) = &self.meter.facade {
            facade.in_flight.decrement(1.0);
        }
        self.meter.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
