//! [`ZmqRequests`]: the stream of requests one `serve` call receives.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use rpc_core::Delivery;

use crate::server::{ServerSide, Slot};

/// Requests for one served service on this transport's ROUTER.
///
/// The router task hands each request to the least busy stream of its
/// service. Clients never send a stream more than its concurrency (their
/// credit), so requests do not pile up here. Dropping the stream withdraws
/// its credit from every client; requests it had not yielded end with
/// `DONE`, and their callers get `ConnectionLost` at once.
pub struct ZmqRequests {
    server: Arc<ServerSide>,
    slot: Arc<Slot>,
}

impl ZmqRequests {
    pub(crate) fn new(server: Arc<ServerSide>, slot: Arc<Slot>) -> Self {
        ZmqRequests { server, slot }
    }

    /// The service this stream serves.
    pub fn service(&self) -> &str {
        &self.slot.service
    }
}

impl Stream for ZmqRequests {
    type Item = Delivery;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.slot.handoff.poll_next(cx)
    }
}

impl Drop for ZmqRequests {
    fn drop(&mut self) {
        self.server.unserve(&self.slot);
        // Requests it had not yielded end with `DONE`.
        self.slot.handoff.close_and_drop_queued();
    }
}

impl fmt::Debug for ZmqRequests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZmqRequests")
            .field("service", &self.service())
            .finish_non_exhaustive()
    }
}
