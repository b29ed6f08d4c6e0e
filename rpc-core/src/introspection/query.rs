//! The asking side of introspection: one instance, or every instance
//! until a deadline.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use super::{INFO, Info, PING, Ping, STATS, Stats};
use crate::client::read_reply;
use crate::clock;
use crate::codec::ContentType;
use crate::envelope::{Envelope, Header, Kind};
use crate::error::RpcError;
use crate::name::Name;
use crate::transport::{EVERY_SERVICE, ReplyHandler, ReplySink, Transport};

/// Asks servers about themselves: `ping`, `info` and `stats`, of one
/// instance or of every instance that answers before a deadline.
///
/// Queries travel as JSON, so what comes back is what a foreign client
/// would read.
pub struct Introspector<T: Transport> {
    transport: T,
    inbox: T::Inbox,
    answers: mpsc::UnboundedReceiver<Event>,
    next_id: u64,
}

enum Event {
    /// Boxed: queries are rare, and the channel's slots take the size of
    /// the largest variant.
    Answer(Box<Envelope>),
    Lost,
}

struct Gather(mpsc::UnboundedSender<Event>);

impl ReplyHandler for Gather {
    fn deliver(&self, envelope: Envelope) {
        let _ = self.0.send(Event::Answer(Box::new(envelope)));
    }
    fn connection_lost(&self) {
        let _ = self.0.send(Event::Lost);
    }
    fn closed(&self) {
        let _ = self.0.send(Event::Lost);
    }
}

impl<T: Transport> Introspector<T> {
    /// Opens an inbox of its own on `transport`.
    pub async fn new(transport: T) -> Result<Self, RpcError> {
        let (sender, answers) = mpsc::unbounded_channel();
        let inbox = transport
            .open_inbox(ReplySink::new(Arc::new(Gather(sender))))
            .await?;
        Ok(Introspector {
            transport,
            inbox,
            answers,
            next_id: 0,
        })
    }

    /// One instance of `service` says who it is.
    pub async fn ping(&mut self, service: &str, timeout: Duration) -> Result<Ping, RpcError> {
        self.ask_one(service, PING, timeout).await
    }

    /// One instance of `service` describes it.
    pub async fn info(&mut self, service: &str, timeout: Duration) -> Result<Info, RpcError> {
        self.ask_one(service, INFO, timeout).await
    }

    /// One instance of `service` reports its counts.
    pub async fn stats(&mut self, service: &str, timeout: Duration) -> Result<Stats, RpcError> {
        self.ask_one(service, STATS, timeout).await
    }

    /// Every instance of `service` (of every service, for `None`) that
    /// answers within `wait` says who it is.
    pub async fn ping_all(
        &mut self,
        service: Option<&str>,
        wait: Duration,
    ) -> Result<Vec<Ping>, RpcError> {
        self.ask_all(service.unwrap_or(EVERY_SERVICE), PING, wait)
            .await
    }

    /// Every instance of `service` that answers within `wait` reports its counts.
    pub async fn stats_all(
        &mut self,
        service: &str,
        wait: Duration,
    ) -> Result<Vec<Stats>, RpcError> {
        self.ask_all(service, STATS, wait).await
    }

    /// Every instance of `service` that answers within `wait` describes it.
    pub async fn info_all(&mut self, service: &str, wait: Duration) -> Result<Vec<Info>, RpcError> {
        self.ask_all(service, INFO, wait).await
    }

    async fn ask_one<R: DeserializeOwned>(
        &mut self,
        service: &str,
        query: &'static str,
        timeout: Duration,
    ) -> Result<R, RpcError> {
        let (id, envelope) = self.query(service, query, timeout);
        let deadline = tokio::time::Instant::now() + timeout;
        self.transport.send_request(&self.inbox, envelope).await?;
        loop {
            match tokio::time::timeout_at(deadline, self.answers.recv()).await {
                Err(_) => return Err(RpcError::Timeout),
                Ok(None | Some(Event::Lost)) => return Err(RpcError::ConnectionLost),
                Ok(Some(Event::Answer(reply))) if reply.header.correlation_id == id => {
                    return read_reply(&reply, service, query);
                }
                Ok(Some(Event::Answer(_))) => {}
            }
        }
    }

    async fn ask_all<R: DeserializeOwned>(
        &mut self,
        service: &str,
        query: &'static str,
        wait: Duration,
    ) -> Result<Vec<R>, RpcError> {
        let (id, envelope) = self.query(service, query, wait);
        let deadline = tokio::time::Instant::now() + wait;
        self.transport.send_broadcast(&self.inbox, envelope).await?;
        let mut answers = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.answers.recv()).await {
                Err(_) => return Ok(answers),
                Ok(None | Some(Event::Lost)) => return Err(RpcError::ConnectionLost),
                Ok(Some(Event::Answer(reply))) if reply.header.correlation_id == id => {
                    answers.push(read_reply(&reply, service, query)?);
                }
                Ok(Some(Event::Answer(_))) => {}
            }
        }
    }

    fn query(&mut self, service: &str, query: &'static str, timeout: Duration) -> (u64, Envelope) {
        self.next_id += 1;
        let mut header = Header::request(
            Name::from(service.to_owned()),
            Name::from_static(query),
            ContentType::Json,
        );
        let now = clock::now();
        header.kind = Kind::Request;
        header.correlation_id = self.next_id;
        header.sent_at_ms = now.unix_ms;
        header.deadline_ms = now.unix_ms + timeout.as_millis() as u64 + 1;
        (
            self.next_id,
            Envelope {
                header,
                body: b"null".to_vec(),
            },
        )
    }
}

impl<T: Transport> std::fmt::Debug for Introspector<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector").finish_non_exhaustive()
    }
}
