//! [`AmqpTransportBuilder`]: how users set the options, and the
//! constructors on [`AmqpTransport`] that start from it.

use std::time::Duration;

use rpc_core::TransportError;

use crate::config::{Config, QueueKind, ReplyMode, split_urls};
use crate::transport::AmqpTransport;

impl AmqpTransport {
    /// Connects to `url` (`amqp://user:pass@host:port/vhost` or `amqps://...`)
    /// with the default options.
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        Self::builder(url).connect().await
    }

    /// A builder for a transport to `url`, or to several brokers given as a
    /// comma-separated list of URLs (see [`urls`](AmqpTransportBuilder::urls)).
    pub fn builder(url: impl Into<String>) -> AmqpTransportBuilder {
        AmqpTransportBuilder::new(url)
    }
}

/// Configures an [`AmqpTransport`]: `AmqpTransport::builder(url)...connect().await`.
///
/// Its `Debug` output shows the URL with the password replaced by `***`.
#[derive(Clone, Debug)]
pub struct AmqpTransportBuilder {
    config: Config,
}

impl AmqpTransportBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        AmqpTransportBuilder {
            config: Config::with_defaults(split_urls(&url.into())),
        }
    }

    /// The brokers to connect to, in order, replacing the builder's URL(s).
    /// The transport connects to the first that answers; when that
    /// connection is lost it tries the next one in the list first (wrapping
    /// around), so a cluster's clients move to a live node by themselves.
    /// Each entry may itself be a comma-separated list, like the builder's.
    pub fn urls<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.urls = urls
            .into_iter()
            .flat_map(|url| split_urls(url.as_ref()))
            .collect();
        self
    }

    /// The exchange requests are published to. Default: `""`, the default
    /// exchange, which routes by queue name and needs no declaration. Any
    /// other name is declared as a durable direct exchange, and each service
    /// queue is bound to it under its own name. Replies always go through
    /// the default exchange (a reply address is a queue name).
    pub fn exchange(mut self, exchange: impl Into<String>) -> Self {
        self.config.exchange = exchange.into();
        self
    }

    /// Prepended to every queue this transport declares or publishes to
    /// (`<prefix><service>`, `<prefix><service>.dlq`, `<prefix>reply.*`), so
    /// environments and parallel tests can share one broker. Default: none.
    pub fn queue_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.queue_prefix = prefix.into();
        self
    }

    /// Classic (default) or quorum request queues.
    pub fn queue_kind(mut self, kind: QueueKind) -> Self {
        self.config.queue_kind = kind;
        self
    }

    /// Quorum queues only: a request delivered this many times (its server
    /// crashed or lost its connection each time) goes to the dead-letter
    /// queue instead of coming back (default
    /// [`DEFAULT_DELIVERY_LIMIT`](crate::DEFAULT_DELIVERY_LIMIT)). Classic
    /// queues have no such limit.
    pub fn delivery_limit(mut self, deliveries: u32) -> Self {
        self.config.delivery_limit = deliveries.max(1);
        self
    }

    /// Whether request and dead-letter queues survive a broker restart
    /// (default `true`; quorum queues are always durable).
    pub fn durable(mut self, durable: bool) -> Self {
        self.config.durable = durable;
        self
    }

    /// Whether requests are published persistent (delivery mode 2), so they
    /// survive a broker restart in a durable queue. Default `false`: RPC
    /// requests carry deadlines and are usually not worth a disk write.
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.config.persistent = persistent;
        self
    }

    /// Publisher confirms (default on) for calls. With them a oneway send
    /// resolves once the broker has the message, and a request to a service
    /// with no queue fails at once with `NoRoute` (its call waits for the
    /// reply, not the confirm). Without them a send resolves once the frames
    /// are written, and a request nobody can receive is dropped by the
    /// broker (the call then ends by its deadline). Replies are never
    /// confirmed: a server publishes each on its request's channel, ahead of
    /// the request's ack (docs/reliability.md).
    pub fn publisher_confirms(mut self, confirms: bool) -> Self {
        self.config.confirms = confirms;
        self
    }

    /// How replies come back (default [`ReplyMode::ExclusiveQueue`]).
    pub fn reply_mode(mut self, mode: ReplyMode) -> Self {
        self.config.reply_mode = mode;
        self
    }

    /// The AMQP heartbeat interval asked of the broker (default 10 s; zero
    /// turns heartbeats off). A silent peer is noticed after about two.
    pub fn heartbeat(mut self, heartbeat: Duration) -> Self {
        self.config.heartbeat = heartbeat;
        self
    }

    /// The connection name the broker shows (`rabbitmqctl list_connections
    /// client_properties`). Default `rpc-transport-amqp`.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.config.connection_name = name.into();
        self
    }

    /// How long one connection attempt may take (default 10 s). Sends made
    /// while reconnecting also wait at most this long for the connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// A PEM bundle of CA certificates to trust for `amqps://` URLs, in
    /// addition to the Mozilla root set (webpki-root-certs) this crate's
    /// rustls build ships with. Certificates are always verified; there is
    /// no option to turn verification off.
    pub fn tls_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.config.tls_ca_pem = Some(pem.into());
        self
    }

    /// The first and the longest nominal wait between reconnect attempts
    /// (default 50 ms doubling up to 1 s). Each wait is drawn at random from
    /// the upper half of its nominal value, so a fleet of clients that lost
    /// the broker together does not knock again in lockstep.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.reconnect_min = min;
        self.config.reconnect_max = max.max(min);
        self
    }

    /// Connects. Fails if the broker cannot be reached or refuses us; once
    /// connected, the transport reconnects on its own.
    pub async fn connect(self) -> Result<AmqpTransport, TransportError> {
        if self.config.urls.is_empty() {
            return Err(TransportError::Connect {
                message: "no AMQP broker URL given".into(),
                source: None,
            });
        }
        AmqpTransport::start(self.config).await
    }
}
