//! Telling a server that a caller gave up: a call future dropped before its
//! answer sends a [`Kind::Cancel`] for the call.
//!
//! The cancel is a oneway message to the service ([`Transport::send_oneway`])
//! naming the call by correlation id and deadline. The server that runs the
//! call drops its handler's future. Best effort: the cancel is sent from a
//! task of its own after the caller has moved on, may be lost with the
//! connection, and on a fabric whose servers compete for a service's
//! requests it may reach another server than the one running the call,
//! which then finds nothing to cancel (docs/ARCHITECTURE.md, "Cancellation").

use tokio::time::Instant;

use crate::clock;
use crate::envelope::{Envelope, Header, Kind};
use crate::name::Name;
use crate::transport::Transport;

/// What names a call in its cancel.
#[derive(Debug)]
struct SentCall {
    service: &'static str,
    method: &'static str,
    correlation_id: u64,
    deadline_ms: u64,
    /// The call's deadline on this side: a cancel still unsent then is moot.
    deadline: Instant,
}

/// Sends the cancel of a sent call when dropped, unless
/// [`disarm`](CancelOnDrop::disarm)ed first (the call got its answer).
pub(crate) struct CancelOnDrop<'a, T: Transport> {
    transport: &'a T,
    call: Option<SentCall>,
}

impl<'a, T: Transport> CancelOnDrop<'a, T> {
    /// Armed for the request `header` (to `service.method`), whose
    /// deadline here is `deadline`.
    pub(crate) fn new(
        transport: &'a T,
        service: &'static str,
        method: &'static str,
        header: &Header,
        deadline: Instant,
    ) -> Self {
        CancelOnDrop {
            transport,
            call: Some(SentCall {
                service,
                method,
                correlation_id: header.correlation_id,
                deadline_ms: header.deadline_ms,
                deadline,
            }),
        }
    }

    /// The call ended with an answer (or a failed send): nothing to cancel.
    pub(crate) fn disarm(mut self) {
        self.call = None;
    }
}

impl<T: Transport> Drop for CancelOnDrop<'_, T> {
    fn drop(&mut self) {
        let Some(call) = self.call.take() else {
            return;
        };
        // Outside a runtime (a future dropped after its runtime) there is
        // nothing to send with; the server's deadline ends the handler.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let transport = self.transport.clone();
        runtime.spawn(async move {
            let send = transport.send_oneway(cancel_envelope(&call));
            match tokio::time::timeout_at(call.deadline, send).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(error)) => tracing::debug!(%error, "could not send a cancel"),
            }
        });
    }
}

fn cancel_envelope(call: &SentCall) -> Envelope {
    let mut header = Header::request(
        Name::from_static(call.service),
        Name::from_static(call.method),
        Default::default(),
    );
    header.kind = Kind::Cancel;
    header.correlation_id = call.correlation_id;
    header.deadline_ms = call.deadline_ms;
    header.sent_at_ms = clock::now().unix_ms;
    Envelope {
        header,
        body: Vec::new(),
    }
}
