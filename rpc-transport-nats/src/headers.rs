//! The envelope <-> NATS message mapping (docs/wire.md is its prose twin).
//!
//! The subject names the service and the method (`<prefix><service>.<method>`),
//! the reply subject is the caller's inbox with the correlation id as its
//! last token (`<inbox>.<id>`), a few header fields carry the rest, and the
//! body is the codec payload alone: a plain NATS client (`nats req calc.add
//! '{"a":2,"b":3}'`, nats-py) calls a JSON service with no headers at all.
//! Decoding never trusts the wire: every failure is a [`HeadersError`],
//! never a panic.

use std::sync::Arc;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use rpc_core::limits::{self, MetadataError};
use rpc_core::trace::{TRACEPARENT, TraceContext};
use rpc_core::{Address, ContentType, Envelope, ErrorKind, Header, Kind, Metadata, Name, Status};

/// Header of the protocol version (absent means 1). Not written while the
/// version is 1; checked when a sender writes it.
pub const VERSION_HEADER: &str = "x-rpc-version";
/// Header of the correlation id of a cancel: it names the call it cancels,
/// and travels without that call's reply subject (where a request's id is).
pub const CORRELATION_HEADER: &str = "x-rpc-correlation-id";

/// Header of the envelope kind (`request`, `reply`, `oneway`, `cancel`).
/// Written only when the kind is not the one the message's arrival implies.
pub const KIND_HEADER: &str = "x-rpc-kind";
/// Header of the absolute deadline, unix milliseconds (decimal text).
pub const DEADLINE_HEADER: &str = "x-rpc-deadline-ms";
/// Header of a failed reply's error kind (`remote`, `decode`, ...); absent on success.
pub const STATUS_HEADER: &str = "x-rpc-status";
/// Header of a failed reply's message.
pub const ERROR_HEADER: &str = "x-rpc-error";
/// Header of the reply subject in durable mode, where the NATS reply
/// subject of a JetStream publish is taken by the stream's own ack.
pub const REPLY_TO_HEADER: &str = "x-rpc-reply-to";
/// Header of the body's codec (a MIME type). Absent means JSON, so that
/// header-less foreign clients are understood.
pub const CONTENT_TYPE_HEADER: &str = "Content-Type";
/// The reply-subject tokens that name a reply's codec: a call in one of
/// these codecs asks for its reply at `<inbox>.<token>.<correlation id>`,
/// so that the reply need not say its codec; a reply subject without one
/// asks for JSON (`<inbox>.<correlation id>`, as any foreign inbox).
pub const REPLY_CODEC_TOKENS: [(ContentType, &str); 1] = [(ContentType::Bincode, "bincode")];

/// Header names starting with this are ours; metadata may not use it
/// (rpc-core's [`Metadata::RESERVED_PREFIX`]).
pub const RESERVED_PREFIX: &str = Metadata::RESERVED_PREFIX;
/// Header names starting with this are NATS' own (`Nats-Msg-Id`, ...); they
/// are not caller metadata.
pub const NATS_PREFIX: &str = "Nats-";

/// Metadata entries beyond this are refused, on both sides (rpc-core's
/// limit, so that every layer agrees).
pub const MAX_METADATA_ENTRIES: usize = rpc_core::MAX_METADATA_ENTRIES;
/// A metadata value longer than this is refused; a longer error message is
/// cut (rpc-core's [`MAX_HEADER_TEXT_LEN`](rpc_core::limits::MAX_HEADER_TEXT_LEN)).
pub const MAX_TEXT_LEN: usize = rpc_core::limits::MAX_HEADER_TEXT_LEN;

