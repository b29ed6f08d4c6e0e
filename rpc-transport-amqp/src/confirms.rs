//! The broker's word on requests, heard off the call path.
//!
//! A request's reply proves the broker took the request, so a call waits
//! neither for lapin to write its request nor for the broker's confirm:
//! [`publish_to`](Shared::publish_to) has lapin queue the frames and hands
//! the rest of the publish here, and the call goes on to wait for its
//! reply. The calling task is woken once, by its reply. Only a write or a
//! confirm that says something else fails the call, through its inbox and
//! with the error the awaited publish would have given: a return
//! (`NoRoute`), a nack, a lost connection (`ConnectionLost`), a refused
//! write. A call that has its reply already is done; what its confirm says
//! later finds no call to fail.
//!
//! One task per transport awaits the publishes in the order they were
//! queued: lapin writes a channel's messages in that order and the broker
//! confirms them in that order, often many with one `multiple` ack, so the
//! task wakes once per batch and finds the publishes behind the first
//! already settled. (Publishes on different channels, direct reply-to's,
//! may wait behind each other: by a round trip to the broker at most, or
//! until a lost connection fails them all.)

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use lapin::Confirmation;
use rpc_core::RpcError;
use tokio::sync::mpsc;

use crate::error::{nacked, protocol};
use crate::handoff::take_handed;
use crate::returns::fail_returned_call;
use crate::shared::{Shared, Unconfirmed};

/// Awaits the writes and confirms of requests as [`Shared::track`] hands
/// them over, until the transport closes.
pub(crate) async fn run(shared: Arc<Shared>, mut handed: mpsc::UnboundedReceiver<Unconfirmed>) {
    let mut waiting = VecDeque::new();
    let closed = shared.closed();
    let mut closed = std::pin::pin!(closed);
    std::future::poll_fn(|cx| {
        if closed.as_mut().poll(cx).is_ready() {
            // Calls in flight have failed with `Closed`.
            return Poll::Ready(());
        }
        loop {
            match take_handed(&mut handed, &mut waiting, cx) {
                Poll::Ready(true) => {}
                Poll::Ready(false) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
            settle_ready(&shared, &mut waiting, cx);
            if !waiting.is_empty() {
                return Poll::Pending;
            }
        }
    })
    .await;
}

/// Settles the publishes at the front of `waiting` that are written and
/// confirmed, leaving the first one still awaited registered with `cx`.
fn settle_ready(shared: &Shared, waiting: &mut VecDeque<Unconfirmed>, cx: &mut Context<'_>) {
    while let Some(front) = waiting.front_mut() {
        let Poll::Ready(outcome) = front.publishing.as_mut().poll(cx) else {
            return;
        };
        if let Some(settled) = waiting.pop_front() {
            settle(shared, &settled, outcome);
        }
    }
}

/// Fails `unconfirmed`'s call if its write or confirm says the request did
/// not get through. A return names its own call (lapin hands it with whichever
/// confirm of its batch comes first, not necessarily its own). Also what
/// [`publish_to`](Shared::publish_to) does with an outcome that was there on
/// the publish's first poll.
pub(crate) fn settle(
    shared: &Shared,
    unconfirmed: &Unconfirmed,
    outcome: lapin::Result<Confirmation>,
) {
    let sink = &unconfirmed.inbox.sink;
    match outcome {
        Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {}
        Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned))) => {
            if !fail_returned_call(shared, &returned, Some(sink)) {
                tracing::debug!(
                    routing_key = %returned.delivery.routing_key,
                    "a oneway call came back unrouted with a request's confirm"
                );
            }
        }
        Ok(Confirmation::Nack(None)) => {
            sink.fail(unconfirmed.correlation, RpcError::from(nacked()))
        }
        Err(error) => {
            let session = &unconfirmed.session;
            session.check();
            if session.connection.status().connected() {
                let error = protocol("publish", error);
                sink.fail(unconfirmed.correlation, RpcError::from(error));
            } else {
                // Also failed by the supervisor if the call was in flight
                // when it noticed the loss; a second word finds no call.
                sink.call_lost(unconfirmed.correlation);
            }
        }
    }
}
