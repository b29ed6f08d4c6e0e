//! [`ZmqDelivery`]: answers one request on the connection it came in on.

use std::future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use rpc_core::transport::{DeliveryHandle, SendFuture, SettleFuture, Settled, Settlement};
use rpc_core::{Envelope, Name, TransportError};
use zeromq::SocketSend;

use crate::server::{ServerSide, Slot};
use crate::wire;

/// The handle of one delivery: the peer it came from and the request's
/// inbox tag. There is nothing to settle (no broker keeps a copy); when it
/// is dropped the stream's load goes down, and a call that got no reply is
/// reported to the client with `DONE`, which returns the credit and fails
/// the call at once instead of at its deadline.
pub(crate) struct ZmqDelivery {
    server: Arc<ServerSide>,
    slot: Arc<Slot>,
    peer: Bytes,
    /// `None` for a oneway call.
    tag: Option<Bytes>,
    service: Name,
    correlation_id: u64,
    replied: AtomicBool,
    /// Whether the reply goes to the outbox (`outbox.rs`): the request
    /// came in a batch, from a peer that takes batched replies.
    batched: bool,
}

impl ZmqDelivery {
    pub(crate) fn new(
        server: Arc<ServerSide>,
        slot: Arc<Slot>,
        peer: Bytes,
        tag: Option<Bytes>,
        request: &Envelope,
        batched: bool,
    ) -> Self {
        ZmqDelivery {
            server,
            slot,
            peer,
            tag,
            service: request.header.service.clone(),
            correlation_id: request.header.correlation_id,
            replied: AtomicBool::new(false),
            batched,
        }
    }
}

impl DeliveryHandle for ZmqDelivery {
    fn reply(&self, _request: &Envelope, reply: Envelope) -> SendFuture {
        let Some(tag) = &self.tag else {
            return Box::pin(Settled);
        };
        let bytes = match wire::encode_envelope(&reply, &self.server.config.limits) {
            Ok(bytes) => bytes,
            Err(rpc_core::FrameError::TooLarge { size, limit }) => {
                return Box::pin(future::ready(Err(TransportError::TooLarge { size, limit })));
            }
            Err(error) => {
                return Box::pin(future::ready(Err(TransportError::protocol(
                    "encode reply",
                    error,
                ))));
            }
        };
        self.replied.store(true, Ordering::Relaxed);
        // The other calls of its batch finish in this turn of the runtime
        // (or soon after), and their replies go with this one.
        if self.batched {
            self.server.outbox.push(&self.peer, tag.clone(), bytes);
            return Box::pin(Settled);
        }
        let message = wire::message(vec![
            self.peer.clone(),
            Bytes::from_static(wire::REP),
            tag.clone(),
            bytes,
        ]);
        let mut sender = self.server.sender.clone();
        let counters = self.server.counters.clone();
        Box::pin(async move {
            sender.send(message).await.map_err(|_| {
                // The client went (closed or died): nobody waits for this.
                crate::stats::Counters::bump(&counters.undeliverable_replies);
                TransportError::ConnectionLost
            })
        })
    }

    fn settle(&self, _settlement: Settlement, _delivered: &Envelope) -> SettleFuture {
        Box::pin(Settled)
    }
}

impl Drop for ZmqDelivery {
    fn drop(&mut self) {
        self.slot.load.fetch_sub(1, Ordering::Relaxed);
        if self.replied.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let server = self.server.clone();
        let frames = wire::done(
            self.tag.clone().unwrap_or_default(),
            &self.service,
            self.correlation_id,
        );
        let peer = self.peer.clone();
        runtime.spawn(async move {
            server.send_to(peer, frames).await;
        });
    }
}
