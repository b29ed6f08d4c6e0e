//! NATS transport for `rpc-core`, on async-nats.
//!
//! ```no_run
//! # async fn demo() -> Result<(), rpc_core::TransportError> {
//! use rpc_transport_nats::{Mode, NatsTransport};
//!
//! // Defaults: core request/reply, no subject prefix.
//! let transport = NatsTransport::connect("nats://127.0.0.1:4222").await?;
//!
//! // Or with options:
//! let transport = NatsTransport::builder("nats://127.0.0.1:4222")
//!     .subject_prefix("staging.")     // subjects become `staging.<service>.<method>`
//!     .connection_name("billing-api")
//!     .mode(Mode::Durable)            // JetStream work queues, at-least-once
//!     .connect()
//!     .await?;
//! // Then hand it to `rpc_core::Client::new(transport.clone())` and
//! // `rpc_core::Server::builder(transport)`.
//! # Ok(()) }
//! ```
//!
//! # Subjects
//!
//! - A method's requests go to `<prefix><service>.<method>`; a service's
//!   servers subscribe `<prefix><service>.*` in the queue group
//!   `<prefix><service>`, so each request reaches one of them. One subject
//!   per method (rather than per service with the method in a header) is
//!   what lets a plain NATS client call a method by name:
//!   `nats req calc.add '{"a":2,"b":3}'`.
//! - Replies go to the caller's inbox, `_INBOX.<unique>.<call token>` (the
//!   unique part 11 characters, half of async-nats' own: every reply
//!   subject holds it)
//!   ([`headers::reply_subject`], [`call_token`]): one wildcard subscription
//!   per client, and the correlation id is in the subject's last token, so
//!   even NATS' own "no responders" status (which carries none of our
//!   headers) finds its call. The call token also states what the call says
//!   about itself: its codec (so neither request nor reply needs a
//!   `Content-Type`), its deadline and its trace, so that a request needs no
//!   header at all (a plain `PUB`, which async-nats writes and reads far
//!   more cheaply than one with headers), in a few dozen characters (the
//!   server's cost per call grows with the reply subject's length). A
//!   reply goes to the reply subject cut after the call token's id
//!   ([`call_token::reply_target`]): the deadline and the trace are the
//!   request's alone, and the caller's wildcard subscription takes both.
//! - The envelope's other fields (an error, metadata) are NATS headers
//!   ([`headers`], and `docs/wire.md`); the body is the codec payload alone.
//!
//! # Modes and guarantees
//!
//! - **Core** ([`Mode::Core`], the default): a request to a service nobody
//!   serves fails at once with `NoRoute` (NATS' "no responders"). Nothing is
//!   stored: a request whose server dies mid-call is lost, and its caller
//!   gets `ConnectionLost` (its own connection dropped) or its deadline.
//!   A oneway call costs a round trip, so that one to nobody fails with
//!   `NoRoute` too. Servers of one service
//!   share requests at random (NATS queue groups), without credit: a busy
//!   server queues what it gets.
//! - **Durable** ([`Mode::Durable`], JetStream): requests wait in a
//!   work-queue stream per service; a durable pull consumer hands each to one
//!   server, which pulls only as many as it has free slots. A request is
//!   acknowledged after its reply is sent (at-least-once: a server that dies
//!   mid-call leaves it to be delivered again after the ack wait);
//!   `#[rpc(at_most_once)]` methods are acknowledged, and confirmed by the
//!   server, before they run. After [`max_deliveries`](NatsTransportBuilder::max_deliveries)
//!   deliveries a request is answered with an error and moved to
//!   `<prefix>dead.<service>.<method>` (stream `RPC_<prefix><service>_DEAD`),
//!   as are requests a server refuses. A request whose deadline passed while
//!   it waited is answered `Timeout` and not run. A call to a service whose
//!   stream does not exist fails with `NoRoute`.
//!
//! # Connection loss
//!
//! async-nats reconnects by itself (here with a short, capped, jittered
//! backoff) and re-subscribes every subscription, so serve streams and
//! inboxes resume on their own. When the connection drops, every call in
//! flight fails at once with `ConnectionLost`: core NATS keeps no reply for
//! a subscriber that is away. Sends made while reconnecting wait up to the
//! connect timeout for the connection.
//!
//! # Layout
//!
//! - [`NatsTransport`] (`transport.rs`): the `Transport` impl, connection
//!   options and events.
//! - [`NatsTransportBuilder`], [`Mode`] (`config.rs`): options.
//! - [`headers`]: the envelope <-> NATS message mapping.
//! - `inbox.rs`: reply inboxes; `requests.rs`: serve streams (core);
//!   `durable.rs`: JetStream streams, pulling and settlement.

pub mod call_token;
mod config;
mod durable;
mod error;
pub mod headers;
mod inbox;
mod oneway;
mod requests;
mod transport;

pub use config::{Mode, NatsTransportBuilder};
pub use inbox::NatsInbox;
pub use requests::NatsRequests;
pub use transport::NatsTransport;

/// The async-nats version this crate is built on.
pub use async_nats;
