//! An in-process broker for `rpc-core`: named request queues with competing
//! consumers, reply inboxes, delivery settlement and fault injection.
//!
//! It is the transport of the quickstart and of the tests: everything a real
//! broker does that a caller can observe (queues shared by several servers,
//! fast "nobody serves that", ack / requeue / dead-letter, lost
//! connections) happens here too, in memory and without a thread hop.
//!
//! ```
//! use rpc_core::{
//!     Client, DeliveryMode, MethodDescriptor, MethodKind, Request, Response, Server, Service,
//!     ServiceDescriptor,
//! };
//! use rpc_transport_mem::MemTransport;
//!
//! // A service written by hand; `#[rpc_service]` generates the same thing.
//! struct Greeter;
//!
//! static GREETER: ServiceDescriptor = ServiceDescriptor {
//!     name: "greeter",
//!     version: "1.0.0",
//!     docs: "Says hello.",
//!     methods: &[MethodDescriptor {
//!         name: "hello",
//!         kind: MethodKind::Call,
//!         delivery: DeliveryMode::AtLeastOnce,
//!         run_to_completion: false,
//!         signature: "async fn hello(&self, name: String) -> String",
//!         docs: "",
//!     }],
//! };
//!
//! impl Service for Greeter {
//!     fn descriptor(&self) -> &'static ServiceDescriptor {
//!         &GREETER
//!     }
//!
//!     async fn call(&self, request: &Request) -> Response {
//!         match request.method() {
//!             "hello" => {
//!                 request
//!                     .respond(|name: String| async move { format!("hello, {name}") })
//!                     .await
//!             }
//!             _ => request.no_such_method(),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), rpc_core::RpcError> {
//! let transport = MemTransport::new();
//! let server = Server::builder(transport.clone()).serve(Greeter).await?;
//!
//! let client = Client::new(transport.clone());
//! let greeting: String = client.call("greeter", "hello", "world").await?;
//! assert_eq!(greeting, "hello, world");
//!
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! - [`MemTransport`] (`transport.rs`): the `Transport` implementation,
//!   its builder and the inspection API (queue depth, consumers, dead
//!   letters, [`MemStats`]).
//! - `broker.rs`: the state clones share; calls to service queues, replies
//!   to inboxes.
//! - `queue.rs`: one service's queue, its waiting consumers and dead letters.
//! - [`MemRequests`] (`requests.rs`): a `serve` stream, one competing consumer.
//! - `settle.rs`: delivery tracking: ack, requeue, dead-letter.
//! - [`MemInbox`] (`inbox.rs`): the guard that keeps a reply inbox open.
//! - [`Faults`] (`faults.rs`): fault injection.
//! - `connection.rs`: the simulated connection state.
//! - `wire.rs`: the optional round trip through `rpc_core::frame` encoding.
//! - `directory.rs`: the broker's name-keyed maps, read without locking.
//! - `last_inbox.rs`: the inbox a serve stream answered last, kept while
//!   no inbox opens or closes.
//!
//! # Routing
//!
//! Each operation knows where its envelope goes, and nothing branches on the
//! envelope's kind: `send_request` and `send_oneway` go to the service's
//! queue, a delivery's `reply` to the inbox the request named. Each routes
//! the envelope when it is called; the future it returns only carries the
//! outcome (the transport contract allows this, and it spares copying the
//! envelope through the future's state).
//!
//! - **Service queues.** A service's queue exists from its first `serve`.
//!   Every `serve` stream of a service is a consumer of the same FIFO: each
//!   request goes to exactly one, and to whoever asks next, because a
//!   stream receives only when polled (the server runtime polls only when
//!   it has a free permit). A sender wakes the longest-waiting consumer
//!   directly. Dropping a stream leaves what it did not receive in the
//!   queue for the others.
//! - **No route.** A request or oneway call to a service with no live
//!   consumer fails at once with `TransportError::NoRoute` (a client sees
//!   `RpcError::NoRoute`), never by timeout. Requests already queued stay
//!   queued when the last consumer leaves, for the next one.
//! - **Inboxes.** [`Transport::open_inbox`](rpc_core::Transport::open_inbox)
//!   registers an address `mem.inbox.<n>`. A reply sent there is handed to
//!   the inbox's `ReplySink::deliver` inside the delivery's `reply` call,
//!   on the replying thread. Replies to an address that is not an open inbox are
//!   dropped and counted ([`MemStats::undeliverable_replies`]).
//! - **Size.** Bodies larger than
//!   [`MemTransportBuilder::max_message_size`] (16 MiB by default) fail
//!   with `TransportError::TooLarge`.
//! - **Wire.** With [`MemTransportBuilder::frame_round_trip`], every
//!   envelope is encoded with `rpc_core::frame` and decoded again on its
//!   way, so tests see exactly what a byte-stream transport would deliver.
//!   Off by default: it costs an encode and a decode per message.
//!
//! # Settlement
//!
//! Every request is a tracked delivery; the broker keeps a copy until it is
//! settled.
//!
//! | settlement | effect |
//! | --- | --- |
//! | `Ack` | forgotten |
//! | `Requeue` | back at the **front** of the queue, for any consumer |
//! | `DeadLetter` | kept in the service's dead-letter list: [`MemTransport::dead_letters`] |
//! | delivery dropped unsettled | requeued, as AMQP does when a channel closes |
//! | any, while disconnected | requeued, and settling fails with `ConnectionLost` |
//!
//! [`MemTransport::unacked`] counts deliveries handed out and not settled.
//!
//! A message handed out for the first time is marked so
//! ([`Delivery::first_delivery`](rpc_core::Delivery::first_delivery)), and
//! the server skips its replay-cache look-up; one that came back to its
//! queue (requeued, abandoned, settled while disconnected) or passed
//! through a message fault (which may have copied it) is not. Every
//! delivery can also be settled for good
//! ([`Delivery::final_settlement`](rpc_core::Delivery::final_settlement)):
//! an ack or a dead-letter while the connection is up is final, so the
//! server keeps no answer for a first delivery whose reply went out and
//! whose settlement was final (nothing can bring it back), and keeps it
//! as before for any other.
//!
//! # Fault injection
//!
//! [`MemTransport::faults`] returns a [`Faults`] handle for the broker. Faults
//! on messages take a [`Direction`] (`Requests` covers oneway calls and
//! cancels too) and apply in this order:
//!
//! | method | effect |
//! | --- | --- |
//! | [`drop_next(dir, n)`](Faults::drop_next) | the next `n` messages vanish after a successful send (counted in [`MemStats`]) |
//! | [`reorder_next(dir, n)`](Faults::reorder_next) | `n` times: hold a message, release it right after the next one |
//! | [`duplicate_next(dir, n)`](Faults::duplicate_next) | the next `n` messages are delivered twice |
//! | [`delay(dir, d)`](Faults::delay) | every message waits `d` on a timer of its own; `Duration::ZERO` ends it |
//! | [`no_consumer(service)`](Faults::no_consumer) | sends to `service` fail with `NoRoute` though servers run; [`restore_consumer`](Faults::restore_consumer) ends it |
//! | [`disconnect()`](Faults::disconnect) | every open inbox gets `connection_lost`; sends, `open_inbox`, `serve` fail with `ConnectionLost` (sends with `NotSent`: nothing left); request streams pause |
//! | [`reconnect()`](Faults::reconnect) | undoes `disconnect`; paused streams resume |
//! | [`clear()`](Faults::clear) | removes every message fault and releases held messages |
//!
//! A test that loses a reply on purpose:
//!
//! ```
//! # use std::time::Duration;
//! # use rpc_core::{Client, RpcError};
//! # use rpc_transport_mem::{Direction, MemTransport};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let transport = MemTransport::new();
//! // ... start a server for "greeter" here; without one the call below
//! // would fail with NoRoute before any fault applies.
//! # struct S;
//! # static D: rpc_core::ServiceDescriptor = rpc_core::ServiceDescriptor {
//! #     name: "greeter", version: "", docs: "", methods: &[] };
//! # impl rpc_core::Service for S {
//! #     fn descriptor(&self) -> &'static rpc_core::ServiceDescriptor { &D }
//! #     async fn call(&self, r: &rpc_core::Request) -> rpc_core::Response {
//! #         r.respond(|name: String| async move { name }).await
//! #     }
//! # }
//! # let _server = rpc_core::Server::builder(transport.clone()).serve(S).await.unwrap();
//! transport.faults().drop_next(Direction::Replies, 1);
//! let client = Client::new(transport.clone()).with_timeout(Duration::from_millis(20));
//! let lost = client.call::<_, String>("greeter", "hello", "world").await;
//! assert!(matches!(lost, Err(RpcError::Timeout)));
//! assert_eq!(transport.stats().dropped_replies, 1);
//! # }
//! ```
//!
//! Closing the transport ([`MemTransport::close`]) is not a fault but the
//! end: sinks get `closed`, request streams end, everything fails with
//! `Closed`.

mod broadcast;
mod broker;
mod connection;
mod directory;
mod faults;
mod inbox;
mod last_inbox;
mod queue;
mod requests;
mod settle;
mod transport;
mod wire;

pub use faults::{Direction, Faults};
pub use inbox::MemInbox;
pub use requests::MemRequests;
pub use transport::{MemStats, MemTransport, MemTransportBuilder};
