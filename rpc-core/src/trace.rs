//! W3C trace context across the wire.
//!
//! A call carries its trace in two metadata entries named as the W3C Trace
//! Context recommendation names its HTTP headers, [`TRACEPARENT`] and
//! [`TRACESTATE`] (not under the reserved `x-rpc-` prefix: they are the
//! caller's to set, and a foreign client or a proxy writes them as is).
//! A client starts a new trace, or continues the one of the handler it
//! calls from; a server continues the caller's, and gives its handler a
//! span of its own, which calls made from the handler name as their parent.
//! The `rpc.call` and `rpc.serve` spans record the trace id, so logs of one
//! request line up across services; the `opentelemetry` feature links the
//! spans themselves for an OTLP backend (see `docs/operations.md`).

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::context::Context;
use crate::envelope::{Header, Metadata};

/// The metadata key of the W3C `traceparent`.
pub const TRACEPARENT: &str = "traceparent";
/// The metadata key of the W3C `tracestate` (vendor data, passed on as is).
pub const TRACESTATE: &str = "tracestate";

/// One span's place in a trace: what `traceparent` says.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace every span of one request shares; never zero.
    pub trace_id: u128,
    /// This span; never zero.
    pub span_id: u64,
    /// Whether the caller records this trace (the `sampled` flag).
    pub sampled: bool,
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> Self {
        let high = random_nonzero();
        TraceContext {
            trace_id: (u128::from(high) << 64) | u128::from(random_nonzero()),
            span_id: random_nonzero(),
            sampled: true,
        }
    }

    /// A span of the same trace whose parent is this one.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: random_nonzero(),
            ..*self
        }
    }

    /// Reads a `traceparent` value. Follows the recommendation: version
    /// `00` exactly, a later version by its first four fields, `ff` and
    /// all-zero ids refused.
    pub fn parse(traceparent: &str) -> Option<Self> {
        // The usual value, read in one pass (this runs on every request).
        // Untrimmed: it starts with a digit, and trailing blanks would leave
        // it too short for version `00` anyway.
        if let Ok(exact) = <&[u8; TRACEPARENT_LEN]>::try_from(traceparent.as_bytes())
            && exact.starts_with(b"00-")
        {
            return Self::parse_version_00(exact);
        }
        let text = traceparent.trim();
        let mut fields = text.split('-');
        let version = fields.next()?;
        let (trace, span, flags) = (fields.next()?, fields.next()?, fields.next()?);
        let exact = fields.next().is_none();
        let valid = version.len() == 2
            && version != "ff"
            && is_lower_hex(version)
            && (version != "00" || exact)
            && trace.len() == 32
            && span.len() == 16
            && flags.len() == 2;
        if !valid {
            return None;
        }
        Self::from_hex(trace.as_bytes(), span.as_bytes(), flags.as_bytes())
    }

    /// A version `00` value of exactly its length: `00-{32}-{16}-{2}`.
    fn parse_version_00(text: &[u8; TRACEPARENT_LEN]) -> Option<Self> {
        if text[35] != b'-' || text[52] != b'-' {
            return None;
        }
        Self::from_hex(&text[3..35], &text[36..52], &text[53..55])
    }

    /// The context of the three hex fields (lengths checked by the
    /// caller): `None` for a digit that is not lower-case hex, or an
    /// all-zero id.
    fn from_hex(trace: &[u8], span: &[u8], flags: &[u8]) -> Option<Self> {
        let (high, low) = trace.split_at(16);
        let trace_id = u128::from(hex_u64(high)?) << 64 | u128::from(hex_u64(low)?);
        let span_id = hex_u64(span)?;
        let flags = flags
            .iter()
            .try_fold(0u8, |n, &b| Some(n << 4 | nibble(b)?))?;
        (trace_id != 0 && span_id != 0).then_some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
        })
    }

    /// The `traceparent` value (version `00`), written into a buffer of
    /// its own: what a transport puts on the wire costs no allocation.
    pub fn traceparent(&self) -> Traceparent {
        let mut out = [0; TRACEPARENT_LEN];
        self.write_traceparent(&mut out);
        Traceparent(out)
    }

    /// Writes the `traceparent` value (version `00`) into `out`: what a
    /// frame encoder calls to write it where it goes in the frame.
    #[inline(always)]
    pub(crate) fn write_traceparent(&self, out: &mut [u8; TRACEPARENT_LEN]) {
        // No formatting machinery, no per-character pushes: this runs on
        // every call.
        let (version, rest) = out.split_at_mut(3);
        version.copy_from_slice(b"00-");
        let (trace, rest) = rest.split_at_mut(32);
        trace[..16].copy_from_slice(&hex_digits((self.trace_id >> 64) as u64));
        trace[16..].copy_from_slice(&hex_digits(self.trace_id as u64));
        rest[0] = b'-';
        rest[1..17].copy_from_slice(&hex_digits(self.span_id));
        rest[17..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
    }

    /// The `traceparent` value (version `00`) as a `String`.
    pub fn to_traceparent(&self) -> String {
        self.traceparent().as_str().to_owned()
    }

    /// The trace context of one metadata entry read off the wire: `Some`
    /// for a [`TRACEPARENT`] entry exactly as [`traceparent`](Self::traceparent)
    /// writes it, which a decoder puts in [`Header::trace`](crate::Header::trace)
    /// rather than in the metadata. Any other stays metadata, as sent (a
    /// server still continues a valid one's trace: see
    /// [`caller`]); so an envelope decoded and encoded again
    /// carries the same bytes.
    pub fn from_wire_entry(key: &str, value: &str) -> Option<Self> {
        // As written: version `00` at its exact length (which `parse` reads
        // in lower-case hex only) with no flag but `sampled`.
        if key != TRACEPARENT {
            return None;
        }
        Self::from_wire_value(value.as_bytes())
    }

    /// [`from_wire_entry`](Self::from_wire_entry)'s reading of a
    /// [`TRACEPARENT`] entry's value, from bytes not yet checked as UTF-8:
    /// whatever it accepts is ASCII.
    pub(crate) fn from_wire_value(value: &[u8]) -> Option<Self> {
        let exact = <&[u8; TRACEPARENT_LEN]>::try_from(value).ok()?;
        let as_written =
            exact.starts_with(b"00-") && matches!(&exact[TRACEPARENT_LEN - 2..], b"00" | b"01");
        as_written.then(|| Self::parse_version_00(exact))?
    }

    /// The trace id as 32 hex digits, formatted when displayed.
    pub fn trace_id_hex(&self) -> impl fmt::Display + use<> {
        TraceIdHex(self.trace_id)
    }

    /// The span id as 16 hex digits, formatted when displayed.
    pub fn span_id_hex(&self) -> impl fmt::Display + use<> {
        SpanIdHex(self.span_id)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.traceparent().as_str())
    }
}

