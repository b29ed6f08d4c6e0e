//! The envelope header <-> Kafka record headers mapping (docs/wire.md).
//!
//! Every field is a UTF-8 text header, so a client in any language reads and
//! writes them with its Kafka library alone; the body is the record value.
//! Caller metadata travels as `rpc-meta-<key>` headers.

use std::sync::Arc;

use rdkafka::message::{Header as KafkaHeader, Headers, OwnedHeaders};
use rpc_core::trace::{TRACEPARENT, TraceContext};
use rpc_core::{Address, ContentType, ErrorKind, Header, Kind, Metadata, Name, Status};

/// The protocol version (`1`).
pub const VERSION: &str = "rpc-version";
/// `request`, `reply`, `oneway` or `cancel`.
pub const KIND: &str = "rpc-kind";
/// Decimal u64 pairing a reply with its request.
pub const CORRELATION_ID: &str = "rpc-correlation-id";
/// The service's wire name.
pub const SERVICE: &str = "rpc-service";
/// The method's name.
pub const METHOD: &str = "rpc-method";
/// The topic the reply goes to (requests only).
pub const REPLY_TO: &str = "rpc-reply-to";
/// Absolute deadline, unix milliseconds, decimal; absent means none.
pub const DEADLINE_MS: &str = "rpc-deadline-ms";
/// When the sender sent it, unix milliseconds, decimal.
pub const SENT_AT_MS: &str = "rpc-sent-at-ms";
/// The body's MIME type (`application/x-bincode`, `application/json`).
pub const CONTENT_TYPE: &str = "rpc-content-type";
/// On replies: `ok`, or an error kind (`timeout`, `remote`, ...).
pub const STATUS: &str = "rpc-status";
/// On error replies: the message.
pub const ERROR: &str = "rpc-error";
/// A call's fields in one header, as this crate writes every request and
/// oneway call: `<correlation-id>;<reply-to>;<deadline-ms>;<traceparent>;<method>`,
/// an absent field left empty, the method last (it may hold `;`). The
/// fields' own headers are read too (see docs/wire.md).
pub const CALL: &str = "rpc-call";
/// Prefix of one caller metadata entry.
pub const META_PREFIX: &str = "rpc-meta-";
/// The trace context's header: the `traceparent` metadata entry's.
const META_TRACEPARENT: &str = "rpc-meta-traceparent";

/// Why a record's headers are not an envelope header.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadersError {
    /// A required header is absent.
    #[error("missing header `{0}`")]
    Missing(&'static str),
    /// A header is there but its value is not what it must be.
    #[error("bad value of header `{0}`")]
    Bad(&'static str),
}

/// Where a record was read, which says what its absent headers mean.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// The request topic of `service`: a record names no service of its
    /// own, and is a request when it names a reply topic, else a oneway
    /// call.
    Requests {
        /// The service whose topic it is.
        service: &'a Name,
    },
    /// A reply topic: a record is a reply.
    Replies,
}

