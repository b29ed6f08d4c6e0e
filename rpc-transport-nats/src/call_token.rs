//! The call token: the last token of a reply subject of this library,
//! `~<codec><id>[<deadline>][<trace>]`, which states in one short token
//! what a call says about itself.
//!
//! The server has to match, route and copy every reply subject twice (the
//! request's, then the reply's own subject), and its cost per call grows
//! with the subject's length; the token's fields are fixed-width base64url
//! (`A`-`Z`, `a`-`z`, `0`-`9`, `-`, `_`, most significant first), so the
//! token's length alone says which optional fields it has:
//!
//! | field | width | what |
//! |---|---|---|
//! | `~` | 1 | marks the token: no NATS client's inbox token starts so (theirs are base62) |
//! | codec | 1 | `b` bincode, `j` JSON; upper case (`B`, `J`) when the trace is sampled |
//! | id | 11 | the correlation id, a u64 |
//! | deadline | 8 | the absolute deadline in unix milliseconds, 48 bits (a later one is written as the largest) |
//! | trace | 32 | the trace id (128 bits) and then the span id (64 bits) |
//!
//! A token of 13 characters has neither a deadline nor a trace, 21 a
//! deadline, 45 a trace, 53 both.
//!
//! A reply goes to the reply subject cut after the id ([`cut_after_head`]):
//! the deadline and the trace are for the server alone, and every
//! character of a reply's subject costs nats-server more than one of the
//! request's.

use rpc_core::trace::TraceContext;
use rpc_core::{ContentType, Header};

/// What marks a call token.
const MARK: u8 = b'~';
/// The width of the correlation id: 64 bits in 6-bit characters.
const ID_WIDTH: usize = 11;
/// The width of the deadline: 48 bits, enough until the year 10889.
const DEADLINE_WIDTH: usize = 8;
/// The width of the trace: 192 bits, four 48-bit parts.
const TRACE_WIDTH: usize = 4 * PART_WIDTH;
/// The width of one 48-bit part of the trace.
const PART_WIDTH: usize = 8;
/// The width of the mark, the codec and the id, which every token has.
const BASE_WIDTH: usize = 2 + ID_WIDTH;
/// The largest deadline the token states.
const MAX_DEADLINE_MS: u64 = (1 << 48) - 1;
/// 48 bits set.
const MASK_48: u64 = (1 << 48) - 1;
/// The longest token.
const MAX_LEN: usize = BASE_WIDTH + DEADLINE_WIDTH + TRACE_WIDTH;

/// The base64url alphabet, by value.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Each byte's value in [`ALPHABET`], `INVALID` for a byte not in it.
const VALUES: [u8; 256] = {
    let mut values = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        values[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    values
};
const INVALID: u8 = 0xff;

/// What a call token states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallToken {
    /// The codec the request and its reply are in.
    pub codec: ContentType,
    /// The call's correlation id.
    pub correlation_id: u64,
    /// The call's absolute deadline, unix milliseconds.
    pub deadline_ms: Option<u64>,
    /// The call's trace.
    pub trace: Option<TraceContext>,
}

/// The codec a call token states for a call in `content_type`: its own,
/// or JSON for a codec the token has no letter for (such a call says its
/// own in a `Content-Type` header).
pub fn stated_codec(content_type: ContentType) -> ContentType {
    match content_type {
        ContentType::Bincode => ContentType::Bincode,
        _ => ContentType::Json,
    }
}

/// The length of the call token of `header`.
pub fn len(header: &Header) -> usize {
    BASE_WIDTH
        + if header.deadline_ms == 0 {
            0
        } else {
            DEADLINE_WIDTH
        }
        + header.trace.map_or(0, |_| TRACE_WIDTH)
}

/// Appends the call token of `header` to `out`, written in a buffer of
/// its own and copied once.
pub fn push(out: &mut Vec<u8>, header: &Header) {
    let sampled = header.trace.is_some_and(|trace| trace.sampled);
    let codec = match (stated_codec(header.content_type), sampled) {
        (ContentType::Bincode, false) => b'b',
        (ContentType::Bincode, true) => b'B',
        (_, false) => b'j',
        (_, true) => b'J',
    };
    let mut token = [0u8; MAX_LEN];
    token[0] = MARK;
    token[1] = codec;
    write_bits(&mut token[2..BASE_WIDTH], header.correlation_id);
    let mut end = BASE_WIDTH;
    if header.deadline_ms != 0 {
        let deadline = header.deadline_ms.min(MAX_DEADLINE_MS);
        write_bits(&mut token[end..end + DEADLINE_WIDTH], deadline);
        end += DEADLINE_WIDTH;
    }
    if let Some(trace) = &header.trace {
        for part in trace_parts(trace) {
            write_bits(&mut token[end..end + PART_WIDTH], part);
            end += PART_WIDTH;
        }
    }
    out.extend_from_slice(&token[..end]);
}

