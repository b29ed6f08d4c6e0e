//! The envelope <-> AMQP message mapping (docs/wire.md is its prose twin).
//!
//! The header travels in AMQP basic properties and headers, the body is the
//! codec payload alone, so a plain AMQP client in any language can call and
//! serve with the JSON codec. Decoding never trusts the wire: every field is
//! checked and every failure is a [`PropertiesError`], never a panic.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use rpc_core::envelope::now_ms;
use rpc_core::limits::{self, MetadataError};
use rpc_core::trace::TraceContext;
use rpc_core::{ContentType, Envelope, ErrorKind, Header, Kind, Metadata, Name, Status};

/// Header key of the protocol version (an integer; absent means 1). Not
/// written while the version is 1; still checked when a sender writes it.
pub const VERSION_HEADER: &str = "x-rpc-version";
/// Header key of the envelope kind: `request`, `reply`, `oneway` or `cancel`.
/// Written only when the kind is not the one the arrival implies (see
/// [`Arrival`]).
pub const KIND_HEADER: &str = "x-rpc-kind";
/// Header key of the service's wire name. Not written (the request queue
/// says it); accepted from senders that write it.
pub const SERVICE_HEADER: &str = "x-rpc-service";
/// Header key of the absolute deadline, unix milliseconds (an integer).
pub const DEADLINE_HEADER: &str = "x-rpc-deadline-ms";
/// Header key of a reply's status: `ok` or an error kind (`remote`, `decode`, ...).
pub const STATUS_HEADER: &str = "x-rpc-status";
/// Header key of a failed reply's message.
pub const ERROR_HEADER: &str = "x-rpc-error";
/// Metadata key of the caller's identity: the AMQP `user_id` property,
/// which RabbitMQ checks against the publishing connection's user. Decoding
/// a request sets it from `user_id` only; a header of that name sent by a
/// client is dropped like every other reserved header.
pub const CALLER_METADATA: &str = rpc_core::Context::CALLER_KEY;
/// Headers starting with this are ours; metadata may not use it
/// (rpc-core's [`Metadata::RESERVED_PREFIX`]).
pub const RESERVED_PREFIX: &str = Metadata::RESERVED_PREFIX;

/// Metadata entries beyond this are refused, on both sides (rpc-core's
/// limit, so that every layer agrees).
pub const MAX_METADATA_ENTRIES: usize = rpc_core::MAX_METADATA_ENTRIES;
/// A metadata value or error message longer than this is refused
/// (rpc-core's [`MAX_HEADER_TEXT_LEN`](rpc_core::limits::MAX_HEADER_TEXT_LEN)).
pub const MAX_TEXT_LEN: usize = rpc_core::limits::MAX_HEADER_TEXT_LEN;

/// Why an envelope could not be mapped onto AMQP properties or back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PropertiesError {
    /// A property or header the envelope needs is absent.
    #[error("missing `{0}`")]
    Missing(&'static str),
    /// A property or header has the wrong type or an unparsable value.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The property or header.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The protocol version is not one this crate speaks.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(i128),
    /// The body's content type names no codec we have.
    #[error("unsupported content type `{0}`")]
    UnsupportedContentType(String),
    /// A metadata key uses the reserved `x-rpc-` prefix.
    #[error("metadata key `{0}` uses the reserved `x-rpc-` prefix")]
    ReservedKey(String),
    /// A text does not fit its AMQP field (short strings hold 255 bytes).
    #[error("`{field}` is {len} bytes, more than its limit of {limit}")]
    TooLong {
        /// The property or header.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its limit.
        limit: usize,
    },
    /// More metadata entries than [`MAX_METADATA_ENTRIES`].
    #[error("{0} metadata entries, more than the limit of {MAX_METADATA_ENTRIES}")]
    TooManyEntries(usize),
}

impl From<MetadataError> for PropertiesError {
    fn from(error: MetadataError) -> Self {
        match error {
            MetadataError::TooManyEntries(count) => PropertiesError::TooManyEntries(count),
            MetadataError::ReservedKey(key) => PropertiesError::ReservedKey(key),
            MetadataError::ValueTooLong { len, .. } => PropertiesError::TooLong {
                field: "metadata value",
                len,
                limit: MAX_TEXT_LEN,
            },
        }
    }
}

