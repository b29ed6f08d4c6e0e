//! The envelope <-> NATS message mapping (docs/wire.md is its prose twin).
//!
//! The subject names the service and the method (`<prefix><service>.<method>`),
//! the reply subject is the caller's inbox followed by a call token that
//! states what the call says about itself (its codec, correlation id,
//! deadline and trace: [`reply_subject`], [`call_token`]), header fields
//! carry only what is left (an error, metadata, what a foreign caller
//! sends), and the body is the codec payload alone: a plain NATS client
//! (`nats req calc.add '{"a":2,"b":3}'`, nats-py) calls a JSON service with
//! no headers at all, and a call of this library is a plain `PUB` too.
//! Decoding never trusts the wire: every failure is a [`HeadersError`],
//! never a panic.

use std::sync::Arc;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use rpc_core::KnownNames;
use rpc_core::limits::{self, MetadataError};
use rpc_core::trace::{TRACEPARENT, TraceContext};
use rpc_core::{Address, ContentType, Envelope, ErrorKind, Header, Kind, Metadata, Name, Status};

use crate::call_token;

/// Header of the protocol version (absent means 1). Not written while the
/// version is 1; checked when a sender writes it.
pub const VERSION_HEADER: &str = "x-rpc-version";
/// Header of the correlation id of a cancel: it names the call it cancels,
/// and travels without that call's reply subject (where a request's id is).
pub const CORRELATION_HEADER: &str = "x-rpc-correlation-id";

