//! Binary encoding of an [`Envelope`] for byte-stream transports.
//!
//! A frame is a 4-byte big-endian length prefix, then the header fields in a
//! fixed order, then the body. The byte-by-byte layout is the table in
//! `docs/wire.md`, section "Binary envelope encoding".
//!
//! Reading follows the shape of mini-redis' `Frame::check` / `Frame::parse`:
//! [`check`] looks at the first five bytes only, so a connection can ask
//! "is a whole frame buffered yet?" for almost nothing and refuse an
//! oversized frame before it buffers (or allocates) any of it; [`decode`]
//! then parses a frame that is known to be whole. A connection reads with
//! [`decode_with`] and a [`KnownNames`] of its own, so that the service and
//! method names it reads call after call cost no allocation.
//!
//! The decoder treats every byte as hostile: each length field is checked
//! against the bytes left in the frame before it is used, so allocations are
//! bounded by the frame's own size, never by a number it claims, and nothing
//! can panic. The encoding
//! is canonical (one envelope, one byte string), which lets tests and the
//! fuzzer check that whatever decodes re-encodes to the very same bytes.
//!
//! ```
//! use rpc_core::frame::{self, FrameLimits};
//! use rpc_core::{ContentType, Envelope, Header};
//!
//! let limits = FrameLimits::default();
//! let envelope = Envelope {
//!     header: Header::request("calc".into(), "add".into(), ContentType::Json),
//!     body: br#"{"a":1,"b":2}"#.to_vec(),
//! };
//! let mut wire = Vec::new();
//! frame::encode(&envelope, &mut wire, &limits)?;
//!
//! // A reader first asks whether a whole frame is buffered...
//! assert!(matches!(frame::check(&wire[..10], &limits), Err(frame::FrameError::Incomplete)));
//! assert_eq!(frame::check(&wire, &limits)?, wire.len());
//! // ...then parses it.
//! let (decoded, consumed) = frame::decode(&wire, &limits)?;
//! assert_eq!((decoded, consumed), (envelope, wire.len()));
//! # Ok::<(), frame::FrameError>(())
//! ```

use std::sync::Arc;

use crate::codec::ContentType;
use crate::envelope::{Envelope, ErrorKind, Header, Kind, Metadata, PROTOCOL_VERSION, Status};
use crate::known_names::KnownNames;
use crate::limits::Limits;
use crate::name::{Address, Name};
use crate::trace::{TRACEPARENT, TRACEPARENT_LEN, TRACESTATE, TraceContext};

/// Width of the length prefix that starts every frame.
const LENGTH_PREFIX_LEN: usize = 4;

/// The prefix is a `u32`, so no frame can be longer than this whatever the limits say.
const MAX_ENCODABLE_FRAME: u64 = LENGTH_PREFIX_LEN as u64 + u32::MAX as u64;

/// Bytes after the prefix that every frame has, whatever its strings and body:
/// version, kind, content type, status (1 each), correlation id, deadline,
/// sent-at (8 each), service and method lengths (2 each), reply-to marker (1),
/// status message length (4), metadata count (2), body length (4).
const FIXED_LEN: usize = 4 + 3 * 8 + 2 + 2 + 1 + 4 + 2 + 4;

/// Reply-to marker byte: no reply address follows.
const REPLY_TO_ABSENT: u8 = 0;
/// Reply-to marker byte: a `u16`-length-prefixed address follows.
const REPLY_TO_PRESENT: u8 = 1;

/// Limits applied while encoding and decoding a frame: the crate's one
/// [`Limits`] type, whose `max_message_size` bounds the whole frame here.
pub type FrameLimits = Limits;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Not enough bytes yet: read more and try again.
    #[error("incomplete frame")]
    Incomplete,
    /// The frame (length prefix included) is larger than the limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The frame's size in bytes, prefix included (saturated at `usize::MAX`).
        size: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The frame was written by another protocol version (or is not a frame at all).
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The kind code is not one of [`Kind`]'s.
    #[error("unknown envelope kind code {0}")]
    UnknownKind(u8),
    /// The content-type code is not one of [`ContentType`]'s.
    #[error("unknown content type code {0}")]
    UnknownContentType(u8),
    /// The status code is neither `0` (ok) nor one of [`ErrorKind`]'s.
    #[error("unknown status code {0}")]
    UnknownStatus(u8),
    /// The reply-to marker is neither `0` (absent) nor `1` (present).
    #[error("invalid reply-to marker {0}")]
    InvalidReplyToMarker(u8),
    /// A string field is not valid UTF-8.
    #[error("field `{field}` is not valid UTF-8")]
    InvalidUtf8 {
        /// The field's name.
        field: &'static str,
    },
    /// A field, or the bytes a length field announces, runs past the end of the frame.
    #[error("frame ends inside field `{field}`")]
    Truncated {
        /// The field's name.
        field: &'static str,
    },
    /// The frame's length prefix covers bytes after the body.
    #[error("{count} unexpected bytes after the body")]
    TrailingBytes {
        /// How many bytes are left over.
        count: usize,
    },
    /// More metadata entries than the limit allows.
    #[error("{count} metadata entries exceed the limit of {limit}")]
    TooManyMetadata {
        /// The number of entries in the frame or envelope.
        count: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The same metadata key appears twice (an envelope cannot hold that).
    #[error("duplicate metadata key")]
    DuplicateMetadataKey,
    /// An ok status carries a message (only error statuses have one).
    #[error("ok status with a status message")]
    StatusMessageWithoutError,
    /// While encoding: a field is longer than its length prefix can express.
    #[error("field `{field}` is {len} bytes, more than the {max} its length prefix allows")]
    FieldTooLong {
        /// The field's name.
        field: &'static str,
        /// The field's length in bytes.
        len: usize,
        /// The largest length the encoding allows for it.
        max: usize,
    },
}

