//! Binary encoding of an [`Envelope`](crate::Envelope) for byte-stream transports.

/// Limits applied while decoding a frame.
#[derive(Clone, Copy, Debug)]
pub struct FrameLimits {
    /// The largest frame accepted, in bytes (default 16 MiB).
    pub max_frame: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_frame: 16 * 1024 * 1024,
        }
    }
}

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Not enough bytes yet.
    #[error("incomplete frame")]
    Incomplete,
}