/// Appends `n` as 11 base64url characters (the width of a call token's id).
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut chars = [0u8; ID_WIDTH];
    write_bits(&mut chars, n);
    out.extend_from_slice(&chars);
}

/// The trace id and span id (192 bits) as four 48-bit parts, most
/// significant first.
fn trace_parts(trace: &TraceContext) -> [u64; 4] {
    let high = (trace.trace_id >> 64) as u64;
    let low = trace.trace_id as u64;
    let span = trace.span_id;
    [
        high >> 16,
        ((high & 0xffff) << 32) | (low >> 32),
        ((low & 0xffff_ffff) << 16) | (span >> 48),
        span & MASK_48,
    ]
}

/// Writes the low `chars.len() * 6` bits of `n` into `chars`, most
/// significant first.
fn write_bits(chars: &mut [u8], n: u64) {
    let width = chars.len();
    for (i, char) in chars.iter_mut().enumerate() {
        let shift = 6 * (width - 1 - i);
        *char = ALPHABET[((n >> shift) & 0x3f) as usize];
    }
}

/// The last token of `subject` when it may be a call token: one of the
/// four lengths, starting with the mark, after a dot (or the whole
/// subject). Found at those four places, with no search for the last dot;
/// [`read`] and [`Head::read`] then check every character, so a candidate
/// holding a dot is none.
pub fn at_end(subject: &str) -> Option<&str> {
    let bytes = subject.as_bytes();
    // Shortest first: a dot one place before a shorter token's start would
    // lie inside a longer one.
    for length in [
        BASE_WIDTH,
        BASE_WIDTH + DEADLINE_WIDTH,
        BASE_WIDTH + TRACE_WIDTH,
        MAX_LEN,
    ] {
        let Some(start) = bytes.len().checked_sub(length) else {
            break;
        };
        if bytes[start] == MARK && (start == 0 || bytes[start - 1] == b'.') {
            return subject.get(start..);
        }
    }
    None
}

/// The subject a reply to `reply_subject` goes to, when it is shorter
/// than `reply_subject`: for a call token that states a deadline or a
/// trace, the subject up to the end of its id (`<inbox>.~<codec><id>`,
/// [`cut_after_head`]).
pub fn reply_target(reply_subject: &str) -> Option<&str> {
    let token = at_end(reply_subject)?;
    if token.len() == BASE_WIDTH {
        return None;
    }
    Head::read(token)?;
    Some(cut_after_head(reply_subject, token))
}

/// `reply_subject`, whose last token `token` is a call token (already
/// read), up to the end of the token's id: where its reply goes. A reply
/// needs only the head (its call and codec), and nats-server's cost per
/// message grows with its subject's length: replies cut so cost it about
/// 0.35 us less a call at 256 in flight (about 4.0 -> 3.65 us). The
/// caller's inbox subscription (`<inbox>.>`) takes both forms; "no
/// responders" still comes to the whole reply subject.
pub fn cut_after_head<'a>(reply_subject: &'a str, token: &str) -> &'a str {
    let end = reply_subject.len() - token.len() + BASE_WIDTH.min(token.len());
    reply_subject.get(..end).unwrap_or(reply_subject)
}

/// What `token` states when it is a call token; `None` for any other
/// token (an older reply subject's, a foreign inbox's).
pub fn read(token: &str) -> Option<CallToken> {
    // Every field after the head is read below, each character checked.
    let head = Head::read_head(token)?;
    let rest = &token.as_bytes()[BASE_WIDTH..];
    let (has_deadline, has_trace) = match rest.len() {
        0 => (false, false),
        DEADLINE_WIDTH => (true, false),
        TRACE_WIDTH => (false, true),
        _ => (true, true),
    };
    let (deadline_ms, rest) = if has_deadline {
        let (deadline, rest) = rest.split_at(DEADLINE_WIDTH);
        (Some(read_bits(deadline, 48)?), rest)
    } else {
        (None, rest)
    };
    let trace = if has_trace {
        let mut parts = [0u64; 4];
        for (part, chars) in parts.iter_mut().zip(rest.chunks_exact(PART_WIDTH)) {
            *part = read_bits(chars, 48)?;
        }
        let [p0, p1, p2, p3] = parts;
        // The second part holds the trace id's high half's low 16 bits and
        // its low half's high 32; the third its low half's low 32 bits and
        // the span id's high 16.
        let high = (p0 << 16) | (p1 >> 32);
        let low = ((p1 & 0xffff_ffff) << 32) | (p2 >> 16);
        let trace_id = (u128::from(high) << 64) | u128::from(low);
        let span_id = ((p2 & 0xffff) << 48) | p3;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: head.sampled,
        })
    } else {
        None
    };
    Some(CallToken {
        codec: head.codec,
        correlation_id: head.correlation_id,
        deadline_ms,
        trace,
    })
}