/// Where a message was received, which decides what a foreign sender may leave out.
#[derive(Clone, Copy, Debug)]
pub enum Arrival<'a> {
    /// On the request queue of `service`: the kind defaults to `request`
    /// (with `reply_to`) or `oneway` (without), the service to `service`.
    RequestQueue {
        /// The service whose queue it is.
        service: &'a Name,
    },
    /// On a reply inbox: the kind defaults to `reply`.
    Inbox,
}

/// Maps a header onto AMQP properties.
///
/// `reply_to` is the AMQP `reply_to` to write (the transport translates its
/// inbox addresses).
///
/// Only what the receiver cannot infer is written (docs/wire.md lists the
/// defaults): every property and header costs encoding and parsing on both
/// ends and bytes through the broker, on every call. So there is no version
/// header while the version is 1, no kind header when the kind is the one
/// the message's arrival implies, no service header (the request queue
/// names it), no `message_id` (nothing reads it: calls pair by correlation
/// id), and a reply carries neither the method, the deadline nor a send
/// time, and no header table at all when it is ok and has no metadata.
pub fn encode(header: &Header, reply_to: Option<&str>) -> Result<BasicProperties, PropertiesError> {
    let is_reply = header.kind == Kind::Reply;
    let mut headers = FieldTable::default();
    if !kind_is_implied(header.kind, reply_to.is_some()) {
        headers.insert(
            KIND_HEADER.into(),
            AMQPValue::LongString(header.kind.as_str().into()),
        );
    }
    // The deadline is the caller's; the caller does not need it back.
    if header.deadline_ms != 0 && !is_reply {
        let deadline = i64::try_from(header.deadline_ms).map_err(|_| PropertiesError::Invalid {
            field: DEADLINE_HEADER,
            reason: "beyond i64".into(),
        })?;
        headers.insert(DEADLINE_HEADER.into(), AMQPValue::LongLongInt(deadline));
    }
    if let Status::Error { kind, message } = &header.status {
        check_len(ERROR_HEADER, message, MAX_TEXT_LEN)?;
        headers.insert(
            STATUS_HEADER.into(),
            AMQPValue::LongString(kind.as_str().into()),
        );
        headers.insert(
            ERROR_HEADER.into(),
            AMQPValue::LongString(message.as_str().into()),
        );
    }
    limits::check_metadata_count(header.wire_metadata_len())?;
    header.try_for_each_wire_entry(|key, value| {
        limits::check_metadata_entry(key, value)?;
        headers.insert(
            short("metadata key", key)?,
            AMQPValue::LongString(value.into()),
        );
        Ok::<_, PropertiesError>(())
    })?;

    let mut props = BasicProperties::default()
        .with_correlation_id(ShortString::from(header.correlation_id.to_string()))
        .with_content_type(ShortString::from(header.content_type.mime()));
    // A call's send time is for whoever inspects a queue; the caller
    // measures its own round trip, so a reply does not carry one.
    if !is_reply {
        props = props
            .with_type(short("type", &header.method)?)
            .with_timestamp(header.sent_at_ms / 1000);
    }
    if !headers.inner().is_empty() {
        props = props.with_headers(headers);
    }
    if let Some(reply_to) = reply_to {
        props = props.with_reply_to(short("reply_to", reply_to)?);
    }
    // Only calls expire: the broker drops a request nobody took in time, so
    // a server that comes back late does not run stale work.
    if matches!(header.kind, Kind::Request | Kind::Oneway) && header.deadline_ms != 0 {
        let remaining = header.deadline_ms.saturating_sub(now_ms());
        props = props.with_expiration(ShortString::from(remaining.to_string()));
    }
    Ok(props)
}

/// Whether `decode` infers `kind` without a kind header: replies arrive on
/// an inbox, and on a request queue a message with a reply address is a
/// request, one without is a oneway call. Anything else (a cancel, a
/// request without a reply address) says what it is.
fn kind_is_implied(kind: Kind, has_reply_to: bool) -> bool {
    match kind {
        Kind::Reply => true,
        Kind::Request => has_reply_to,
        Kind::Oneway => !has_reply_to,
        _ => false,
    }
}

