//! Core mode's answer to "does anyone serve this?" for oneway calls.
//!
//! A core publish without a reply subject to a subject nobody subscribes is
//! dropped without a word. So a oneway call goes out with a reply subject
//! on this transport's oneway inbox (and `x-rpc-kind: oneway`, so servers do
//! not answer it), followed by a marker message to the inbox itself. The
//! server handles both in order: if nobody took the call, its "no
//! responders" status arrives before the marker. One round trip per oneway
//! call buys `NoRoute` instead of silence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_nats::{Client, StatusCode};
use futures_util::StreamExt;
use rpc_core::TransportError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::headers;
use crate::transport::lock;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<bool>>>>;

/// The oneway inbox: `_INBOX.<unique>.*`.
pub(crate) struct OnewayInbox {
    subject: String,
    waiters: Waiters,
    task: JoinHandle<()>,
}

impl Drop for OnewayInbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OnewayInbox {
    pub(crate) async fn open(client: &Client) -> Result<Self, TransportError> {
        let subject = client.new_inbox();
        let mut subscriber = client
            .subscribe(format!("{subject}.*"))
            .await
            .map_err(|e| TransportError::protocol("subscribe to the oneway inbox", e))?;
        let waiters: Waiters = Arc::default();
        let table = waiters.clone();
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                let token = message.subject.rsplit('.').next().unwrap_or("");
                // `<id>` is the call (only its "no responders" comes back
                // here), `<id>m` the marker.
                let (digits, served) = match token.strip_suffix('m') {
                    Some(digits) => (digits, true),
                    None => (token, message.status != Some(StatusCode::NO_RESPONDERS)),
                };
                let Some(id) = headers::correlation_id(digits) else {
                    continue;
                };
                if let Some(waiter) = lock(&table).remove(&id) {
                    let _ = waiter.send(served);
                }
            }
        });
        Ok(OnewayInbox {
            subject,
            waiters,
            task,
        })
    }

    /// Registers call `id`: its reply subject, its marker subject, and what
    /// resolves to whether anyone took it.
    pub(crate) fn register(&self, id: u64) -> (String, String, oneshot::Receiver<bool>) {
        let (sender, receiver) = oneshot::channel();
        lock(&self.waiters).insert(id, sender);
        (
            format!("{}.{id}", self.subject),
            format!("{}.{id}m", self.subject),
            receiver,
        )
    }

    /// Forgets call `id` (its send failed).
    pub(crate) fn forget(&self, id: u64) {
        lock(&self.waiters).remove(&id);
    }
}