/// The fields at the start of a call token, which a reply needs (its
/// codec and id): read without the deadline and the trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The codec the request and its reply are in.
    pub codec: ContentType,
    /// The call's correlation id.
    pub correlation_id: u64,
    /// Whether the call's trace, if it has one, is sampled.
    pub sampled: bool,
}

impl Head {
    /// The head of `token` when it is a call token (of one of the four
    /// lengths, with its mark, codec and id; the fields after the id are
    /// not read); `None` for any other token.
    pub fn read(token: &str) -> Option<Head> {
        let head = Self::read_head(token)?;
        // The fields after the id are not read, but checked: a token of
        // the alphabet holds no dot.
        let rest = &token.as_bytes()[BASE_WIDTH..];
        let seen = rest
            .iter()
            .fold(0, |seen, &char| seen | VALUES[usize::from(char)]);
        (seen & !0x3f == 0).then_some(head)
    }

    /// [`read`](Self::read) without the check of the fields after the id.
    fn read_head(token: &str) -> Option<Head> {
        let bytes = token.as_bytes();
        let (&[MARK, codec], fields) = bytes.split_first_chunk::<2>()? else {
            return None;
        };
        let (codec, sampled) = match codec {
            b'b' => (ContentType::Bincode, false),
            b'B' => (ContentType::Bincode, true),
            b'j' => (ContentType::Json, false),
            b'J' => (ContentType::Json, true),
            _ => return None,
        };
        let optional = fields.len().checked_sub(ID_WIDTH)?;
        if !matches!(optional, 0 | DEADLINE_WIDTH | TRACE_WIDTH)
            && optional != DEADLINE_WIDTH + TRACE_WIDTH
        {
            return None;
        }
        let correlation_id = read_bits(&fields[..ID_WIDTH], 64)?;
        Some(Head {
            codec,
            correlation_id,
            sampled,
        })
    }
}

