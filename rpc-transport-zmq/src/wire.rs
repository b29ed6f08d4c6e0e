//! The multipart messages of the protocol, and their parsing.
//!
//! Every message is a ZMTP multipart message whose first frame is a command
//! word; the envelope, where there is one, travels in its own frame encoded
//! with `rpc_core::frame`. The layout, with a worked example, is in
//! `docs/wire.md`, section "ZeroMQ".
//!
//! Client to server (the server's ROUTER sees the peer identity first):
//!
//! | command | frames after the command |
//! |---|---|
//! | `HELLO` | none, or `BATCH`: asks for `READY` (and for batched `REP`s) |
//! | `HB` | none: heartbeat |
//! | `REQ` | (inbox tag, envelope), one pair or more |
//! | `ONEWAY` | envelope |
//!
//! Server to client:
//!
//! | command | frames after the command |
//! |---|---|
//! | `READY` | (service name, credit `u32` BE) per served service |
//! | `CREDIT` | service name, change `i32` BE |
//! | `HB` | none |
//! | `REP` | (the request's inbox tag, envelope), one pair or more, several only to a peer that said `HELLO BATCH` (each returns one credit) |
//! | `DONE` | inbox tag, service name, correlation id `u64` BE: ended without a reply (returns one credit) |
//! | `ERROR` | inbox tag (empty if unknown), reason: a message was refused |
//!
//! The parsers treat every byte as hostile and never panic; the fuzz target
//! `zmq_wire` and the property test in `tests/wire.rs` hold them to it.

use bytes::Bytes;
use rpc_core::frame::{self, FrameError, FrameLimits};
use rpc_core::{Envelope, KnownNames, Name};
use zeromq::ZmqMessage;

