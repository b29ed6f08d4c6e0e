//! Errors, one enum per layer: [`RpcError`] for callers, [`TransportError`]
//! for transports.

use std::error::Error as StdError;

use crate::envelope::{ErrorKind, Status};

/// Why a call failed. Application errors are not here: a method returning
/// `Result<T, E>` delivers its `E` inside `Ok`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The deadline passed before a reply arrived, or before the server ran the call.
    #[error("deadline exceeded")]
    Timeout,
    /// Nobody serves the service: no queue, no consumer.
    #[error("no route to service `{service}`")]
    NoRoute {
        /// The service's wire name.
        service: String,
    },
    /// The service does not know the method (an older server than the client).
    #[error("service `{service}` has no method `{method}`")]
    NoSuchMethod {
        /// The service's wire name.
        service: String,
        /// The method that was called.
        method: String,
    },
    /// A body could not be decoded (arguments on the server, reply on the client).
    #[error("decode failed: {message}")]
    Decode {
        /// What went wrong.
        message: String,
    },
    /// A value could not be encoded (arguments on the client, reply on the server).
    #[error("encode failed: {message}")]
    Encode {
        /// What went wrong.
        message: String,
    },
    /// The handler panicked or failed. The message never names a type.
    #[error("remote handler failed: {message}")]
    Remote {
        /// The panic or failure message.
        message: String,
    },
    /// Too many calls in flight (client cap) or the server refused for capacity.
    #[error("overloaded: too many calls in flight")]
    Overloaded,
    /// The connection dropped while the call was in flight; it may or may not have run.
    #[error("connection lost while the call was in flight")]
    ConnectionLost,
    /// The call was never sent: the connection was down and did not come back
    /// before the call's deadline. It did not run, so retrying it is safe.
    #[error("not sent: no connection until the deadline")]
    NotSent,
    /// The transport failed.
    #[error("transport failed")]
    Transport(#[source] TransportError),
    /// The client or transport was closed.
    #[error("closed")]
    Closed,
    /// The message exceeds the size limit (refused before sending, or by the server unread).
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message's size in bytes (0 when the server did not say).
        size: usize,
        /// The limit in bytes (0 when the server did not say).
        limit: usize,
    },
}

impl RpcError {
    /// The error a reply with `status` stands for; `None` for [`Status::Ok`].
    pub fn from_status(status: &Status, service: &str, method: &str) -> Option<Self> {
        let Status::Error { kind, message } = status else {
            return None;
        };
        let message = message.clone();
        Some(match kind {
            ErrorKind::NoSuchMethod => RpcError::NoSuchMethod {
                service: service.to_owned(),
                method: method.to_owned(),
            },
            ErrorKind::Decode => RpcError::Decode { message },
            ErrorKind::Encode => RpcError::Encode { message },
            ErrorKind::Remote => RpcError::Remote { message },
            ErrorKind::Timeout => RpcError::Timeout,
            ErrorKind::Overloaded => RpcError::Overloaded,
            ErrorKind::NoSuchService => RpcError::NoRoute {
                service: service.to_owned(),
            },
            ErrorKind::TooLarge => RpcError::TooLarge { size: 0, limit: 0 },
        })
    }
}

impl From<TransportError> for RpcError {
    fn from(error: TransportError) -> Self {
        match error {
            TransportError::NoRoute { address } => RpcError::NoRoute { service: address },
            TransportError::ConnectionLost => RpcError::ConnectionLost,
            TransportError::NotSent => RpcError::NotSent,
            TransportError::Closed => RpcError::Closed,
            TransportError::TooLarge { size, limit } => RpcError::TooLarge { size, limit },
            other => RpcError::Transport(other),
        }
    }
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Nobody can receive at that address (no queue or no consumer).
    #[error("no route to `{address}`")]
    NoRoute {
        /// The address that had no receiver.
        address: String,
    },
    /// The connection dropped; the transport may be reconnecting. A message
    /// being sent when it dropped may or may not have left.
    #[error("connection lost")]
    ConnectionLost,
    /// The message was not sent: there was no connection to send it on (for
    /// a call, none until its deadline). Nothing left the process.
    #[error("not sent: no connection")]
    NotSent,
    /// The transport was closed by its owner.
    #[error("transport closed")]
    Closed,
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Connecting failed (refused, bad credentials, TLS, timeout).
    #[error("connect failed: {message}")]
    Connect {
        /// What failed, with secrets removed.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn StdError + Send + Sync>>,
    },
    /// The transport does not offer this operation (an optional part of
    /// the contract, such as broadcasts).
    #[error("{operation} is not supported by this transport")]
    Unsupported {
        /// The operation.
        operation: &'static str,
    },
    /// The broker or fabric refused an operation.
    #[error("{operation} failed")]
    Protocol {
        /// The operation that failed, e.g. "declare queue".
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}

impl TransportError {
    /// A [`TransportError::Protocol`] from any error.
    pub fn protocol(
        operation: &'static str,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        TransportError::Protocol {
            operation,
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_errors() {
        let status = Status::Error {
            kind: ErrorKind::NoSuchMethod,
            message: String::new(),
        };
        let error = RpcError::from_status(&status, "calc", "sqrt").unwrap();
        assert!(matches!(error, RpcError::NoSuchMethod { ref method, .. } if method == "sqrt"));
        assert!(RpcError::from_status(&Status::Ok, "calc", "add").is_none());
    }

    #[test]
    fn transport_errors_keep_their_meaning() {
        let e: RpcError = TransportError::NoRoute {
            address: "calc".into(),
        }
        .into();
        assert!(matches!(e, RpcError::NoRoute { .. }));
        assert!(matches!(
            RpcError::from(TransportError::ConnectionLost),
            RpcError::ConnectionLost
        ));
    }
}