/// Returns the full length of the frame at the start of `buf` (prefix
/// included) if all of it is buffered.
///
/// Reads at most five bytes, allocates nothing and never looks past the
/// prefix and version, so it is cheap enough to call after every read.
///
/// # Errors
///
/// - [`FrameError::Incomplete`]: the frame is not all there yet.
/// - [`FrameError::TooLarge`]: the prefix announces more than
///   `limits.max_message_size`; reported as soon as the prefix is in, so a reader
///   never buffers a frame it will refuse.
/// - [`FrameError::UnsupportedVersion`]: the version byte is wrong; reported
///   as soon as it is in, because a peer speaking something else sends a
///   garbage length and waiting for that many bytes would stall the reader.
pub fn check(buf: &[u8], limits: &FrameLimits) -> Result<usize, FrameError> {
    let Some(prefix) = buf.first_chunk::<LENGTH_PREFIX_LEN>() else {
        return Err(FrameError::Incomplete);
    };
    let rest_len = u32::from_be_bytes(*prefix);
    let size = LENGTH_PREFIX_LEN as u64 + u64::from(rest_len);
    let size = match usize::try_from(size) {
        Ok(size) if size <= limits.max_message_size => size,
        _ => {
            return Err(FrameError::TooLarge {
                size: usize::try_from(size).unwrap_or(usize::MAX),
                limit: limits.max_message_size,
            });
        }
    };
    // An empty frame has no version byte: the byte after its prefix belongs
    // to the next frame. `decode` reports it as truncated.
    if rest_len > 0
        && let Some(&version) = buf.get(LENGTH_PREFIX_LEN)
        && version != PROTOCOL_VERSION
    {
        return Err(FrameError::UnsupportedVersion(version));
    }
    if buf.len() < size {
        return Err(FrameError::Incomplete);
    }
    Ok(size)
}

/// Decodes the frame at the start of `buf`; returns the envelope and the
/// number of bytes it took (bytes after it are left for the next call).
///
/// # Errors
///
/// Everything [`check`] reports, then a typed error for each way the frame's
/// contents can be wrong. Never panics, whatever `buf` holds.
pub fn decode(buf: &[u8], limits: &FrameLimits) -> Result<(Envelope, usize), FrameError> {
    decode_frame(buf, limits, None)
}

/// [`decode`], with the service, method and reply names that `names` knows
/// taken from it rather than allocated; the names of an accepted frame that
/// it did not know are added to it (see [`KnownNames`]). Accepts and
/// refuses exactly what [`decode`] does, and decodes the same envelope.
///
/// # Errors
///
/// As [`decode`]; `names` is left as it was.
// Inlined into a transport's parser, the envelope is built in the message
// that carries it rather than moved into it.
#[inline]
pub fn decode_with(
    buf: &[u8],
    limits: &FrameLimits,
    names: &mut KnownNames,
) -> Result<(Envelope, usize), FrameError> {
    decode_frame(buf, limits, Some(names))
}

/// Decodes one frame, with the names `known` has, if any, and adds to it
/// those it did not.
#[inline(always)]
fn decode_frame(
    buf: &[u8],
    limits: &FrameLimits,
    known: Option<&mut KnownNames>,
) -> Result<(Envelope, usize), FrameError> {
    let size = check(buf, limits)?;
    // `check` vouched for `size <= buf.len()`; `get` keeps that a non-panicking fact.
    let frame = buf
        .get(LENGTH_PREFIX_LEN..size)
        .ok_or(FrameError::Incomplete)?;
    let mut names = Names { known, new: false };
    let envelope = parse(&mut Reader { rest: frame }, limits, &mut names)?;
    Ok((envelope, size))
}

/// Appends the frame for `envelope` to `out`.
///
/// All sizes are checked before the first byte is written, so on error
/// `out` is left as it was. `out` grows at most once (an empty one to
/// exactly the frame's size).
///
/// # Errors
///
/// [`FrameError::TooLarge`] when the frame would exceed `limits.max_message_size`,
/// [`FrameError::TooManyMetadata`] past `limits.max_metadata_entries`, and
/// [`FrameError::FieldTooLong`] when a field outgrows its length prefix.
pub fn encode(
    envelope: &Envelope,
    out: &mut Vec<u8>,
    limits: &FrameLimits,
) -> Result<(), FrameError> {
    let size = encoded_len(envelope, limits)?;
    let (status_code, message) = match &envelope.header.status {
        Status::Ok => (0, ""),
        Status::Error { kind, message } => (kind.code(), message.as_str()),
    };

    // Everything but the body (the head) is written field by field with
    // one bounds check each and no growth check, into a buffer of the
    // stack when it fits there, and appended in one copy; the body is
    // appended after it.
    let head_len = size - envelope.body.len();
    if out.capacity() == 0 {
        // The usual case: a new vector, allocated once at its final size
        // (`reserve` would take the slower road of growing it).
        *out = Vec::with_capacity(size);
    } else {
        out.reserve(size);
    }
    let start = out.len();
    if head_len <= STACK_HEAD {
        let mut buffer = [0u8; STACK_HEAD];
        let head = &mut buffer[..head_len];
        write_head(envelope, status_code, message, size, head);
        out.extend_from_slice(head);
    } else {
        out.resize(start + head_len, 0);
        write_head(envelope, status_code, message, size, &mut out[start..]);
    }
    out.extend_from_slice(&envelope.body);
    debug_assert_eq!(out.len() - start, size, "encoded_len disagrees with encode");
    Ok(())
}

