//! Kafka transport for `rpc-core`, on rdkafka (bundled librdkafka).
//!
//! ```no_run
//! # async fn demo() -> Result<(), rpc_core::TransportError> {
//! use std::time::Duration;
//! use rpc_transport_kafka::KafkaTransport;
//!
//! let transport = KafkaTransport::builder("127.0.0.1:9092")
//!     .client_id("billing-api")
//!     .topic_prefix("staging.")            // topics become `staging.<service>`
//!     .partitions(8)                       // of each request topic a server creates
//!     .fetch_wait(Duration::from_millis(5))
//!     .set("security.protocol", "sasl_ssl") // TLS/SASL settings pass through
//!     .connect()
//!     .await?;
//! // Then hand it to `rpc_core::Client::new(transport.clone())` and
//! // `rpc_core::Server::builder(transport)`.
//! # Ok(()) }
//! ```
//!
//! # Topics and groups
//!
//! - A service `calc` has a request topic `<prefix>calc` (partitions as
//!   configured) and a dead-letter topic `<prefix>calc.dlq`, created by its
//!   servers. Every server of a service is a member of the consumer group
//!   `<prefix>calc`, so the group splits the partitions between them.
//! - A client writes each request to the next partition in turn, so every
//!   server gets a share.
//! - Each transport instance has a reply topic `<prefix>reply.<instance>`
//!   (one partition), read without joining a group; the request's record
//!   key names the inbox, and the reply carries the same key (see `inbox.rs`
//!   for why a topic per instance).
//! - The envelope header travels as record headers, the body as the record
//!   value (`docs/wire.md`, [`headers`]).
//!
//! # Delivery guarantees
//!
//! - **At-least-once**: a request's offset is committed only after its
//!   reply was acknowledged by the broker. A server that dies mid-call
//!   leaves it uncommitted, and the group hands its partitions (and the
//!   request) to another server after the rebalance. Offsets are committed
//!   in order per partition: a request finished before an earlier one waits
//!   for it, uncommitted. A position is stored when it moves and committed
//!   every [commit interval](KafkaTransportBuilder::commit_interval) (100 ms),
//!   when the group revokes the partition and when the consumer closes, so
//!   a crash can deliver up to an interval's answered requests again.
//! - **`#[rpc(at_most_once)]`** requests are committed (synchronously)
//!   before they run. Since a commit covers everything before it, such a
//!   request first waits for the earlier requests of its partition.
//! - **Expired** requests (the deadline passed while in the log) are
//!   answered `timeout` without running (the server runtime's rule).
//! - **Poison**: requests the runtime refuses are answered and copied to
//!   `<prefix><service>.dlq`, then committed; records whose headers are not
//!   an envelope are answered `decode` when they name a reply topic and
//!   copied there byte for byte.
//! - **No route**: a call to a service without a request topic fails with
//!   `NoRoute` after one metadata lookup (about a millisecond; topics found
//!   are cached per connection).
//!
//! # Connection loss
//!
//! When librdkafka reports every broker down, calls in flight fail at once
//! with `ConnectionLost`, and the transport drops all its rdkafka clients
//! and builds new ones, with backoff, until the broker answers; it then
//! creates its topics again (a broker with in-memory storage lost them),
//! re-reads its reply topic and re-joins every group. Clients are rebuilt
//! rather than kept: librdkafka clients kept across a restart of a tansu
//! broker that lost its topics crashed in a metadata update. A served
//! service's lost consumer stops fetching at once and leaves its group once
//! the broker answers again; the new one joins after it (tansu can keep a
//! leader that left a group mid-rebalance, and the group then never
//! assigns again). Requests the lost consumer handed out and that finish
//! later are not committed: they are read again by the group's next member.
//!
//! # Layout
//!
//! - [`KafkaTransport`] (`transport.rs`), [`KafkaTransportBuilder`] (`config.rs`).
//! - [`headers`]: the envelope <-> record headers mapping.
//! - `session.rs`, `supervisor.rs`: a generation of clients and the reconnect loop.
//! - `inbox.rs`: the reply topic; `requests.rs`, `offsets.rs`: request
//!   streams and settlement as commits; `requests/members.rs`: a lost
//!   consumer leaves its group before the next one joins.

mod config;
pub mod headers;
mod inbox;
mod offsets;
mod requests;
mod session;
mod supervisor;
mod transport;

pub use config::KafkaTransportBuilder;
pub use inbox::InboxGuard;
pub use requests::KafkaRequests;
pub use transport::KafkaTransport;

/// The rdkafka version this crate is built on.
pub use rdkafka;
