//! Built-in introspection: every server answers `$ping`, `$info` and
//! `$stats` over the transport it serves on, with no code from the user
//! (turn it off with [`ServerBuilder::introspection`](crate::ServerBuilder::introspection)).
//!
//! A query goes to one instance through the service's request queue (a
//! plain request to a method whose name starts with `$`, which no Rust
//! method can have), or to every instance through the transport's
//! broadcast ([`Transport::send_broadcast`](crate::Transport::send_broadcast)),
//! gathering answers until a deadline. The wire form is in docs/wire.md,
//! so a client in another language can ask too.

mod query;
mod responder;

use serde::{Deserialize, Serialize};

use crate::descriptor::{DeliveryMode, MethodKind, ServiceDescriptor};
use crate::metrics::MethodStats;

pub use query::Introspector;
pub(crate) use responder::{BroadcastTask, Responder};

/// The method a `ping` query calls.
pub const PING: &str = "$ping";
/// The method an `info` query calls.
pub const INFO: &str = "$info";
/// The method a `stats` query calls.
pub const STATS: &str = "$stats";

/// Whether `method` names an introspection query (or an unknown one).
pub fn is_query(method: &str) -> bool {
    method.starts_with('$')
}

/// One server instance, as `$ping` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    /// Unique per server (process id and a random part).
    pub instance: String,
    /// The service's wire name.
    pub service: String,
    /// The version of the crate that defined the service.
    pub version: String,
    /// Seconds since the server started.
    pub uptime_secs: f64,
}

/// A service's descriptor, as `$info` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Info {
    /// The answering instance.
    pub instance: String,
    /// The service's wire name.
    pub service: String,
    /// The version of the crate that defined the service.
    pub version: String,
    /// The trait's doc comment.
    pub docs: String,
    /// Every method, in declaration order.
    pub methods: Vec<MethodInfo>,
}

/// One method, as `$info` describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MethodInfo {
    /// The method's wire name.
    pub name: String,
    /// `call` (a reply is awaited) or `oneway`.
    pub kind: String,
    /// `at_least_once` or `at_most_once`.
    pub delivery: String,
    /// The signature as written in the trait.
    pub signature: String,
    /// The method's doc comment.
    pub docs: String,
}

/// A server's counts, as `$stats` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// The answering instance.
    pub instance: String,
    /// The service's wire name.
    pub service: String,
    /// Seconds since the server started.
    pub uptime_secs: f64,
    /// Per method: handled, errors by outcome, in flight, latency.
    pub methods: MethodStats,
}

impl Info {
    fn of(instance: &str, descriptor: &ServiceDescriptor) -> Self {
        Info {
            instance: instance.to_owned(),
            service: descriptor.name.to_owned(),
            version: descriptor.version.to_owned(),
            docs: descriptor.docs.to_owned(),
            methods: descriptor
                .methods
                .iter()
                .map(|m| MethodInfo {
                    name: m.name.to_owned(),
                    kind: match m.kind {
                        MethodKind::Call => "call",
                        MethodKind::Oneway => "oneway",
                    }
                    .to_owned(),
                    delivery: match m.delivery {
                        DeliveryMode::AtLeastOnce => "at_least_once",
                        DeliveryMode::AtMostOnce => "at_most_once",
                    }
                    .to_owned(),
                    signature: m.signature.to_owned(),
                    docs: m.docs.to_owned(),
                })
                .collect(),
        }
    }
}
