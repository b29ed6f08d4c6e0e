//! The optional frame round trip: every envelope through `rpc_core::frame`
//! encoding and back, as a byte-stream transport would carry it.

use std::sync::Mutex;

use rpc_core::frame::{self, FrameError, FrameLimits};
use rpc_core::transport::support::lock_unpoisoned;
use rpc_core::{Envelope, KnownNames, TransportError};

/// The round trip of one broker, with the names its envelopes carry, so
/// that decoding them allocates none (as a connection's decoder would).
#[derive(Debug, Default)]
pub(crate) struct RoundTrip {
    names: Mutex<KnownNames>,
}

impl RoundTrip {
    /// Encodes `envelope` and decodes it again; what arrives is what a
    /// peer across a byte stream would see. The body limit is checked
    /// before this, so the frame size is not limited again here; the other
    /// limits (such as the metadata count) are the frame defaults.
    pub(crate) fn run(&self, envelope: &Envelope) -> Result<Envelope, TransportError> {
        let limits = FrameLimits {
            max_message_size: usize::MAX,
            ..FrameLimits::default()
        };
        let mut wire = Vec::new();
        frame::encode(envelope, &mut wire, &limits).map_err(frame_error)?;
        let mut names = lock_unpoisoned(&self.names);
        let (decoded, _) = frame::decode_with(&wire, &limits, &mut names).map_err(frame_error)?;
        Ok(decoded)
    }
}

fn frame_error(error: FrameError) -> TransportError {
    match error {
        FrameError::TooLarge { size, limit } => TransportError::TooLarge { size, limit },
        other => TransportError::protocol("frame round trip", other),
    }
}

#[cfg(test)]
mod tests {
    use rpc_core::{ContentType, Header, Metadata};

    use super::*;

    #[test]
    fn an_envelope_survives_the_round_trip() {
        let mut header = Header::request("svc".into(), "m".into(), ContentType::Json);
        header.correlation_id = 42;
        header.metadata = Metadata::from_iter([("tenant", "a")]);
        let envelope = Envelope {
            header,
            body: b"{}".to_vec(),
        };
        let round_trip = RoundTrip::default();
        assert_eq!(round_trip.run(&envelope).unwrap(), envelope);
        // Again, with its names known.
        assert_eq!(round_trip.run(&envelope).unwrap(), envelope);
    }

    #[test]
    fn too_much_metadata_is_a_transport_error() {
        let mut header = Header::request("svc".into(), "m".into(), ContentType::Json);
        header.metadata = (0..=FrameLimits::default().max_metadata_entries)
            .map(|i| (i.to_string(), String::new()))
            .collect();
        let envelope = Envelope {
            header,
            body: Vec::new(),
        };
        let error = RoundTrip::default().run(&envelope).unwrap_err();
        assert!(
            matches!(error, TransportError::Protocol { .. }),
            "{error:?}"
        );
    }
}
