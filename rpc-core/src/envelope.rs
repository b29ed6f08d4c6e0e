//! The framed message every call travels in: a small header and an opaque body.
//!
//! The header is what transports and runtimes read; the body is the codec's
//! bytes of the argument struct (requests) or of the return value (replies),
//! and nobody but the generated code ever decodes it.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use smallvec::SmallVec;

use crate::codec::ContentType;
use crate::name::{Address, Name};
use crate::trace::{TRACEPARENT, TraceContext};

/// The wire protocol version this crate speaks. Envelopes of any other
/// version are refused (see [`FrameError::UnsupportedVersion`](crate::FrameError)).
pub const PROTOCOL_VERSION: u8 = 1;

/// A framed message: header plus body.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// What the message is and where it belongs.
    pub header: Header,
    /// The codec's bytes of the arguments or of the reply value.
    pub body: Vec<u8>,
}

/// The part of an envelope that transports and runtimes read.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// Request, reply, oneway or cancel.
    pub kind: Kind,
    /// Pairs a reply with its request; unique per client inbox.
    pub correlation_id: u64,
    /// The service's wire name (`#[rpc_service(name = "..")]`).
    pub service: Name,
    /// The method's name: methods are identified by name, never by index.
    pub method: Name,
    /// Where the reply goes; `None` for oneway calls and replies.
    pub reply_to: Option<Address>,
    /// Absolute deadline, unix milliseconds. `0` means none.
    pub deadline_ms: u64,
    /// When the sender sent it, unix milliseconds.
    pub sent_at_ms: u64,
    /// The codec of the body; a server answers in the codec it was called with.
    pub content_type: ContentType,
    /// On replies: success, or the kind of failure with a message.
    pub status: Status,
    /// The call's place in a W3C trace. Every wire carries it as the
    /// [`traceparent`](crate::trace::TRACEPARENT) metadata entry; kept apart
    /// from [`metadata`](Self::metadata) so that it costs no allocation.
    pub trace: Option<TraceContext>,
    /// Caller data (`tracestate`, tenant, ...), string to string.
    pub metadata: Metadata,
}

impl Envelope {
    /// An envelope with empty names and body; costs no allocation. What is
    /// left behind where an envelope is moved out of a value that must stay
    /// whole.
    pub(crate) fn empty() -> Self {
        let none = Name::from_static("");
        Envelope {
            header: Header::request(none.clone(), none, ContentType::default()),
            body: Vec::new(),
        }
    }
}

impl Header {
    /// A request header with everything but the routing fields left empty.
    pub fn request(service: Name, method: Name, content_type: ContentType) -> Self {
        Header {
            kind: Kind::Request,
            correlation_id: 0,
            service,
            method,
            reply_to: None,
            deadline_ms: 0,
            sent_at_ms: 0,
            content_type,
            status: Status::Ok,
            trace: None,
            metadata: Metadata::default(),
        }
    }

    /// The reply header for this request: same correlation id, service,
    /// method and codec, addressed nowhere (the reply address is the
    /// request's `reply_to`).
    pub fn reply(&self, status: Status) -> Self {
        self.reply_sent_at(status, now_ms())
    }

    /// [`reply`](Self::reply), dated `sent_at_ms` (unix milliseconds) by a
    /// caller that has just read the clock.
    pub(crate) fn reply_sent_at(&self, status: Status, sent_at_ms: u64) -> Self {
        Header {
            kind: Kind::Reply,
            correlation_id: self.correlation_id,
            service: self.service.clone(),
            method: self.method.clone(),
            reply_to: None,
            deadline_ms: self.deadline_ms,
            sent_at_ms,
            content_type: self.content_type,
            status,
            trace: None,
            metadata: Metadata::default(),
        }
    }

    /// The number of metadata entries on the wire: the metadata's, and
    /// the trace context's `traceparent` (see
    /// [`try_for_each_wire_entry`](Self::try_for_each_wire_entry)).
    pub fn wire_metadata_len(&self) -> usize {
        match self.trace {
            Some(_) => {
                1 + self.metadata.len() - usize::from(self.metadata.get(TRACEPARENT).is_some())
            }
            None => self.metadata.len(),
        }
    }

    /// Calls `entry` with each metadata entry as the wire carries it: the
    /// trace context first, as its `traceparent` entry, then the metadata
    /// (where a `traceparent` of its own gives way to the trace context).
    /// Stops at the first error.
    pub fn try_for_each_wire_entry<E>(
        &self,
        mut entry: impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        if let Some(trace) = &self.trace {
            entry(TRACEPARENT, trace.traceparent().as_str())?;
        }
        for (key, value) in self.metadata.iter() {
            if self.trace.is_some() && key == TRACEPARENT {
                continue;
            }
            entry(key, value)?;
        }
        Ok(())
    }

