//! A brokerless `rpc-core` transport over ZeroMQ, with the reliable
//! request-reply patterns of the ZeroMQ guide.
//!
//! Servers bind a ROUTER socket; clients keep one DEALER link per server
//! endpoint. No broker sits between them, so every guarantee comes from the
//! two ends:
//!
//! - **Load balancing by credit** (the guide's load-balancing pattern
//!   without its broker). A server answers `HELLO` with `READY`: each
//!   service it serves and the credit it grants this client, its
//!   concurrency. Each call takes one credit; each reply (or `DONE`)
//!   returns it. A call goes to the connected server with the most credit
//!   left; when every server is at its credit the call waits in the
//!   client (up to [`max_waiting`](ZmqTransportBuilder::max_waiting), past
//!   which it fails with `Overloaded`), so a busy server gets no more.
//!   Credit is granted per client: with several clients a server may hold
//!   up to its concurrency from each.
//! - **Liveness by heartbeats** (Paranoid Pirate). Both sides send `HB`
//!   every [`heartbeat_interval`](ZmqTransportBuilder::heartbeat_interval);
//!   any message counts as a sign of life. A server silent for
//!   [`liveness`](ZmqTransportBuilder::liveness) intervals (dead, hung, or
//!   its network gone; counted in this side's heartbeat ticks, so a stall
//!   of this side's own runtime is not the server's silence) is dropped: the calls it held fail at once with
//!   `ConnectionLost`, new calls go to the others, and a new socket tries
//!   to reconnect every
//!   [`reconnect_interval`](ZmqTransportBuilder::reconnect_interval) (so a
//!   server restarted on the same endpoint comes back).
//! - **No route, at once.** A call for a service no connected server
//!   serves fails with `NoRoute` when it is sent, never by timeout, and
//!   nothing waits in a socket buffer for a server that may never come.
//! - **At-most-once by nature.** No broker keeps a copy of a request: a
//!   request reaches one server at most once and is never redelivered.
//!   Settlement does nothing; a server that dies takes its calls with it
//!   (their callers get `ConnectionLost`: the call may or may not have
//!   run). `#[rpc(at_most_once)]` and the default behave the same here,
//!   and both are honest: neither retries.
//! - **Bad input** (garbage, wrong frame counts, oversized messages,
//!   undecodable envelopes) is refused with a typed [`WireError`], answered
//!   with `ERROR`, and counted in [`ZmqStats`]; a peer speaking another
//!   protocol fails the ZMTP handshake and is counted. The server keeps
//!   serving. zeromq buffers a whole message before this crate sees it, so
//!   the size limit bounds what is decoded, not what is read.
//!
//! The wire (multipart frames, with the envelope in `rpc_core::frame`
//! encoding) is in [`wire`] and `docs/wire.md`, with a pyzmq client.
//!
//! ```no_run
//! use rpc_transport_zmq::ZmqTransport;
//! # async fn run() -> Result<(), rpc_core::TransportError> {
//! let server = ZmqTransport::builder().bind("tcp://127.0.0.1:5555").build().await?;
//! let client = ZmqTransport::builder()
//!     .connect("tcp://127.0.0.1:5555")
//!     .connect("ipc:///run/calc.sock")
//!     .build()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! - [`ZmqTransport`] (`transport.rs`): the `Transport` implementation.
//! - [`ZmqTransportBuilder`] (`config.rs`): endpoints, heartbeats, limits.
//! - `client.rs`: links to servers, credit, held calls, liveness.
//! - `server.rs`: the ROUTER, served services, `READY` / `CREDIT`.
//! - `delivery.rs`: answering a request on its connection; `DONE`.
//! - `batcher.rs`, `outbox.rs`: the requests made in one turn of the
//!   runtime go in one message, and the replies to them come back in one;
//!   `gather.rs`: how long the replies' writer waits.
//! - [`ZmqRequests`] (`requests.rs`), fed through `handoff.rs`; [`ZmqInbox`] (`inbox.rs`).
//! - `ids.rs`: the client's maps keyed by ids it made, and their hasher.
//! - `services.rs`: finding a service in the few one peer serves.
//! - `signal.rs`: the flag the router and link tasks wait on beside their socket.
//! - `tags.rs`: the server's copies of request inbox tags.
//! - `ticker.rs`: the heartbeat timer of the router and link tasks.
//! - [`wire`]: the messages and their parsing.
//! - [`ZmqStats`] (`stats.rs`): counters.

mod batcher;
mod client;
mod config;
mod delivery;
mod gather;
mod handoff;
mod ids;
mod inbox;
mod outbox;
mod requests;
mod server;
mod services;
mod signal;
mod stats;
mod tags;
mod ticker;
mod transport;
pub mod wire;

pub use config::ZmqTransportBuilder;
pub use inbox::ZmqInbox;
pub use requests::ZmqRequests;
pub use stats::ZmqStats;
pub use transport::ZmqTransport;
pub use wire::WireError;
