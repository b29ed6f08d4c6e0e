//! Turning lapin's errors into [`TransportError`]s, so lapin never leaks
//! through this crate's API except as an error source.

use rpc_core::TransportError;

/// A broker operation failed.
pub(crate) fn protocol(operation: &'static str, error: lapin::Error) -> TransportError {
    if is_connection_level(&error) {
        return TransportError::ConnectionLost;
    }
    TransportError::protocol(operation, error)
}

/// Connecting failed.
pub(crate) fn connect_error(what: &str, error: lapin::Error) -> TransportError {
    TransportError::Connect {
        message: format!("{what}: {error}"),
        source: Some(Box::new(error)),
    }
}

/// Whether an error means the connection (not just one operation) is gone.
pub(crate) fn is_connection_level(error: &lapin::Error) -> bool {
    use lapin::ErrorKind as K;
    use lapin::protocol::AMQPErrorKind;
    match error.kind() {
        K::IOError(_)
        | K::InvalidConnectionState(_)
        | K::MissingHeartbeatError
        | K::RuntimeShutdownError(_) => true,
        // A hard error closes the whole connection (CONNECTION-FORCED from
        // `rabbitmqctl close_connection`, a node shutting down): what was
        // being published or confirmed went with it.
        K::ProtocolError(amqp) => matches!(amqp.kind(), AMQPErrorKind::Hard(_)),
        _ => false,
    }
}

/// The error of a message the broker refused (a nack).
pub(crate) fn nacked() -> TransportError {
    TransportError::protocol(
        "publish",
        std::io::Error::other("the broker refused the message (nack)"),
    )
}
