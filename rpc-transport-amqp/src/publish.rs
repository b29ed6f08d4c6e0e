//! Publishing calls and replies: envelope to AMQP properties, one publish,
//! the broker's word on it.

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation, PublisherConfirm};
use rpc_core::envelope::Status;
use rpc_core::{Address, ContentType, Envelope, ErrorKind, TransportError};

use crate::confirms;
use crate::error::{nacked, protocol};
use crate::properties;
use crate::returns::fail_returned_call;
use crate::session::Session;
use crate::shared::{DIRECT_REPLY_TO, InboxEntry, Publishing, Shared, Unconfirmed, Written, short};

impl Shared {
    /// Publishes a request (replies go to `inbox`) or, without an inbox, a
    /// oneway call, to the service its header names.
    pub(crate) async fn publish_call(
        &self,
        inbox: Option<&Arc<InboxEntry>>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.publish_to(inbox, envelope, None).await
    }

    /// Publishes a call to its service's queue, or with `broadcast` to that
    /// exchange under the service's name.
    pub(crate) async fn publish_to(
        &self,
        inbox: Option<&Arc<InboxEntry>>,
        envelope: Envelope,
        broadcast: Option<String>,
    ) -> Result<(), TransportError> {
        let Envelope { header, body } = envelope;
        let session = self.session_to_send(header.deadline_ms).await?;
        let config = &self.config;
        // Requests expecting a direct reply-to answer must leave on the
        // channel that consumes the answers (a broker rule).
        let (reply_to, direct_channel) = match inbox {
            None => (None, None),
            Some(entry) => match &entry.queue {
                Some(queue) => (Some(queue.as_str()), None),
                None => (
                    Some(DIRECT_REPLY_TO),
                    Some(entry.direct_channel(&session, self).await?),
                ),
            },
        };
        let mut props: BasicProperties = properties::encode(&header, reply_to)
            .map_err(|e| TransportError::protocol("map envelope to AMQP properties", e))?;
        // The broker refuses a user_id other than the connection's user,
        // which is what lets a server trust it as the caller.
        props = props.with_user_id(session.user.clone());
        if config.persistent {
            props = props.with_delivery_mode(2);
        }
        let to = header.service.as_str();
        // Calls must reach a queue: `mandatory`, so a service without one
        // comes back as `NoRoute`. Broadcasts need not reach anyone.
        let (exchange, routing_key, mandatory) = match &broadcast {
            Some(exchange) => (exchange.as_str(), short(to)?, false),
            None => (
                config.exchange.as_str(),
                short(&config.request_queue(to))?,
                true,
            ),
        };
        let Some(entry) = inbox.filter(|_| mandatory) else {
            // A oneway call or a broadcast: no reply will prove anything,
            // so the call waits for the broker's word.
            let channel = direct_channel.as_deref().unwrap_or(&session.publisher);
            let confirm = publish(
                &session,
                channel,
                exchange,
                routing_key,
                mandatory,
                &body,
                props,
            )
            .await?;
            return self.settle(&session, confirm.await, to);
        };
        // A request: its reply proves the broker took it, so the call waits
        // for that alone. lapin queues the frames on the first poll; the
        // write and the confirm are the confirm task's to await, and it
        // fails the call if either says otherwise (confirms.rs). Polled with
        // a waker that does nothing: the confirm task registers its own, so
        // lapin's I/O thread never wakes the calling task for this publish.
        let exchange = short(exchange)?;
        let on = session.clone();
        let mut publishing: Publishing = Box::pin(async move {
            let channel = direct_channel.as_deref().unwrap_or(&on.publisher);
            let options = BasicPublishOptions {
                mandatory,
                immediate: false,
            };
            channel
                .basic_publish(exchange, routing_key, options, &body, props)
                .await?
                .await
        });
        let mut queued = Context::from_waker(Waker::noop());
        let poll = publishing.as_mut().poll(&mut queued);
        let unconfirmed = Unconfirmed {
            publishing,
            inbox: entry.clone(),
            correlation: header.correlation_id,
            session,
        };
        match poll {
            // Refused before it left (a closed channel), or written and
            // confirmed already (the calling thread was descheduled while
            // the broker answered): settled as the confirm task would, so a
            // return reaches its call through its inbox whichever way the
            // outcome came.
            Poll::Ready(outcome) => confirms::settle(self, &unconfirmed, outcome),
            Poll::Pending => self.track(unconfirmed),
        }
        Ok(())
    }

    /// The broker's word on a oneway call or broadcast published to `to`
    /// (with confirms; without, it is there once written). A returned
    /// request that lapin hands with this message's confirm (one `multiple`
    /// ack settles both) fails its own call, not this message.
    fn settle(
        &self,
        session: &Session,
        outcome: lapin::Result<Confirmation>,
        to: &str,
    ) -> Result<(), TransportError> {
        match outcome {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => Ok(()),
            Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => {
                if fail_returned_call(self, &returned, None) {
                    Ok(())
                } else {
                    Err(TransportError::NoRoute {
                        address: to.to_owned(),
                    })
                }
            }
            Ok(Confirmation::Nack(None)) => Err(nacked()),
            Err(e) => Err(lost_or(session, "publish", e)),
        }
    }
}