/// Why an envelope could not be mapped onto a NATS message or back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadersError {
    /// A field the envelope needs is absent.
    #[error("missing `{0}`")]
    Missing(&'static str),
    /// A field has an unparsable value.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The header or subject part.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The protocol version is not one this crate speaks.
    #[error("unsupported protocol version `{0}`")]
    UnsupportedVersion(String),
    /// The content type names no codec we have.
    #[error("unsupported content type `{0}`")]
    UnsupportedContentType(String),
    /// A metadata key uses the reserved `x-rpc-` prefix.
    #[error("metadata key `{0}` uses the reserved `x-rpc-` prefix")]
    ReservedKey(String),
    /// A metadata key or value cannot be a NATS header (control characters,
    /// `:` in a key, a line break in a value, too long).
    #[error("metadata entry `{0}` cannot travel as a NATS header")]
    BadMetadata(String),
    /// More metadata entries than [`MAX_METADATA_ENTRIES`].
    #[error("{0} metadata entries, more than the limit of {MAX_METADATA_ENTRIES}")]
    TooManyEntries(usize),
}

impl From<MetadataError> for HeadersError {
    fn from(error: MetadataError) -> Self {
        match error {
            MetadataError::TooManyEntries(count) => HeadersError::TooManyEntries(count),
            MetadataError::ReservedKey(key) => HeadersError::ReservedKey(key),
            // A value too long for a header is one a header cannot carry.
            MetadataError::ValueTooLong { key, .. } => HeadersError::BadMetadata(key),
        }
    }
}

/// Where a message was received, which decides what a sender may leave out.
#[derive(Clone, Copy, Debug)]
pub enum Arrival<'a> {
    /// On a request subject of `service`: the kind defaults to `request`
    /// (with a reply subject) or `oneway` (without), the method is the
    /// subject's last token.
    Requests {
        /// The service whose subject it is.
        service: &'a Name,
    },
    /// On a reply inbox: the kind defaults to `reply`.
    Inbox,
}

/// Where a call's reply goes, as far as its headers are concerned.
#[derive(Clone, Copy, Debug)]
pub enum CallReply<'a> {
    /// Nowhere: a oneway call or a cancel.
    None,
    /// The message's NATS reply subject (core mode).
    Subject(&'a str),
    /// A reply subject carried in [`REPLY_TO_HEADER`] (durable mode, where
    /// the NATS reply subject of a JetStream publish is the stream's ack).
    Header(&'a str),
}

/// The header map of a call (request, oneway or cancel). `None` when
/// nothing needs saying (a call without deadline nor metadata in the codec
/// its reply subject names): NATS then sends a plain message, cheaper to
/// write and parse.
pub fn encode_call(
    header: &Header,
    reply: CallReply<'_>,
) -> Result<Option<HeaderMap>, HeadersError> {
    let mut map = HeaderMap::new();
    let has_reply = header.reply_to.is_some();
    let implied = match header.kind {
        Kind::Request => has_reply,
        Kind::Oneway => !has_reply,
        _ => false,
    };
    if !implied {
        map.insert(KIND_NAME, header.kind.as_str());
    }
    if header.deadline_ms != 0 {
        map.insert(DEADLINE_NAME, decimal(header.deadline_ms));
    }
    if header.kind == Kind::Cancel {
        map.insert(CORRELATION_NAME, decimal(header.correlation_id));
    }
    let reply_subject = match reply {
        CallReply::None => None,
        CallReply::Subject(subject) => Some(subject),
        CallReply::Header(subject) => {
            map.insert(REPLY_TO_NAME, value(REPLY_TO_HEADER, subject)?);
            Some(subject)
        }
    };
    // The codec the reply subject names is the call's own: the caller
    // reads its reply in the codec it calls in.
    if header.content_type != reply_subject.map_or(ContentType::Json, reply_codec) {
        map.insert(CONTENT_TYPE_NAME, header.content_type.mime());
    }
    encode_metadata(header, &mut map)?;
    Ok((!map.is_empty()).then_some(map))
}

/// The header map of a reply to `reply_subject`; `None` for an ok reply
/// without metadata in the codec its reply subject asks for (see
/// [`reply_codec`]): the caller knows its call's codec, so the reply
/// states its own only when it is another.
pub fn encode_reply(
    header: &Header,
    reply_subject: &str,
) -> Result<Option<HeaderMap>, HeadersError> {
    let mut map = HeaderMap::new();
    if let Status::Error { kind, message } = &header.status {
        map.insert(STATUS_NAME, kind.as_str());
        map.insert(ERROR_NAME, one_line(message));
    }
    if header.content_type != reply_codec(reply_subject) {
        map.insert(CONTENT_TYPE_NAME, header.content_type.mime());
    }
    encode_metadata(header, &mut map)?;
    Ok((!map.is_empty()).then_some(map))
}

/// The token a call in `content_type` puts in its reply subject, before the
/// correlation id; `None` for JSON (and any codec without a token).
pub fn reply_codec_token(content_type: ContentType) -> Option<&'static str> {
    REPLY_CODEC_TOKENS
        .iter()
        .find(|(codec, _)| *codec == content_type)
        .map(|(_, token)| *token)
}