/// Client: asks a server which services it serves and with what credit.
pub const HELLO: &[u8] = b"HELLO";
/// Both ways: a heartbeat.
pub const HB: &[u8] = b"HB";
/// Client: a request, answered on the same connection.
pub const REQ: &[u8] = b"REQ";
/// Client, after `HELLO`: it takes `REP`s that carry several replies.
pub const BATCH: &[u8] = b"BATCH";
/// The most (tag, envelope) pairs one `REQ` or `REP` that this crate
/// writes carries: a batch is what gathered while the last one was
/// written, and a bound keeps one message from holding up a connection.
pub const MAX_BATCH: usize = 64;
/// Client: a call nobody answers.
pub const ONEWAY: &[u8] = b"ONEWAY";
/// Server: the services it serves and the credit each grants this client.
pub const READY: &[u8] = b"READY";
/// Server: a change to one service's credit.
pub const CREDIT: &[u8] = b"CREDIT";
/// Server: the reply to a request.
pub const REP: &[u8] = b"REP";
/// Server: a call ended without a reply.
pub const DONE: &[u8] = b"DONE";
/// Server: a message was refused.
pub const ERROR: &[u8] = b"ERROR";

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A message with no frames (or only a peer identity).
    #[error("empty message")]
    Empty,
    /// The first frame is not a command of this protocol.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// The command has the wrong number of frames.
    #[error("`{command}` takes {expected} frames, got {got}")]
    FrameCount {
        /// The command.
        command: &'static str,
        /// How many frames it takes, command included.
        expected: &'static str,
        /// How many arrived.
        got: usize,
    },
    /// The whole message is larger than the limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message's size, all frames together.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The envelope frame is not a valid `rpc_core::frame` encoding.
    #[error("bad envelope: {0}")]
    Envelope(#[from] FrameError),
    /// A fixed-width or text field is malformed.
    #[error("bad field `{0}`")]
    Field(&'static str),
}

/// One pair of a batched `REQ` or `REP`: the tag, and its envelope or why
/// it could not be read (a bad pair is refused alone; the others stand).
pub type Pair = (Bytes, Result<Envelope, WireError>);

/// What a client sends, parsed.
#[derive(Debug, PartialEq)]
pub enum FromClient {
    /// `HELLO`.
    Hello {
        /// Whether the client takes `REP`s carrying several replies.
        batches: bool,
    },
    /// `HB`.
    Heartbeat,
    /// `REQ`: the inbox tag to copy into the reply, and the request.
    Request {
        /// Opaque to the server, copied into the reply.
        tag: Bytes,
        /// The request.
        envelope: Envelope,
    },
    /// `REQ` carrying two requests or more, in the order sent.
    Requests(Vec<Pair>),
    /// `ONEWAY`.
    Oneway(Envelope),
}

/// What a server sends, parsed.
#[derive(Debug, PartialEq)]
pub enum FromServer {
    /// `READY`: every served service and its credit.
    Ready(Vec<(Name, u32)>),
    /// `CREDIT`: one service's credit changes by this much.
    Credit(Name, i32),
    /// `HB`.
    Heartbeat,
    /// `REP`: a reply for the inbox with this tag.
    Reply {
        /// The request's inbox tag.
        tag: Bytes,
        /// The reply.
        envelope: Envelope,
    },
    /// `REP` carrying two replies or more.
    Replies(Vec<Pair>),
    /// `DONE`: a call ended without a reply.
    Done {
        /// The request's inbox tag (empty for oneway calls).
        tag: Bytes,
        /// The service whose credit comes back.
        service: Name,
        /// The call's correlation id.
        correlation_id: u64,
    },
    /// `ERROR`: the server refused a message.
    Error {
        /// The refused request's inbox tag, if it could be read.
        tag: Bytes,
        /// Why.
        reason: String,
    },
}

/// Refuses a message larger than `limit` before anything in it is read.
pub fn check_size(frames: &[Bytes], limit: usize) -> Result<(), WireError> {
    let size = frames
        .iter()
        .fold(0usize, |sum, frame| sum.saturating_add(frame.len()));
    if size > limit.saturating_add(MESSAGE_OVERHEAD) {
        return Err(WireError::TooLarge { size, limit });
    }
    Ok(())
}

/// Room beside the envelope for the command and tag frames.
const MESSAGE_OVERHEAD: usize = 1024;

/// Parses the frames a client sent (after the peer identity).
pub fn parse_from_client(frames: &[Bytes], limits: &FrameLimits) -> Result<FromClient, WireError> {
    from_client(frames, limits, |bytes| decode_envelope(bytes, limits))
}

/// [`parse_from_client`], with the envelope's names taken from (and new
/// ones added to) `names`: what a server's connection reads with, so that
/// the names it reads call after call cost no allocation.
// Inlined so that the envelope is decoded in place, not moved out of one
// result into the next on every request.
#[inline]
pub fn parse_from_client_with(
    frames: &[Bytes],
    limits: &FrameLimits,
    names: &mut KnownNames,
) -> Result<FromClient, WireError> {
    from_client(frames, limits, |bytes| {
        decode_envelope_with(bytes, limits, names)
    })
}

/// A client's frames parsed, the envelope read by `decode`.
#[inline]
fn from_client(
    frames: &[Bytes],
    limits: &FrameLimits,
    mut decode: impl FnMut(&[u8]) -> Result<Envelope, WireError>,
) -> Result<FromClient, WireError> {
    check_size(frames, limits.max_message_size)?;
    let (command, rest) = frames.split_first().ok_or(WireError::Empty)?;
    match (command.as_ref(), rest) {
        // Capability words a server does not know are ignored, so that a
        // newer client can still say `HELLO` to it.
        (HELLO, capabilities) => Ok(FromClient::Hello {
            batches: capabilities.iter().any(|word| word.as_ref() == BATCH),
        }),
        (HB, []) => Ok(FromClient::Heartbeat),
        (REQ, [tag, envelope]) => Ok(FromClient::Request {
            tag: tag.clone(),
            envelope: decode(envelope)?,
        }),
        (REQ, pairs) if !pairs.is_empty() && pairs.len() % 2 == 0 => {
            Ok(FromClient::Requests(parse_pairs(pairs, decode)))
        }
        (ONEWAY, [envelope]) => Ok(FromClient::Oneway(decode(envelope)?)),
        (HB, _) => Err(count("HB", "1", frames)),
        (REQ, _) => Err(count("REQ", "an odd number (3 or more) of", frames)),
        (ONEWAY, _) => Err(count("ONEWAY", "2", frames)),
        (other, _) => Err(unknown(other)),
    }
}

/// Parses the frames a server sent.
pub fn parse_from_server(frames: &[Bytes], limits: &FrameLimits) -> Result<FromServer, WireError> {
    from_server(frames, limits, |bytes| decode_envelope(bytes, limits))
}

/// [`parse_from_server`], with the envelope's names taken from (and new
/// ones added to) `names`: what a client's connection reads with.
#[inline]
pub fn parse_from_server_with(
    frames: &[Bytes],
    limits: &FrameLimits,
    names: &mut KnownNames,
) -> Result<FromServer, WireError> {
    from_server(frames, limits, |bytes| {
        decode_envelope_with(bytes, limits, names)
    })
}

/// A server's frames parsed, the envelope read by `decode`.
#[inline]
fn from_server(
    frames: &[Bytes],
    limits: &FrameLimits,
    mut decode: impl FnMut(&[u8]) -> Result<Envelope, WireError>,
) -> Result<FromServer, WireError> {
    check_size(frames, limits.max_message_size)?;
    let (command, rest) = frames.split_first().ok_or(WireError::Empty)?;
    match (command.as_ref(), rest) {
        (READY, pairs) if pairs.len() % 2 == 0 => pairs
            .chunks_exact(2)
            .map(|pair| Ok((name(&pair[0], "service")?, be_u32(&pair[1], "credit")?)))
            .collect::<Result<_, _>>()
            .map(FromServer::Ready),
        (CREDIT, [service, change]) => Ok(FromServer::Credit(
            name(service, "service")?,
            be_u32(change, "credit change")? as i32,
        )),
        (HB, []) => Ok(FromServer::Heartbeat),
        (REP, [tag, envelope]) => Ok(FromServer::Reply {
            tag: tag.clone(),
            envelope: decode(envelope)?,
        }),
        (REP, pairs) if !pairs.is_empty() && pairs.len() % 2 == 0 => {
            Ok(FromServer::Replies(parse_pairs(pairs, decode)))
        }
        (DONE, [tag, service, id]) => Ok(FromServer::Done {
            tag: tag.clone(),
            service: name(service, "service")?,
            correlation_id: be_u64(id, "correlation id")?,
        }),
        (ERROR, [tag, reason]) => Ok(FromServer::Error {
            tag: tag.clone(),
            reason: String::from_utf8_lossy(reason).into_owned(),
        }),
        (READY, _) => Err(count("READY", "an odd number of", frames)),
        (CREDIT, _) => Err(count("CREDIT", "3", frames)),
        (HB, _) => Err(count("HB", "1", frames)),
        (REP, _) => Err(count("REP", "an odd number (3 or more) of", frames)),
        (DONE, _) => Err(count("DONE", "4", frames)),
        (ERROR, _) => Err(count("ERROR", "3", frames)),
        (other, _) => Err(unknown(other)),
    }
}

/// The (tag, envelope) pairs of a batched `REQ` or `REP`, each envelope
/// read on its own.
fn parse_pairs(
    pairs: &[Bytes],
    mut decode: impl FnMut(&[u8]) -> Result<Envelope, WireError>,
) -> Vec<Pair> {
    pairs
        .chunks_exact(2)
        .map(|pair| (pair[0].clone(), decode(&pair[1])))
        .collect()
}

/// Decodes one envelope frame, which must hold exactly one `rpc_core::frame`.
pub fn decode_envelope(bytes: &[u8], limits: &FrameLimits) -> Result<Envelope, WireError> {
    let (envelope, used) = frame::decode(bytes, limits)?;
    whole_frame(bytes, used)?;
    Ok(envelope)
}

/// [`decode_envelope`], with the names taken from (and new ones added to)
/// `names` (`rpc_core::frame::decode_with`).
#[inline]
pub fn decode_envelope_with(
    bytes: &[u8],
    limits: &FrameLimits,
    names: &mut KnownNames,
) -> Result<Envelope, WireError> {
    let (envelope, used) = frame::decode_with(bytes, limits, names)?;
    whole_frame(bytes, used)?;
    Ok(envelope)
}

/// Refuses bytes after the frame: an envelope frame holds one frame exactly.
#[inline]
fn whole_frame(bytes: &[u8], used: usize) -> Result<(), WireError> {
    if used != bytes.len() {
        return Err(FrameError::TrailingBytes {
            count: bytes.len() - used,
        }
        .into());
    }
    Ok(())
}

/// Encodes an envelope into its frame.
pub fn encode_envelope(envelope: &Envelope, limits: &FrameLimits) -> Result<Bytes, FrameError> {
    let mut out = Vec::new();
    frame::encode(envelope, &mut out, limits)?;
    Ok(Bytes::from(out))
}

/// A message of the given frames (one empty frame if `frames` is empty).
pub fn message(frames: Vec<Bytes>) -> ZmqMessage {
    // The vector becomes the message's deque as it is: no copy, no growth.
    // Pushing the frames one by one regrew the deque frame after frame, a
    // sizeable share of what writing a small call cost.
    ZmqMessage::try_from(frames).unwrap_or_else(|_| ZmqMessage::from(Bytes::new()))
}

/// `HELLO`, with `BATCH` when the client takes batched `REP`s.
pub fn hello(batches: bool) -> Vec<Bytes> {
    let mut frames = vec![Bytes::from_static(HELLO)];
    if batches {
        frames.push(Bytes::from_static(BATCH));
    }
    frames
}

/// Splits (tag, envelope) pairs, in order, into `command` messages of at
/// most [`MAX_BATCH`] pairs and about `max_size` bytes each (a pair is never
/// split; one larger alone goes alone). `head` goes before each message's
/// command: a ROUTER's peer identity.
pub fn batches(
    head: Option<&Bytes>,
    command: &'static [u8],
    pairs: Vec<Bytes>,
    max_size: usize,
) -> Vec<Vec<Bytes>> {
    let mut messages = Vec::new();
    let mut frames: Vec<Bytes> = Vec::new();
    let (mut size, mut count) = (0usize, 0usize);
    let mut pairs = pairs.into_iter();
    while let (Some(tag), Some(envelope)) = (pairs.next(), pairs.next()) {
        let pair_size = tag.len() + envelope.len();
        let full = count == MAX_BATCH || (count > 0 && size + pair_size > max_size);
        if full {
            messages.push(std::mem::take(&mut frames));
            (size, count) = (0, 0);
        }
        if frames.is_empty() {
            frames.reserve(2 + 2 * MAX_BATCH.min(pairs.len() / 2 + 1));
            frames.extend(head.cloned());
            frames.push(Bytes::from_static(command));
        }
        frames.push(tag);
        frames.push(envelope);
        size += pair_size;
        count += 1;
    }
    if count > 0 {
        messages.push(frames);
    }
    messages
}

/// `READY` with these services and credits.
pub fn ready<'a>(services: impl Iterator<Item = (&'a str, u32)>) -> Vec<Bytes> {
    let mut frames = vec![Bytes::from_static(READY)];
    for (service, credit) in services {
        frames.push(Bytes::copy_from_slice(service.as_bytes()));
        frames.push(Bytes::copy_from_slice(&credit.to_be_bytes()));
    }
    frames
}

