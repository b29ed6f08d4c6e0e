//! Typed RPC over message transports.
//!
//! Annotate a trait with [`rpc_service`]; get a typed client and a server
//! dispatch. Every call travels as an [`Envelope`] (header plus codec
//! body) over a [`Transport`]: the in-memory one for tests and quickstarts,
//! AMQP for production. Swapping one for the other changes one line.
//!
//! ```
//! use rpc_core::{RpcError, Server, rpc_service};
//! use rpc_transport_mem::MemTransport;
//!
//! #[rpc_service(name = "calc.v1")]
//! pub trait Calculator {
//!     /// Adds two numbers.
//!     async fn add(&self, a: i64, b: i64) -> i64;
//!     /// Application errors travel back typed, inside `Ok`.
//!     async fn div(&self, a: i64, b: i64) -> Result<i64, String>;
//! }
//!
//! struct Calc;
//!
//! impl Calculator for Calc {
//!     async fn add(&self, a: i64, b: i64) -> i64 {
//!         a + b
//!     }
//!     async fn div(&self, a: i64, b: i64) -> Result<i64, String> {
//!         a.checked_div(b).ok_or_else(|| "division by zero".to_owned())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), RpcError> {
//! let transport = MemTransport::new(); // or rpc_transport_amqp::AmqpTransport
//! let server = Server::builder(transport.clone())
//!     .serve(CalculatorServer::new(Calc))
//!     .await?;
//!
//! let calc = CalculatorClient::new(transport);
//! assert_eq!(calc.add(2, 3).await?, 5);
//! assert_eq!(calc.div(1, 0).await?, Err("division by zero".to_owned()));
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Semantics
//!
//! - **Deadlines.** Every call has one: [`DEFAULT_TIMEOUT`] (30 s), or the
//!   client's [`with_timeout`](Client::with_timeout). It travels as an
//!   absolute time (wall-clock milliseconds, rounded up); the caller gives
//!   up when it passes, a server does not start a request whose deadline
//!   has passed, and calls made inside a handler inherit what is left of it
//!   (see [`Context`]). Each client has one watchdog task that ends calls at
//!   their deadline, rather than a timer per call.
//! - **Errors.** [`RpcError`] tells apart timeouts, no route (nobody serves
//!   the service), unknown methods, decode and encode failures, handler
//!   panics (`Remote`), overload, connection loss and closed clients. A bad
//!   request always gets a typed reply, never a silent timeout. A method
//!   returning `Result<T, E>` returns `Result<Result<T, E>, RpcError>`.
//! - **Delivery.** On transports that track deliveries (AMQP) requests are
//!   at-least-once: acknowledged after the reply is sent. Methods marked
//!   `#[rpc(at_most_once)]` are acknowledged before they run. Requests that
//!   fail to decode, name an unknown method or make the handler panic are
//!   answered, then dead-lettered. Duplicate and unknown replies are
//!   dropped and counted ([`Client::dropped_replies`]).
//! - **Cancellation.** Dropping a call future removes its pending entry at
//!   once (a late reply is dropped) and sends a [`Kind::Cancel`] for the
//!   call; the server running it drops the handler's future (best effort:
//!   on a fabric of competing servers the cancel may reach another one).
//!   At its deadline a server drops a handler's future too, unless the
//!   method is marked `#[rpc(run_to_completion)]`.
//! - **Server.** Bounded concurrency ([`ServerBuilder::concurrency`], the
//!   prefetch on AMQP), handler panics caught and answered as `Remote`,
//!   graceful shutdown ([`ServerHandle::shutdown`]) that stops taking
//!   requests and finishes those in flight within a drain timeout.
//! - **Client.** Many concurrent calls over one transport, a cap on calls
//!   in flight ([`ClientConfig::max_in_flight`], `Overloaded` past it), and
//!   cheap clones that share one reply inbox.
//!
//! # Layout
//!
//! - [`envelope`] and [`frame`]: the message and its binary encoding;
//!   [`limits`]: the size limits every layer shares.
//! - [`codec`]: bincode (default) and JSON bodies.
//! - [`transport`]: the contract a message fabric implements.
//! - [`Client`] and [`Server`]: the runtimes generated code drives.
//! - [`Context`]: deadline, correlation id and metadata inside a handler.
//! - [`RpcError`]: why a call failed.
//!
//! Design notes live in `docs/ARCHITECTURE.md`; the wire format in `docs/wire.md`.

mod cancel;
mod client;
mod clock;
pub mod codec;
mod context;
mod descriptor;
mod dyn_transport;
pub mod envelope;
mod error;
pub mod frame;
mod interrupt;
pub mod introspection;
mod known_names;
pub mod limits;
pub mod metrics;
mod name;
mod pending;
mod replay;
mod running;
mod server;
mod service;
mod spans;
pub mod trace;
mod trace_otel;
pub mod transport;
mod watchdog;

#[doc(hidden)]
pub mod __private;

/// Turns a trait of `async fn`s into a service: a typed client
/// (`<Trait>Client`), a server dispatch (`<Trait>Server`), one argument
/// struct per method and a `<TRAIT>_DESCRIPTOR`. The [crate example](crate)
/// shows it end to end; what follows is the full reference.
pub use rpc_macros::rpc_service;

pub use client::{Client, ClientConfig, DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT};
pub use codec::{Bincode, Codec, CodecError, ContentType, Json};
pub use context::Context;
pub use descriptor::{DeliveryMode, MethodDescriptor, MethodKind, ServiceDescriptor};
pub use dyn_transport::{DynInbox, DynRequests, DynTransport};
pub use envelope::{Envelope, ErrorKind, Header, Kind, Metadata, Status};
pub use error::{RpcError, TransportError};
pub use frame::{FrameError, FrameLimits};
pub use known_names::KnownNames;
pub use limits::{DEFAULT_MAX_MESSAGE_SIZE, Limits, MAX_METADATA_ENTRIES};
pub use name::{Address, Name};
pub use replay::{DEFAULT_REPLAY_BYTES, DEFAULT_REPLAY_ENTRIES, MAX_FAILED_SENDS};
pub use server::{
    DEFAULT_CONCURRENCY, DEFAULT_DRAIN_TIMEOUT, SPAWN_CALLS_BEYOND, Server, ServerBuilder,
    ServerHandle, ServerStats, ShutdownReport,
};
pub use service::{Request, Response, Service};
pub use transport::{
    Delivery, DeliveryHandle, EVERY_SERVICE, ReplyHandler, ReplySink, ServiceSpec, Settlement,
    Transport,
};
