//! Codecs: how argument structs and return values become body bytes.
//!
//! Two are built in: [`Bincode`] (compact, the default) and [`Json`] (for
//! debugging and for callers in other languages). The body's codec travels
//! in the envelope as a [`ContentType`], so no type name from the wire ever
//! chooses a decoder: the receiver already knows the Rust type, the content
//! type only picks between the codecs it was compiled with.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A body codec failed.
#[derive(Debug, thiserror::Error)]
#[error("{codec} codec: {message}")]
pub struct CodecError {
    codec: &'static str,
    message: String,
}

impl CodecError {
    /// A codec failure with a message.
    pub fn new(codec: &'static str, message: impl Into<String>) -> Self {
        CodecError {
            codec,
            message: message.into(),
        }
    }

    /// The name of the codec that failed.
    pub fn codec(&self) -> &'static str {
        self.codec
    }
}

/// Turns serde values into body bytes and back.
///
/// Implementations must never panic on arbitrary input and must report
/// every failure as a [`CodecError`].
pub trait Codec {
    /// The content type this codec writes into the envelope.
    const CONTENT_TYPE: ContentType;

    /// Appends the encoding of `value` to `out`.
    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError>;

    /// Decodes one value that must span all of `bytes`.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// bincode 2 in serde mode, standard configuration (varint integers).
///
/// Not self-describing: it cannot carry `#[serde(untagged)]` enums,
/// `#[serde(flatten)]` or `serde_json::Value`. Use [`Json`] for those.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bincode;

/// bincode refuses to allocate more than this while decoding, so a
/// hostile length prefix cannot make it reserve gigabytes.
const BINCODE_DECODE_LIMIT: usize = 64 * 1024 * 1024;

impl Codec for Bincode {
    const CONTENT_TYPE: ContentType = ContentType::Bincode;

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
            .map(drop)
            .map_err(|e| CodecError::new("bincode", e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let config = bincode::config::standard().with_limit::<BINCODE_DECODE_LIMIT>();
        let (value, read) = bincode::serde::decode_from_slice(bytes, config)
            .map_err(|e| CodecError::new("bincode", e.to_string()))?;
        if read != bytes.len() {
            return Err(CodecError::new(
                "bincode",
                format!("{} trailing bytes", bytes.len() - read),
            ));
        }
        Ok(value)
    }
}

/// Encoded bodies up to this size are written to the stack first.
const SMALL_BODY: usize = 128;

/// `value` in bincode if its encoding fits in [`SMALL_BODY`] bytes, else
/// `None`. Most arguments and return values are that small: written to a
/// buffer on the stack, then copied into a vector of their exact size, they
/// cost one allocation and none of the capacity checks and growth a vector
/// written byte by byte goes through.
fn bincode_small<T: Serialize + ?Sized>(value: &T) -> Result<Option<Vec<u8>>, CodecError> {
    let mut buffer = [0u8; SMALL_BODY];
    match bincode::serde::encode_into_slice(value, &mut buffer, bincode::config::standard()) {
        Ok(len) => Ok(Some(buffer[..len].to_vec())),
        // Larger than the buffer: the caller writes it to a vector.
        Err(bincode::error::EncodeError::UnexpectedEnd) => Ok(None),
        Err(e) => Err(CodecError::new("bincode", e.to_string())),
    }
}

/// JSON via serde_json: argument structs appear as objects with named
/// fields (`{"a":1,"b":2}`), so other languages can call and serve.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json;

impl Codec for Json {
    const CONTENT_TYPE: ContentType = ContentType::Json;

    fn encode<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
        serde_json::to_writer(out, value).map_err(|e| CodecError::new("json", e.to_string()))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::new("json", e.to_string()))
    }
}

/// Which codec a body is in; travels in every envelope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentType {
    /// [`Bincode`]; the default.
    #[default]
    Bincode,
    /// [`Json`].
    Json,
}

impl ContentType {
    /// The MIME type written on text wires (AMQP `content_type`).
    pub const fn mime(self) -> &'static str {
        match self {
            ContentType::Bincode => "application/x-bincode",
            ContentType::Json => "application/json",
        }
    }

    /// The content type for a MIME type; `None` for types we cannot decode.
    pub fn from_mime(mime: &str) -> Option<Self> {
        match mime {
            "application/x-bincode" => Some(ContentType::Bincode),
            "application/json" => Some(ContentType::Json),
            _ => None,
        }
    }

    /// The one-byte code used by the binary envelope encoding.
    pub const fn code(self) -> u8 {
        match self {
            ContentType::Bincode => 1,
            ContentType::Json => 2,
        }
    }

    /// The content type for a binary code; `None` for unknown codes.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(ContentType::Bincode),
            2 => Some(ContentType::Json),
            _ => None,
        }
    }

    /// Encodes `value` with this codec.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        match self {
            ContentType::Bincode => {
                if let Some(small) = bincode_small(value)? {
                    return Ok(small);
                }
                Bincode::encode(value, &mut out)?
            }
            ContentType::Json => Json::encode(value, &mut out)?,
        }
        Ok(out)
    }

    /// Decodes a value with this codec.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        match self {
            ContentType::Bincode => Bincode::decode(bytes),
            ContentType::Json => Json::decode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct AddArgs {
        a: i64,
        b: i64,
    }

    #[test]
    fn json_shows_named_fields() {
        let bytes = ContentType::Json.encode(&AddArgs { a: 1, b: 2 }).unwrap();
        assert_eq!(bytes, br#"{"a":1,"b":2}"#);
    }

    #[test]
    fn both_codecs_round_trip() {
        for ct in [ContentType::Bincode, ContentType::Json] {
            let bytes = ct.encode(&AddArgs { a: -7, b: 1 << 40 }).unwrap();
            let back: AddArgs = ct.decode(&bytes).unwrap();
            assert_eq!(back, AddArgs { a: -7, b: 1 << 40 });
            assert_eq!(ContentType::from_mime(ct.mime()), Some(ct));
            assert_eq!(ContentType::from_code(ct.code()), Some(ct));
        }
    }

    #[test]
    fn bincode_bodies_on_both_sides_of_the_stack_buffer_round_trip() {
        for len in [0, SMALL_BODY - 2, SMALL_BODY, SMALL_BODY * 4] {
            let value = vec![7u8; len];
            let bytes = ContentType::Bincode.encode(&value).unwrap();
            let mut written = Vec::new();
            Bincode::encode(&value, &mut written).unwrap();
            assert_eq!(bytes, written, "one encoding whatever the size");
            let back: Vec<u8> = ContentType::Bincode.decode(&bytes).unwrap();
            assert_eq!(back, value);
        }
    }

    #[test]
    fn bincode_refuses_trailing_bytes_and_garbage() {
        let mut bytes = ContentType::Bincode
            .encode(&AddArgs { a: 1, b: 2 })
            .unwrap();
        bytes.push(0);
        assert!(ContentType::Bincode.decode::<AddArgs>(&bytes).is_err());
        assert!(ContentType::Bincode.decode::<String>(&[0xff; 9]).is_err());
    }
}