/// The Kafka headers of an envelope header, leaving out what the topic and
/// the other headers imply: the version (`1`), the kind (but `cancel`),
/// the service (the request topic's), bincode, an `ok` status and the time
/// sent (the record's own timestamp). Every header a broker stores and two
/// clients parse costs: ten of them per request halved what tansu carried
/// at 256 calls in flight.
///
/// A request or oneway call carries its correlation id, reply topic,
/// deadline, trace context and method in one [`CALL`] header: librdkafka
/// allocates and copies each header on both sides, and parses them all.
pub fn encode(header: &Header) -> OwnedHeaders {
    // `insert` takes the list by value: it is moved out of the slot and
    // back, never replaced by a new (allocated) one in between.
    let mut slot = Some(OwnedHeaders::new_with_capacity(
        5 + header.wire_metadata_len(),
    ));
    let mut put = |key: &str, value: &str| {
        let out = slot.take().map(|out| {
            out.insert(KafkaHeader {
                key,
                value: Some(value.as_bytes()),
            })
        });
        slot = out;
    };
    let kind_implied = match header.kind {
        Kind::Request => header.reply_to.is_some(),
        Kind::Oneway => header.reply_to.is_none(),
        Kind::Reply => true,
        _ => false,
    };
    if !kind_implied {
        put(KIND, header.kind.as_str());
    }
    if kind_implied && header.kind != Kind::Reply {
        encode_call(header, &mut put);
        return slot.unwrap_or_default();
    }
    if header.kind != Kind::Oneway || header.correlation_id != 0 {
        put(CORRELATION_ID, Decimal::new(header.correlation_id).as_str());
    }
    if header.kind != Kind::Reply {
        if !header.method.is_empty() {
            put(METHOD, header.method.as_str());
        }
        if let Some(reply_to) = &header.reply_to {
            put(REPLY_TO, reply_to.as_str());
        }
        if header.deadline_ms != 0 {
            put(DEADLINE_MS, Decimal::new(header.deadline_ms).as_str());
        }
    }
    if header.content_type != ContentType::default() {
        put(CONTENT_TYPE, header.content_type.mime());
    }
    if let Status::Error { kind, message } = &header.status {
        put(STATUS, kind.as_str());
        put(ERROR, message);
    }
    let written = header.try_for_each_wire_entry(|key, value| {
        match key {
            TRACEPARENT => put(META_TRACEPARENT, value),
            key => put(&format!("{META_PREFIX}{key}"), value),
        }
        Ok::<(), std::convert::Infallible>(())
    });
    written.unwrap_or_else(|never| match never {});
    slot.unwrap_or_default()
}

/// The headers of a request or oneway call: [`CALL`], then the content
/// type, an error status and the metadata but the trace context.
fn encode_call(header: &Header, put: &mut impl FnMut(&str, &str)) {
    let reply_to = header.reply_to.as_ref().map_or("", |t| t.as_str());
    let mut call = String::with_capacity(100 + reply_to.len() + header.method.as_str().len());
    if header.kind != Kind::Oneway || header.correlation_id != 0 {
        call.push_str(Decimal::new(header.correlation_id).as_str());
    }
    call.push(';');
    call.push_str(reply_to);
    call.push(';');
    if header.deadline_ms != 0 {
        call.push_str(Decimal::new(header.deadline_ms).as_str());
    }
    call.push(';');
    // At most one `traceparent` entry: the trace context's, else the
    // metadata's own (`try_for_each_wire_entry`).
    let written = header.try_for_each_wire_entry(|key, value| {
        match key {
            TRACEPARENT => call.push_str(value),
            key => put(&format!("{META_PREFIX}{key}"), value),
        }
        Ok::<(), std::convert::Infallible>(())
    });
    written.unwrap_or_else(|never| match never {});
    call.push(';');
    call.push_str(header.method.as_str());
    put(CALL, &call);
    if header.content_type != ContentType::default() {
        put(CONTENT_TYPE, header.content_type.mime());
    }
    if let Status::Error { kind, message } = &header.status {
        put(STATUS, kind.as_str());
        put(ERROR, message);
    }
}

/// The fields of a [`CALL`] value; `None` when it has fewer than five.
fn split_call(value: &str) -> Option<[&str; 5]> {
    let mut parts = value.splitn(5, ';');
    Some([
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    ])
}

