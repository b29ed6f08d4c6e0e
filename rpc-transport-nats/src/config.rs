//! Options of a [`NatsTransport`](crate::NatsTransport) and their builder.

use std::path::PathBuf;
use std::time::Duration;

use rpc_core::TransportError;

use crate::transport::NatsTransport;

/// How requests travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Core NATS request/reply (the default): a request goes straight to one
    /// server of a queue group, or fails at once with `NoRoute` when there is
    /// none. Nothing is stored: a request whose server dies mid-call is lost
    /// (the caller gets `ConnectionLost` or its deadline).
    #[default]
    Core,
    /// JetStream: requests wait in a work-queue stream per service, a durable
    /// consumer hands them to servers, and a server acknowledges one after
    /// its reply is sent (at-least-once), so a request whose server dies is
    /// delivered again to another.
    Durable,
}

/// How a client authenticates.
#[derive(Clone, Default)]
pub(crate) enum Auth {
    #[default]
    None,
    Token(String),
    UserPassword(String, String),
    /// An nkey seed (`SU...`).
    Nkey(String),
    /// The text of a `.creds` file (JWT and nkey seed).
    Credentials(String),
}

/// Everything a [`NatsTransport`] is configured with. `Debug` is written by
/// hand: secrets are shown as `***`.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) subject_prefix: String,
    pub(crate) connection_name: String,
    pub(crate) connect_timeout: Duration,
    pub(crate) auth: Auth,
    pub(crate) tls_required: bool,
    pub(crate) tls_ca_file: Option<PathBuf>,
    pub(crate) tls_client_cert: Option<(PathBuf, PathBuf)>,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) mode: Mode,
    pub(crate) max_deliveries: u32,
    pub(crate) ack_wait: Duration,
    pub(crate) trace_header: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = match &self.auth {
            Auth::None => "none",
            Auth::Token(_) => "token ***",
            Auth::UserPassword(..) => "user and password ***",
            Auth::Nkey(_) => "nkey ***",
            Auth::Credentials(_) => "credentials ***",
        };
        f.debug_struct("Config")
            .field("url", &self.url)
            .field("subject_prefix", &self.subject_prefix)
            .field("connection_name", &self.connection_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("auth", &auth)
            .field("tls_required", &self.tls_required)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("mode", &self.mode)
            .field("max_deliveries", &self.max_deliveries)
            .field("ack_wait", &self.ack_wait)
            .finish()
    }
}

impl Config {
    /// The subject of one method: `<prefix><service>.<method>`.
    pub(crate) fn method_subject(&self, service: &str, method: &str) -> String {
        let mut subject =
            String::with_capacity(self.subject_prefix.len() + service.len() + method.len() + 1);
        subject.push_str(&self.subject_prefix);
        subject.push_str(service);
        subject.push('.');
        subject.push_str(method);
        subject
    }

    /// The subjects a service is served on: `<prefix><service>.*`.
    pub(crate) fn service_subjects(&self, service: &str) -> String {
        format!("{}{service}.*", self.subject_prefix)
    }

    /// Where durable mode moves a request it gives up on:
    /// `<prefix>dead.<service>.<method>`.
    pub(crate) fn dead_letter_subjects(&self, service: &str) -> String {
        format!("{}dead.{service}.*", self.subject_prefix)
    }

    /// A JetStream name (no `.`, `*`, `>`, spaces) for `service`'s stream,
    /// or with `suffix` its dead-letter stream.
    pub(crate) fn stream_name(&self, service: &str, suffix: &str) -> String {
        let raw = format!("RPC_{}{service}{suffix}", self.subject_prefix);
        raw.chars()
            .map(|c| match c {
                '.' | '*' | '>' | ' ' | '/' | '\\' => '_',
                c if c.is_control() => '_',
                c => c,
            })
            .collect()
    }
}

/// Configures a [`NatsTransport`]: `NatsTransport::builder(url)...connect().await`.
///
/// Its `Debug` output hides tokens, passwords, seeds and credentials.
#[derive(Clone, Debug)]
pub struct NatsTransportBuilder {
    config: Config,
}