/// The codec a reply subject asks for: the one its next-to-last token names
/// ([`REPLY_CODEC_TOKENS`]), JSON when that token names none.
pub fn reply_codec(reply_subject: &str) -> ContentType {
    // Compared from the end, where the id is a few bytes long: no search
    // through the inbox's own tokens.
    let before_id = reply_subject.len() - last_token(reply_subject).len();
    let Some(rest) = reply_subject[..before_id].strip_suffix('.') else {
        return ContentType::Json;
    };
    for (codec, token) in REPLY_CODEC_TOKENS {
        if let Some(head) = rest.strip_suffix(token)
            && (head.is_empty() || head.ends_with('.'))
        {
            return codec;
        }
    }
    ContentType::Json
}

fn encode_metadata(header: &Header, map: &mut HeaderMap) -> Result<(), HeadersError> {
    limits::check_metadata_count(header.wire_metadata_len())?;
    header.try_for_each_wire_entry(|key, val| {
        limits::check_metadata_entry(key, val)?;
        let name = match key {
            TRACEPARENT => TRACEPARENT_NAME,
            key => HeaderName::try_from(key).map_err(|_| HeadersError::BadMetadata(key.into()))?,
        };
        let val: HeaderValue = val
            .parse()
            .map_err(|_| HeadersError::BadMetadata(key.into()))?;
        map.insert(name, val);
        Ok(())
    })
}

// Our header names, made at compile time: a name made at run time is
// compared with every standard NATS header name first.
const KIND_NAME: HeaderName = HeaderName::from_static(KIND_HEADER);
const DEADLINE_NAME: HeaderName = HeaderName::from_static(DEADLINE_HEADER);
const CORRELATION_NAME: HeaderName = HeaderName::from_static(CORRELATION_HEADER);
const REPLY_TO_NAME: HeaderName = HeaderName::from_static(REPLY_TO_HEADER);
const CONTENT_TYPE_NAME: HeaderName = HeaderName::from_static(CONTENT_TYPE_HEADER);
const STATUS_NAME: HeaderName = HeaderName::from_static(STATUS_HEADER);
const ERROR_NAME: HeaderName = HeaderName::from_static(ERROR_HEADER);
const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);

/// `n` in decimal as a header value, without the formatting machinery.
fn decimal(n: u64) -> HeaderValue {
    let mut text = String::with_capacity(20);
    push_decimal(&mut text, n);
    HeaderValue::from(text)
}