/// Maps AMQP properties and a body back onto an envelope.
pub fn decode(
    props: &BasicProperties,
    body: Vec<u8>,
    arrival: Arrival<'_>,
) -> Result<Envelope, PropertiesError> {
    let empty = FieldTable::default();
    let headers = props.headers().as_ref().unwrap_or(&empty);
    let header_value = |key: &str| headers.inner().get(key);

    if let Some(value) = header_value(VERSION_HEADER) {
        let version = integer(VERSION_HEADER, value)?;
        if version != i128::from(rpc_core::envelope::PROTOCOL_VERSION) {
            return Err(PropertiesError::UnsupportedVersion(version));
        }
    }
    let reply_to = props.reply_to().as_ref().map(|r| r.as_str());
    let kind = match header_value(KIND_HEADER) {
        Some(value) => {
            let text = text(KIND_HEADER, value)?;
            Kind::parse(&text).ok_or_else(|| PropertiesError::Invalid {
                field: KIND_HEADER,
                reason: format!("unknown kind `{text}`"),
            })?
        }
        None => match arrival {
            Arrival::Inbox => Kind::Reply,
            Arrival::RequestQueue { .. } if reply_to.is_some() => Kind::Request,
            Arrival::RequestQueue { .. } => Kind::Oneway,
        },
    };
    let service = match header_value(SERVICE_HEADER) {
        Some(value) => Name::from(text(SERVICE_HEADER, value)?),
        None => match arrival {
            Arrival::RequestQueue { service } => service.clone(),
            Arrival::Inbox => Name::from_static(""),
        },
    };
    let correlation_id = match props.correlation_id() {
        // A server only echoes a request's id, verbatim from the AMQP
        // property (the transport keeps it): any id a foreign client chose
        // (a UUID, "007") will do, and the envelope carries 0 for one that
        // is not our number.
        Some(id) if matches!(arrival, Arrival::RequestQueue { .. }) => {
            parse_correlation_id(id.as_str()).unwrap_or(0)
        }
        Some(id) => parse_correlation_id(id.as_str())?,
        // Oneway calls need no pairing; everything else does.
        None if kind == Kind::Oneway => 0,
        None => return Err(PropertiesError::Missing("correlation_id")),
    };
    let method = match props.kind() {
        // Straight into the shared string: one allocation, not two.
        Some(method) => Name::from(std::sync::Arc::<str>::from(method.as_str())),
        None if kind == Kind::Reply => Name::from_static(""),
        None => return Err(PropertiesError::Missing("type")),
    };
    let mime = props
        .content_type()
        .as_ref()
        .ok_or(PropertiesError::Missing("content_type"))?;
    let content_type = ContentType::from_mime(mime.as_str())
        .ok_or_else(|| PropertiesError::UnsupportedContentType(mime.to_string()))?;
    let reply_to = match (kind, reply_to) {
        (Kind::Request, Some(reply_to)) => Some(rpc_core::Address::new(
            std::sync::Arc::<str>::from(reply_to),
        )),
        (Kind::Request, None) => return Err(PropertiesError::Missing("reply_to")),
        _ => None,
    };
    let deadline_ms = match header_value(DEADLINE_HEADER) {
        Some(value) => u64::try_from(integer(DEADLINE_HEADER, value)?).map_err(|_| {
            PropertiesError::Invalid {
                field: DEADLINE_HEADER,
                reason: "negative or too large".into(),
            }
        })?,
        // A foreign caller may state its budget as an expiration only.
        None => match props.expiration() {
            Some(expiration) => {
                let ms: u64 =
                    expiration
                        .as_str()
                        .parse()
                        .map_err(|_| PropertiesError::Invalid {
                            field: "expiration",
                            reason: format!("`{expiration}` is not a number of milliseconds"),
                        })?;
                now_ms().saturating_add(ms)
            }
            None => 0,
        },
    };
    let status = match header_value(STATUS_HEADER) {
        None => Status::Ok,
        Some(value) => {
            let text = text(STATUS_HEADER, value)?;
            if text == "ok" {
                Status::Ok
            } else {
                let kind = ErrorKind::parse(&text).ok_or_else(|| PropertiesError::Invalid {
                    field: STATUS_HEADER,
                    reason: format!("unknown status `{text}`"),
                })?;
                let message = match header_value(ERROR_HEADER) {
                    Some(value) => text_limited(ERROR_HEADER, value)?,
                    None => String::new(),
                };
                Status::Error { kind, message }
            }
        }
    };
    let mut metadata = Metadata::new();
    let mut trace = None;
    for (key, value) in headers.inner() {
        let key = key.as_str();
        if key.starts_with(RESERVED_PREFIX) {
            continue;
        }
        // Broker-added headers (x-death tables, ...) and foreign typed
        // values are not caller data; only strings are.
        let (AMQPValue::LongString(_) | AMQPValue::ShortString(_)) = value else {
            continue;
        };
        if metadata.len() == MAX_METADATA_ENTRIES {
            return Err(PropertiesError::TooManyEntries(headers.inner().len()));
        }
        let value = text_limited("metadata value", value)?;
        match TraceContext::from_wire_entry(key, &value) {
            Some(sent) => trace = Some(sent),
            None => metadata.insert(key, value),
        }
    }
    // The broker refuses a publish whose user_id is not the connection's
    // user, so on a request queue it is who sent the request. Replies carry
    // no caller: the client knows whom it called.
    if let (Arrival::RequestQueue { .. }, Some(user)) = (arrival, props.user_id()) {
        metadata.insert(CALLER_METADATA, user.as_str());
    }
    let sent_at_ms = props.timestamp().map_or(0, |s| s.saturating_mul(1000));

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

/// The correlation id as our envelopes carry it: the decimal text of a u64.
pub fn parse_correlation_id(text: &str) -> Result<u64, PropertiesError> {
    // One pass over the bytes, digits only: `u64::from_str` would accept a
    // leading `+`, and checking the digits first, then parsing, reads every
    // id twice (twice a call, on the request and on its reply).
    let mut value = Some(0u64);
    for byte in text.bytes() {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err(not_decimal());
        }
        value = value.and_then(|v| v.checked_mul(10)?.checked_add(u64::from(digit)));
    }
    match value {
        _ if text.is_empty() => Err(not_decimal()),
        Some(value) => Ok(value),
        None => Err(PropertiesError::Invalid {
            field: "correlation_id",
            reason: "beyond the range of u64".into(),
        }),
    }
}