/// A `traceparent` value in a buffer of its own (see
/// [`TraceContext::traceparent`]).
#[derive(Clone, Copy)]
pub struct Traceparent([u8; TRACEPARENT_LEN]);

impl Traceparent {
    /// The value as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("only hex digits and dashes")
    }

    /// The value's bytes (ASCII hex digits and dashes), with no UTF-8
    /// check: what an encoder that writes bytes takes.
    pub fn as_bytes(&self) -> &[u8; TRACEPARENT_LEN] {
        &self.0
    }
}

impl fmt::Display for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Traceparent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

struct TraceIdHex(u128);
impl fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

struct SpanIdHex(u64);
impl fmt::Display for SpanIdHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The length of a version `00` `traceparent`.
pub(crate) const TRACEPARENT_LEN: usize = 55;

/// A byte with only its lowest bit set, in each of the eight bytes.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of each byte.
const HIGH: u64 = ONES * 0x80;

/// The 16 hex digits of `value`, most significant first.
#[inline(always)]
fn hex_digits(value: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&hex8((value >> 32) as u32));
    out[8..].copy_from_slice(&hex8(value as u32));
    out
}

/// The 8 hex digits of `value`, eight at a time: each nibble spread to a
/// byte of its own, then turned into its digit.
#[inline(always)]
fn hex8(value: u32) -> [u8; 8] {
    let mut x = u64::from(value);
    x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
    x = (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // 1 in each byte whose nibble is 10 or more: a letter.
    let letters = ((x + 6 * ONES) >> 4) & ONES;
    (x + u64::from(b'0') * ONES + letters * u64::from(b'a' - b'0' - 10)).to_be_bytes()
}

/// The value of 16 lower-case hex digits; `None` if any byte is not one.
fn hex_u64(digits: &[u8]) -> Option<u64> {
    let (high, low) = digits.split_at_checked(8)?;
    Some(u64::from(unhex8(high.try_into().ok()?)?) << 32 | u64::from(unhex8(low.try_into().ok()?)?))
}

/// The value of 8 lower-case hex digits, checked and read eight at a time;
/// `None` if any byte is not one.
fn unhex8(digits: [u8; 8]) -> Option<u32> {
    let x = u64::from_be_bytes(digits);
    if x & HIGH != 0 {
        return None;
    }
    // Every byte is below 0x80, so adding at most 0x50 to each carries into
    // no other: the high bit of a byte of the sum tells whether it is `c` or
    // more.
    let at_least = |c: u8| (x + u64::from(0x80 - c) * ONES) & HIGH;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    if digit | letter != HIGH {
        return None;
    }
    // '0'..'9' are 0x30..0x39, 'a'..'f' 0x61..0x66.
    let mut v = (x & 0x0f0f_0f0f_0f0f_0f0f) + (letter >> 7) * 9;
    v = (v | v >> 4) & 0x00ff_00ff_00ff_00ff;
    v = (v | v >> 8) & 0x0000_ffff_0000_ffff;
    v = (v | v >> 16) & 0xffff_ffff;
    Some(v as u32)
}

/// The value of one lower-case hex digit.
fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The trace context a request's caller sent: its header's, or a
/// `traceparent` in its metadata (one a foreign client wrote in a form of
/// its own, which decoders leave there).
pub fn caller(header: &Header) -> Option<TraceContext> {
    header.trace.or_else(|| {
        header
            .metadata
            .get(TRACEPARENT)
            .and_then(TraceContext::parse)
    })
}

/// The trace a request's handler runs in: a child of the caller's, or a
/// new trace when the caller sent none (or an invalid one).
pub(crate) fn serving(caller: Option<TraceContext>) -> TraceContext {
    caller.map_or_else(TraceContext::new_root, |parent| parent.child())
}

/// A call's trace, for its header's [`trace`](crate::Header::trace): the
/// caller's own `traceparent` when it set one in the metadata (taken out of
/// it: the header carries it), else a child of `parent` (the handler the
/// call is made from, whose `tracestate` is passed on), else a new trace.
pub(crate) fn for_call(metadata: &mut Metadata, parent: Option<&Context>) -> TraceContext {
    if metadata.get(TRACEPARENT).is_some() {
        let set = metadata
            .remove(TRACEPARENT)
            .and_then(|v| TraceContext::parse(&v));
        if let Some(set) = set {
            return set;
        }
    }
    let parent = parent.and_then(|cx| {
        if let Some(state) = cx.metadata().get(TRACESTATE)
            && metadata.get(TRACESTATE).is_none()
        {
            metadata.insert_static(TRACESTATE, state.to_owned());
        }
        cx.trace()
    });
    crate::trace_otel::current().unwrap_or_else(|| {
        parent
            .as_ref()
            .map_or_else(TraceContext::new_root, TraceContext::child)
    })
}

/// A random non-zero id, from a per-thread generator (wyrand) seeded by
/// SipHash with the process's random keys over a count of threads. Ids need
/// to be unique, not secret; no random-number crate.
pub(crate) fn random_nonzero() -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    STATE.with(|state| {
        loop {
            let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
            state.set(s);
            let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
            let id = (t as u64) ^ ((t >> 64) as u64);
            if id != 0 {
                return id;
            }
        }
    })
}