/// Appends `n` in decimal to `text` (what `n.to_string()` writes, without
/// its `Display` call and its own string).
pub(crate) fn push_decimal(text: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits: always UTF-8 (one `push_str`; a `push` per digit
    // costs an encoding and a capacity check each).
    text.push_str(std::str::from_utf8(&digits[start..]).unwrap_or_default());
}

/// A header value from text that must not hold a line break.
fn value(field: &'static str, text: &str) -> Result<HeaderValue, HeadersError> {
    text.parse().map_err(|_| HeadersError::Invalid {
        field,
        reason: "holds a line break".into(),
    })
}

/// An error message as one header line: line breaks become spaces (a
/// panic message may hold any text), cut to [`MAX_TEXT_LEN`].
pub fn one_line(message: &str) -> String {
    let mut end = message.len().min(MAX_TEXT_LEN);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message[..end].replace(['\r', '\n'], " ")
}

/// The correlation id a reply subject carries as its last token; `None`
/// when that token is not the decimal text of a u64 (a foreign caller's
/// inbox).
pub fn correlation_id(reply_subject: &str) -> Option<u64> {
    let token = last_token(reply_subject);
    if token.is_empty() {
        return None;
    }
    token.bytes().try_fold(0u64, |id, byte| {
        let digit = byte.checked_sub(b'0').filter(|d| *d <= 9)?;
        id.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// A subject's last token (all of it when it has one token), found from
/// the end in one byte search.
fn last_token(subject: &str) -> &str {
    match subject.as_bytes().iter().rposition(|&b| b == b'.') {
        Some(dot) => &subject[dot + 1..],
        None => subject,
    }
}

/// The header fields an envelope is read from, found in one pass over a
/// message's headers (a `HeaderMap::get` by text copies the name to hash
/// it: eight of them per message cost more than the pass).
#[derive(Default)]
struct Fields<'a> {
    version: Option<&'a str>,
    reply_to: Option<&'a str>,
    kind: Option<&'a str>,
    correlation_id: Option<&'a str>,
    content_type: Option<&'a str>,
    deadline: Option<&'a str>,
    status: Option<&'a str>,
    error: Option<&'a str>,
    trace: Option<TraceContext>,
    metadata: Metadata,
}

impl<'a> Fields<'a> {
    fn read(headers: Option<&'a HeaderMap>) -> Result<Self, HeadersError> {
        let mut fields = Fields::default();
        let Some(headers) = headers else {
            return Ok(fields);
        };
        for (name, values) in headers.iter() {
            // A field sent twice: the first value counts, as with `get`.
            let Some(value) = values.first().map(HeaderValue::as_str) else {
                continue;
            };
            let key: &str = name.as_ref();
            let slot = match key {
                VERSION_HEADER => &mut fields.version,
                REPLY_TO_HEADER => &mut fields.reply_to,
                KIND_HEADER => &mut fields.kind,
                CORRELATION_HEADER => &mut fields.correlation_id,
                CONTENT_TYPE_HEADER => &mut fields.content_type,
                DEADLINE_HEADER => &mut fields.deadline,
                STATUS_HEADER => &mut fields.status,
                ERROR_HEADER => &mut fields.error,
                _ => {
                    fields.add_metadata(key, values, headers.len())?;
                    continue;
                }
            };
            *slot = Some(value);
        }
        Ok(fields)
    }

    /// Keeps a header that is neither ours nor NATS' own as metadata (its
    /// last value).
    fn add_metadata(
        &mut self,
        key: &str,
        values: &[HeaderValue],
        headers: usize,
    ) -> Result<(), HeadersError> {
        if key.starts_with(RESERVED_PREFIX)
            || key.starts_with(NATS_PREFIX)
            || key.eq_ignore_ascii_case(CONTENT_TYPE_HEADER)
        {
            return Ok(());
        }
        let Some(value) = values.last() else {
            return Ok(());
        };
        if self.metadata.len() == MAX_METADATA_ENTRIES {
            return Err(HeadersError::TooManyEntries(headers));
        }
        // Reserved keys were skipped above: this checks the length.
        limits::check_metadata_entry(key, value.as_str())?;
        match TraceContext::from_wire_entry(key, value.as_str()) {
            Some(sent) => self.trace = Some(sent),
            None => self.metadata.insert(key, value.as_str()),
        }
        Ok(())
    }
}

/// Maps a received message back onto an envelope.
///
/// `subject` is the subject it arrived on, `reply` its NATS reply subject.
pub fn decode(
    subject: &str,
    reply: Option<&str>,
    headers: Option<&HeaderMap>,
    body: Vec<u8>,
    arrival: Arrival<'_>,
) -> Result<Envelope, HeadersError> {
    let fields = Fields::read(headers)?;
    if let Some(version) = fields.version
        && version.parse::<u8>().ok() != Some(rpc_core::envelope::PROTOCOL_VERSION)
    {
        return Err(HeadersError::UnsupportedVersion(version.to_owned()));
    }
    // In durable mode the reply subject travels in a header.
    let reply = fields.reply_to.or(reply);
    let kind = match fields.kind {
        Some(text) => Kind::parse(text).ok_or_else(|| HeadersError::Invalid {
            field: KIND_HEADER,
            reason: format!("unknown kind `{text}`"),
        })?,
        None => match arrival {
            Arrival::Inbox => Kind::Reply,
            Arrival::Requests { .. } if reply.is_some() => Kind::Request,
            Arrival::Requests { .. } => Kind::Oneway,
        },
    };
    let (service, method, correlation_id) = match arrival {
        Arrival::Requests { service } => {
            let method = Some(last_token(subject))
                .filter(|m| !m.is_empty())
                .ok_or(HeadersError::Missing("method"))?;
            // A foreign caller's inbox carries no id of ours; 0 pairs nothing
            // and needs nothing: the reply goes to the subject it came with.
            let id = match fields.correlation_id {
                Some(text) => text.parse().map_err(|_| HeadersError::Invalid {
                    field: CORRELATION_HEADER,
                    reason: format!("`{text}` is not a correlation id"),
                })?,
                None => reply.and_then(correlation_id).unwrap_or(0),
            };
            (service.clone(), Name::from(Arc::<str>::from(method)), id)
        }
        Arrival::Inbox => (
            Name::from_static(""),
            Name::from_static(""),
            correlation_id(subject).ok_or_else(|| HeadersError::Invalid {
                field: "subject",
                reason: "the last token is not a correlation id".into(),
            })?,
        ),
    };
    let reply_to = match (kind, reply) {
        (Kind::Request, Some(reply)) => Some(Address::new(Arc::<str>::from(reply))),
        (Kind::Request, None) => return Err(HeadersError::Missing("reply subject")),
        _ => None,
    };
    let content_type = match fields.content_type {
        // A reply, or a request, in the codec the reply subject names need
        // not say it.
        None => match (arrival, reply) {
            (Arrival::Inbox, _) => reply_codec(subject),
            (Arrival::Requests { .. }, Some(reply)) => reply_codec(reply),
            (Arrival::Requests { .. }, None) => ContentType::Json,
        },
        Some(mime) => ContentType::from_mime(mime)
            .ok_or_else(|| HeadersError::UnsupportedContentType(mime.to_owned()))?,
    };
    let deadline_ms = match fields.deadline {
        None => 0,
        Some(text) => text.parse().map_err(|_| HeadersError::Invalid {
            field: DEADLINE_HEADER,
            reason: format!("`{text}` is not unix milliseconds"),
        })?,
    };
    let status = match fields.status {
        None | Some("ok") => Status::Ok,
        Some(text) => Status::Error {
            kind: ErrorKind::parse(text).ok_or_else(|| HeadersError::Invalid {
                field: STATUS_HEADER,
                reason: format!("unknown status `{text}`"),
            })?,
            message: fields.error.map(one_line).unwrap_or_default(),
        },
    };
    Ok(Envelope {
        header: Header {
            kind,
            correlation_id,
            service,
            method,
            reply_to,
            deadline_ms,
            sent_at_ms: 0,
            content_type,
            status,
            trace: fields.trace,
            metadata: fields.metadata,
        },
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Header {
        let mut header = Header::request("calc".into(), "add".into(), ContentType::Bincode);
        header.correlation_id = 42;
        header.reply_to = Some(Address::new("_INBOX.abc.42"));
        header.deadline_ms = 1_900_000_000_000;
        header.trace = Some(TraceContext::new_root());
        header.metadata.insert("tenant", "acme");
        header
    }

    #[test]
    fn a_request_round_trips() {
        let header = request();
        let map = encode_call(&header, CallReply::Subject("_INBOX.abc.42"))
            .unwrap()
            .unwrap();
        assert!(
            map.get(KIND_HEADER).is_none(),
            "implied by the reply subject"
        );
        let service = Name::from_static("calc");
        let back = decode(
            "calc.add",
            Some("_INBOX.abc.42"),
            Some(&map),
            b"x".to_vec(),
            Arrival::Requests { service: &service },
        )
        .unwrap();
        assert_eq!(back.header, header);
        let trace = header.trace.unwrap();
        assert_eq!(
            map.get(TRACEPARENT).map(HeaderValue::as_str),
            Some(trace.traceparent().as_str())
        );
    }

    #[test]
    fn a_bare_json_call_has_no_headers() {
        let mut header = Header::request("calc".into(), "add".into(), ContentType::Json);
        header.reply_to = Some(Address::new("_INBOX.x.1"));
        assert!(
            encode_call(&header, CallReply::Subject("_INBOX.abc.42"))
                .unwrap()
                .is_none()
        );
        let ok = header.reply(Status::Ok);
        assert!(encode_reply(&ok, "_INBOX.x.1").unwrap().is_none());
    }

    #[test]
    fn a_reply_in_the_codec_its_subject_asks_for_has_no_headers() {
        let mut header = request();
        header.metadata = Metadata::default();
        let token = reply_codec_token(ContentType::Bincode).unwrap();
        let subject = format!("_INBOX.abc.{token}.42");
        assert_eq!(reply_codec(&subject), ContentType::Bincode);
        assert_eq!(reply_codec("_INBOX.abc.42"), ContentType::Json);
        assert_eq!(reply_codec("bincode.42"), ContentType::Bincode);
        assert_eq!(reply_codec("42"), ContentType::Json);
        assert_eq!(reply_codec(".42"), ContentType::Json);
        let ok = header.reply(Status::Ok);
        assert!(encode_reply(&ok, &subject).unwrap().is_none());
        let back = decode(&subject, None, None, Vec::new(), Arrival::Inbox).unwrap();
        assert_eq!(back.header.content_type, ContentType::Bincode);
        assert_eq!(back.header.correlation_id, 42);
        // To a JSON reply subject the same reply states its codec.
        let map = encode_reply(&ok, "_INBOX.abc.42").unwrap().unwrap();
        assert_eq!(
            map.get(CONTENT_TYPE_HEADER).map(HeaderValue::as_str),
            Some(ContentType::Bincode.mime())
        );
    }

    #[test]
    fn a_foreign_request_needs_only_subject_and_reply() {
        // What `nats req calc.add '{"a":2,"b":3}'` sends.
        let service = Name::from_static("calc");
        let env = decode(
            "calc.add",
            Some("_INBOX.Kx3uP0q.Zt8"),
            None,
            br#"{"a":2,"b":3}"#.to_vec(),
            Arrival::Requests { service: &service },
        )
        .unwrap();
        assert_eq!(env.header.kind, Kind::Request);
        assert_eq!(env.header.method, "add");
        assert_eq!(env.header.content_type, ContentType::Json);
        assert_eq!(env.header.correlation_id, 0);
        assert_eq!(env.header.reply_to.unwrap().as_str(), "_INBOX.Kx3uP0q.Zt8");
    }

    #[test]
    fn an_error_reply_round_trips_on_one_line() {
        let header = request().reply(Status::Error {
            kind: ErrorKind::Remote,
            message: "handler panicked:\r\nboom".into(),
        });
        let map = encode_reply(&header, "_INBOX.abc.42").unwrap().unwrap();
        let back = decode(
            "_INBOX.abc.42",
            None,
            Some(&map),
            Vec::new(),
            Arrival::Inbox,
        )
        .unwrap();
        assert_eq!(back.header.correlation_id, 42);
        assert_eq!(back.header.kind, Kind::Reply);
        assert_eq!(
            back.header.status,
            Status::Error {
                kind: ErrorKind::Remote,
                message: "handler panicked:  boom".into()
            }
        );
        assert_eq!(back.header.content_type, ContentType::Bincode);
    }

    #[test]
    fn bad_fields_are_typed_errors() {
        let service = Name::from_static("calc");
        let at = Arrival::Requests { service: &service };
        let with = |key: &str, val: &str| {
            let mut map = HeaderMap::new();
            map.insert(key, val);
            map
        };
        let cases: Vec<(HeaderMap, Option<&str>, &str)> = vec![
            (with(VERSION_HEADER, "2"), Some("r.1"), "version"),
            (with(KIND_HEADER, "teapot"), Some("r.1"), "kind"),
            (with(KIND_HEADER, "request"), None, "reply subject"),
            (with(DEADLINE_HEADER, "-5"), Some("r.1"), "deadline"),
            (with(STATUS_HEADER, "bogus"), Some("r.1"), "status"),
            (
                with(CONTENT_TYPE_HEADER, "text/plain"),
                Some("r.1"),
                "content",
            ),
        ];
        for (map, reply, what) in cases {
            let result = decode("calc.add", reply, Some(&map), Vec::new(), at);
            assert!(result.is_err(), "{what}: {result:?}");
        }
        assert!(decode("_INBOX.x.y", None, None, Vec::new(), Arrival::Inbox).is_err());
    }

    #[test]
    fn metadata_that_cannot_be_a_header_is_refused() {
        for (key, val) in [("bad key", "v"), ("k:", "v"), ("k", "a\r\nb: c")] {
            let mut header = request();
            header.metadata.insert(key, val);
            assert!(
                matches!(
                    encode_call(&header, CallReply::Subject("_INBOX.abc.42")),
                    Err(HeadersError::BadMetadata(_))
                ),
                "{key:?}={val:?}"
            );
        }
        let mut header = request();
        header.metadata.insert("x-rpc-kind", "reply");
        assert!(matches!(
            encode_call(&header, CallReply::Subject("_INBOX.abc.42")),
            Err(HeadersError::ReservedKey(_))
        ));
    }

    #[test]
    fn a_request_in_the_codec_its_reply_subject_names_has_no_content_type() {
        let mut header = request();
        let subject = "_INBOX.abc.bincode.42";
        header.reply_to = Some(Address::new(subject));
        let map = encode_call(&header, CallReply::Subject(subject))
            .unwrap()
            .unwrap();
        assert!(map.get(CONTENT_TYPE_HEADER).is_none());
        let service = Name::from_static("calc");
        let back = decode(
            "calc.add",
            Some(subject),
            Some(&map),
            Vec::new(),
            Arrival::Requests { service: &service },
        )
        .unwrap();
        assert_eq!(back.header, header);
        // A JSON call to the same inbox says so.
        header.content_type = ContentType::Json;
        let map = encode_call(&header, CallReply::Subject(subject))
            .unwrap()
            .unwrap();
        assert_eq!(
            map.get(CONTENT_TYPE_HEADER).map(HeaderValue::as_str),
            Some("application/json")
        );
    }

    #[test]
    fn decimals_are_written_as_to_string_writes_them() {
        for n in [0, 7, 10, 42, 1_000_000, u64::MAX] {
            let mut text = String::from("x.");
            push_decimal(&mut text, n);
            assert_eq!(text, format!("x.{n}"));
        }
    }

    #[test]
    fn correlation_ids_are_digits_only() {
        assert_eq!(correlation_id("_INBOX.a.17"), Some(17));
        assert_eq!(correlation_id("_INBOX.a.+1"), None);
        assert_eq!(correlation_id("_INBOX.a."), None);
        assert_eq!(correlation_id("_INBOX.a.99999999999999999999"), None);
        assert_eq!(
            correlation_id("_INBOX.a.18446744073709551615"),
            Some(u64::MAX)
        );
        assert_eq!(correlation_id("_INBOX.a.1x"), None);
        assert_eq!(correlation_id("12"), Some(12));
    }
}