    /// Time left before the deadline, or `None` when there is no deadline.
    /// A passed deadline gives `Some(Duration::ZERO)`.
    pub fn remaining(&self) -> Option<Duration> {
        if self.deadline_ms == 0 {
            return None;
        }
        Some(Duration::from_millis(
            self.deadline_ms.saturating_sub(now_ms()),
        ))
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.deadline_ms != 0 && now_ms() >= self.deadline_ms
    }
}

/// What an envelope is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A call that expects a reply at `reply_to`.
    Request,
    /// The answer to a request.
    Reply,
    /// A call that expects no reply.
    Oneway,
    /// The caller gave up on a request (best effort).
    Cancel,
}

impl Kind {
    /// The kind's one-byte wire code.
    pub const fn code(self) -> u8 {
        match self {
            Kind::Request => 1,
            Kind::Reply => 2,
            Kind::Oneway => 3,
            Kind::Cancel => 4,
        }
    }

    /// The kind for a wire code; `None` for unknown codes.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Kind::Request),
            2 => Some(Kind::Reply),
            3 => Some(Kind::Oneway),
            4 => Some(Kind::Cancel),
            _ => None,
        }
    }

    /// The kind's name on text-based wires (AMQP headers).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Reply => "reply",
            Kind::Oneway => "oneway",
            Kind::Cancel => "cancel",
        }
    }

    /// The kind for a text name; `None` for unknown names.
    pub fn parse(text: &str) -> Option<Self> {
        [Kind::Request, Kind::Reply, Kind::Oneway, Kind::Cancel]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// The outcome a reply carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The body holds the method's return value.
    Ok,
    /// The call failed before or while running; the body is empty.
    Error {
        /// What kind of failure.
        kind: ErrorKind,
        /// A human-readable message. Never a type name.
        message: String,
    },
}

/// The kinds of failure a reply can report. Each maps onto one
/// [`RpcError`](crate::RpcError) variant on the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service has no method of that name.
    NoSuchMethod,
    /// The server could not decode the arguments.
    Decode,
    /// The server could not encode the return value.
    Encode,
    /// The handler panicked or failed.
    Remote,
    /// The deadline passed before the server ran the request.
    Timeout,
    /// The server refused the request for lack of capacity.
    Overloaded,
    /// Nobody serves the service the request was sent to.
    NoSuchService,
    /// The request body exceeds the server's size limit; it was not decoded.
    TooLarge,
}

impl ErrorKind {
    /// The kind's one-byte wire code (`0` is reserved for "ok").
    pub const fn code(self) -> u8 {
        match self {
            ErrorKind::NoSuchMethod => 1,
            ErrorKind::Decode => 2,
            ErrorKind::Encode => 3,
            ErrorKind::Remote => 4,
            ErrorKind::Timeout => 5,
            ErrorKind::Overloaded => 6,
            ErrorKind::NoSuchService => 7,
            ErrorKind::TooLarge => 8,
        }
    }

    /// The kind for a wire code; `None` for `0` and unknown codes.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ErrorKind::NoSuchMethod),
            2 => Some(ErrorKind::Decode),
            3 => Some(ErrorKind::Encode),
            4 => Some(ErrorKind::Remote),
            5 => Some(ErrorKind::Timeout),
            6 => Some(ErrorKind::Overloaded),
            7 => Some(ErrorKind::NoSuchService),
            8 => Some(ErrorKind::TooLarge),
            _ => None,
        }
    }

    /// The kind's name on text-based wires (AMQP headers).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NoSuchMethod => "no_such_method",
            ErrorKind::Decode => "decode",
            ErrorKind::Encode => "encode",
            ErrorKind::Remote => "remote",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::NoSuchService => "no_such_service",
            ErrorKind::TooLarge => "too_large",
        }
    }

    /// The kind for a text name; `None` for unknown names.
    pub fn parse(text: &str) -> Option<Self> {
        (1..=8)
            .filter_map(ErrorKind::from_code)
            .find(|kind| kind.as_str() == text)
    }
}

/// Caller data that travels with a call: string keys to string values.
///
/// Kept as a small vector, not a map: calls carry a handful of entries at
/// most, and an empty one costs no allocation. The entries are shared
/// (copied on the first write to a shared copy), so that the copy a server
/// hands its handler's [`Context`](crate::Context) costs no allocation.
#[derive(Clone, Debug, Default)]
pub struct Metadata(Option<Arc<Entries>>);