/// The largest head (a frame but its body) that `encode` writes on the
/// stack: room for the usual names, trace context and a few metadata
/// entries.
const STACK_HEAD: usize = 256;

/// Writes the head of `envelope`'s frame of `size` bytes into `head`, which
/// is exactly as long as the head.
#[inline(always)]
fn write_head(envelope: &Envelope, status_code: u8, message: &str, size: usize, head: &mut [u8]) {
    let header = &envelope.header;
    let mut head = Writer { rest: head };
    // `encoded_len` checked that every length below fits its prefix width,
    // so the narrowing casts here cannot truncate.
    // The fixed fields in one copy: prefix, the four codes, the three `u64`s.
    let mut fixed = [0u8; LENGTH_PREFIX_LEN + 4 + 3 * 8];
    fixed[..4].copy_from_slice(&((size - LENGTH_PREFIX_LEN) as u32).to_be_bytes());
    fixed[4..8].copy_from_slice(&[
        PROTOCOL_VERSION,
        header.kind.code(),
        header.content_type.code(),
        status_code,
    ]);
    fixed[8..16].copy_from_slice(&header.correlation_id.to_be_bytes());
    fixed[16..24].copy_from_slice(&header.deadline_ms.to_be_bytes());
    fixed[24..32].copy_from_slice(&header.sent_at_ms.to_be_bytes());
    head.array(fixed);
    head.str16(&header.service);
    head.str16(&header.method);
    match &header.reply_to {
        None => head.array([REPLY_TO_ABSENT]),
        Some(address) => {
            head.array([REPLY_TO_PRESENT]);
            head.str16(address.as_str());
        }
    }
    head.bytes32(message.as_bytes());
    head.array((header.wire_metadata_len() as u16).to_be_bytes());
    // The entries `Header::try_for_each_wire_entry` gives, in its order,
    // with the trace context's value written where it goes, not formatted
    // elsewhere and copied.
    if let Some(trace) = &header.trace {
        head.array(TRACE_ENTRY_PREFIX);
        if let Some(value) = head.chunk::<TRACEPARENT_LEN>() {
            trace.write_traceparent(value);
        }
    }
    for (key, value) in metadata_entries(header) {
        head.str16(key);
        head.bytes32(value.as_bytes());
    }
    head.array((envelope.body.len() as u32).to_be_bytes());
    debug_assert!(head.rest.is_empty(), "encoded_len disagrees with encode");
}

/// The unwritten rest of a frame's bytes, sized by `encoded_len`: each
/// write takes its bytes off the front. A write that does not fit (which
/// `encoded_len` rules out) writes nothing, and leaves nothing to write to.
struct Writer<'a> {
    rest: &'a mut [u8],
}

impl Writer<'_> {
    /// The next `N` bytes, to write into.
    #[inline(always)]
    fn chunk<const N: usize>(&mut self) -> Option<&mut [u8; N]> {
        let (head, rest) = std::mem::take(&mut self.rest).split_first_chunk_mut::<N>()?;
        self.rest = rest;
        Some(head)
    }

    /// Fixed-width bytes: a store, with no call to `memcpy`.
    #[inline(always)]
    fn array<const N: usize>(&mut self, bytes: [u8; N]) {
        if let Some(head) = self.chunk::<N>() {
            *head = bytes;
        }
    }

    #[inline(always)]
    fn bytes(&mut self, bytes: &[u8]) {
        if let Some((head, rest)) = std::mem::take(&mut self.rest).split_at_mut_checked(bytes.len())
        {
            head.copy_from_slice(bytes);
            self.rest = rest;
        }
    }

    /// A string with a `u16` length prefix; the caller checked that it fits.
    #[inline(always)]
    fn str16(&mut self, text: &str) {
        self.array((text.len() as u16).to_be_bytes());
        self.bytes(text.as_bytes());
    }

    /// Bytes with a `u32` length prefix; the caller checked that they fit.
    #[inline(always)]
    fn bytes32(&mut self, bytes: &[u8]) {
        self.array((bytes.len() as u32).to_be_bytes());
        self.bytes(bytes);
    }
}

/// The metadata entries the wire carries besides the trace context's:
/// all of them, but a `traceparent` of their own when the header has a
/// trace context (it gives way to that).
fn metadata_entries(header: &Header) -> impl Iterator<Item = (&str, &str)> {
    let traced = header.trace.is_some();
    header
        .metadata
        .iter()
        .filter(move |(key, _)| !(traced && *key == TRACEPARENT))
}

/// The bytes of the trace context's entry: key and value with their prefixes.
const TRACE_ENTRY_LEN: usize = TRACE_ENTRY_PREFIX.len() + TRACEPARENT_LEN;

