//! One live AMQP connection ("session") and the channel calls are published on.
//!
//! A session never recovers: when its connection drops it is marked lost and
//! the supervisor builds a new one (lapin's own auto-recovery stays off, so
//! that we decide when calls in flight are failed and what is re-declared).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::{BasicCancelOptions, ConfirmSelectOptions};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::ShortString;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use rpc_core::TransportError;
use rpc_core::transport::support::lock_unpoisoned as lock;
use tokio::sync::Notify;

use crate::config::{Config, redacted_url};
use crate::error::{connect_error, protocol};

/// A connection generation: its connection, its publish channel, and
/// whether it has been declared lost.
pub(crate) struct Session {
    pub(crate) generation: u64,
    /// Which of the configured broker URLs this connection went to.
    pub(crate) url_index: usize,
    pub(crate) connection: Connection,
    /// Calls are published here (in confirm mode when confirms are on);
    /// replies go out on their request's channel. lapin channels are safe
    /// to share between tasks.
    pub(crate) publisher: Channel,
    /// The user this connection logged in as: every call we publish
    /// carries it as `user_id`, which the broker checks, so servers learn
    /// who called (`Context::caller`).
    pub(crate) user: ShortString,
    /// The consumers of this connection's live [`Subscription`]s,
    /// cancelled before it closes (see [`close`](Self::close)).
    consumers: Mutex<Vec<(Channel, ShortString)>>,
    /// Replies and settlements this connection's settlers have still to
    /// send (settlements.rs), waited for before it closes.
    pub(crate) unsettled: Arc<Unsettled>,
    lost: AtomicBool,
    lost_signal: Notify,
}

impl Session {
    /// Connects to the first of the configured brokers that answers,
    /// trying them in order from `first` (wrapping around), and opens the
    /// publish channel. Fails with every broker's reason when none answers.
    pub(crate) async fn open(
        config: &Config,
        generation: u64,
        first: usize,
    ) -> Result<Session, TransportError> {
        let count = config.urls.len();
        let mut failures = Vec::new();
        for offset in 0..count {
            let index = (first + offset) % count;
            match Self::open_url(config, index, generation).await {
                Ok(session) => {
                    if count > 1 {
                        tracing::info!(
                            broker = %redacted_url(&config.urls[index]),
                            generation,
                            "AMQP connected"
                        );
                    }
                    return Ok(session);
                }
                Err(error) if count == 1 => return Err(error),
                Err(error) => {
                    tracing::debug!(broker = %redacted_url(&config.urls[index]), %error, "AMQP broker did not answer");
                    failures.push(format!("{}: {error}", redacted_url(&config.urls[index])));
                }
            }
        }
        Err(TransportError::Connect {
            message: format!("no AMQP broker answered ({})", failures.join("; ")),
            source: None,
        })
    }

