//! [`ZmqTransportBuilder`]: endpoints, heartbeats, reconnects, limits.

use std::time::Duration;

use rpc_core::TransportError;
use rpc_core::frame::FrameLimits;

use crate::transport::ZmqTransport;

/// Settings every part of the transport reads.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) binds: Vec<String>,
    pub(crate) connects: Vec<String>,
    pub(crate) heartbeat: Duration,
    pub(crate) liveness: u32,
    pub(crate) reconnect: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) limits: FrameLimits,
    pub(crate) max_waiting: usize,
    pub(crate) batch_above: usize,
}

/// Calls in flight on a connection above which a client gathers the
/// requests made in one turn of the runtime into one message: by default
/// any, as a lone call goes alone and at once anyway (`batcher.rs`;
/// docs/benchmarks.md, "ZeroMQ").
pub(crate) const DEFAULT_BATCH_ABOVE: usize = 0;

/// Options for a [`ZmqTransport`]: `ZmqTransport::builder()...build().await`.
///
/// A transport that [`bind`](Self::bind)s serves; one that
/// [`connect`](Self::connect)s calls; one may do both.
#[derive(Clone, Debug)]
pub struct ZmqTransportBuilder {
    config: Config,
}

impl ZmqTransportBuilder {
    pub(crate) fn new() -> Self {
        ZmqTransportBuilder {
            config: Config {
                binds: Vec::new(),
                connects: Vec::new(),
                heartbeat: Duration::from_secs(1),
                liveness: 3,
                reconnect: Duration::from_secs(1),
                connect_timeout: Duration::from_secs(2),
                limits: FrameLimits::default(),
                max_waiting: 10_000,
                batch_above: DEFAULT_BATCH_ABOVE,
            },
        }
    }

    /// Serves on `endpoint` (`tcp://127.0.0.1:5555`, `tcp://127.0.0.1:0`
    /// for any free port, `ipc:///run/app.sock`). May be given several
    /// times; [`ZmqTransport::endpoints`] tells the ports bound.
    pub fn bind(mut self, endpoint: impl Into<String>) -> Self {
        self.config.binds.push(endpoint.into());
        self
    }

    /// Calls the server at `endpoint`. May be given several times: calls
    /// are balanced over every server that serves their service.
    pub fn connect(mut self, endpoint: impl Into<String>) -> Self {
        self.config.connects.push(endpoint.into());
        self
    }

    /// How often each side sends a heartbeat (default 1 s). A peer silent
    /// for [`liveness`](Self::liveness) intervals is dead.
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.config.heartbeat = interval.max(Duration::from_millis(1));
        self
    }

    /// Heartbeat intervals of silence after which a peer is dead (default 3,
    /// as in the guide's Paranoid Pirate). A peer sends nothing while it
    /// reads or decodes one message, so the period must cover the largest
    /// message's transfer. Intervals are counted as this side's heartbeat
    /// ticks: a runtime that could not run for a while (a handler computing
    /// on its thread, an overloaded machine) counts that stall as one
    /// interval, not as the peer's silence.
    pub fn liveness(mut self, intervals: u32) -> Self {
        self.config.liveness = intervals.max(1);
        self
    }

    /// How long a client waits between attempts to reach a server it lost
    /// or never reached (default 1 s).
    pub fn reconnect_interval(mut self, interval: Duration) -> Self {
        self.config.reconnect = interval;
        self
    }

    /// How long one connection attempt (TCP or ipc connect plus the ZMTP
    /// handshake) may take (default 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// The largest envelope accepted or sent, in bytes (default 16 MiB).
    /// Larger sends fail with `TransportError::TooLarge`; larger messages
    /// received are refused and counted.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.limits.max_message_size = bytes;
        self
    }

    /// The high-water mark of calls a client holds while every server of
    /// their service is at its credit (default 10,000 per service). Past
    /// it, calls fail at once with `Overloaded`. Calls held here leave as
    /// credit comes back, or fail with `NoRoute` when the last server goes.
    pub fn max_waiting(mut self, calls: usize) -> Self {
        self.config.max_waiting = calls;
        self
    }

    /// Above how many calls in flight on one connection a client gathers
    /// the requests its calls make in one turn of the runtime into one
    /// message (default 0: whenever more than one go together;
    /// `usize::MAX`: never, each request its own message). A call alone on
    /// its connection always goes at once. A server answers a batch of
    /// requests with batches of replies, to a client that asked for them.
    /// See docs/wire.md, "Batches", for what a batch costs and saves.
    pub fn batch_above(mut self, calls: usize) -> Self {
        self.config.batch_above = calls;
        self
    }

    /// Binds every bind endpoint, starts a link to every connect endpoint,
    /// and waits (up to the connect timeout) until each link has its
    /// server's `READY` or has failed its first attempt. A server that is
    /// not up yet is retried every reconnect interval.
    ///
    /// # Errors
    ///
    /// [`TransportError::Connect`] when an endpoint cannot be bound or does
    /// not parse.
    pub async fn build(self) -> Result<ZmqTransport, TransportError> {
        ZmqTransport::start(self.config).await
    }
}