/// Header of the envelope kind (`request`, `reply`, `oneway`, `cancel`).
/// Written only when the kind is not the one the message's arrival implies.
pub const KIND_HEADER: &str = "x-rpc-kind";
/// Header of the absolute deadline, unix milliseconds (decimal text): read
/// from any caller, written on oneway calls and cancels (a request states
/// its deadline in its reply subject).
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
/// The reply-subject tokens that named a call's codec in the form earlier
/// releases wrote, `<inbox>[.d<deadline>][.<traceparent>].<token>.<correlation id>`,
/// which [`reply_tokens`] still reads; a reply subject without one (nor a
/// call token) asks for JSON, as any foreign inbox.
pub const REPLY_CODEC_TOKENS: [(ContentType, &str); 2] = [
    (ContentType::Bincode, "bincode"),
    (ContentType::Json, "json"),
];
/// The length of a `traceparent` as [`TraceContext::traceparent`] writes
/// it (version `00`): `00-<32 hex>-<16 hex>-<2 hex>`.
const TRACEPARENT_LEN: usize = 55;
/// What starts the reply-subject token of a call's deadline in the form
/// earlier releases wrote: `d` and the absolute deadline in decimal unix
/// milliseconds (`d1764150005000`).
pub const DEADLINE_TOKEN_PREFIX: &str = "d";

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
    /// The message's NATS reply subject (core mode): what its tokens state
    /// ([`reply_tokens`]) no header repeats.
    Subject(&'a str),
    /// As [`Subject`](Self::Subject), for a subject [`reply_subject`] made
    /// from this very header: known to state the codec, the deadline and
    /// the trace, so it is not read again.
    Own(&'a str),
    /// A reply subject carried in [`REPLY_TO_HEADER`] (durable mode, where
    /// the NATS reply subject of a JetStream publish is the stream's ack);
    /// what its tokens state no other header repeats.
    Header(&'a str),
}

/// What a reply subject states beyond the inbox it names, read by
/// [`reply_tokens`] from its call token (`<inbox>.<call token>`), or from
/// the form earlier releases wrote
/// (`<inbox>[.d<deadline>][.<traceparent>].<codec>.<id>`). A field is
/// `None` where the subject does not state it; a foreign caller's inbox
/// states nothing (or, if its last token happens to be digits, a
/// correlation id that pairs nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyTokens {
    /// The call token's id, or the last token when it is the decimal text
    /// of a u64.
    pub correlation_id: Option<u64>,
    /// The call token's codec, or the token before the id when it names
    /// one ([`REPLY_CODEC_TOKENS`]).
    pub codec: Option<ContentType>,
    /// The call token's deadline, or a `d<unix ms>` token before the trace
    /// or the codec (read only after a codec token).
    pub deadline_ms: Option<u64>,
    /// The call token's trace, or a `traceparent` token, exactly as
    /// [`TraceContext::traceparent`] writes it, before the codec (read only
    /// after a codec token).
    pub trace: Option<TraceContext>,
}

impl ReplyTokens {
    /// The tokens a reply subject made by [`reply_subject`] from `header`
    /// states.
    fn of_own(header: &Header) -> Self {
        ReplyTokens {
            correlation_id: Some(header.correlation_id),
            codec: Some(call_token::stated_codec(header.content_type)),
            deadline_ms: (header.deadline_ms != 0).then_some(header.deadline_ms),
            trace: header.trace,
        }
    }
}

/// The reply subject of a call whose header is `header`, at `inbox`:
/// `<inbox>.<call token>`, the token stating the call's codec, correlation
/// id, deadline (when it has one) and trace (when it has one) in a few
/// dozen characters ([`call_token`]). The call token is last, so that
/// NATS' "no responders" status (which carries none of a request's
/// headers) still names its call. Made in one allocation of its exact
/// length, which a `Subject` takes over as it is.
pub fn reply_subject(inbox: &str, header: &Header) -> String {
    let mut subject = Vec::with_capacity(inbox.len() + 1 + call_token::len(header));
    subject.extend_from_slice(inbox.as_bytes());
    subject.push(b'.');
    call_token::push(&mut subject, header);
    // Text and base64url only: never an error.
    String::from_utf8(subject).unwrap_or_default()
}

/// Reads what `reply_subject` states ([`ReplyTokens`]): a call token
/// ([`call_token`]) as its last token, as [`reply_subject`] writes it; else
/// the longer form earlier releases wrote,
/// `<inbox>[.d<deadline>][.<traceparent>].<codec>.<correlation id>`, read
/// from the end: the decimal correlation id, then a codec token
/// ([`REPLY_CODEC_TOKENS`]), and only after a codec token a `traceparent`
/// and a `d<deadline>` token. A token that is not one of these ends the
/// reading (it is part of the inbox), except a deadline token whose digits
/// overflow, which is an error.
pub fn reply_tokens(reply_subject: &str) -> Result<ReplyTokens, HeadersError> {
    read_reply_subject(reply_subject).map(|(tokens, _)| tokens)
}

/// [`reply_tokens`], and where the reply goes: the reply subject cut after
/// its call token's id ([`call_token::cut_after_head`]), or all of it
/// when its last token is no call token.
fn read_reply_subject(reply_subject: &str) -> Result<(ReplyTokens, &str), HeadersError> {
    if let Some(at_end) = call_token::at_end(reply_subject)
        && let Some(token) = call_token::read(at_end)
    {
        let tokens = ReplyTokens {
            correlation_id: Some(token.correlation_id),
            codec: Some(token.codec),
            deadline_ms: token.deadline_ms,
            trace: token.trace,
        };
        return Ok((tokens, call_token::cut_after_head(reply_subject, at_end)));
    }
    earlier_reply_tokens(reply_subject).map(|tokens| (tokens, reply_subject))
}

/// [`reply_tokens`] of the form earlier releases wrote.
fn earlier_reply_tokens(reply_subject: &str) -> Result<ReplyTokens, HeadersError> {
    let (rest, last) = split_last(reply_subject);
    let mut tokens = ReplyTokens {
        correlation_id: parse_decimal(last),
        ..ReplyTokens::default()
    };
    let (Some(_), Some(rest)) = (tokens.correlation_id, rest) else {
        return Ok(tokens);
    };
    let (mut rest, token) = split_last(rest);
    tokens.codec = codec_of_token(token);
    if tokens.codec.is_none() {
        return Ok(tokens);
    }
    // The trace token has a fixed length: no search for its dot.
    if let Some(before) = rest
        && let Some(dot) = before.len().checked_sub(TRACEPARENT_LEN + 1)
        && before.as_bytes()[dot] == b'.'
        && let Some(trace) = before
            .get(dot + 1..)
            .and_then(|token| TraceContext::from_wire_entry(TRACEPARENT, token))
    {
        tokens.trace = Some(trace);
        rest = before.get(..dot);
    }
    if let Some(before) = rest {
        let (_, token) = split_last(before);
        if let Some(digits) = token.strip_prefix(DEADLINE_TOKEN_PREFIX) {
            match parse_decimal(digits) {
                Some(deadline) => tokens.deadline_ms = Some(deadline),
                // All digits, yet no u64: a deadline that cannot be read.
                None if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(HeadersError::Invalid {
                        field: "reply subject",
                        reason: format!("`{token}` is not a deadline in unix milliseconds"),
                    });
                }
                // Not a deadline token: part of the inbox.
                None => {}
            }
        }
    }
    Ok(tokens)
}

