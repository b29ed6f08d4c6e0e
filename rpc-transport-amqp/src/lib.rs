//! RabbitMQ (AMQP 0-9-1) transport for `rpc-core`, on lapin.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rpc_core::TransportError> {
//! use rpc_transport_amqp::AmqpTransport;
//!
//! // Defaults: default exchange, durable classic queues, publisher confirms,
//! // an exclusive reply queue per client, 10 s heartbeats.
//! let transport = AmqpTransport::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
//!
//! // Or with options:
//! let transport = AmqpTransport::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .queue_prefix("staging.")          // queues become `staging.<service>`
//!     .connection_name("billing-api")
//!     .connect()
//!     .await?;
//! // Then hand it to `rpc_core::Client::new(transport.clone())` and
//! // `rpc_core::Server::builder(transport)`.
//! # Ok(()) }
//! ```
//!
//! # Topology
//!
//! - A service `calc` gets a request queue `<prefix>calc` (classic, or quorum
//!   with [`QueueKind::Quorum`]) that dead-letters into `<prefix>calc.dlq`.
//!   Servers declare both (idempotently) when they start; several servers of
//!   one service consume the same queue and share the load.
//! - Requests go to the default exchange with the queue name as routing key,
//!   or to a durable direct exchange of your choice
//!   ([`exchange`](AmqpTransportBuilder::exchange)) bound under the queue name.
//! - Replies go to the caller's reply address through the default exchange:
//!   an exclusive, auto-deleted queue `<prefix>reply.<instance>.<n>` per
//!   client (the default, [`ReplyMode::ExclusiveQueue`]) or RabbitMQ's
//!   direct reply-to ([`ReplyMode::DirectReplyTo`]).
//! - The envelope maps onto AMQP properties as described in `docs/wire.md`;
//!   the body is the codec payload alone.
//!
//! # Several brokers
//!
//! Give the builder a comma-separated list of URLs
//! (`AmqpTransport::builder("amqp://node-a,amqp://node-b")`) or
//! [`urls`](AmqpTransportBuilder::urls): the transport connects to the first
//! that answers, and after a connection loss tries the next one in the list
//! first, going round the list with the backoff between rounds. Servers and
//! clients alike; [`AmqpTransport::connected_broker`] says where it is.
//!
//! # Options
//!
//! See [`AmqpTransportBuilder`]: exchange, queue prefix, queue kind,
//! durability, persistent messages, publisher confirms, reply mode,
//! heartbeat, connection name, connect timeout, reconnect backoff, and a CA
//! bundle for `amqps://` (TLS through rustls with ring; certificates are
//! always verified against the Mozilla roots plus the bundle you give). Prefetch is not
//! a transport option: a server's concurrency
//! (`Server::builder(t).concurrency(n)`) becomes the prefetch of its consumer.
//!
//! # Delivery guarantees
//!
//! - **Requests are at-least-once** by default: the server acknowledges a
//!   request only after its reply has been published, on the channel the
//!   request came on: the broker handles a channel's methods in order, so it
//!   has routed the reply before it takes the ack, and replies are published
//!   without confirms (docs/reliability.md). A server that dies mid-call
//!   leaves the request to be redelivered to another server, so a handler
//!   can run twice.
//! - **`#[rpc(at_most_once)]` methods** are acknowledged before they run
//!   (the server runtime does that from the method's descriptor): a crash
//!   mid-call loses the request, it never runs twice.
//! - **Failures dead-letter**: a request whose handler panicked or that
//!   could not be decoded is rejected into `<prefix><service>.dlq`, never
//!   requeued into a loop. Requests whose deadline passed while queued
//!   expire there too (the `expiration` property is the remaining budget).
//! - **No route is fast**: with publisher confirms (the default) requests are
//!   published `mandatory`, and a call to a service without a queue fails
//!   with `NoRoute` in about a millisecond. Without confirms there is no such
//!   signal and the call ends by its deadline.
//! - **A call waits for its reply, not its confirm**: the reply proves the
//!   broker took the request. lapin's write of the request and the confirm
//!   are heard off the call path and end the call only if they say
//!   otherwise: a return is `NoRoute`, a nack or a refused write a
//!   transport error, a connection lost first `ConnectionLost`; after the
//!   reply they change nothing. Oneway calls wait for theirs.
//! - **Foreign clients**: any correlation id (up to 255 bytes) comes back
//!   verbatim; error replies to JSON calls carry a JSON body; a reply that
//!   cannot be read fails its call at once with a decode error; a queue
//!   declared by someone else with other arguments is served anyway, with
//!   a warning (docs/wire.md).
//! - **Replies are at-most-once**: reply consumers do not acknowledge, and a
//!   reply that finds no client is dropped. A duplicate or late reply is
//!   dropped and counted by the client.
//!
//! # Connection loss
//!
//! The transport runs its own recovery (lapin's auto-recovery stays off):
//! when the connection drops, every call in flight fails at once with
//! `ConnectionLost` (it may or may not have run), then the transport
//! reconnects with exponential backoff and jitter (50 ms doubling up to a
//! 1 s cap, each wait drawn from the upper half of its value), re-declares the reply queues (their
//! names are chosen by the client, so the same names come back) and the
//! request queues, and resumes consuming on every serve stream. A publish
//! or confirm the loss interrupts is `ConnectionLost` too. Calls made while
//! reconnecting wait for the new connection up to their own deadline; if
//! none comes they fail with `NotSent`: they never left, so a retry is safe.
//! Requests a server had received but not acknowledged are redelivered by the
//! broker. A consumer the broker cancels (its queue was deleted) is
//! re-established the same way.
//!
//! # Layout
//!
//! Layers, each importing only from the layers below it:
//!
//! ```text
//! top      transport.rs (AmqpTransport, the Transport impl)  builder.rs (options, connect)
//!             |
//! middle   supervisor.rs (reconnect loop) --> inbox.rs (reply inboxes)
//!          requests.rs (request streams, settlement) --> topology.rs (what a service declares)
//!          publish.rs (calls and replies out)      backoff.rs (the one retry loop)
//!          confirms.rs (requests' confirms, heard off the call path)
//!          settlements.rs (requests settled behind their replies' writes)
//!             |
//! bottom   shared.rs (state every clone and task shares: connection state,
//!                     inboxes, declared queues; small helpers)
//!          returns.rs (a returned request fails its own call)
//!          session.rs (one connection generation, a consumer subscription)
//!          properties.rs (envelope <-> AMQP properties; see docs/wire.md)
//!          config.rs (options as read)   error.rs (lapin errors -> TransportError)
//! ```
//!
//! No lapin type is part of the API: errors wrap lapin's as their source
//! only. The properties codec is public, hidden from these docs, behind the
//! `fuzzing` feature, for the fuzzer and the decoder tests.
//!
//! # Cleaning up (tests)
//!
//! Give each test its own [`queue_prefix`](AmqpTransportBuilder::queue_prefix)
//! and call [`AmqpTransport::cleanup`] at the end: it deletes every queue
//! the transport declared and closes it.

// Bottom: options, errors, the wire codec, one connection generation, and
// the state everything shares.
mod config;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod properties;
#[cfg(not(feature = "fuzzing"))]
#[allow(
    unreachable_pub,
    reason = "public only behind the `fuzzing` feature, for the fuzzer and the decoder tests"
)]
mod properties;
mod returns;
mod session;
mod shared;
// Middle: each imports only the bottom (and `backoff`).
mod backoff;
mod confirms;
mod handoff;
mod inbox;
mod publish;
mod requests;
mod settlements;
mod supervisor;
mod topology;
// Top: the public face.
mod builder;
mod transport;

pub use builder::AmqpTransportBuilder;
pub use config::{DEFAULT_DELIVERY_LIMIT, QueueKind, ReplyMode};
pub use inbox::InboxGuard;
pub use requests::AmqpRequests;
pub use transport::AmqpTransport;
