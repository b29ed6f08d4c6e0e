//! Typed RPC over message transports.
//!
//! Annotate a trait with [`rpc_service`]; get a typed client and a server
//! dispatch. Every call travels as an [`Envelope`] (header plus codec
//! body) over a [`Transport`]: the in-memory one for tests and quickstarts,
//! AMQP for production. Swapping one for the other changes one line.
//!
//! # Layout
//!
//! - [`envelope`] and [`frame`]: the message and its binary encoding.
//! - [`codec`]: bincode (default) and JSON bodies.
//! - [`transport`]: the contract a message fabric implements.
//! - [`Client`] and [`Server`]: the runtimes generated code drives.
//! - [`Context`]: deadline, correlation id and metadata inside a handler.
//! - [`RpcError`]: why a call failed.
//!
//! Design notes live in `docs/ARCHITECTURE.md`; the wire format in `docs/wire.md`.

mod client;
pub mod codec;
mod context;
mod descriptor;
pub mod envelope;
mod error;
pub mod frame;
mod name;
mod pending;
mod server;
mod service;
pub mod transport;

#[doc(hidden)]
pub mod __private;

pub use rpc_macros::rpc_service;

pub use client::{
    Client, ClientConfig, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_TIMEOUT,
};
pub use codec::{Bincode, Codec, CodecError, ContentType, Json};
pub use context::Context;
pub use descriptor::{DeliveryMode, MethodDescriptor, MethodKind, ServiceDescriptor};
pub use envelope::{Envelope, ErrorKind, Header, Kind, Metadata, Status};
pub use error::{RpcError, TransportError};
pub use frame::{FrameError, FrameLimits};
pub use name::{Address, Name};
pub use server::{
    DEFAULT_CONCURRENCY, DEFAULT_DRAIN_TIMEOUT, Server, ServerBuilder, ServerHandle, ServerStats,
    ShutdownReport,
};
pub use service::{Request, Response, Service};
pub use transport::{
    Delivery, DeliveryHandle, ReplyHandler, ReplySink, ServiceSpec, Settlement, Transport,
};