/// The codec a reply-subject token names, if it names one.
fn codec_of_token(token: &str) -> Option<ContentType> {
    REPLY_CODEC_TOKENS
        .iter()
        .find(|(_, name)| *name == token)
        .map(|(codec, _)| *codec)
}

/// A subject split at its last dot: what comes before (`None` without a
/// dot) and its last token.
fn split_last(subject: &str) -> (Option<&str>, &str) {
    // `rsplit_once` searches with `memrchr`, a word at a time.
    match subject.rsplit_once('.') {
        Some((before, last)) => (Some(before), last),
        None => (None, subject),
    }
}

/// The u64 whose decimal text `token` is; `None` for anything else (empty,
/// a sign, a non-digit, an overflow).
fn parse_decimal(token: &str) -> Option<u64> {
    let bytes = token.as_bytes();
    // Up to 19 digits cannot overflow: no checked arithmetic per digit.
    let (fast, rest) = bytes.split_at(bytes.len().min(19));
    if fast.is_empty() {
        return None;
    }
    let mut n = 0u64;
    for &byte in fast {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n = n * 10 + u64::from(digit);
    }
    match rest {
        [] => Some(n),
        [byte] => {
            let digit = byte.wrapping_sub(b'0');
            if digit > 9 {
                return None;
            }
            n.checked_mul(10)?.checked_add(u64::from(digit))
        }
        _ => None,
    }
}