fn not_decimal() -> PropertiesError {
    PropertiesError::Invalid {
        field: "correlation_id",
        reason: "must be the decimal text of an unsigned 64-bit integer".into(),
    }
}

fn short(field: &'static str, text: &str) -> Result<ShortString, PropertiesError> {
    check_len(field, text, 255)?;
    Ok(ShortString::from(text))
}

fn check_len(field: &'static str, text: &str, limit: usize) -> Result<(), PropertiesError> {
    if text.len() > limit {
        return Err(PropertiesError::TooLong {
            field,
            len: text.len(),
            limit,
        });
    }
    Ok(())
}

fn text(field: &'static str, value: &AMQPValue) -> Result<String, PropertiesError> {
    let text = text_limited(field, value)?;
    check_len(field, &text, 255)?;
    Ok(text)
}

fn text_limited(field: &'static str, value: &AMQPValue) -> Result<String, PropertiesError> {
    let bytes = match value {
        AMQPValue::LongString(s) => s.as_bytes(),
        AMQPValue::ShortString(s) => s.as_str().as_bytes(),
        other => {
            return Err(PropertiesError::Invalid {
                field,
                reason: format!("expected a string, got {:?}", other.get_type()),
            });
        }
    };
    if bytes.len() > MAX_TEXT_LEN {
        return Err(PropertiesError::TooLong {
            field,
            len: bytes.len(),
            limit: MAX_TEXT_LEN,
        });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| PropertiesError::Invalid {
        field,
        reason: "not UTF-8".into(),
    })
}

fn integer(field: &'static str, value: &AMQPValue) -> Result<i128, PropertiesError> {
    // Clients encode integers in whatever width fits (pika picks by value),
    // so every integer type is accepted.
    Ok(match *value {
        AMQPValue::ShortShortInt(v) => v.into(),
        AMQPValue::ShortShortUInt(v) => v.into(),
        AMQPValue::ShortInt(v) => v.into(),
        AMQPValue::ShortUInt(v) => v.into(),
        AMQPValue::LongInt(v) => v.into(),
        AMQPValue::LongUInt(v) => v.into(),
        AMQPValue::LongLongInt(v) => v.into(),
        AMQPValue::Timestamp(v) => v.into(),
        ref other => {
            return Err(PropertiesError::Invalid {
                field,
                reason: format!("expected an integer, got {:?}", other.get_type()),
            });
        }
    })
}

