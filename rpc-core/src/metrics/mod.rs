//! The metrics the runtimes record, through the [`metrics`]
//! facade: the application installs a recorder (a Prometheus exporter, say)
//! and every client and server reports to it. Without one every handle is a
//! no-op. The names, labels and units are listed in `docs/operations.md`.
//!
//! Handles are registered once per service and method (per outcome, for the
//! finishing ones), when a server starts or a client first calls a method,
//! so the per-call cost is a few relaxed atomics, not a registry look-up:
//! install the recorder before starting servers and clients.

use std::sync::OnceLock;
use std::time::Duration;

use ::metrics::{Counter, Histogram};

mod client;
mod latency;
mod outcome;
mod server;

pub(crate) use client::ClientMeters;
pub use latency::LatencySummary;
pub use outcome::Outcome;
pub(crate) use server::ServerMeter;
pub use server::{MethodStats, ServerMethodStats};

/// Metric names, one constant each, so docs, code and tests agree.
pub mod names {
    /// Counter: calls a client started. Labels: `service`, `method`.
    pub const CLIENT_CALLS_STARTED: &str = "rpc_client_calls_started_total";
    /// Counter: calls a client finished. Labels: `service`, `method`, `outcome`.
    pub const CLIENT_CALLS_FINISHED: &str = "rpc_client_calls_finished_total";
    /// Histogram, seconds: a call's duration from start to outcome. Labels:
    /// `service`, `method`, `outcome`.
    pub const CLIENT_CALL_DURATION: &str = "rpc_client_call_duration_seconds";
    /// Gauge: calls a client is waiting on. Labels: `service`, `method`.
    pub const CLIENT_CALLS_IN_FLIGHT: &str = "rpc_client_calls_in_flight";
    /// Counter: replies no call was waiting for (duplicates, late replies).
    pub const CLIENT_REPLIES_DROPPED: &str = "rpc_client_replies_dropped_total";
    /// Counter: requests a server took. Labels: `service`, `method`.
    pub const SERVER_REQUESTS_STARTED: &str = "rpc_server_requests_started_total";
    /// Counter: requests a server finished. Labels: `service`, `method`, `outcome`.
    pub const SERVER_REQUESTS_FINISHED: &str = "rpc_server_requests_finished_total";
    /// Histogram, seconds: from taking a request to its outcome. Labels:
    /// `service`, `method`, `outcome`.
    pub const SERVER_REQUEST_DURATION: &str = "rpc_server_request_duration_seconds";
    /// Gauge: requests a server is running. Labels: `service`, `method`.
    pub const SERVER_REQUESTS_IN_FLIGHT: &str = "rpc_server_requests_in_flight";
    /// Counter: requests a server dead-lettered. Labels: `service`,
    /// `method`, `outcome`.
    pub const SERVER_REQUESTS_DEAD_LETTERED: &str = "rpc_server_requests_dead_lettered_total";
    /// Counter: connections a transport rebuilt after losing one. Label: `transport`.
    pub const TRANSPORT_RECONNECTS: &str = "rpc_transport_reconnects_total";
    /// Gauge: publishes waiting for the broker's confirm. Label: `transport`.
    pub const TRANSPORT_CONFIRMS_PENDING: &str = "rpc_transport_confirms_pending";
}

/// The method label of requests naming a method the service does not
/// have: one label for all of them, so a caller cannot grow the metrics
/// without bound by inventing names.
pub const UNKNOWN_METHOD: &str = "_unknown";

/// The finishing meters of one method, a counter and a duration histogram
/// per outcome, shared by the client's and the server's meters so both
/// label and register them alike.
pub(crate) struct FinishedMeters {
    counter: &'static str,
    histogram: &'static str,
    /// Registered on first use: most methods see few of the outcomes.
    by_outcome: [OnceLock<(Counter, Histogram)>; Outcome::ALL.len()],
}

impl FinishedMeters {
    /// Meters named `counter` and `histogram`, none registered yet.
    pub(crate) fn new(counter: &'static str, histogram: &'static str) -> Self {
        FinishedMeters {
            counter,
            histogram,
            by_outcome: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// Counts one finished call of `service.method` that ended in `outcome`
    /// after `elapsed`.
    pub(crate) fn record(
        &self,
        service: &'static str,
        method: &'static str,
        outcome: Outcome,
        elapsed: Duration,
    ) {
        let (finished, duration) = self.by_outcome[outcome.index()].get_or_init(|| {
            let labels = [
                ("service", service),
                ("method", method),
                ("outcome", outcome.as_str()),
            ];
            (
                ::metrics::counter!(self.counter, &labels),
                ::metrics::histogram!(self.histogram, &labels),
            )
        });
        finished.increment(1);
        duration.record(elapsed.as_secs_f64());
    }
}

/// Counts a reply nobody was waiting for.
pub(crate) fn reply_dropped() {
    ::metrics::counter!(names::CLIENT_REPLIES_DROPPED).increment(1);
}

/// Counts a connection a transport rebuilt; for transports.
pub fn transport_reconnected(transport: &'static str) {
    ::metrics::counter!(names::TRANSPORT_RECONNECTS, "transport" => transport).increment(1);
}