/// The entries: the first two inline (a call usually carries its trace
/// context alone), keys the crate writes itself borrowed from constants.
type Entries = SmallVec<[(Cow<'static, str>, String); 2]>;

impl Metadata {
    /// Keys under this prefix are set by transports only (for example
    /// [`Context::CALLER_KEY`](crate::Context::CALLER_KEY)); a client may not
    /// send them, so a server can trust what it finds there.
    pub const RESERVED_PREFIX: &'static str = "x-rpc-";

    /// No entries.
    pub const fn new() -> Self {
        Metadata(None)
    }

    fn entries(&self) -> &[(Cow<'static, str>, String)] {
        self.0.as_deref().map_or(&[], SmallVec::as_slice)
    }

    /// The entries to change: this copy's own (a shared list is copied).
    fn entries_mut(&mut self) -> &mut Entries {
        Arc::make_mut(self.0.get_or_insert_with(Arc::default))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.set(Cow::Owned(key.into()), value.into());
    }

    /// [`insert`](Self::insert) for a key that is a constant: no copy of it.
    pub(crate) fn insert_static(&mut self, key: &'static str, value: String) {
        self.set(Cow::Borrowed(key), value);
    }

    fn set(&mut self, key: Cow<'static, str>, value: String) {
        let entries = self.entries_mut();
        match entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => entries.push((key, value)),
        }
    }

    /// All entries, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries().iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// The first key under [`RESERVED_PREFIX`](Self::RESERVED_PREFIX), if any.
    pub fn reserved_key(&self) -> Option<&str> {
        self.entries()
            .iter()
            .map(|(k, _)| k.as_ref())
            .find(|k| k.starts_with(Self::RESERVED_PREFIX))
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.entries().iter().position(|(k, _)| k == key)?;
        Some(self.entries_mut().remove(at).1)
    }

    /// Removes every key under [`RESERVED_PREFIX`](Self::RESERVED_PREFIX);
    /// for transports, before they add their own.
    pub fn remove_reserved(&mut self) {
        if self.reserved_key().is_some() {
            self.entries_mut()
                .retain(|(k, _)| !k.starts_with(Self::RESERVED_PREFIX));
        }
    }
}

/// Equal when the entries are, in the same order (whether shared or not).
impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        self.entries() == other.entries()
    }
}

impl Eq for Metadata {}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut metadata = Metadata::new();
        for (k, v) in iter {
            metadata.insert(k, v);
        }
        metadata
    }
}

/// Now, as unix milliseconds: the one wall clock of the crate (see
/// `clock.rs`), which the wire's deadlines and send times are read against.
pub use crate::clock::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_error_kind_codes_round_trip() {
        for code in 0..=255u8 {
            if let Some(kind) = Kind::from_code(code) {
                assert_eq!(kind.code(), code);
                assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            }
            if let Some(kind) = ErrorKind::from_code(code) {
                assert_eq!(kind.code(), code);
                assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
            }
        }
        assert_eq!(ErrorKind::from_code(0), None);
    }

    #[test]
    fn metadata_copies_are_independent() {
        let mut original = Metadata::new();
        original.insert("tenant", "a");
        let mut copy = original.clone();
        copy.insert("tenant", "b");
        copy.insert("region", "eu");
        assert_eq!(original.get("tenant"), Some("a"));
        assert_eq!(original.len(), 1);
        assert_eq!(copy.get("tenant"), Some("b"));
        assert_eq!(copy.len(), 2);
        let mut emptied = original.clone();
        emptied.insert("x-rpc-caller", "me");
        emptied.remove_reserved();
        assert_eq!(emptied, original);
        let mut cleared = Metadata::new();
        cleared.insert("x-rpc-caller", "me");
        cleared.remove_reserved();
        assert_eq!(cleared, Metadata::new());
        assert!(cleared.is_empty());
    }

    #[test]
    fn metadata_insert_replaces() {
        let mut m = Metadata::new();
        m.insert("tenant", "a");
        m.insert("tenant", "b");
        assert_eq!(m.get("tenant"), Some("b"));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn expired_deadline_has_zero_remaining() {
        let mut h = Header::request("s".into(), "m".into(), ContentType::Json);
        assert_eq!(h.remaining(), None);
        h.deadline_ms = 1;
        assert!(h.is_expired());
        assert_eq!(h.remaining(), Some(Duration::ZERO));
    }
}