/// `CREDIT` for one service.
pub fn credit(service: &str, change: i32) -> Vec<Bytes> {
    vec![
        Bytes::from_static(CREDIT),
        Bytes::copy_from_slice(service.as_bytes()),
        Bytes::copy_from_slice(&change.to_be_bytes()),
    ]
}

/// `DONE` for one call.
pub fn done(tag: Bytes, service: &str, correlation_id: u64) -> Vec<Bytes> {
    vec![
        Bytes::from_static(DONE),
        tag,
        Bytes::copy_from_slice(service.as_bytes()),
        Bytes::copy_from_slice(&correlation_id.to_be_bytes()),
    ]
}

fn count(command: &'static str, expected: &'static str, frames: &[Bytes]) -> WireError {
    WireError::FrameCount {
        command,
        expected,
        got: frames.len(),
    }
}

fn unknown(command: &[u8]) -> WireError {
    let shown = &command[..command.len().min(32)];
    WireError::UnknownCommand(String::from_utf8_lossy(shown).into_owned())
}

fn name(bytes: &[u8], field: &'static str) -> Result<Name, WireError> {
    let text = std::str::from_utf8(bytes).map_err(|_| WireError::Field(field))?;
    if text.is_empty() || text.len() > usize::from(u16::MAX) {
        return Err(WireError::Field(field));
    }
    Ok(Name::from(text.to_owned()))
}

fn be_u32(bytes: &[u8], field: &'static str) -> Result<u32, WireError> {
    let array: [u8; 4] = bytes.try_into().map_err(|_| WireError::Field(field))?;
    Ok(u32::from_be_bytes(array))
}

fn be_u64(bytes: &[u8], field: &'static str) -> Result<u64, WireError> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| WireError::Field(field))?;
    Ok(u64::from_be_bytes(array))
}