/// The trace context's entry up to its value: the key with its `u16`
/// length, then the value's `u32` length.
const TRACE_ENTRY_PREFIX: [u8; 2 + TRACEPARENT.len() + 4] = {
    let mut prefix = [0u8; 2 + TRACEPARENT.len() + 4];
    let key = TRACEPARENT.as_bytes();
    prefix[1] = key.len() as u8;
    let mut i = 0;
    while i < key.len() {
        prefix[2 + i] = key[i];
        i += 1;
    }
    prefix[2 + key.len() + 3] = TRACEPARENT_LEN as u8;
    prefix
};

/// The size of `envelope`'s frame, prefix included, after checking every
/// field against its length prefix and the frame against `limits`.
fn encoded_len(envelope: &Envelope, limits: &FrameLimits) -> Result<usize, FrameError> {
    let header = &envelope.header;
    let metadata_count = header.wire_metadata_len();
    if metadata_count > limits.max_metadata_entries {
        return Err(FrameError::TooManyMetadata {
            count: metadata_count,
            limit: limits.max_metadata_entries,
        });
    }
    fit("metadata count", metadata_count, u16::MAX.into())?;

    // Sum in u64: a few fields of up to 4 GiB each would overflow a 32-bit usize.
    let mut size = (LENGTH_PREFIX_LEN + FIXED_LEN) as u64;
    size += fit("service", header.service.len(), u16::MAX.into())?;
    size += fit("method", header.method.len(), u16::MAX.into())?;
    if let Some(address) = &header.reply_to {
        size += 2 + fit("reply_to", address.as_str().len(), u16::MAX.into())?;
    }
    if let Status::Error { message, .. } = &header.status {
        size += fit("status message", message.len(), u32::MAX as usize)?;
    }
    if header.trace.is_some() {
        size += TRACE_ENTRY_LEN as u64;
    }
    for (key, value) in metadata_entries(header) {
        size += 2 + fit("metadata key", key.len(), u16::MAX.into())?;
        size += 4 + fit("metadata value", value.len(), u32::MAX as usize)?;
    }
    size += fit("body", envelope.body.len(), u32::MAX as usize)?;

    let limit = limits.max_message_size;
    match usize::try_from(size) {
        Ok(size) if size <= limit && size as u64 <= MAX_ENCODABLE_FRAME => Ok(size),
        _ => Err(FrameError::TooLarge {
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: limit.min(usize::try_from(MAX_ENCODABLE_FRAME).unwrap_or(usize::MAX)),
        }),
    }
}

/// `len` as a `u64` if it is at most `max`, the largest its length prefix holds.
#[inline]
fn fit(field: &'static str, len: usize, max: usize) -> Result<u64, FrameError> {
    if len > max {
        return Err(FrameError::FieldTooLong { field, len, max });
    }
    Ok(len as u64)
}

/// Parses the bytes after the length prefix of one whole frame.
// Inlined into its two callers: the envelope is then built where they
// return it, not moved there (a few hundred bytes).
#[inline(always)]
fn parse(
    frame: &mut Reader<'_>,
    limits: &FrameLimits,
    names: &mut Names<'_>,
) -> Result<Envelope, FrameError> {
    let version = frame.u8("version")?;
    if version != PROTOCOL_VERSION {
        return Err(FrameError::UnsupportedVersion(version));
    }
    // Codes first: a frame with a bad code is refused before any string is copied.
    let code = frame.u8("kind")?;
    let kind = Kind::from_code(code).ok_or(FrameError::UnknownKind(code))?;
    let code = frame.u8("content type")?;
    let content_type = ContentType::from_code(code).ok_or(FrameError::UnknownContentType(code))?;
    let error_kind = match frame.u8("status")? {
        0 => None,
        code => Some(ErrorKind::from_code(code).ok_or(FrameError::UnknownStatus(code))?),
    };
    let correlation_id = frame.u64("correlation id")?;
    let deadline_ms = frame.u64("deadline")?;
    let sent_at_ms = frame.u64("sent at")?;

    let service = names.name(frame.bytes16("service")?, "service")?;
    let method = names.name(frame.bytes16("method")?, "method")?;
    let reply_to = match frame.u8("reply_to marker")? {
        REPLY_TO_ABSENT => None,
        REPLY_TO_PRESENT => Some(Address::new(
            names.name(frame.bytes16("reply_to")?, "reply_to")?,
        )),
        marker => return Err(FrameError::InvalidReplyToMarker(marker)),
    };
    let message = frame.bytes32("status message")?;
    let status = match error_kind {
        Some(kind) => Status::Error {
            kind,
            message: utf8(message, "status message")?.to_owned(),
        },
        None if message.is_empty() => Status::Ok,
        // Refused rather than dropped, so that the encoding stays canonical.
        None => {
            utf8(message, "status message")?;
            return Err(FrameError::StatusMessageWithoutError);
        }
    };

    let (trace, metadata) = parse_metadata(frame, limits)?;
    let body = frame.bytes32("body")?.to_vec();
    if !frame.rest.is_empty() {
        return Err(FrameError::TrailingBytes {
            count: frame.rest.len(),
        });
    }
    names.learn([
        Some(&service),
        Some(&method),
        reply_to.as_ref().map(Address::name),
    ]);

    Ok(Envelope {
        header: Header {
            kind,
            correlation_id,
            service,
            method,
            reply_to,
            deadline_ms,
            sent_at_ms,
            content_type,
            status,
            trace,
            metadata,
        },
        body,
    })
}