/// Queues a reply to the reply queue `to` (or a direct reply-to name)
/// through the default exchange, under `correlation`, the request's
/// AMQP correlation id as it arrived (echoed verbatim, whatever text a
/// foreign client chose), on `channel`: the channel the request was
/// delivered on, which is not in confirm mode. Not `mandatory`: replies
/// to a client that is gone are simply dropped by the broker.
///
/// Returns once lapin has queued the reply's frames, with lapin's write
/// of it still to come: the request's settlement waits for that write
/// (settlements.rs), so the broker, which handles a channel's methods in
/// order, routes the reply before it takes the ack, and no confirm is
/// awaited (docs/reliability.md, "Replies and their acks"). A channel
/// that is gone fails at once: its unacked requests go back to the queue,
/// and the server's cache answers them again.
pub(crate) fn queue_reply(
    session: &Session,
    channel: &Arc<lapin::Channel>,
    to: &Address,
    correlation: Option<ShortString>,
    envelope: Envelope,
) -> Result<Option<Written>, TransportError> {
    let Envelope { header, mut body } = envelope;
    let mut props: BasicProperties = properties::encode(&header, None)
        .map_err(|e| TransportError::protocol("map envelope to AMQP properties", e))?;
    if let Some(id) = correlation {
        props = props.with_correlation_id(id);
    }
    if let (Status::Error { kind, message }, ContentType::Json) =
        (&header.status, header.content_type)
        && body.is_empty()
    {
        body = json_error_body(*kind, message);
    }
    check_reply_size(body.len())?;
    let routing_key = short(to.as_str())?;
    let channel = channel.clone();
    let mut written: Written = Box::pin(async move {
        channel
            .basic_publish(
                ShortString::from(""),
                routing_key,
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await?
            // Not in confirm mode: ready at once, and awaited rather than
            // dropped (see `publish`).
            .await
            .map(drop)
    });
    // lapin queues the frames on the first poll. A waker that does
    // nothing: the settler registers its own, so lapin's I/O thread never
    // wakes the serving task for this write.
    match written
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(Ok(())) => Ok(None),
        Poll::Ready(Err(e)) => Err(lost_or(session, "publish reply", e)),
        Poll::Pending => Ok(Some(written)),
    }
}

/// RabbitMQ's default `max_message_size` (128 MiB).
const BROKER_MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// Refuses a reply the broker would refuse. The broker answers a message
/// over its limit by closing the channel it came on, which for a reply is
/// the request's channel: its requests would go back to the queue, be
/// answered again from the server's cache and refused again, until their
/// deadlines. Refused here, the reply is a failed send, which the server
/// retries a bounded number of times.
fn check_reply_size(size: usize) -> Result<(), TransportError> {
    if size > BROKER_MAX_MESSAGE {
        return Err(TransportError::TooLarge {
            size,
            limit: BROKER_MAX_MESSAGE,
        });
    }
    Ok(())
}

/// The body of an error reply to a JSON call, `{"error": {"kind": ..,
/// "message": ..}}` (docs/wire.md), so a client that reads only bodies sees
/// the error too. Our own clients read the status headers and ignore it.
pub(crate) fn json_error_body(kind: ErrorKind, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": { "kind": kind.as_str(), "message": message } });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Publishes one message; resolves once lapin has written it, with the
/// broker's confirm still to come.
async fn publish(
    session: &Session,
    channel: &lapin::Channel,
    exchange: &str,
    routing_key: ShortString,
    mandatory: bool,
    body: &[u8],
    props: BasicProperties,
) -> Result<PublisherConfirm, TransportError> {
    let options = BasicPublishOptions {
        mandatory,
        immediate: false,
    };
    // Resolves once lapin has written the message. A server acks a
    // request after sending its reply, and lapin writes method frames
    // (acks) ahead of queued publishes: without this wait the ack could
    // reach the broker before the reply.
    //
    // The confirm is awaited even without confirm mode (it is ready at
    // once then): a dropped PublisherConfirm is parked inside lapin until
    // `wait_for_confirms`.
    channel
        .basic_publish(short(exchange)?, routing_key, options, body, props)
        .await
        .map_err(|e| lost_or(session, "publish", e))
}

/// The error of a failed publish or confirm: `ConnectionLost` when the
/// connection went (the message may or may not have reached the broker),
/// whatever lapin's error says, else the operation's own error.
fn lost_or(session: &Session, operation: &'static str, error: lapin::Error) -> TransportError {
    session.check();
    if !session.connection.status().connected() {
        return TransportError::ConnectionLost;
    }
    protocol(operation, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_over_the_brokers_limit_is_refused_before_it_is_published() {
        assert!(check_reply_size(BROKER_MAX_MESSAGE).is_ok());
        let refused = check_reply_size(BROKER_MAX_MESSAGE + 1).unwrap_err();
        assert!(
            matches!(refused, TransportError::TooLarge { size, limit }
                if size == BROKER_MAX_MESSAGE + 1 && limit == BROKER_MAX_MESSAGE),
            "{refused:?}"
        );
    }
}