/// The header map of a call (request, oneway or cancel). `None` when
/// nothing needs saying (a request whose reply subject states its codec,
/// deadline and trace, without metadata): NATS then sends a plain message,
/// cheaper to write and parse.
pub fn encode_call(
    header: &Header,
    reply: CallReply<'_>,
) -> Result<Option<HeaderMap>, HeadersError> {
    // A request whose reply subject was made from its header states its
    // kind, codec, deadline and trace there: without metadata, nothing is
    // left for a header, and no map is made.
    if matches!(reply, CallReply::Own(_))
        && header.kind == Kind::Request
        && header.metadata.is_empty()
        && header.content_type == call_token::stated_codec(header.content_type)
    {
        return Ok(None);
    }
    let mut map = HeaderMap::new();
    // A reply subject says "request" (the client runtime leaves the
    // envelope's `reply_to` to the transport).
    let has_reply = header.reply_to.is_some() || !matches!(reply, CallReply::None);
    let implied = match header.kind {
        Kind::Request => has_reply,
        Kind::Oneway => !has_reply,
        _ => false,
    };
    if !implied {
        map.insert(KIND_NAME, header.kind.as_str());
    }
    if header.kind == Kind::Cancel {
        map.insert(CORRELATION_NAME, decimal(header.correlation_id));
    }
    // What the reply subject states, no header repeats.
    let stated = match reply {
        CallReply::None => ReplyTokens::default(),
        CallReply::Own(_) => ReplyTokens::of_own(header),
        CallReply::Subject(subject) => reply_tokens(subject)?,
        CallReply::Header(subject) => {
            map.insert(REPLY_TO_NAME, value(REPLY_TO_HEADER, subject)?);
            reply_tokens(subject)?
        }
    };
    if header.deadline_ms != 0 && stated.deadline_ms != Some(header.deadline_ms) {
        map.insert(DEADLINE_NAME, decimal(header.deadline_ms));
    }
    // The codec the reply subject names is the call's own: the caller
    // reads its reply in the codec it calls in.
    if header.content_type != stated.codec.unwrap_or(ContentType::Json) {
        map.insert(CONTENT_TYPE_NAME, header.content_type.mime());
    }
    let trace_stated = header.trace.is_some() && stated.trace == header.trace;
    encode_metadata(header, trace_stated, &mut map)?;
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
    // The common reply says nothing a header would carry: no map made.
    if matches!(header.status, Status::Ok)
        && header.wire_metadata_len() == 0
        && header.content_type == reply_codec(reply_subject)
    {
        return Ok(None);
    }
    let mut map = HeaderMap::new();
    if let Status::Error { kind, message } = &header.status {
        map.insert(STATUS_NAME, kind.as_str());
        map.insert(ERROR_NAME, one_line(message));
    }
    if header.content_type != reply_codec(reply_subject) {
        map.insert(CONTENT_TYPE_NAME, header.content_type.mime());
    }
    encode_metadata(header, false, &mut map)?;
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

/// The codec a reply subject asks for: the one its call token names
/// ([`call_token`]), or in the older form its next-to-last token
/// ([`REPLY_CODEC_TOKENS`]); JSON when neither names one.
pub fn reply_codec(reply_subject: &str) -> ContentType {
    if let Some(head) = call_token::at_end(reply_subject).and_then(call_token::Head::read) {
        return head.codec;
    }
    let last = last_token(reply_subject);
    // Compared from the end, where the id is a few bytes long: no search
    // through the inbox's own tokens.
    let before_id = reply_subject.len() - last.len();
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

/// Writes the metadata, and the trace as its `traceparent` entry unless
/// `trace_stated` (the reply subject carries it).
fn encode_metadata(
    header: &Header,
    trace_stated: bool,
    map: &mut HeaderMap,
) -> Result<(), HeadersError> {
    limits::check_metadata_count(header.wire_metadata_len())?;
    if header.metadata.is_empty() && (trace_stated || header.trace.is_none()) {
        return Ok(());
    }
    header.try_for_each_wire_entry(|key, val| {
        if trace_stated && key == TRACEPARENT {
            return Ok(());
        }
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
    let mut text = Vec::with_capacity(20);
    push_decimal(&mut text, n);
    // ASCII digits only: never an error.
    HeaderValue::from(String::from_utf8(text).unwrap_or_default())
}

/// Appends the ASCII digits of `n` in decimal to `text` (what
/// `n.to_string()` writes, without its `Display` call and its own string),
/// two digits a step: correlation ids are 20-digit numbers (rpc-core starts
/// them at a random point). Bytes, not a `String`: the caller checks its
/// whole text as UTF-8 once.
pub(crate) fn push_decimal(text: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        start -= 2;
        digits[start..start + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        start -= 1;
        digits[start] = b'0' + n as u8;
    }
    text.extend_from_slice(&digits[start..]);
}

/// `00` to `99`, two bytes each.
const DIGIT_PAIRS: [u8; 200] = {
    let mut pairs = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        pairs[2 * i] = b'0' + (i / 10) as u8;
        pairs[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    pairs
};

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

/// The correlation id a reply subject carries in its last token: a call
/// token's ([`call_token`]), or the decimal text of a u64 (the older form,
/// and a oneway call's own inbox); `None` for anything else (a foreign
/// caller's inbox).
pub fn correlation_id(reply_subject: &str) -> Option<u64> {
    match call_token::at_end(reply_subject).and_then(call_token::Head::read) {
        Some(head) => Some(head.correlation_id),
        None => parse_decimal(last_token(reply_subject)),
    }
}

/// The correlation id and codec a reply's subject states
/// ([`correlation_id`], [`reply_codec`]), its last token read once.
fn reply_head(subject: &str) -> (Option<u64>, ContentType) {
    match call_token::at_end(subject).and_then(call_token::Head::read) {
        Some(head) => (Some(head.correlation_id), head.codec),
        None => (correlation_id(subject), reply_codec(subject)),
    }
}

/// A subject's last token (all of it when it has one token), found from
/// the end in one search (`memrchr`, a word at a time).
fn last_token(subject: &str) -> &str {
    split_last(subject).1
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
    decode_with(
        subject,
        reply,
        headers,
        body,
        arrival,
        &mut KnownNames::new(),
    )
}

/// [`decode`], with the method names a request subject spells taken from
/// (and added to) `methods`: a server's few methods then cost no
/// allocation per request.
pub fn decode_with(
    subject: &str,
    reply: Option<&str>,
    headers: Option<&HeaderMap>,
    body: Vec<u8>,
    arrival: Arrival<'_>,
    methods: &mut KnownNames,
) -> Result<Envelope, HeadersError> {
    if headers.is_none()
        && let Arrival::Inbox = arrival
    {
        return plain_reply(subject, body);
    }
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
    // What the reply subject states: a request's codec, deadline and
    // trace, a reply's codec and correlation id.
    // A request's reply goes to its reply subject cut after the call
    // token's id: that is its envelope's `reply_to`.
    let (tokens, reply) = match (arrival, reply) {
        (Arrival::Requests { .. }, Some(reply)) => {
            let (tokens, target) = read_reply_subject(reply)?;
            (tokens, Some(target))
        }
        (Arrival::Requests { .. }, None) => (ReplyTokens::default(), None),
        (Arrival::Inbox, reply) => {
            let (correlation_id, codec) = reply_head(subject);
            let tokens = ReplyTokens {
                correlation_id,
                codec: Some(codec),
                ..ReplyTokens::default()
            };
            (tokens, reply)
        }
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
                None => tokens.correlation_id.unwrap_or(0),
            };
            let method = match methods.get(method.as_bytes()) {
                Some(known) => known.clone(),
                None => {
                    let name = Name::from(Arc::<str>::from(method));
                    methods.insert(name.clone());
                    name
                }
            };
            (service.clone(), method, id)
        }
        Arrival::Inbox => (
            Name::from_static(""),
            Name::from_static(""),
            tokens.correlation_id.ok_or_else(|| HeadersError::Invalid {
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
        // not say it; no codec named means JSON.
        None => tokens.codec.unwrap_or(ContentType::Json),
        Some(mime) => ContentType::from_mime(mime)
            .ok_or_else(|| HeadersError::UnsupportedContentType(mime.to_owned()))?,
    };
    // A header says it first (a foreign or older caller); else the reply
    // subject.
    let deadline_ms = match fields.deadline {
        None => tokens.deadline_ms.unwrap_or(0),
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
    // A `traceparent` header, in any form, is the caller's word over the
    // reply subject's.
    let trace = match fields.trace {
        Some(trace) => Some(trace),
        None if fields.metadata.get(TRACEPARENT).is_none() => tokens.trace,
        None => None,
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
            trace,
            metadata: fields.metadata,
        },
        body,
    })
}

/// A reply without headers (an ok reply in its call's codec, the common
/// one), read as [`decode_with`] reads it with none of the header work:
/// the subject alone states its correlation id and codec.
fn plain_reply(subject: &str, body: Vec<u8>) -> Result<Envelope, HeadersError> {
    let (correlation_id, codec) = reply_head(subject);
    let correlation_id = correlation_id.ok_or_else(|| HeadersError::Invalid {
        field: "subject",
        reason: "the last token is not a correlation id".into(),
    })?;
    let none = Name::from_static("");
    let mut header = Header::request(none.clone(), none, codec);
    header.kind = Kind::Reply;
    header.correlation_id = correlation_id;
    Ok(Envelope { header, body })
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
        // A reply subject's deadline token that is digits but no u64.
        let overflow = "_INBOX.x.d99999999999999999999999.json.1";
        assert!(decode("calc.add", Some(overflow), None, Vec::new(), at).is_err());
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
    fn a_call_of_ours_states_everything_in_its_reply_subject() {
        let mut header = request();
        header.metadata = Metadata::default();
        let subject = reply_subject("_INBOX.abc", &header);
        // A sampled bincode call with deadline and trace: `~B` and 51 more.
        assert!(subject.starts_with("_INBOX.abc.~B"), "{subject}");
        assert_eq!(subject.len(), "_INBOX.abc.".len() + 53, "{subject}");
        assert_eq!(subject.capacity(), subject.len(), "one exact allocation");
        // No headers at all, whether the encoder trusts the subject or reads it.
        assert!(
            encode_call(&header, CallReply::Own(&subject))
                .unwrap()
                .is_none()
        );
        assert!(
            encode_call(&header, CallReply::Subject(&subject))
                .unwrap()
                .is_none()
        );
        let service = Name::from_static("calc");
        let back = decode(
            "calc.add",
            Some(&subject),
            None,
            b"x".to_vec(),
            Arrival::Requests { service: &service },
        )
        .unwrap();
        // It answers to the reply subject cut after the call token's id.
        let target = "_INBOX.abc.~BAAAAAAAAAAq";
        header.reply_to = Some(Address::new(target));
        assert_eq!(back.header, header);
        // Its reply finds its call and codec from either subject.
        for to in [target, &subject] {
            let reply = decode(to, None, None, Vec::new(), Arrival::Inbox).unwrap();
            assert_eq!(reply.header.correlation_id, 42);
            assert_eq!(reply.header.content_type, ContentType::Bincode);
            assert!(encode_reply(&reply.header, to).unwrap().is_none());
        }
        // Metadata still travels as headers, the trace does not.
        header.metadata.insert("tenant", "acme");
        let map = encode_call(&header, CallReply::Own(&subject))
            .unwrap()
            .unwrap();
        assert_eq!(map.get("tenant").map(HeaderValue::as_str), Some("acme"));
        assert!(map.get(TRACEPARENT).is_none() && map.get(DEADLINE_HEADER).is_none());
    }

    #[test]
    fn the_reply_subject_of_earlier_releases_reads_as_the_call_token() {
        let mut header = request();
        header.metadata = Metadata::default();
        let trace = header.trace.unwrap();
        let service = Name::from_static("calc");
        let at = Arrival::Requests { service: &service };
        let new = reply_subject("_INBOX.abc", &header);
        let old = format!(
            "_INBOX.abc.d1900000000000.{}.bincode.42",
            trace.traceparent().as_str()
        );
        let read = |subject: &str| {
            let mut header = decode("calc.add", Some(subject), None, Vec::new(), at)
                .unwrap()
                .header;
            header.reply_to = None;
            header
        };
        assert_eq!(read(&new), read(&old));
        assert_eq!(reply_tokens(&new).unwrap(), reply_tokens(&old).unwrap());
        for subject in [&new, &old] {
            assert_eq!(correlation_id(subject), Some(42));
            assert_eq!(reply_codec(subject), ContentType::Bincode);
        }
    }

    #[test]
    fn a_json_call_without_deadline_nor_trace_names_only_its_codec() {
        let mut header = Header::request("calc".into(), "add".into(), ContentType::Json);
        header.correlation_id = 7;
        let subject = reply_subject("_INBOX.x", &header);
        assert_eq!(subject, "_INBOX.x.~jAAAAAAAAAAH");
        assert!(
            encode_call(&header, CallReply::Own(&subject))
                .unwrap()
                .is_none()
        );
        let stated = reply_tokens(&subject).unwrap();
        assert_eq!(
            stated,
            ReplyTokens {
                correlation_id: Some(7),
                codec: Some(ContentType::Json),
                deadline_ms: None,
                trace: None,
            }
        );
    }

    #[test]
    fn reply_tokens_are_read_from_the_end_and_only_after_a_codec() {
        let trace = TraceContext::new_root();
        let tp = trace.traceparent();
        let tp = tp.as_str();
        let full = reply_tokens(&format!("_INBOX.a.d17.{tp}.json.3")).unwrap();
        assert_eq!(
            full,
            ReplyTokens {
                correlation_id: Some(3),
                codec: Some(ContentType::Json),
                deadline_ms: Some(17),
                trace: Some(trace),
            }
        );
        // Each of deadline and trace is optional.
        let no_trace = reply_tokens("_INBOX.a.d17.bincode.3").unwrap();
        assert_eq!(no_trace.deadline_ms, Some(17));
        assert_eq!(no_trace.trace, None);
        let no_deadline = reply_tokens(&format!("_INBOX.a.{tp}.bincode.3")).unwrap();
        assert_eq!(no_deadline.trace, Some(trace));
        assert_eq!(no_deadline.deadline_ms, None);
        // The layout of earlier releases: codec and id only.
        let old = reply_tokens("_INBOX.dXyZ.bincode.3").unwrap();
        assert_eq!(
            (old.codec, old.deadline_ms),
            (Some(ContentType::Bincode), None)
        );
        // Without a codec token nothing before the id is ours: a foreign inbox.
        let foreign = reply_tokens(&format!("_INBOX.d17.{tp}.3")).unwrap();
        assert_eq!(
            foreign,
            ReplyTokens {
                correlation_id: Some(3),
                ..ReplyTokens::default()
            }
        );
        assert_eq!(
            reply_tokens("_INBOX.Kx3uP0q.Zt8").unwrap(),
            ReplyTokens::default()
        );
        // A deadline token that overflows is refused, not ignored.
        assert!(matches!(
            reply_tokens("_INBOX.a.d99999999999999999999999.json.3"),
            Err(HeadersError::Invalid { .. })
        ));
        // Not UTF-8-boundary safe input never panics.
        let odd = format!("é{}.json.1", "é".repeat(28));
        assert!(reply_tokens(&odd).is_ok());
    }

    #[test]
    fn a_header_carrying_caller_is_understood_and_its_headers_win() {
        // What earlier releases sent: deadline and traceparent as headers,
        // the codec in the reply subject.
        let trace = TraceContext::new_root();
        let mut map = HeaderMap::new();
        map.insert(DEADLINE_HEADER, "1900000000000");
        map.insert(TRACEPARENT, trace.traceparent().as_str());
        let service = Name::from_static("calc");
        let at = Arrival::Requests { service: &service };
        let reply = "_INBOX.abc.bincode.42";
        let env = decode("calc.add", Some(reply), Some(&map), Vec::new(), at).unwrap();
        assert_eq!(env.header.deadline_ms, 1_900_000_000_000);
        assert_eq!(env.header.trace, Some(trace));
        assert_eq!(env.header.content_type, ContentType::Bincode);
        assert_eq!(env.header.correlation_id, 42);
        // Both a header and the subject: the header counts.
        let other = TraceContext::new_root();
        let subject = format!("_INBOX.abc.d5.{}.bincode.42", other.traceparent().as_str());
        let env = decode("calc.add", Some(&subject), Some(&map), Vec::new(), at).unwrap();
        assert_eq!(env.header.deadline_ms, 1_900_000_000_000);
        assert_eq!(env.header.trace, Some(trace));
    }

    #[test]
    fn method_names_are_reused_from_known_names() {
        let service = Name::from_static("calc");
        let at = Arrival::Requests { service: &service };
        let mut methods = KnownNames::new();
        let first =
            decode_with("calc.add", Some("r.1"), None, Vec::new(), at, &mut methods).unwrap();
        assert_eq!(methods.len(), 1);
        let second =
            decode_with("calc.add", Some("r.2"), None, Vec::new(), at, &mut methods).unwrap();
        assert_eq!(first.header.method, second.header.method);
        assert_eq!(methods.len(), 1);
    }

    #[test]
    fn a_reply_without_headers_reads_as_one_with_an_empty_map() {
        let empty = HeaderMap::new();
        for subject in [
            "_INBOX.a.d1900000000000.bincode.17",
            "_INBOX.a.17",
            "_INBOX.a.json.18446744073709551615",
            "_INBOX.a.bincode.x",
            "17",
        ] {
            let plain = decode(subject, None, None, b"x".to_vec(), Arrival::Inbox);
            let mapped = decode(subject, None, Some(&empty), b"x".to_vec(), Arrival::Inbox);
            assert_eq!(plain, mapped, "{subject}");
        }
    }

    #[test]
    fn decimals_are_written_as_to_string_writes_them() {
        for n in [0, 7, 10, 42, 1_000_000, u64::MAX] {
            let mut text = b"x.".to_vec();
            push_decimal(&mut text, n);
            assert_eq!(String::from_utf8(text).unwrap(), format!("x.{n}"));
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