/// `LongString` from text, for callers building headers by hand.
pub(crate) fn long(text: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Header {
        let mut header = Header::request("calc".into(), "add".into(), ContentType::Json);
        header.correlation_id = 42;
        header.reply_to = Some(rpc_core::Address::new("reply.q"));
        header.sent_at_ms = 1_700_000_000_000;
        header.deadline_ms = now_ms() + 5_000;
        header.trace = Some(TraceContext::new_root());
        header.metadata.insert("tenant", "acme");
        header
    }

    #[test]
    fn correlation_ids_are_decimal_u64_text_only() {
        let max = u64::MAX.to_string();
        for (text, id) in [("0", 0), ("42", 42), ("007", 7), (max.as_str(), u64::MAX)] {
            assert_eq!(parse_correlation_id(text).unwrap(), id, "{text}");
        }
        let reason = |text| match parse_correlation_id(text) {
            Err(PropertiesError::Invalid {
                field: "correlation_id",
                reason,
            }) => reason,
            other => panic!("{text:?} gave {other:?}"),
        };
        for text in ["", "+1", "-1", "1a", " 1", "1 ", "99999999999999999999x"] {
            assert!(
                reason(text).starts_with("must be the decimal text"),
                "{text:?}"
            );
        }
        for text in ["18446744073709551616", "99999999999999999999"] {
            assert_eq!(reason(text), "beyond the range of u64", "{text:?}");
        }
    }

    #[test]
    fn a_request_round_trips() {
        let header = request();
        let props = encode(&header, Some("reply.q")).unwrap();
        assert_eq!(props.correlation_id().as_ref().unwrap().as_str(), "42");
        assert_eq!(props.kind().as_ref().unwrap().as_str(), "add");
        assert_eq!(
            props.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(props.timestamp(), &Some(1_700_000_000));
        let expiration: u64 = props
            .expiration()
            .as_ref()
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        assert!((4_000..=5_000).contains(&expiration), "{expiration}");

        let service = Name::from_static("calc");
        let back = decode(
            &props,
            b"{}".to_vec(),
            Arrival::RequestQueue { service: &service },
        )
        .unwrap();
        assert_eq!(back.header, header);
        assert_eq!(back.body, b"{}");
    }

    #[test]
    fn a_traceparent_header_is_the_trace_context_when_it_reads_as_written() {
        let trace = TraceContext::new_root();
        let mut header = request();
        header.trace = Some(trace);
        let props = encode(&header, Some("reply.q")).unwrap();
        let table = props.headers().as_ref().unwrap();
        assert_eq!(
            table.inner().get("traceparent"),
            Some(&long(trace.traceparent().as_str()))
        );
        let service = Name::from_static("calc");
        let arrival = Arrival::RequestQueue { service: &service };
        let back = decode(&props, Vec::new(), arrival).unwrap();
        assert_eq!(back.header.trace, Some(trace));
        assert_eq!(back.header.metadata.get("traceparent"), None);

        // A foreign client's value in a form of its own stays metadata.
        let mut table = table.clone();
        let upper = trace.to_traceparent().replacen("00-", "01-", 1);
        table.insert("traceparent".into(), long(&upper));
        let foreign = props.clone().with_headers(table);
        let back = decode(&foreign, Vec::new(), arrival).unwrap();
        assert_eq!(back.header.trace, None);
        assert_eq!(
            back.header.metadata.get("traceparent"),
            Some(upper.as_str())
        );
    }

    #[test]
    fn an_error_reply_round_trips() {
        let mut header = request().reply(Status::Error {
            kind: ErrorKind::Remote,
            message: "handler panicked: boom".into(),
        });
        header.sent_at_ms = 2_000;
        let props = encode(&header, None).unwrap();
        assert!(props.expiration().is_none(), "replies do not expire");
        let back = decode(&props, Vec::new(), Arrival::Inbox).unwrap();
        // What the caller knows already does not travel back.
        let expected = Header {
            service: Name::from_static(""),
            method: Name::from_static(""),
            deadline_ms: 0,
            sent_at_ms: 0,
            ..header
        };
        assert_eq!(back.header, expected);
    }

    #[test]
    fn only_what_cannot_be_inferred_is_written() {
        let props = encode(&request(), Some("reply.q")).unwrap();
        let headers = props.headers().as_ref().expect("deadline and metadata");
        let mut keys: Vec<&str> = headers.inner().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["tenant", "traceparent", DEADLINE_HEADER]);
        assert!(props.message_id().is_none(), "nothing reads it: {props:?}");

        let ok = request().reply(Status::Ok);
        let props = encode(&ok, None).unwrap();
        assert!(props.headers().is_none(), "{props:?}");
        assert!(props.kind().is_none(), "{props:?}");
        assert!(props.timestamp().is_none(), "{props:?}");
        assert!(props.message_id().is_none(), "{props:?}");
        assert_eq!(props.correlation_id().as_ref().unwrap().as_str(), "42");
        assert_eq!(
            decode(&props, b"5".to_vec(), Arrival::Inbox)
                .unwrap()
                .header
                .kind,
            Kind::Reply
        );
    }

    #[test]
    fn a_kind_the_arrival_does_not_imply_is_written() {
        let service = Name::from_static("calc");
        let at = Arrival::RequestQueue { service: &service };
        let mut cancel = request();
        cancel.kind = Kind::Cancel;
        let mut oneway_with_reply_to = request();
        oneway_with_reply_to.kind = Kind::Oneway;
        for header in [cancel, oneway_with_reply_to] {
            let props = encode(&header, Some("reply.q")).unwrap();
            let back = decode(&props, Vec::new(), at).unwrap();
            assert_eq!(back.header.kind, header.kind);
        }
        let mut oneway = request();
        oneway.kind = Kind::Oneway;
        oneway.reply_to = None;
        let props = encode(&oneway, None).unwrap();
        let headers = props.headers().as_ref().unwrap();
        assert!(headers.inner().get(KIND_HEADER).is_none());
        assert_eq!(decode(&props, Vec::new(), at).unwrap().header, oneway);
        // A request that lost its reply address must not pass for a oneway.
        let props = encode(&request(), None).unwrap();
        assert_eq!(
            decode(&props, Vec::new(), at).unwrap_err(),
            PropertiesError::Missing("reply_to")
        );
    }

    #[test]
    fn the_headers_older_senders_write_are_still_read() {
        let mut table = FieldTable::default();
        table.insert(VERSION_HEADER.into(), AMQPValue::LongLongInt(1));
        table.insert(KIND_HEADER.into(), long("reply"));
        table.insert(SERVICE_HEADER.into(), long("calc"));
        table.insert(DEADLINE_HEADER.into(), AMQPValue::LongLongInt(9));
        let props = BasicProperties::default()
            .with_correlation_id("3".into())
            .with_type("add".into())
            .with_content_type("application/json".into())
            .with_headers(table);
        let header = decode(&props, Vec::new(), Arrival::Inbox).unwrap().header;
        assert_eq!(header.kind, Kind::Reply);
        assert_eq!(header.service, "calc");
        assert_eq!(header.method, "add");
        assert_eq!(header.deadline_ms, 9);
        assert!(header.metadata.is_empty());
    }

    #[test]
    fn a_foreign_request_needs_only_the_basics() {
        // What a pika client sends: no x-rpc headers at all.
        let props = BasicProperties::default()
            .with_correlation_id("7".into())
            .with_reply_to("amq.gen-xyz".into())
            .with_type("add".into())
            .with_content_type("application/json".into())
            .with_expiration("1000".into());
        let service = Name::from_static("calc");
        let env = decode(
            &props,
            b"{\"a\":1}".to_vec(),
            Arrival::RequestQueue { service: &service },
        )
        .unwrap();
        assert_eq!(env.header.kind, Kind::Request);
        assert_eq!(env.header.service, "calc");
        assert_eq!(env.header.correlation_id, 7);
        assert!(env.header.deadline_ms > now_ms() && env.header.deadline_ms <= now_ms() + 1000);
        assert_eq!(env.header.reply_to.unwrap().as_str(), "amq.gen-xyz");
        assert_eq!(env.header.status, Status::Ok);
    }

    #[test]
    fn bad_fields_are_typed_errors() {
        let service = Name::from_static("calc");
        let at = Arrival::RequestQueue { service: &service };
        let base = || {
            BasicProperties::default()
                .with_correlation_id("7".into())
                .with_reply_to("r".into())
                .with_type("add".into())
                .with_content_type("application/json".into())
        };
        let with_header = |key: &str, value: AMQPValue| {
            let mut table = FieldTable::default();
            table.insert(key.into(), value);
            base().with_headers(table)
        };
        type Expect = fn(&PropertiesError) -> bool;
        let cases: Vec<(BasicProperties, Expect)> = vec![
            (
                BasicProperties::default()
                    .with_reply_to("r".into())
                    .with_type("m".into()),
                |e| matches!(e, PropertiesError::Missing("correlation_id")),
            ),
            (base().with_content_type("text/plain".into()), |e| {
                matches!(e, PropertiesError::UnsupportedContentType(_))
            }),
            (
                with_header(VERSION_HEADER, AMQPValue::LongLongInt(2)),
                |e| matches!(e, PropertiesError::UnsupportedVersion(2)),
            ),
            (with_header(VERSION_HEADER, long("1")), |e| {
                matches!(
                    e,
                    PropertiesError::Invalid {
                        field: VERSION_HEADER,
                        ..
                    }
                )
            }),
            (with_header(KIND_HEADER, long("teapot")), |e| {
                matches!(
                    e,
                    PropertiesError::Invalid {
                        field: KIND_HEADER,
                        ..
                    }
                )
            }),
            (
                with_header(DEADLINE_HEADER, AMQPValue::LongLongInt(-5)),
                |e| {
                    matches!(
                        e,
                        PropertiesError::Invalid {
                            field: DEADLINE_HEADER,
                            ..
                        }
                    )
                },
            ),
            (with_header(STATUS_HEADER, long("bogus")), |e| {
                matches!(
                    e,
                    PropertiesError::Invalid {
                        field: STATUS_HEADER,
                        ..
                    }
                )
            }),
            (base().with_expiration("soon".into()), |e| {
                matches!(
                    e,
                    PropertiesError::Invalid {
                        field: "expiration",
                        ..
                    }
                )
            }),
        ];
        for (props, expected) in cases {
            let error = decode(&props, Vec::new(), at).unwrap_err();
            assert!(expected(&error), "{props:?} gave {error:?}");
        }
        // A correlation id that is not our number: a request keeps it (the
        // server echoes it verbatim, the envelope says 0), a reply is refused.
        for id in ["+1", "18446744073709551616", "9f1c3b2e-uuid"] {
            let props = base().with_correlation_id(id.into());
            assert_eq!(
                decode(&props, Vec::new(), at)
                    .unwrap()
                    .header
                    .correlation_id,
                0
            );
            let reply = BasicProperties::default()
                .with_correlation_id(id.into())
                .with_content_type("application/json".into());
            assert!(matches!(
                decode(&reply, Vec::new(), Arrival::Inbox).unwrap_err(),
                PropertiesError::Invalid {
                    field: "correlation_id",
                    ..
                }
            ));
        }
        // A request without a reply address is an error, not a oneway call,
        // when it says it is a request.
        let mut table = FieldTable::default();
        table.insert(KIND_HEADER.into(), long("request"));
        let props_no_reply = BasicProperties::default()
            .with_correlation_id("1".into())
            .with_type("m".into())
            .with_content_type("application/json".into())
            .with_headers(table);
        assert_eq!(
            decode(&props_no_reply, Vec::new(), at).unwrap_err(),
            PropertiesError::Missing("reply_to")
        );
    }

    #[test]
    fn reserved_metadata_keys_and_long_names_are_refused() {
        let mut header = request();
        header.metadata.insert("x-rpc-kind", "reply");
        assert!(matches!(
            encode(&header, None),
            Err(PropertiesError::ReservedKey(_))
        ));
        let mut header = request();
        header.method = Name::from("m".repeat(256));
        assert!(matches!(
            encode(&header, None),
            Err(PropertiesError::TooLong { field: "type", .. })
        ));
    }

    #[test]
    fn non_string_foreign_headers_are_not_metadata() {
        let mut table = FieldTable::default();
        table.insert("x-death".into(), AMQPValue::FieldArray(Default::default()));
        table.insert("tenant".into(), long("acme"));
        table.insert("retries".into(), AMQPValue::LongInt(3));
        let props = BasicProperties::default()
            .with_correlation_id("1".into())
            .with_content_type("application/json".into())
            .with_headers(table);
        let env = decode(&props, Vec::new(), Arrival::Inbox).unwrap();
        assert_eq!(
            env.header.metadata.iter().collect::<Vec<_>>(),
            vec![("tenant", "acme")]
        );
    }
}
