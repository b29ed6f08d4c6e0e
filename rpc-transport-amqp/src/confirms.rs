//! The broker's word on requests, heard off the call path.
//!
//! A request's reply proves the broker took the request, so a call does not
//! wait for its confirm: [`publish_to`](Shared::publish_to) hands it here and
//! the call goes on to wait for its reply. Only a confirm that says
//! something else fails the call, through its inbox and with the error the
//! awaited confirm would have given: a return (`NoRoute`), a nack, a lost
//! connection (`ConnectionLost`). A call that has its reply already is done;
//! what its confirm says later finds no call to fail.
//!
//! One task per transport awaits the confirms in the order they were
//! published: the broker confirms a channel's messages in that order, often
//! many with one `multiple` ack, so the task wakes once per batch and finds
//! the confirms behind the first already settled. (Confirms of different
//! channels, direct reply-to's, may wait behind each other: by a round
//! trip to the broker at most, or until a lost connection fails them all.)

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use lapin::Confirmation;
use rpc_core::RpcError;
use tokio::sync::mpsc;

use crate::error::{nacked, protocol};
use crate::returns::fail_returned_call;
use crate::shared::{Shared, Unconfirmed};

/// Awaits the confirms of requests as [`Shared::track`] hands them over,
/// until the transport closes.
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
            // Only an empty queue waits for what is handed over: behind a
            // confirm still to come, a new one can wait for it too (the
            // broker confirms in publish order), so handing one over wakes
            // this task only when it has nothing else to wait for.
            if waiting.is_empty() {
                match handed.poll_recv(cx) {
                    Poll::Ready(Some(unconfirmed)) => waiting.push_back(unconfirmed),
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => return Poll::Pending,
                }
            }
            while let Ok(unconfirmed) = handed.try_recv() {
                waiting.push_back(unconfirmed);
            }
            settle_ready(&shared, &mut waiting, cx);
            if !waiting.is_empty() {
                return Poll::Pending;
            }
        }
    })
    .await;
}

/// Settles the confirms at the front of `waiting` that the broker has given,
/// leaving the first one still awaited registered with `cx`.
fn settle_ready(shared: &Shared, waiting: &mut VecDeque<Unconfirmed>, cx: &mut Context<'_>) {
    while let Some(front) = waiting.front_mut() {
        let Poll::Ready(outcome) = Pin::new(&mut front.confirm).poll(cx) else {
            return;
        };
        if let Some(settled) = waiting.pop_front() {
            settle(shared, &settled, outcome);
        }
    }
}

/// Fails `unconfirmed`'s call if its confirm says the request did not get
/// through. A return names its own call (lapin hands it with whichever
/// confirm of its batch comes first, not necessarily its own).
fn settle(shared: &Shared, unconfirmed: &Unconfirmed, outcome: lapin::Result<Confirmation>) {
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
                let error = protocol("publish confirm", error);
                sink.fail(unconfirmed.correlation, RpcError::from(error));
            } else {
                // Also failed by the supervisor if the call was in flight
                // when it noticed the loss; a second word finds no call.
                sink.call_lost(unconfirmed.correlation);
            }
        }
    }
}