    /// Connects to the `index`th configured broker.
    async fn open_url(
        config: &Config,
        index: usize,
        generation: u64,
    ) -> Result<Session, TransportError> {
        let url = &config.urls[index];
        let mut uri: AMQPUri = url.parse().map_err(|e: String| TransportError::Connect {
            // The parser quotes the URL back, password and all.
            message: format!("invalid AMQP URL: {}", e.replace(url, &redacted_url(url))),
            source: None,
        })?;
        let user =
            ShortString::try_new(uri.authority.userinfo.username.as_str()).map_err(|_| {
                TransportError::Connect {
                    message: "invalid AMQP URL: the user name is longer than 255 bytes".into(),
                    source: None,
                }
            })?;
        uri.query.heartbeat = Some(u16::try_from(config.heartbeat.as_secs()).unwrap_or(u16::MAX));
        uri.query.connection_timeout =
            Some(u64::try_from(config.connect_timeout.as_millis()).unwrap_or(u64::MAX));
        let properties = ConnectionProperties::default()
            .with_connection_name(config.connection_name.as_str().into());
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain: config.tls_ca_pem.clone(),
        };
        let runtime =
            lapin::runtime::default_runtime().map_err(|e| connect_error("no runtime", e))?;
        // The whole opening is bounded, not just the handshake: a peer
        // that goes silent right after it would otherwise stall the channel
        // open forever, and with it every reconnect attempt.
        let open = async {
            let connection = Connection::connect_uri_with_config(uri, properties, tls, runtime)
                .await
                .map_err(|e| connect_error("AMQP", e))?;
            let publisher = connection
                .create_channel()
                .await
                .map_err(|e| protocol("open channel", e))?;
            if config.confirms {
                publisher
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| protocol("confirm select", e))?;
            }
            Ok::<_, TransportError>((connection, publisher))
        };
        let (connection, publisher) = tokio::time::timeout(config.connect_timeout, open)
            .await
            .map_err(|_| TransportError::Connect {
            message: format!("timed out after {:?}", config.connect_timeout),
            source: None,
        })??;
        Ok(Session {
            generation,
            url_index: index,
            connection,
            publisher,
            user,
            consumers: Mutex::new(Vec::new()),
            unsettled: Arc::default(),
            lost: AtomicBool::new(false),
            lost_signal: Notify::new(),
        })
    }

    /// Closes the connection, its consumers cancelled first.
    ///
    /// lapin 4.12 can deadlock when a connection closes while a delivery is
    /// being read: its I/O thread holds a channel's status lock and waits
    /// for the channel's consumer table, while the close holds that table
    /// and, dropping a consumer that was the channel's last owner, waits
    /// for the status lock (seen as a test process hung in `cleanup()`,
    /// every thread parked on one of the two locks). A cancelled consumer
    /// is out of the table and gets no more deliveries, so the close finds
    /// nothing to drop and nothing being read. Best effort and bounded by
    /// the caller's timeout: a dead connection answers no cancel, and has
    /// no deliveries in flight either.
    ///
    /// Then, with no more requests coming, it waits (for a bounded time)
    /// until the settlers have sent the replies and settlements of the
    /// calls that ended: a server's graceful shutdown ends once its calls
    /// have handed them over, and lapin writes the connection's close ahead
    /// of publishes still queued, so closing at once could leave the last
    /// requests answered but unacked, to run again elsewhere.
    pub(crate) async fn close(&self, code: u16, text: &str) {
        let consumers = std::mem::take(&mut *lock(&self.consumers));
        for (channel, tag) in &consumers {
            if channel.status().connected() {
                let _ = channel
                    .basic_cancel(tag.clone(), BasicCancelOptions::default())
                    .await;
            }
        }
        if self.connection.status().connected() {
            let _ = tokio::time::timeout(SETTLE_ON_CLOSE, self.unsettled.none()).await;
        }
        let _ = self.connection.close(code, text.into()).await;
    }

    /// A channel for one administrative operation (a delete, a passive
    /// declare), closed by its user.
    pub(crate) async fn admin_channel(&self) -> Result<Channel, TransportError> {
        self.connection
            .create_channel()
            .await
            .map_err(|e| protocol("open channel", e))
    }

    /// Whether this session is still usable.
    pub(crate) fn is_alive(&self) -> bool {
        !self.lost.load(Ordering::Acquire) && self.connection.status().connected()
    }

    /// Marks the session lost (idempotent) and wakes the supervisor.
    pub(crate) fn mark_lost(&self) {
        if !self.lost.swap(true, Ordering::AcqRel) {
            self.lost_signal.notify_one();
        }
    }

    /// Marks the session lost if its connection is down or the broker
    /// closed its publish channel; for callers that saw an operation fail
    /// and want to know whether the session is why.
    ///
    /// A publish channel the broker closed (a publish to an exchange that
    /// was deleted, say) fails every later publish on it while the
    /// connection stays up, so it takes the session down with it: the
    /// supervisor then builds a whole new one, the path a broker restart
    /// already takes.
    pub(crate) fn check(&self) {
        if !self.connection.status().connected() || !self.publisher.status().connected() {
            self.mark_lost();
        }
    }

    /// Resolves once the session is marked lost.
    pub(crate) async fn lost(&self) {
        loop {
            let notified = self.lost_signal.notified();
            if self.lost.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }
}

/// How long a closing session waits for its settlers: lapin writes what
/// is queued within microseconds on a live connection, and a dead one
/// fails it at once, so this is a bound, not a wait.
const SETTLE_ON_CLOSE: Duration = Duration::from_secs(1);

/// Steps handed to a session's settlers and not yet done: a count, and a
/// signal when it drops to zero.
#[derive(Default)]
pub(crate) struct Unsettled {
    steps: AtomicUsize,
    none_left: Notify,
}

impl Unsettled {
    /// One more step handed over.
    pub(crate) fn add(&self) {
        self.steps.fetch_add(1, Ordering::AcqRel);
    }

    /// One step done (sent, or dropped after a failed write).
    pub(crate) fn done(&self) {
        if self.steps.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.none_left.notify_waiters();
        }
    }

    /// Resolves once no step is left.
    pub(crate) async fn none(&self) {
        loop {
            let notified = self.none_left.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.steps.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A consumer on a channel of one session: what a reply inbox or a request
/// stream holds while it consumes. Known to its session while it lives, so
/// that closing the session cancels it first ([`Session::close`]).
pub(crate) struct Subscription {
    pub(crate) session: Arc<Session>,
    pub(crate) channel: Arc<Channel>,
    pub(crate) consumer: Consumer,
}

impl Subscription {
    pub(crate) fn new(session: Arc<Session>, channel: Arc<Channel>, consumer: Consumer) -> Self {
        lock(&session.consumers).push((Channel::clone(&channel), consumer.tag()));
        Subscription {
            session,
            channel,
            consumer,
        }
    }
}

impl Drop for Subscription {
    /// Forgets the consumer: the session's list must not keep its channel
    /// open (dropping the last handle of a channel is what closes it, and
    /// hands its unsettled deliveries back to the broker).
    fn drop(&mut self) {
        let (id, tag) = (self.channel.id(), self.consumer.tag());
        lock(&self.session.consumers).retain(|(channel, t)| channel.id() != id || *t != tag);
    }
}