/// The envelope header carried by a record's headers, read from `source`.
/// A header left out means what [`encode`] leaves it out for; one given
/// anyway (a foreign client's `rpc-version: 1`, `rpc-kind: request`) is
/// read and checked.
pub fn decode<'a, H: Headers>(
    headers: Option<&'a H>,
    source: Source<'_>,
) -> Result<Header, HeadersError> {
    let mut fields = Fields::default();
    let mut metadata = Metadata::default();
    let mut trace = None;
    let mut call = None;
    if let Some(headers) = headers {
        for h in headers.iter() {
            let value = match h.value {
                Some(v) => std::str::from_utf8(v).map_err(|_| HeadersError::Bad(VERSION))?,
                None => "",
            };
            match h.key {
                VERSION => fields.version = Some(value),
                KIND => fields.kind = Some(value),
                CORRELATION_ID => fields.correlation_id = Some(value),
                SERVICE => fields.service = Some(value),
                METHOD => fields.method = Some(value),
                REPLY_TO => fields.reply_to = Some(value),
                DEADLINE_MS => fields.deadline_ms = Some(value),
                SENT_AT_MS => fields.sent_at_ms = Some(value),
                CONTENT_TYPE => fields.content_type = Some(value),
                STATUS => fields.status = Some(value),
                ERROR => fields.error = Some(value),
                CALL => call = Some(split_call(value).ok_or(HeadersError::Bad(CALL))?),
                key => {
                    if let Some(name) = key.strip_prefix(META_PREFIX) {
                        match TraceContext::from_wire_entry(name, value) {
                            Some(sent) => trace = Some(sent),
                            None => metadata.insert(name, value),
                        }
                    }
                }
            }
        }
    }
    // The `rpc-call` fields win over their own headers, in any order.
    if let Some([id, reply_to, deadline, traceparent, method]) = call {
        let given = |field: &'a str| (!field.is_empty()).then_some(field);
        fields.correlation_id = given(id).or(fields.correlation_id);
        fields.reply_to = given(reply_to).or(fields.reply_to);
        fields.deadline_ms = given(deadline).or(fields.deadline_ms);
        fields.method = Some(method);
        if !traceparent.is_empty() {
            match TraceContext::from_wire_entry(TRACEPARENT, traceparent) {
                Some(sent) => trace = Some(sent),
                None => metadata.insert(TRACEPARENT, traceparent),
            }
        }
    }
    if fields.version.is_some_and(|version| version != "1") {
        return Err(HeadersError::Bad(VERSION));
    }
    let kind = match (fields.kind, source) {
        (Some(kind), _) => Kind::parse(kind).ok_or(HeadersError::Bad(KIND))?,
        (None, Source::Requests { .. }) if fields.reply_to.is_some() => Kind::Request,
        (None, Source::Requests { .. }) => Kind::Oneway,
        (None, Source::Replies) => Kind::Reply,
    };
    let service = match (fields.service, source) {
        (Some(service), _) => Name::from(Arc::<str>::from(service)),
        (None, Source::Requests { service }) => service.clone(),
        (None, Source::Replies) => Name::from_static(""),
    };
    let calls = matches!(kind, Kind::Request | Kind::Oneway);
    let method = match fields.method {
        Some(method) => Name::from(Arc::<str>::from(method)),
        None if calls => return Err(HeadersError::Missing(METHOD)),
        None => Name::from_static(""),
    };
    let correlation_id = match number(fields.correlation_id, CORRELATION_ID)? {
        Some(id) => id,
        None if kind == Kind::Oneway => 0,
        None => return Err(HeadersError::Missing(CORRELATION_ID)),
    };
    let status = match fields.status.unwrap_or("ok") {
        "ok" => Status::Ok,
        other => Status::Error {
            kind: ErrorKind::parse(other).ok_or(HeadersError::Bad(STATUS))?,
            message: fields.error.unwrap_or_default().to_owned(),
        },
    };
    Ok(Header {
        kind,
        correlation_id,
        service,
        method,
        reply_to: fields.reply_to.map(|t| Address::new(Arc::<str>::from(t))),
        deadline_ms: number(fields.deadline_ms, DEADLINE_MS)?.unwrap_or(0),
        sent_at_ms: number(fields.sent_at_ms, SENT_AT_MS)?.unwrap_or(0),
        content_type: match fields.content_type {
            None => ContentType::default(),
            Some(mime) => ContentType::from_mime(mime).ok_or(HeadersError::Bad(CONTENT_TYPE))?,
        },
        status,
        trace,
        metadata,
    })
}

/// What a refused record says about where to answer it: its reply topic
/// and correlation id, when both are readable.
pub fn reply_address<H: Headers>(headers: Option<&H>) -> Option<(String, u64)> {
    let headers = headers?;
    let text = |key: &str| {
        headers
            .iter()
            .find(|h| h.key == key)
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
    };
    let call = text(CALL).and_then(split_call);
    let topic = call
        .map(|[_, reply_to, ..]| reply_to)
        .filter(|t| !t.is_empty())
        .or_else(|| text(REPLY_TO))?
        .to_owned();
    let id = call
        .map(|[id, ..]| id)
        .filter(|id| !id.is_empty())
        .or_else(|| text(CORRELATION_ID))?
        .parse()
        .ok()?;
    Some((topic, id))
}

/// A u64 in decimal, formatted on the stack: headers and record keys are
/// written on every call, and `to_string` allocates.
pub(crate) struct Decimal {
    digits: [u8; 20],
    start: usize,
}