/// Where a decoder gets the names it reads: the known ones, if it has
/// any, and a note of whether any was not known.
struct Names<'a> {
    known: Option<&'a mut KnownNames>,
    new: bool,
}

impl Names<'_> {
    /// The name spelled by `bytes`: a known one's clone (its bytes need no
    /// UTF-8 check: they equal a name's), else a new one.
    #[inline]
    fn name(&mut self, bytes: &[u8], field: &'static str) -> Result<Name, FrameError> {
        if let Some(known) = &self.known
            && let Some(name) = known.get(bytes)
        {
            return Ok(name.clone());
        }
        let text = utf8(bytes, field)?;
        self.new = true;
        Ok(if text.is_empty() {
            Name::from_static("")
        } else {
            Name::from(Arc::<str>::from(text))
        })
    }

    /// Adds the names of an accepted frame to the known ones, if some were new.
    #[inline]
    fn learn(&mut self, names: [Option<&Name>; 3]) {
        if let Some(known) = &mut self.known
            && self.new
        {
            for name in names.into_iter().flatten() {
                known.insert(name.clone());
            }
        }
    }
}

/// The metadata keys the crate names itself: read off the wire as the
/// constants, with no copy of the key.
const CONSTANT_KEYS: [&str; 2] = [TRACEPARENT, TRACESTATE];

/// The metadata entries: a valid `traceparent` as the trace context, the
/// rest as metadata.
fn parse_metadata(
    frame: &mut Reader<'_>,
    limits: &FrameLimits,
) -> Result<(Option<TraceContext>, Metadata), FrameError> {
    let count = usize::from(frame.u16("metadata count")?);
    // Checked before the loop: the duplicate check below is quadratic, and
    // this bound is what keeps it cheap.
    if count > limits.max_metadata_entries {
        return Err(FrameError::TooManyMetadata {
            count,
            limit: limits.max_metadata_entries,
        });
    }
    let mut metadata = Metadata::new();
    let mut trace = None;
    for _ in 0..count {
        let key_bytes = frame.bytes16("metadata key")?;
        let constant = CONSTANT_KEYS
            .into_iter()
            .find(|key| key.as_bytes() == key_bytes);
        let key = match constant {
            Some(key) => key,
            None => utf8(key_bytes, "metadata key")?,
        };
        let value = frame.bytes32("metadata value")?;
        // Only as the first entry, where the encoder writes it: anywhere
        // else it stays metadata, so that the frame encodes back to the
        // same bytes. (What it accepts is ASCII: no UTF-8 check needed.)
        if key == TRACEPARENT
            && trace.is_none()
            && metadata.is_empty()
            && let Some(sent) = TraceContext::from_wire_value(value)
        {
            trace = Some(sent);
            continue;
        }
        let value = utf8(value, "metadata value")?;
        // `Metadata::insert` would silently keep the last value; a sender
        // that wrote a key twice is broken or probing, so refuse the frame.
        if metadata.get(key).is_some() || (trace.is_some() && key == TRACEPARENT) {
            return Err(FrameError::DuplicateMetadataKey);
        }
        match constant {
            Some(key) => metadata.insert_static(key, value.to_owned()),
            None => metadata.insert(key, value),
        }
    }
    Ok((trace, metadata))
}

/// `bytes` as text, or the error that names `field`.
#[inline]
fn utf8<'a>(bytes: &'a [u8], field: &'static str) -> Result<&'a str, FrameError> {
    std::str::from_utf8(bytes).map_err(|_| FrameError::InvalidUtf8 { field })
}