/// The number whose `chars.len() * 6` bits `chars` spell, when it fits in
/// `bits` (at most 64); `None` for a character not in the alphabet or a
/// number wider than `bits` (each number has exactly one spelling).
fn read_bits(chars: &[u8], bits: usize) -> Option<u64> {
    let (&first, rest) = chars.split_first()?;
    // The bits of the first character beyond `bits` must be zero.
    let spare = chars.len() * 6 - bits;
    let mut seen = VALUES[usize::from(first)];
    if seen != INVALID && seen >> (6 - spare) != 0 {
        return None;
    }
    let mut n = u64::from(seen);
    for &char in rest {
        let value = VALUES[usize::from(char)];
        seen |= value;
        n = (n << 6) | u64::from(value & 0x3f);
    }
    // `INVALID` has bits no value has: one test for every character.
    (seen & !0x3f == 0).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(deadline_ms: u64, trace: Option<TraceContext>) -> Header {
        let mut header = Header::request("calc".into(), "add".into(), ContentType::Json);
        header.correlation_id = 12_923_071_861_954_402_567;
        header.deadline_ms = deadline_ms;
        header.trace = trace;
        header
    }

    fn token(header: &Header) -> String {
        let mut out = Vec::new();
        push(&mut out, header);
        assert_eq!(out.len(), len(header));
        String::from_utf8(out).unwrap()
    }

    const TRACE: TraceContext = TraceContext {
        trace_id: 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736,
        span_id: 0x00f0_67aa_0ba9_02b7,
        sampled: true,
    };

    #[test]
    fn every_field_round_trips_at_the_length_that_names_it() {
        for (deadline, trace, length) in [
            (0, None, 13),
            (1_764_150_005_000, None, 21),
            (0, Some(TRACE), 45),
            (1_764_150_005_000, Some(TRACE), 53),
        ] {
            let header = header(deadline, trace);
            let token = token(&header);
            assert_eq!(token.len(), length, "{token}");
            let read = read(&token).unwrap();
            assert_eq!(read.codec, ContentType::Json);
            assert_eq!(read.correlation_id, header.correlation_id);
            assert_eq!(read.deadline_ms, (deadline != 0).then_some(deadline));
            assert_eq!(read.trace, trace);
        }
    }

    #[test]
    fn the_worked_example_of_wire_md() {
        let header = header(1_764_150_005_000, Some(TRACE));
        assert_eq!(
            token(&header),
            "~JLNX-WOao1kHAZq_iM0IS_kvNXezTaajzpKdDg5HNgDwZ6oLqQK3"
        );
    }

    #[test]
    fn extremes_round_trip_and_a_later_deadline_is_the_largest() {
        let mut header = header(u64::MAX, None);
        header.correlation_id = u64::MAX;
        header.content_type = ContentType::Bincode;
        let read = read(&token(&header)).unwrap();
        assert_eq!(read.correlation_id, u64::MAX);
        assert_eq!(read.deadline_ms, Some(MAX_DEADLINE_MS));
        assert_eq!(read.codec, ContentType::Bincode);
        let unsampled = TraceContext {
            sampled: false,
            ..TRACE
        };
        let header = self::header(0, Some(unsampled));
        assert!(token(&header).starts_with("~j"));
        assert_eq!(read_token(&header).trace, Some(unsampled));
    }

    fn read_token(header: &Header) -> CallToken {
        read(&token(header)).unwrap()
    }

    #[test]
    fn the_token_is_found_at_the_end_of_a_subject_and_only_there() {
        for (deadline, trace) in [(0, None), (5, None), (0, Some(TRACE)), (5, Some(TRACE))] {
            let token = token(&header(deadline, trace));
            let subject = format!("_INBOX.abc.{token}");
            assert_eq!(at_end(&subject), Some(token.as_str()));
            assert_eq!(at_end(&token), Some(token.as_str()));
            // A dot inside makes the candidate no token.
            let mut dotted = format!("_INBOX.{token}");
            let near_end = dotted.len() - 2;
            dotted.replace_range(near_end..=near_end, ".");
            assert!(at_end(&dotted).and_then(Head::read).is_none(), "{dotted}");
            assert!(at_end(&dotted).and_then(read).is_none(), "{dotted}");
        }
        for subject in ["", "_INBOX.abc.json.42", "_INBOX.abc.~b", "~"] {
            assert_eq!(at_end(subject).and_then(read), None, "{subject}");
        }
    }

    #[test]
    fn a_reply_goes_to_the_head_of_its_call_token() {
        for (deadline, trace) in [(5, None), (0, Some(TRACE)), (5, Some(TRACE))] {
            let header = header(deadline, trace);
            let token = token(&header);
            let subject = format!("_INBOX.abc.{token}");
            let target = reply_target(&subject).unwrap();
            assert_eq!(target, format!("_INBOX.abc.{}", &token[..BASE_WIDTH]));
            // What the caller reads of its reply is all there.
            let head = at_end(target).and_then(Head::read).unwrap();
            assert_eq!(head.correlation_id, header.correlation_id);
            assert_eq!(head.codec, ContentType::Json);
            assert_eq!(head.sampled, trace.is_some());
        }
        // Already the head, or no call token: the reply subject as it is.
        let head = format!("_INBOX.abc.{}", token(&header(0, None)));
        for subject in [&head, "_INBOX.abc.json.42", "_INBOX.Kx3uP0q.Zt8", ""] {
            assert_eq!(reply_target(subject), None, "{subject}");
        }
        // A candidate with a dot inside is no call token.
        let mut dotted = format!("_INBOX.abc.{}", token(&header(5, Some(TRACE))));
        let near_end = dotted.len() - 2;
        dotted.replace_range(near_end..=near_end, ".");
        assert_eq!(reply_target(&dotted), None);
    }

    #[test]
    fn other_tokens_are_not_call_tokens() {
        let good = token(&header(0, None));
        for other in [
            "",
            "~",
            "~j",
            "12923071861954402567",
            "json",
            "bincode",
            // A base62 inbox token of the same length.
            "abcdefghijklm",
            // Another codec letter.
            &good.replacen("~j", "~x", 1),
            // A character outside the alphabet.
            &good.replacen('L', "+", 1),
            // One character too many or too few.
            &format!("{good}A"),
            &good[..good.len() - 1],
            // An id wider than 64 bits.
            &format!("~j_{}", &good[3..]),
        ] {
            assert_eq!(read(other), None, "{other}");
        }
        // A zero trace or span id is no trace.
        let zero = format!("{good}{}", "A".repeat(TRACE_WIDTH));
        assert_eq!(read(&zero), None);
    }
}
