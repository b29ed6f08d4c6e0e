//! Not public API: the paths `#[rpc_service]` generates code against.
//!
//! Generated code names only `::rpc_core::__private::...` (or the path given
//! with `#[rpc_service(crate = ..)]`), so it compiles whatever the user has
//! in scope, `#![no_implicit_prelude]` included.

pub use ::core::clone::Clone;
pub use ::core::fmt;
pub use ::core::future::Future;
pub use ::core::marker::{Send, Sync};
pub use ::core::result::Result::{self, Err, Ok};
pub use ::core::time::Duration;
pub use ::serde;
pub use ::serde::{Deserialize, Serialize};
pub use ::std::sync::Arc;

pub use crate::client::Client;
pub use crate::descriptor::{DeliveryMode, MethodDescriptor, MethodKind, ServiceDescriptor};
pub use crate::dyn_transport::DynTransport;
pub use crate::error::RpcError;
pub use crate::service::{Request, Response, Service};
pub use crate::transport::Transport;
