//! Turning async-nats' errors into [`TransportError`]s, so async-nats never
//! leaks through this crate's API except as an error source.

use async_nats::{Client, ConnectError, PublishError, PublishErrorKind};
use rpc_core::TransportError;

/// Connecting failed.
pub(crate) fn connect_error(url: &str, error: ConnectError) -> TransportError {
    TransportError::Connect {
        message: format!("{}: {error}", redacted_url(url)),
        source: Some(Box::new(error)),
    }
}

/// A core publish failed.
pub(crate) fn publish_error(error: PublishError, client: &Client) -> TransportError {
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => TransportError::TooLarge {
            // The payload size is not in the error; the server's limit is.
            size: 0,
            limit: client.server_info().max_payload,
        },
        // The client's connection task is gone: it was closed.
        PublishErrorKind::Send => TransportError::Closed,
        _ => TransportError::protocol("publish", error),
    }
}

/// `url` with any password in its user info replaced by `***`.
pub(crate) fn redacted_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let authority = rest.find(['/', '?', '#', ',']).unwrap_or(rest.len());
    match rest[..authority].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_info_is_redacted() {
        assert_eq!(
            super::redacted_url("nats://u:pw@h:4222"),
            "nats://***@h:4222"
        );
        assert_eq!(super::redacted_url("nats://h:4222"), "nats://h:4222");
    }
}