/// A cursor over the bytes of one frame. Every read checks the bytes left
/// first, so a length field can never point past the frame.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FrameError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(FrameError::Truncated { field })?;
        self.rest = rest;
        Ok(*head)
    }

    #[inline]
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], FrameError> {
        let (head, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or(FrameError::Truncated { field })?;
        self.rest = rest;
        Ok(head)
    }

    #[inline]
    fn u8(&mut self, field: &'static str) -> Result<u8, FrameError> {
        self.array::<1>(field).map(|[byte]| byte)
    }

    #[inline]
    fn u16(&mut self, field: &'static str) -> Result<u16, FrameError> {
        self.array(field).map(u16::from_be_bytes)
    }

    #[inline]
    fn u32(&mut self, field: &'static str) -> Result<u32, FrameError> {
        self.array(field).map(u32::from_be_bytes)
    }

    #[inline]
    fn u64(&mut self, field: &'static str) -> Result<u64, FrameError> {
        self.array(field).map(u64::from_be_bytes)
    }

    /// Bytes with a `u16` length prefix.
    #[inline]
    fn bytes16(&mut self, field: &'static str) -> Result<&'a [u8], FrameError> {
        let len = self.u16(field)?;
        self.take(usize::from(len), field)
    }

    /// Bytes with a `u32` length prefix.
    #[inline]
    fn bytes32(&mut self, field: &'static str) -> Result<&'a [u8], FrameError> {
        let len = self.u32(field)?;
        // A length that does not fit in usize cannot fit in the frame either.
        let len = usize::try_from(len).map_err(|_| FrameError::Truncated { field })?;
        self.take(len, field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request that uses every field, and its frame written out by hand
    /// from the layout table in `docs/wire.md`.
    ///
    /// Offsets the tests below poke at: 4 version, 5 kind, 6 content type,
    /// 7 status, 32 service length, 34 service, 40 method, 43 reply-to
    /// marker, 46 reply-to, 51 status message length, 55 metadata count,
    /// 57 first key length, 59 key, 64 value, 65 body length.
    fn sample() -> (Envelope, Vec<u8>) {
        let mut header = Header::request("calc".into(), "add".into(), ContentType::Json);
        header.correlation_id = 0x0102_0304_0506_0708;
        header.deadline_ms = 9;
        header.sent_at_ms = 10;
        header.reply_to = Some(Address::from_static("inbox"));
        header.metadata.insert("k", "v");
        let envelope = Envelope {
            header,
            body: vec![0xAA, 0xBB],
        };
        #[rustfmt::skip]
        let wire = vec![
            0, 0, 0, 67,                  // length of the rest
            1, 1, 2, 0,                   // version, kind request, content json, status ok
            1, 2, 3, 4, 5, 6, 7, 8,       // correlation id
            0, 0, 0, 0, 0, 0, 0, 9,       // deadline
            0, 0, 0, 0, 0, 0, 0, 10,      // sent at
            0, 4, b'c', b'a', b'l', b'c', // service
            0, 3, b'a', b'd', b'd',       // method
            1, 0, 5, b'i', b'n', b'b', b'o', b'x', // reply_to present
            0, 0, 0, 0,                   // status message, empty
            0, 1,                         // one metadata entry
            0, 1, b'k', 0, 0, 0, 1, b'v',
            0, 0, 0, 2, 0xAA, 0xBB,       // body
        ];
        (envelope, wire)
    }

    fn encoded(envelope: &Envelope) -> Vec<u8> {
        let mut out = Vec::new();
        encode(envelope, &mut out, &FrameLimits::default()).expect("encodable");
        out
    }

    fn decode_default(buf: &[u8]) -> Result<(Envelope, usize), FrameError> {
        decode(buf, &FrameLimits::default())
    }

    /// Rewrites the length prefix after an edit that changed the frame's size.
    fn fix_prefix(wire: &mut [u8]) {
        let rest = u32::try_from(wire.len() - LENGTH_PREFIX_LEN).expect("small frame");
        wire[..LENGTH_PREFIX_LEN].copy_from_slice(&rest.to_be_bytes());
    }

    #[test]
    fn encodes_the_documented_layout() {
        let (envelope, wire) = sample();
        assert_eq!(encoded(&envelope), wire);
        assert_eq!(
            encoded_len(&envelope, &FrameLimits::default()),
            Ok(wire.len())
        );
    }

    #[test]
    fn decodes_the_documented_layout() {
        let (envelope, wire) = sample();
        assert_eq!(decode_default(&wire), Ok((envelope, wire.len())));
    }

    #[test]
    fn error_reply_round_trips() {
        let (request, _) = sample();
        let mut header = request.header.reply(Status::Error {
            kind: ErrorKind::NoSuchMethod,
            message: "no method `sub` — ünïcode".to_owned(),
        });
        header.metadata.insert("trace", "00-abc-01");
        let reply = Envelope {
            header,
            body: Vec::new(),
        };
        let wire = encoded(&reply);
        assert_eq!(wire[7], ErrorKind::NoSuchMethod.code());
        assert_eq!(decode_default(&wire), Ok((reply, wire.len())));
    }

    #[test]
    fn the_trace_context_travels_as_the_first_metadata_entry() {
        let (mut envelope, _) = sample();
        let trace = TraceContext::new_root();
        envelope.header.trace = Some(trace);
        let wire = encoded(&envelope);
        let entry = [
            &(TRACEPARENT.len() as u16).to_be_bytes()[..],
            TRACEPARENT.as_bytes(),
            &55u32.to_be_bytes(),
            trace.traceparent().as_str().as_bytes(),
        ]
        .concat();
        let at = wire
            .windows(entry.len())
            .position(|w| w == entry)
            .expect("a traceparent entry");
        assert_eq!(&wire[at - 2..at], &2u16.to_be_bytes(), "two entries");
        assert_eq!(decode_default(&wire), Ok((envelope.clone(), wire.len())));

        // A foreign sender's traceparent after other metadata (or in a form
        // of its own) stays metadata: the frame encodes back to the same
        // bytes, and the server still reads it (`trace::caller`).
        let mut foreign = envelope.clone();
        foreign.header.trace = None;
        foreign.header.metadata = Metadata::new();
        foreign.header.metadata.insert("k", "v");
        foreign
            .header
            .metadata
            .insert(TRACEPARENT, trace.to_traceparent());
        let wire = encoded(&foreign);
        let (decoded, _) = decode_default(&wire).unwrap();
        assert_eq!(decoded.header.trace, None);
        assert_eq!(decoded, foreign);
        assert_eq!(encoded(&decoded), wire);

        // Both at once: the header's wins, the entry is written once.
        let mut both = envelope.clone();
        both.header.metadata.insert(TRACEPARENT, "00-abc-def-01");
        let (decoded, _) = decode_default(&encoded(&both)).unwrap();
        assert_eq!(decoded.header.trace, Some(trace));
        assert_eq!(decoded.header.metadata.get(TRACEPARENT), None);
    }

    #[test]
    fn heads_on_and_off_the_stack_encode_alike() {
        // Heads of either size around the stack buffer's, written into an
        // empty vector and after bytes already there, decode and re-encode
        // to the same bytes.
        let (mut envelope, _) = sample();
        let base = encoded(&envelope).len() - envelope.body.len();
        for head in [STACK_HEAD - 1, STACK_HEAD, STACK_HEAD + 1] {
            envelope.header.method = Name::from("m".repeat(3 + head - base));
            let wire = encoded(&envelope);
            assert_eq!(wire.len() - envelope.body.len(), head);
            let (decoded, used) = decode_default(&wire).expect("decodes");
            assert_eq!((&decoded, used), (&envelope, wire.len()));
            assert_eq!(encoded(&decoded), wire);
            let mut after = vec![7, 7];
            encode(&envelope, &mut after, &FrameLimits::default()).expect("encodable");
            assert_eq!((&after[..2], &after[2..]), (&[7, 7][..], &wire[..]));
        }
    }

    #[test]
    fn decode_takes_one_frame_and_leaves_the_next() {
        let (first, mut wire) = sample();
        let mut second = first.clone();
        second.header.correlation_id = 99;
        let first_len = wire.len();
        encode(&second, &mut wire, &FrameLimits::default()).expect("encodable");

        let (decoded, used) = decode_default(&wire).expect("first frame");
        assert_eq!((decoded, used), (first, first_len));
        let (decoded, used) = decode_default(&wire[first_len..]).expect("second frame");
        assert_eq!(decoded, second);
        assert_eq!(first_len + used, wire.len());
    }

    #[test]
    fn check_waits_for_the_whole_frame() {
        let (_, wire) = sample();
        for cut in 0..wire.len() {
            assert_eq!(
                check(&wire[..cut], &FrameLimits::default()),
                Err(FrameError::Incomplete),
                "cut {cut}"
            );
            assert_eq!(
                decode_default(&wire[..cut]),
                Err(FrameError::Incomplete),
                "cut {cut}"
            );
        }
        assert_eq!(check(&wire, &FrameLimits::default()), Ok(wire.len()));
    }

    #[test]
    fn check_refuses_an_oversized_prefix_before_the_body_arrives() {
        let limits = FrameLimits::default();
        // Only the prefix is buffered: the refusal must not wait for 4 GiB.
        let prefix = u32::MAX.to_be_bytes();
        assert_eq!(
            check(&prefix, &limits),
            Err(FrameError::TooLarge {
                size: LENGTH_PREFIX_LEN + u32::MAX as usize,
                limit: crate::limits::DEFAULT_MAX_MESSAGE_SIZE,
            })
        );
        // The limit counts the prefix: exactly max_message_size passes, one more does not.
        let at_limit =
            ((crate::limits::DEFAULT_MAX_MESSAGE_SIZE - LENGTH_PREFIX_LEN) as u32).to_be_bytes();
        assert_eq!(check(&at_limit, &limits), Err(FrameError::Incomplete));
        let over = ((crate::limits::DEFAULT_MAX_MESSAGE_SIZE - LENGTH_PREFIX_LEN + 1) as u32)
            .to_be_bytes();
        assert!(matches!(
            check(&over, &limits),
            Err(FrameError::TooLarge { .. })
        ));
    }

    #[test]
    fn limits_are_configurable() {
        let (envelope, wire) = sample();
        let tight = FrameLimits {
            max_message_size: wire.len() - 1,
            ..FrameLimits::default()
        };
        let too_large = FrameError::TooLarge {
            size: wire.len(),
            limit: wire.len() - 1,
        };
        assert_eq!(check(&wire, &tight), Err(too_large.clone()));
        assert_eq!(decode(&wire, &tight), Err(too_large.clone()));
        let mut out = vec![7];
        assert_eq!(encode(&envelope, &mut out, &tight), Err(too_large));
        assert_eq!(out, [7], "a refused encode leaves the buffer alone");

        let exact = FrameLimits {
            max_message_size: wire.len(),
            ..FrameLimits::default()
        };
        assert_eq!(check(&wire, &exact), Ok(wire.len()));
    }

    #[test]
    fn check_fails_fast_on_a_foreign_version() {
        // A peer speaking HTTP: the "length" is ASCII and the fifth byte is not ours.
        let http = b"GET / HTTP/1.1\r\n";
        let limits = FrameLimits {
            max_message_size: usize::MAX,
            ..FrameLimits::default()
        };
        assert_eq!(
            check(http, &limits),
            Err(FrameError::UnsupportedVersion(b'/'))
        );
        let (_, mut wire) = sample();
        wire[4] = 2;
        assert_eq!(
            check(&wire[..5], &FrameLimits::default()),
            Err(FrameError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn empty_frame_is_truncated_not_misread() {
        // A zero-length frame followed by a byte of the next one.
        let wire = [0, 0, 0, 0, 9];
        assert_eq!(check(&wire, &FrameLimits::default()), Ok(4));
        assert_eq!(
            decode_default(&wire),
            Err(FrameError::Truncated { field: "version" })
        );
    }

    #[test]
    fn unknown_codes_are_typed_errors() {
        let (_, wire) = sample();
        // The first unassigned codes, found rather than written down, so
        // that adding a kind keeps this test about unknown codes.
        let unassigned =
            |known: fn(u8) -> bool| (1..=255).find(|&code| !known(code)).expect("a free code");
        let kind = unassigned(|code| Kind::from_code(code).is_some());
        let content_type = unassigned(|code| ContentType::from_code(code).is_some());
        let status = unassigned(|code| ErrorKind::from_code(code).is_some());
        let cases = [
            (5, 0, FrameError::UnknownKind(0)),
            (5, kind, FrameError::UnknownKind(kind)),
            (6, 0, FrameError::UnknownContentType(0)),
            (
                6,
                content_type,
                FrameError::UnknownContentType(content_type),
            ),
            (7, status, FrameError::UnknownStatus(status)),
            (43, 2, FrameError::InvalidReplyToMarker(2)),
        ];
        for (offset, byte, expected) in cases {
            let mut bad = wire.clone();
            bad[offset] = byte;
            assert_eq!(
                decode_default(&bad),
                Err(expected),
                "byte {offset} = {byte}"
            );
        }
    }

    #[test]
    fn invalid_utf8_names_the_field() {
        let (_, wire) = sample();
        for (offset, field) in [
            (34, "service"),
            (40, "method"),
            (46, "reply_to"),
            (59, "metadata key"),
            (64, "metadata value"),
        ] {
            let mut bad = wire.clone();
            bad[offset] = 0xFF;
            assert_eq!(
                decode_default(&bad),
                Err(FrameError::InvalidUtf8 { field }),
                "offset {offset}"
            );
        }
    }

    #[test]
    fn length_fields_are_checked_against_the_frame() {
        let (_, wire) = sample();
        // The body claims 3 bytes where the frame holds 2.
        let mut bad = wire.clone();
        bad[68] = 3;
        assert_eq!(
            decode_default(&bad),
            Err(FrameError::Truncated { field: "body" })
        );
        // The service claims 65535 bytes.
        let mut bad = wire.clone();
        bad[32..34].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(
            decode_default(&bad),
            Err(FrameError::Truncated { field: "service" })
        );
        // A message length of 4 GiB - 1 must not be trusted (nor allocated).
        let mut bad = wire.clone();
        bad[51..55].copy_from_slice(&[0xFF; 4]);
        assert_eq!(
            decode_default(&bad),
            Err(FrameError::Truncated {
                field: "status message"
            })
        );
        // A prefix shorter than the fixed header.
        let mut bad = wire[..20].to_vec();
        fix_prefix(&mut bad);
        assert_eq!(
            decode_default(&bad),
            Err(FrameError::Truncated { field: "deadline" })
        );
    }

    #[test]
    fn trailing_bytes_inside_the_frame_are_refused() {
        let (_, mut wire) = sample();
        wire.extend_from_slice(&[0, 0]);
        fix_prefix(&mut wire);
        assert_eq!(
            decode_default(&wire),
            Err(FrameError::TrailingBytes { count: 2 })
        );
    }

    #[test]
    fn ok_status_with_a_message_is_refused() {
        let (_, mut wire) = sample();
        // Give the empty status message one byte.
        wire[54] = 1;
        wire.insert(55, b'x');
        fix_prefix(&mut wire);
        assert_eq!(
            decode_default(&wire),
            Err(FrameError::StatusMessageWithoutError)
        );
    }

    #[test]
    fn duplicate_metadata_keys_are_refused() {
        let (_, mut wire) = sample();
        // Count 2, then the same entry again.
        wire[56] = 2;
        let entry = wire[57..65].to_vec();
        wire.splice(65..65, entry);
        fix_prefix(&mut wire);
        assert_eq!(decode_default(&wire), Err(FrameError::DuplicateMetadataKey));
    }

    #[test]
    fn metadata_count_is_bounded_both_ways() {
        let (mut envelope, wire) = sample();
        let none = FrameLimits {
            max_metadata_entries: 0,
            ..FrameLimits::default()
        };
        let expected = FrameError::TooManyMetadata { count: 1, limit: 0 };
        assert_eq!(decode(&wire, &none), Err(expected.clone()));
        assert_eq!(encode(&envelope, &mut Vec::new(), &none), Err(expected));

        // A count far above the limit is refused before any entry is read.
        let mut bad = wire.clone();
        bad[55..57].copy_from_slice(&[0xFF, 0xFF]);
        assert_eq!(
            decode_default(&bad),
            Err(FrameError::TooManyMetadata {
                count: 0xFFFF,
                limit: crate::limits::MAX_METADATA_ENTRIES,
            })
        );

        envelope.header.metadata = (0..=crate::limits::MAX_METADATA_ENTRIES)
            .map(|i| (i.to_string(), ""))
            .collect();
        assert!(matches!(
            encode(&envelope, &mut Vec::new(), &FrameLimits::default()),
            Err(FrameError::TooManyMetadata { .. })
        ));
    }

    #[test]
    fn encode_refuses_fields_longer_than_their_prefix() {
        let (mut envelope, _) = sample();
        envelope.header.method = Name::from("m".repeat(usize::from(u16::MAX) + 1));
        let mut out = Vec::new();
        assert_eq!(
            encode(&envelope, &mut out, &FrameLimits::default()),
            Err(FrameError::FieldTooLong {
                field: "method",
                len: usize::from(u16::MAX) + 1,
                max: usize::from(u16::MAX),
            })
        );
        assert!(out.is_empty());
        // The longest method that fits still round trips.
        envelope.header.method = Name::from("m".repeat(usize::from(u16::MAX)));
        let wire = encoded(&envelope);
        assert_eq!(decode_default(&wire), Ok((envelope, wire.len())));
    }
}