/// A thread's first generator state: no two threads start alike.
fn seed() -> u64 {
    static THREADS: AtomicU64 = AtomicU64::new(1);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(THREADS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips() {
        let root = TraceContext::new_root();
        assert_eq!(TraceContext::parse(&root.to_traceparent()), Some(root));
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        let traceparent = root.traceparent();
        assert_eq!(traceparent.as_bytes(), traceparent.as_str().as_bytes());
    }

    #[test]
    fn the_recommendations_examples_parse_and_bad_ones_do_not() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parsed = TraceContext::parse(good).unwrap();
        assert_eq!(parsed.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert!(parsed.sampled);
        assert_eq!(parsed.to_traceparent(), good);
        assert_eq!(TraceContext::parse(&format!(" {good}\t")), Some(parsed));
        // A later version may add fields.
        assert!(TraceContext::parse(&format!("cc{}-extra", &good[2..])).is_some());
        for bad in [
            "",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1 ",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_byte_in_every_digit_is_read_as_the_recommendation_says() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let digit_at: Vec<usize> = (3..35).chain(36..52).chain(53..55).collect();
        for &at in &digit_at {
            for byte in 0..=255u8 {
                let mut text = good.as_bytes().to_vec();
                text[at] = byte;
                let Ok(text) = String::from_utf8(text) else {
                    continue;
                };
                let parsed = TraceContext::parse(&text);
                if byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte) {
                    // Flags other than `sampled` are not kept.
                    let parsed = parsed.expect("a hex digit");
                    assert_eq!(parsed.to_traceparent()[..53], text[..53]);
                } else {
                    assert_eq!(parsed, None, "{text}");
                }
            }
        }
        for value in [0, 1, 0x0123_4567_89ab_cdef, u64::MAX, 0xa5a5_5a5a_f00f_0ff0] {
            let digits = hex_digits(value);
            assert_eq!(digits, *format!("{value:016x}").as_bytes());
            assert_eq!(hex_u64(&digits), Some(value));
        }
    }

    #[test]
    fn a_caller_set_traceparent_is_kept_and_moves_to_the_header() {
        let mut metadata = Metadata::new();
        let set = TraceContext::new_root();
        metadata.insert(TRACEPARENT, set.to_traceparent());
        assert_eq!(for_call(&mut metadata, None), set);
        assert_eq!(metadata.get(TRACEPARENT), None);
        let parent = TraceContext::new_root();
        let mut fresh = Metadata::new();
        let handler =
            Context::new(None, 1, "s".into(), "m".into(), Metadata::new()).with_trace(parent);
        let call = for_call(&mut fresh, Some(&handler));
        assert_eq!(call.trace_id, parent.trace_id);
        assert_eq!(serving(Some(call)).trace_id, parent.trace_id);
        assert!(fresh.is_empty());
    }

    #[test]
    fn only_a_valid_traceparent_entry_is_a_trace() {
        let good = TraceContext::new_root();
        let text = good.traceparent();
        assert_eq!(
            TraceContext::from_wire_entry(TRACEPARENT, text.as_str()),
            Some(good)
        );
        assert_eq!(TraceContext::from_wire_entry("tenant", text.as_str()), None);
        assert_eq!(
            TraceContext::from_wire_entry(TRACEPARENT, "00-abc-def-01"),
            None
        );
        // Valid, but not as this crate writes it: stays metadata, which the
        // server still reads.
        let later = format!("cc{}-extra", &text.as_str()[2..]);
        assert_eq!(TraceContext::from_wire_entry(TRACEPARENT, &later), None);
        let other_flags = format!("{}03", &text.as_str()[..53]);
        assert_eq!(
            TraceContext::from_wire_entry(TRACEPARENT, &other_flags),
            None
        );
        assert!(TraceContext::parse(&other_flags).is_some());
        let unsampled = TraceContext {
            sampled: false,
            ..good
        };
        let unsampled_text = unsampled.to_traceparent();
        assert_eq!(
            TraceContext::from_wire_entry(TRACEPARENT, &unsampled_text),
            Some(unsampled)
        );
        let mut header = Header::request("s".into(), "m".into(), Default::default());
        header.metadata.insert(TRACEPARENT, later);
        assert_eq!(caller(&header), Some(good));
        header.trace = Some(good.child());
        assert_eq!(caller(&header), header.trace);
        assert_eq!(format!("{text}"), good.to_traceparent());
    }
}
