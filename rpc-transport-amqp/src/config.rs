//! Options of an [`AmqpTransport`](crate::AmqpTransport), as every layer
//! reads them (the builder that sets them is in `builder.rs`).

use std::time::Duration;

/// How replies reach a client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplyMode {
    /// An exclusive, auto-deleted queue with a client-chosen name, one per
    /// client inbox. The default: on RabbitMQ 3.10 it measured 12-28% more
    /// pipelined calls/s than direct reply-to, and because the client picks
    /// the name it can re-declare the same queue after a reconnect.
    #[default]
    ExclusiveQueue,
    /// RabbitMQ's direct reply-to pseudo queue `amq.rabbitmq.reply-to`: no
    /// queue is declared; each inbox gets its own channel, and requests that
    /// expect replies there are published on that channel.
    DirectReplyTo,
}

/// Deliveries of one request a quorum queue makes before it dead-letters it,
/// unless set with [`AmqpTransportBuilder::delivery_limit`](crate::AmqpTransportBuilder::delivery_limit).
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

/// The kind of queue a service's requests wait in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueKind {
    /// A classic queue; the default, fastest on one node.
    #[default]
    Classic,
    /// A quorum queue (replicated, always durable): for clusters.
    Quorum,
}

/// Everything an [`AmqpTransport`] is configured with. `Debug` is written
/// by hand: the URL's password is shown as `***`.
#[derive(Clone)]
pub(crate) struct Config {
    /// The brokers, in the order they are tried (never empty once built).
    pub(crate) urls: Vec<String>,
    pub(crate) exchange: String,
    pub(crate) queue_prefix: String,
    pub(crate) queue_kind: QueueKind,
    pub(crate) durable: bool,
    /// Deliveries of one request a quorum queue makes before it
    /// dead-letters it.
    pub(crate) delivery_limit: u32,
    pub(crate) persistent: bool,
    pub(crate) confirms: bool,
    pub(crate) reply_mode: ReplyMode,
    pub(crate) heartbeat: Duration,
    pub(crate) connection_name: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) tls_ca_pem: Option<String>,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "urls",
                &self
                    .urls
                    .iter()
                    .map(|u| redacted_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("exchange", &self.exchange)
            .field("queue_prefix", &self.queue_prefix)
            .field("queue_kind", &self.queue_kind)
            .field("durable", &self.durable)
            .field("persistent", &self.persistent)
            .field("confirms", &self.confirms)
            .field("reply_mode", &self.reply_mode)
            .field("heartbeat", &self.heartbeat)
            .field("connection_name", &self.connection_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls_ca_pem", &self.tls_ca_pem.as_ref().map(|_| "<pem>"))
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .finish()
    }
}

/// `url` with the password of its user info replaced by `***`, for Debug
/// output and error messages. Works on the text, so it also covers URLs
/// the AMQP parser refuses.
pub(crate) fn redacted_url(url: &str) -> String {
    let authority_start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[authority_start..];
    // The authority ends at the first `/`, `?` or `#`; the user info at the
    // last `@` before that (a password may itself contain `@` unescaped).
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_len].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let user = match userinfo.find(':') {
        Some(colon) => &userinfo[..colon],
        None => return url.to_owned(),
    };
    format!("{}{user}:***{}", &url[..authority_start], &rest[at..])
}

/// The URLs of a comma-separated list, trimmed, empty entries skipped.
/// (A comma inside a URL's password must be percent-encoded, `%2C`, as
/// URLs want anyway.)
pub(crate) fn split_urls(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Config {
    /// The default options, for `urls`.
    pub(crate) fn with_defaults(urls: Vec<String>) -> Self {
        Config {
            urls,
            exchange: String::new(),
            queue_prefix: String::new(),
            queue_kind: QueueKind::Classic,
            durable: true,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            persistent: false,
            confirms: true,
            reply_mode: ReplyMode::ExclusiveQueue,
            heartbeat: Duration::from_secs(10),
            connection_name: "rpc-transport-amqp".to_owned(),
            connect_timeout: Duration::from_secs(10),
            tls_ca_pem: None,
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(1),
        }
    }

    /// The queue that holds `service`'s requests.
    pub(crate) fn request_queue(&self, service: &str) -> String {
        let mut name = String::with_capacity(self.queue_prefix.len() + service.len());
        name.push_str(&self.queue_prefix);
        name.push_str(service);
        name
    }

    /// The queue `service`'s refused requests are dead-lettered into.
    pub(crate) fn dead_letter_queue(&self, service: &str) -> String {
        format!("{}{service}.dlq", self.queue_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::{redacted_url, split_urls};

    #[test]
    fn url_lists_are_split_on_commas() {
        assert_eq!(
            split_urls("amqp://a:5672/%2f, amqp://b:5673/%2f,,"),
            ["amqp://a:5672/%2f", "amqp://b:5673/%2f"]
        );
        assert_eq!(split_urls("amqp://a"), ["amqp://a"]);
        assert!(split_urls(" ").is_empty());
    }

    #[test]
    fn passwords_are_redacted() {
        let cases = [
            (
                "amqp://guest:s3cret@host:5672/%2f",
                "amqp://guest:***@host:5672/%2f",
            ),
            ("amqps://u:p@ss@h/v?x=1", "amqps://u:***@h/v?x=1"),
            ("amqp://user@host", "amqp://user@host"),
            ("amqp://host:5672", "amqp://host:5672"),
            ("u:pw@h", "u:***@h"),
        ];
        for (url, expected) in cases {
            assert_eq!(redacted_url(url), expected, "{url}");
        }
    }
}