impl NatsTransportBuilder {
    pub(crate) fn new(url: impl Into<String>) -> Self {
        NatsTransportBuilder {
            config: Config {
                url: url.into(),
                subject_prefix: String::new(),
                connection_name: "rpc-transport-nats".to_owned(),
                connect_timeout: Duration::from_secs(10),
                auth: Auth::None,
                tls_required: false,
                tls_ca_file: None,
                tls_client_cert: None,
                reconnect_min: Duration::from_millis(20),
                reconnect_max: Duration::from_secs(1),
                mode: Mode::Core,
                max_deliveries: 5,
                ack_wait: Duration::from_secs(30),
                trace_header: false,
            },
        }
    }

    /// The server URL (or comma-separated URLs) to connect to, replacing the
    /// one given to `builder`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// Prepended to every subject (`<prefix><service>.<method>`) and stream
    /// name, so environments and parallel tests share one server. Default:
    /// none. End it with a `.` to keep it a subject token of its own.
    pub fn subject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.subject_prefix = prefix.into();
        self
    }

    /// The connection name the server shows (`nats server report
    /// connections`, `/connz`). Default `rpc-transport-nats`.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.config.connection_name = name.into();
        self
    }

    /// How long connecting may take (default 10 s). Sends made while
    /// reconnecting also wait at most this long for the connection.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// Authenticates with a token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.config.auth = Auth::Token(token.into());
        self
    }

    /// Authenticates with a user name and password.
    pub fn user_and_password(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.config.auth = Auth::UserPassword(user.into(), password.into());
        self
    }

    /// Authenticates with an nkey seed (`SU...`).
    pub fn nkey(mut self, seed: impl Into<String>) -> Self {
        self.config.auth = Auth::Nkey(seed.into());
        self
    }

    /// Authenticates with the contents of a `.creds` file (a user JWT and
    /// its nkey seed), as `nsc` writes them.
    pub fn credentials(mut self, creds: impl Into<String>) -> Self {
        self.config.auth = Auth::Credentials(creds.into());
        self
    }

    /// Requires TLS (rustls with ring; certificates are always verified).
    /// A `tls://` URL requires it too.
    pub fn require_tls(mut self, required: bool) -> Self {
        self.config.tls_required = required;
        self
    }

    /// A PEM file of CA certificates to trust, besides the system's roots.
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.tls_ca_file = Some(path.into());
        self
    }

    /// A client certificate and its key (PEM files), for servers that
    /// verify clients.
    pub fn tls_client_cert(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.config.tls_client_cert = Some((cert.into(), key.into()));
        self
    }

    /// The first and the longest wait between reconnect attempts (default
    /// 20 ms doubling up to 1 s, each with up to a quarter of jitter).
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.reconnect_min = min;
        self.config.reconnect_max = max.max(min);
        self
    }

    /// Core request/reply (the default) or durable JetStream requests.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Durable mode: how many times a request is delivered before it is
    /// answered with an error and moved to the dead-letter stream (default 5).
    pub fn max_deliveries(mut self, deliveries: u32) -> Self {
        self.config.max_deliveries = deliveries.max(1);
        self
    }

    /// Durable mode: how long a delivered request may stay unacknowledged
    /// before JetStream delivers it again (default 30 s). A server that
    /// died mid-call is noticed after this long. Keep it above 2 s, the
    /// life of a server's pull request: JetStream may hand a redelivery to a
    /// dead server's pull that has not expired yet, and the delivery is
    /// then spent there.
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.config.ack_wait = wait;
        self
    }

    /// Also writes each call's `traceparent` as a NATS header (default off:
    /// a request's reply subject carries it, and a message without headers
    /// is the cheaper one for both ends). Turn it on when servers in other
    /// languages read the W3C header, as OpenTelemetry's instrumentation
    /// does; our servers read either.
    pub fn trace_header(mut self, on: bool) -> Self {
        self.config.trace_header = on;
        self
    }

    /// Connects. Fails if the server cannot be reached or refuses us; once
    /// connected, the transport reconnects on its own.
    pub async fn connect(self) -> Result<NatsTransport, TransportError> {
        NatsTransport::start(self.config).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let builder = NatsTransportBuilder::new("nats://127.0.0.1:4222")
            .token("s3cret")
            .subject_prefix("staging.");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("staging."), "{shown}");
    }

    #[test]
    fn stream_names_have_no_subject_characters() {
        let config = NatsTransportBuilder::new("x")
            .subject_prefix("t.a b*>.")
            .config;
        assert_eq!(config.stream_name("conf.calc", ""), "RPC_t_a_b___conf_calc");
        assert_eq!(config.method_subject("calc", "add"), "t.a b*>.calc.add");
    }
}
