//! The size limits every layer applies, defined once: the client before it
//! sends, the server before it decodes, the frame codec, and transports
//! mapping envelopes onto their fabric's messages.
//!
//! A transport that writes metadata into its fabric's headers uses
//! [`MAX_METADATA_ENTRIES`] (or the `Limits` it was given) rather than a
//! number of its own, so that a message one layer accepts is not refused by
//! the next; [`check_metadata_count`] and [`check_metadata_entry`] are the
//! checks such a transport applies, written once here.

use crate::envelope::Metadata;

/// The default limit on a message: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The most metadata entries a message carries by default. Bounds the work
/// a message can cause beyond its size (keys are checked for duplicates,
/// and each becomes a header on fabrics that have them).
pub const MAX_METADATA_ENTRIES: usize = 64;

/// The longest text a transport writes into one header of its fabric: a
/// metadata value, a failed reply's message (64 KiB). Brokers bound a
/// message's headers far below its body, so this keeps a message whose
/// body fits from being refused for one long header.
pub const MAX_HEADER_TEXT_LEN: usize = 64 * 1024;

/// Why caller metadata cannot travel as a fabric's headers. Each transport
/// maps it onto its own mapping error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// More entries than [`MAX_METADATA_ENTRIES`]; the count.
    #[error("{0} metadata entries, more than the limit of {MAX_METADATA_ENTRIES}")]
    TooManyEntries(usize),
    /// A key under [`Metadata::RESERVED_PREFIX`]: those are the transports'
    /// own, and a caller may not set them.
    #[error("metadata key `{0}` uses the reserved `x-rpc-` prefix")]
    ReservedKey(String),
    /// A value longer than [`MAX_HEADER_TEXT_LEN`].
    #[error(
        "metadata value of `{key}` is {len} bytes, more than the limit of {MAX_HEADER_TEXT_LEN}"
    )]
    ValueTooLong {
        /// The entry's key.
        key: String,
        /// The value's length, in bytes.
        len: usize,
    },
}

/// Checks that `count` metadata entries may be written as headers.
///
/// Transports call it before writing any entry, then
/// [`check_metadata_entry`] on each: the count first, because it bounds
/// the work the entries cause.
pub fn check_metadata_count(count: usize) -> Result<(), MetadataError> {
    if count > MAX_METADATA_ENTRIES {
        return Err(MetadataError::TooManyEntries(count));
    }
    Ok(())
}

/// Checks one metadata entry a transport writes as a header (or read from
/// one): its key is not reserved and its value not longer than
/// [`MAX_HEADER_TEXT_LEN`]. What the fabric itself refuses in a header
/// name or value is the transport's to check.
pub fn check_metadata_entry(key: &str, value: &str) -> Result<(), MetadataError> {
    if key.starts_with(Metadata::RESERVED_PREFIX) {
        return Err(MetadataError::ReservedKey(key.to_owned()));
    }
    if value.len() > MAX_HEADER_TEXT_LEN {
        return Err(MetadataError::ValueTooLong {
            key: key.to_owned(),
            len: value.len(),
        });
    }
    Ok(())
}

/// Limits on one message.
///
/// Build one with struct update syntax so new limits keep their defaults:
/// `Limits { max_message_size: 1 << 20, ..Limits::default() }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest message, in bytes (default 16 MiB). The client refuses
    /// arguments whose encoding is larger before sending, and the server
    /// refuses a larger body unread; the frame codec applies it to the
    /// whole frame, length prefix included (a frame's prefix is a `u32`,
    /// so frames never exceed 4 GiB + 4 bytes whatever this says).
    pub max_message_size: usize,
    /// The most metadata entries accepted (default [`MAX_METADATA_ENTRIES`]).
    pub max_metadata_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_metadata_entries: MAX_METADATA_ENTRIES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClientConfig, FrameLimits};

    #[test]
    fn every_layer_starts_from_the_same_limits() {
        let limits = Limits::default();
        assert_eq!(FrameLimits::default(), limits);
        assert_eq!(
            ClientConfig::default().max_message_size,
            limits.max_message_size
        );
        assert_eq!(limits.max_metadata_entries, MAX_METADATA_ENTRIES);
    }

    #[test]
    fn metadata_checks_refuse_what_no_fabric_carries() {
        assert_eq!(check_metadata_count(MAX_METADATA_ENTRIES), Ok(()));
        assert_eq!(
            check_metadata_count(MAX_METADATA_ENTRIES + 1),
            Err(MetadataError::TooManyEntries(MAX_METADATA_ENTRIES + 1))
        );
        assert_eq!(check_metadata_entry("tenant", "acme"), Ok(()));
        assert_eq!(
            check_metadata_entry("x-rpc-caller", "me"),
            Err(MetadataError::ReservedKey("x-rpc-caller".into()))
        );
        let long = "a".repeat(MAX_HEADER_TEXT_LEN + 1);
        assert_eq!(
            check_metadata_entry("k", &long),
            Err(MetadataError::ValueTooLong {
                key: "k".into(),
                len: MAX_HEADER_TEXT_LEN + 1
            })
        );
        assert_eq!(check_metadata_entry("k", &long[1..]), Ok(()));
    }
}
