//! The envelope header <-> Kafka record headers mapping (docs/wire.md).
//!
//! Every field is a UTF-8 text header, so a client in any language reads and
//! writes them with its Kafka library alone; the body is the record value.
//! Caller metadata travels as `rpc-meta-<key>` headers.

use rdkafka::message::{Header as KafkaHeader, Headers, OwnedHeaders};
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
/// Prefix of one caller metadata entry.
pub const META_PREFIX: &str = "rpc-meta-";

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

/// The Kafka headers of an envelope header. The reply address travels as
/// [`REPLY_TO`] when the header has one.
pub fn encode(header: &Header) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(10 + header.metadata.len());
    let mut put = |key: &str, value: &str| {
        out = std::mem::take(&mut out).insert(KafkaHeader {
            key,
            value: Some(value.as_bytes()),
        });
    };
    put(VERSION, "1");
    put(KIND, header.kind.as_str());
    put(CORRELATION_ID, &header.correlation_id.to_string());
    put(SERVICE, header.service.as_str());
    put(METHOD, header.method.as_str());
    if let Some(reply_to) = &header.reply_to {
        put(REPLY_TO, reply_to.as_str());
    }
    if header.deadline_ms != 0 {
        put(DEADLINE_MS, &header.deadline_ms.to_string());
    }
    put(SENT_AT_MS, &header.sent_at_ms.to_string());
    put(CONTENT_TYPE, header.content_type.mime());
    match &header.status {
        Status::Ok => put(STATUS, "ok"),
        Status::Error { kind, message } => {
            put(STATUS, kind.as_str());
            put(ERROR, message);
        }
    }
    for (key, value) in header.metadata.iter() {
        put(&format!("{META_PREFIX}{key}"), value);
    }
    out
}

/// The envelope header carried by a record's headers.
pub fn decode<H: Headers>(headers: Option<&H>) -> Result<Header, HeadersError> {
    let mut fields = Fields::default();
    let mut metadata = Metadata::default();
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
                key => {
                    if let Some(name) = key.strip_prefix(META_PREFIX) {
                        metadata.insert(name, value);
                    }
                }
            }
        }
    }
    if fields.version.ok_or(HeadersError::Missing(VERSION))? != "1" {
        return Err(HeadersError::Bad(VERSION));
    }
    let kind = Kind::parse(fields.kind.ok_or(HeadersError::Missing(KIND))?)
        .ok_or(HeadersError::Bad(KIND))?;
    let status = match fields.status.unwrap_or("ok") {
        "ok" => Status::Ok,
        other => Status::Error {
            kind: ErrorKind::parse(other).ok_or(HeadersError::Bad(STATUS))?,
            message: fields.error.unwrap_or_default().to_owned(),
        },
    };
    Ok(Header {
        kind,
        correlation_id: number(fields.correlation_id, CORRELATION_ID)?
            .ok_or(HeadersError::Missing(CORRELATION_ID))?,
        service: Name::from(
            fields
                .service
                .ok_or(HeadersError::Missing(SERVICE))?
                .to_owned(),
        ),
        method: Name::from(fields.method.unwrap_or_default().to_owned()),
        reply_to: fields.reply_to.map(|t| Address::new(t.to_owned())),
        deadline_ms: number(fields.deadline_ms, DEADLINE_MS)?.unwrap_or(0),
        sent_at_ms: number(fields.sent_at_ms, SENT_AT_MS)?.unwrap_or(0),
        content_type: match fields.content_type {
            None => ContentType::default(),
            Some(mime) => ContentType::from_mime(mime).ok_or(HeadersError::Bad(CONTENT_TYPE))?,
        },
        status,
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
    let topic = text(REPLY_TO)?.to_owned();
    let id = text(CORRELATION_ID)?.parse().ok()?;
    Some((topic, id))
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

    #[test]
    fn headers_round_trip() {
        let mut header = Header::request(
            Name::from_static("calc.v1"),
            Name::from_static("add"),
            ContentType::Json,
        );
        header.correlation_id = 42;
        header.reply_to = Some(Address::new("rpc.reply.x"));
        header.deadline_ms = 1_700_000_000_123;
        header.sent_at_ms = 1_700_000_000_000;
        header.metadata.insert("tenant", "acme");
        let encoded = encode(&header);
        assert_eq!(decode(Some(&encoded)).unwrap(), header);

        let reply = header.reply(Status::Error {
            kind: ErrorKind::Timeout,
            message: "late".into(),
        });
        assert_eq!(decode(Some(&encode(&reply))).unwrap(), reply);
        assert_eq!(
            reply_address(Some(&encoded)),
            Some(("rpc.reply.x".to_owned(), 42))
        );
    }

    #[test]
    fn records_without_headers_are_refused() {
        assert!(matches!(
            decode::<OwnedHeaders>(None),
            Err(HeadersError::Missing(VERSION))
        ));
        let wrong = OwnedHeaders::new().insert(KafkaHeader {
            key: VERSION,
            value: Some("2"),
        });
        assert!(matches!(
            decode(Some(&wrong)),
            Err(HeadersError::Bad(VERSION))
        ));
    }
}
