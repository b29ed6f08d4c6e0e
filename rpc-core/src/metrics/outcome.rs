//! How a call ended, as a metric label.

use crate::envelope::{ErrorKind, Status};
use crate::error::RpcError;

/// How a call ended: the `outcome` label of the finishing metrics, and the
/// error kinds of a server's stats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Answered with a value.
    Ok,
    /// The service has no such method.
    NoSuchMethod,
    /// Arguments or value did not decode.
    Decode,
    /// Arguments or value did not encode.
    Encode,
    /// The handler panicked or failed.
    Remote,
    /// The deadline passed.
    Timeout,
    /// Refused for lack of capacity.
    Overloaded,
    /// Nobody serves the service.
    NoRoute,
    /// Over the size limit.
    TooLarge,
    /// Not a call: nothing was run or answered (server).
    Refused,
    /// The caller dropped the call before it ended (client).
    Cancelled,
    /// The connection dropped with the call in flight (client).
    ConnectionLost,
    /// The transport failed otherwise (client).
    Transport,
    /// The client was closed (client).
    Closed,
}

impl Outcome {
    /// Every outcome, in [`index`](Self::index) order.
    pub const ALL: [Outcome; 14] = [
        Outcome::Ok,
        Outcome::NoSuchMethod,
        Outcome::Decode,
        Outcome::Encode,
        Outcome::Remote,
        Outcome::Timeout,
        Outcome::Overloaded,
        Outcome::NoRoute,
        Outcome::TooLarge,
        Outcome::Refused,
        Outcome::Cancelled,
        Outcome::ConnectionLost,
        Outcome::Transport,
        Outcome::Closed,
    ];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NoSuchMethod => "no_such_method",
            Outcome::Decode => "decode",
            Outcome::Encode => "encode",
            Outcome::Remote => "remote",
            Outcome::Timeout => "timeout",
            Outcome::Overloaded => "overloaded",
            Outcome::NoRoute => "no_route",
            Outcome::TooLarge => "too_large",
            Outcome::Refused => "refused",
            Outcome::Cancelled => "cancelled",
            Outcome::ConnectionLost => "connection_lost",
            Outcome::Transport => "transport",
            Outcome::Closed => "closed",
        }
    }

    /// The position in [`ALL`](Self::ALL).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The outcome a reply's status reports.
    pub fn of_status(status: &Status) -> Self {
        match status {
            Status::Ok => Outcome::Ok,
            Status::Error { kind, .. } => Outcome::of_kind(*kind),
        }
    }

    /// The outcome for an error kind on the wire.
    pub fn of_kind(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::NoSuchMethod => Outcome::NoSuchMethod,
            ErrorKind::Decode => Outcome::Decode,
            ErrorKind::Encode => Outcome::Encode,
            ErrorKind::Remote => Outcome::Remote,
            ErrorKind::Timeout => Outcome::Timeout,
            ErrorKind::Overloaded => Outcome::Overloaded,
            ErrorKind::NoSuchService => Outcome::NoRoute,
            ErrorKind::TooLarge => Outcome::TooLarge,
        }
    }

    /// The outcome of a call's result, on the client.
    pub fn of_result<R>(result: &Result<R, RpcError>) -> Self {
        match result {
            Ok(_) => Outcome::Ok,
            Err(error) => match error {
                RpcError::Timeout => Outcome::Timeout,
                RpcError::NoRoute { .. } => Outcome::NoRoute,
                RpcError::NoSuchMethod { .. } => Outcome::NoSuchMethod,
                RpcError::Decode { .. } => Outcome::Decode,
                RpcError::Encode { .. } => Outcome::Encode,
                RpcError::Remote { .. } => Outcome::Remote,
                RpcError::Overloaded => Outcome::Overloaded,
                RpcError::ConnectionLost => Outcome::ConnectionLost,
                RpcError::Closed => Outcome::Closed,
                RpcError::TooLarge { .. } => Outcome::TooLarge,
                _ => Outcome::Transport,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_all() {
        for (i, outcome) in Outcome::ALL.iter().enumerate() {
            assert_eq!(outcome.index(), i);
        }
    }
}
