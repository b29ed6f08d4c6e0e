//! Reply inboxes: one wildcard subscription `<inbox>.>` per client, where
//! the last token of each reply's subject is the call's call token, which
//! states its correlation id and the codec its reply comes in
//! (`headers::reply_subject`, `call_token`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::{Message, StatusCode, Subject, Subscriber};
use futures_util::StreamExt;
use rpc_core::transport::ReplySink;
use rpc_core::{ContentType, Envelope, ErrorKind, Header, Kind, Name, Status, TransportError};
use tokio::task::JoinHandle;

use crate::headers::{self, Arrival};
use crate::transport::{Shared, lock};

/// Keeps an inbox open; dropping it unsubscribes.
pub struct NatsInbox {
    shared: Arc<Shared>,
    id: u64,
    /// `_INBOX.<unique>`; replies come to `<subject>.<call token>`
    /// ([`call_token`](crate::call_token)).
    subject: String,
    malformed: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl NatsInbox {
    /// The reply subject of the call whose header is `header`
    /// ([`headers::reply_subject`]): its last token states the call's
    /// codec, correlation id, deadline and trace.
    pub(crate) fn reply_subject(&self, header: &Header) -> Subject {
        Subject::from(headers::reply_subject(&self.subject, header))
    }

    /// Replies dropped because their headers or subject could not be read.
    pub fn malformed_replies(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

impl std::fmt::Debug for NatsInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsInbox")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Drop for NatsInbox {
    fn drop(&mut self) {
        // Dropping the subscriber (with the task) unsubscribes.
        self.task.abort();
        lock(&self.shared.events.inboxes).remove(&self.id);
    }
}

/// Subscribes `<new inbox>.*` and starts pushing what arrives into `sink`.
pub(crate) async fn open(
    shared: Arc<Shared>,
    sink: ReplySink,
) -> Result<NatsInbox, TransportError> {
    shared.connected().await?;
    let subject = short_inbox(&shared.client.new_inbox());
    let subscriber = shared
        .client
        .subscribe(format!("{subject}.>"))
        .await
        .map_err(|e| TransportError::protocol("subscribe to the reply inbox", e))?;
    let id = shared.next_id();
    lock(&shared.events.inboxes).insert(id, sink.clone());
    let malformed = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(run(subscriber, sink, malformed.clone()));
    Ok(NatsInbox {
        shared,
        id,
        subject,
        malformed,
        task,
    })
}

/// `inbox` (`<inbox prefix>.<NUID>`, async-nats' own) with its 22-character
/// NUID made 11 characters: 64 bits of it hashed with this process' random
/// SipHash key, in base64url. Every reply subject holds it, and nats-server's
/// cost per call grows with the subject's length; 64 random bits keep
/// inboxes apart (and two that met would still drop each other's replies,
/// whose correlation ids pair no call of theirs).
fn short_inbox(inbox: &str) -> String {
    use std::hash::BuildHasher;
    let Some((prefix, nuid)) = inbox.rsplit_once('.') else {
        return inbox.to_owned();
    };
    let bits = std::collections::hash_map::RandomState::new().hash_one(nuid);
    let mut subject = Vec::with_capacity(prefix.len() + 12);
    subject.extend_from_slice(prefix.as_bytes());
    subject.push(b'.');
    crate::call_token::push_u64(&mut subject, bits);
    // Text and base64url only: never an error.
    String::from_utf8(subject).unwrap_or_else(|_| inbox.to_owned())
}

async fn run(mut subscriber: Subscriber, sink: ReplySink, malformed: Arc<AtomicU64>) {
    while let Some(message) = subscriber.next().await {
        match read(message) {
            Some(envelope) => sink.deliver(envelope),
            None => {
                malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    // The subscription ends only when the client is drained or closed.
    sink.closed();
}

/// The envelope a message on the inbox stands for; `None` if unreadable.
fn read(message: Message) -> Option<Envelope> {
    let Message {
        subject,
        headers,
        payload,
        status,
        ..
    } = message;
    match status {
        None | Some(StatusCode::OK) => {}
        // The server's answer to a request nobody is subscribed for. It
        // carries none of our headers: the subject says which call it was.
        Some(StatusCode::NO_RESPONDERS) => {
            let id = headers::correlation_id(&subject)?;
            return Some(no_route(id));
        }
        Some(other) => {
            tracing::debug!(status = %other, "dropped a status message on a reply inbox");
            return None;
        }
    }
    match headers::decode(
        &subject,
        None,
        headers.as_ref(),
        // A copy of the payload alone: `Vec::from` would take over the whole
        // read buffer it is a slice of when it holds the last reference,
        // which async-nats then allocates again (and large) for the next read.
        payload.to_vec(),
        Arrival::Inbox,
    ) {
        Ok(envelope) => Some(envelope),
        Err(error) => {
            tracing::debug!(%error, "dropped an unreadable reply");
            None
        }
    }
}

/// The reply that stands for "no responders": the client turns its status
/// into `NoRoute`.
fn no_route(correlation_id: u64) -> Envelope {
    let none = Name::from_static("");
    let mut header = Header::request(none.clone(), none, ContentType::Json);
    header.kind = Kind::Reply;
    header.correlation_id = correlation_id;
    header.status = Status::Error {
        kind: ErrorKind::NoSuchService,
        message: "no responders on NATS".into(),
    };
    Envelope {
        header,
        body: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_inbox_keeps_the_prefix_and_differs_per_nuid() {
        let a = short_inbox("_INBOX.cgEtn4hF7qIq2s9rOgZKHT");
        let b = short_inbox("_INBOX.cgEtn4hF7qIq2s9rOgZKLt");
        for inbox in [&a, &b] {
            let (prefix, unique) = inbox.rsplit_once('.').unwrap();
            assert_eq!(prefix, "_INBOX");
            assert_eq!(unique.len(), 11, "{inbox}");
            assert!(!unique.starts_with('~'), "{inbox}");
        }
        assert_ne!(a, b);
        assert_eq!(short_inbox("my.inboxes.x").split('.').count(), 3);
    }
}
