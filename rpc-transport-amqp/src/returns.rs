//! Returned requests: the broker hands a `mandatory` message it could not
//! route back with a confirm, and the call it was fails with `NoRoute`.

use lapin::message::BasicReturnMessage;
use rpc_core::envelope::Status;
use rpc_core::transport::ReplySink;
use rpc_core::{Envelope, ErrorKind, Name, RpcError};

use crate::properties::{self, Arrival};
use crate::shared::{DIRECT_REPLY_TO, Shared};

/// Fails the request `returned` was (the broker could not route it: no
/// queue for its service) with a `NoSuchService` reply, which the client
/// reads as `NoRoute`, through the inbox its `reply_to` names, or `sink`
/// for direct reply-to (such a channel carries one inbox's requests only).
/// Returns whether `returned` was a request; a oneway call has nobody to
/// tell here.
pub(crate) fn fail_returned_call(
    shared: &Shared,
    returned: &BasicReturnMessage,
    sink: Option<&ReplySink>,
) -> bool {
    let props = &returned.delivery.properties;
    let Some(reply_to) = props.reply_to() else {
        return false;
    };
    let Some(id) = props
        .correlation_id()
        .as_ref()
        .and_then(|id| properties::parse_correlation_id(id.as_str()).ok())
    else {
        return false;
    };
    // A reply queue names its inbox; a direct reply-to request left on its
    // inbox's own channel, so `sink` is its inbox. A reply queue without an
    // inbox any more has nobody waiting.
    let inbox = shared.inbox_with_queue(reply_to.as_str());
    let sink = match (&inbox, sink) {
        (Some(entry), _) => &entry.sink,
        (None, Some(sink)) if reply_to.as_str().starts_with(DIRECT_REPLY_TO) => sink,
        (None, _) => return true,
    };
    let queue = returned.delivery.routing_key.as_str();
    let service = queue
        .strip_prefix(shared.config.queue_prefix.as_str())
        .unwrap_or(queue);
    let name = Name::from(service.to_owned());
    match properties::decode(props, Vec::new(), Arrival::RequestQueue { service: &name }) {
        Ok(request) => {
            let status = Status::Error {
                kind: ErrorKind::NoSuchService,
                message: format!("no queue `{queue}`"),
            };
            let header = request.header.reply(status);
            sink.deliver(Envelope {
                header,
                body: Vec::new(),
            });
        }
        // Our own properties always decode; a foreign publisher's on this
        // channel cannot be, but its call still ends.
        Err(_) => sink.fail(
            id,
            RpcError::NoRoute {
                service: service.to_owned(),
            },
        ),
    }
    true
}