impl Decimal {
    pub(crate) fn new(mut value: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        Decimal { digits, start }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.digits[self.start..]).expect("ASCII digits")
    }
}

#[derive(Default)]
struct Fields<'a> {
    version: Option<&'a str>,
    kind: Option<&'a str>,
    correlation_id: Option<&'a str>,
    service: Option<&'a str>,
    method: Option<&'a str>,
    reply_to: Option<&'a str>,
    deadline_ms: Option<&'a str>,
    sent_at_ms: Option<&'a str>,
    content_type: Option<&'a str>,
    status: Option<&'a str>,
    error: Option<&'a str>,
}

fn number(text: Option<&str>, key: &'static str) -> Result<Option<u64>, HeadersError> {
    text.map(|t| t.parse().map_err(|_| HeadersError::Bad(key)))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALC: Name = Name::from_static("calc.v1");

    fn requests() -> Source<'static> {
        static SERVICE: Name = Name::from_static("calc.v1");
        Source::Requests { service: &SERVICE }
    }

    fn request() -> Header {
        let mut header = Header::request(CALC, Name::from_static("add"), ContentType::Json);
        header.correlation_id = 42;
        header.reply_to = Some(Address::new("rpc.reply.x"));
        header.deadline_ms = 1_700_000_000_123;
        header.trace = Some(TraceContext::new_root());
        header.metadata.insert("tenant", "acme");
        header
    }

    fn keys(headers: &OwnedHeaders) -> Vec<&str> {
        headers.iter().map(|h| h.key).collect()
    }

    fn text<'a>(headers: &'a OwnedHeaders, key: &str) -> &'a str {
        let value = headers.iter().find(|h| h.key == key).unwrap().value;
        std::str::from_utf8(value.unwrap()).unwrap()
    }

    #[test]
    fn requests_round_trip_with_what_the_topic_implies() {
        let header = request();
        let encoded = encode(&header);
        assert_eq!(keys(&encoded), ["rpc-meta-tenant", CALL, CONTENT_TYPE]);
        let traceparent = header.trace.as_ref().unwrap().traceparent();
        assert_eq!(
            text(&encoded, CALL),
            format!("42;rpc.reply.x;1700000000123;{};add", traceparent.as_str())
        );
        assert_eq!(decode(Some(&encoded), requests()).unwrap(), header);
        assert_eq!(
            reply_address(Some(&encoded)),
            Some(("rpc.reply.x".to_owned(), 42))
        );

        let mut oneway = Header::request(CALC, Name::from_static("log"), ContentType::Bincode);
        oneway.kind = Kind::Oneway;
        let encoded = encode(&oneway);
        assert_eq!(keys(&encoded), [CALL]);
        assert_eq!(text(&encoded, CALL), ";;;;log");
        assert_eq!(decode(Some(&encoded), requests()).unwrap(), oneway);
    }

    #[test]
    fn the_method_is_the_rest_of_the_call_header() {
        let mut header = request();
        header.method = Name::from_static("odd;name");
        header.trace = None;
        header.metadata = Metadata::default();
        let encoded = encode(&header);
        assert_eq!(
            text(&encoded, CALL),
            "42;rpc.reply.x;1700000000123;;odd;name"
        );
        assert_eq!(decode(Some(&encoded), requests()).unwrap(), header);
    }

    #[test]
    fn the_call_header_wins_over_the_fields_own_headers() {
        let both = OwnedHeaders::new()
            .insert(KafkaHeader {
                key: CALL,
                value: Some("7;py.replies;;;add"),
            })
            .insert(KafkaHeader {
                key: CORRELATION_ID,
                value: Some("8"),
            })
            .insert(KafkaHeader {
                key: DEADLINE_MS,
                value: Some("1700000000000"),
            });
        let read = decode(Some(&both), requests()).unwrap();
        assert_eq!(read.correlation_id, 7);
        assert_eq!(read.deadline_ms, 1_700_000_000_000);
        assert_eq!(read.kind, Kind::Request);
    }

    #[test]
    fn requests_with_a_header_per_field_are_read() {
        let header = request();
        let traceparent = header.trace.as_ref().unwrap().traceparent();
        let fields = [
            (CORRELATION_ID, "42"),
            (METHOD, "add"),
            (REPLY_TO, "rpc.reply.x"),
            (DEADLINE_MS, "1700000000123"),
            (CONTENT_TYPE, "application/json"),
            (META_TRACEPARENT, traceparent.as_str()),
            ("rpc-meta-tenant", "acme"),
        ];
        let separate = fields
            .iter()
            .fold(OwnedHeaders::new(), |out, (key, value)| {
                out.insert(KafkaHeader {
                    key,
                    value: Some(*value),
                })
            });
        assert_eq!(decode(Some(&separate), requests()).unwrap(), header);
        assert_eq!(
            reply_address(Some(&separate)),
            Some(("rpc.reply.x".to_owned(), 42))
        );
    }

    #[test]
    fn replies_carry_their_correlation_id_and_what_differs() {
        let mut ok = request().reply(Status::Ok);
        ok.content_type = ContentType::Bincode;
        let encoded = encode(&ok);
        assert_eq!(keys(&encoded), [CORRELATION_ID]);
        let read = decode(Some(&encoded), Source::Replies).unwrap();
        assert_eq!((read.kind, read.correlation_id), (Kind::Reply, 42));
        assert_eq!(read.status, Status::Ok);
        assert_eq!(read.content_type, ContentType::Bincode);

        let failed = request().reply(Status::Error {
            kind: ErrorKind::Timeout,
            message: "late".into(),
        });
        let read = decode(Some(&encode(&failed)), Source::Replies).unwrap();
        assert_eq!(read.status, failed.status);
        assert_eq!(read.content_type, ContentType::Json);
    }

    #[test]
    fn headers_a_foreign_client_writes_in_full_are_read() {
        let full = OwnedHeaders::new()
            .insert(KafkaHeader {
                key: VERSION,
                value: Some("1"),
            })
            .insert(KafkaHeader {
                key: KIND,
                value: Some("request"),
            })
            .insert(KafkaHeader {
                key: SERVICE,
                value: Some("calc.v1"),
            })
            .insert(KafkaHeader {
                key: METHOD,
                value: Some("add"),
            })
            .insert(KafkaHeader {
                key: CORRELATION_ID,
                value: Some("7"),
            })
            .insert(KafkaHeader {
                key: REPLY_TO,
                value: Some("py.replies"),
            })
            .insert(KafkaHeader {
                key: SENT_AT_MS,
                value: Some("1700000000000"),
            });
        let read = decode(Some(&full), requests()).unwrap();
        assert_eq!(read.kind, Kind::Request);
        assert_eq!(read.sent_at_ms, 1_700_000_000_000);
        assert_eq!(read.correlation_id, 7);
    }

    #[test]
    fn decimals_are_written_like_to_string() {
        for value in [0, 7, 10, 42, 1_700_000_000_123, u64::MAX] {
            assert_eq!(Decimal::new(value).as_str(), value.to_string());
        }
    }

    #[test]
    fn records_that_are_no_call_are_refused() {
        assert!(matches!(
            decode::<OwnedHeaders>(None, requests()),
            Err(HeadersError::Missing(METHOD))
        ));
        let wrong = OwnedHeaders::new().insert(KafkaHeader {
            key: VERSION,
            value: Some("2"),
        });
        assert!(matches!(
            decode(Some(&wrong), requests()),
            Err(HeadersError::Bad(VERSION))
        ));
        let no_id = OwnedHeaders::new()
            .insert(KafkaHeader {
                key: METHOD,
                value: Some("add"),
            })
            .insert(KafkaHeader {
                key: REPLY_TO,
                value: Some("py.replies"),
            });
        assert!(matches!(
            decode(Some(&no_id), requests()),
            Err(HeadersError::Missing(CORRELATION_ID))
        ));
        assert!(matches!(
            decode::<OwnedHeaders>(None, Source::Replies),
            Err(HeadersError::Missing(CORRELATION_ID))
        ));
        let short = OwnedHeaders::new().insert(KafkaHeader {
            key: CALL,
            value: Some("1;py.replies;;add"),
        });
        assert!(matches!(
            decode(Some(&short), requests()),
            Err(HeadersError::Bad(CALL))
        ));
    }
}
