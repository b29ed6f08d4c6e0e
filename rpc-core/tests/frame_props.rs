//! Properties of the binary envelope encoding (`rpc_core::frame`).
//!
//! The decoder's promises are "never panics, whatever the bytes" and "one
//! envelope, one encoding". Random envelopes check the round trip; random,
//! truncated and mutated bytes check that hostile input only ever yields a
//! typed error or an envelope that re-encodes to exactly the bytes it came from.

use proptest::collection::vec;
use proptest::prelude::*;
use rpc_core::frame::{self, FrameError, FrameLimits};
use rpc_core::trace::TraceContext;
use rpc_core::{
    Address, ContentType, Envelope, ErrorKind, Header, Kind, KnownNames, Metadata, Name, Status,
};

// Every assigned code, read off the enums, so a new kind or error kind is
// covered without editing this file.

fn kind() -> impl Strategy<Value = Kind> {
    proptest::sample::select((0..=255).filter_map(Kind::from_code).collect::<Vec<_>>())
}

fn content_type() -> impl Strategy<Value = ContentType> {
    proptest::sample::select(
        (0..=255)
            .filter_map(ContentType::from_code)
            .collect::<Vec<_>>(),
    )
}

fn error_kind() -> impl Strategy<Value = ErrorKind> {
    proptest::sample::select(
        (0..=255)
            .filter_map(ErrorKind::from_code)
            .collect::<Vec<_>>(),
    )
}

/// Any Unicode text, control characters and newlines included, kept short
/// so that thousands of cases stay fast.
fn text() -> impl Strategy<Value = String> {
    "(?s).{0,12}"
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Ok),
        (error_kind(), text()).prop_map(|(kind, message)| Status::Error { kind, message }),
    ]
}

fn metadata() -> impl Strategy<Value = Metadata> {
    // Keys from a tiny alphabet half the time, so that one changed byte can
    // turn a key into its neighbour (the duplicate-key check must hold).
    let key = prop_oneof!["[ab]{1,2}", text()];
    // Duplicate keys in the vector collapse in `Metadata`, as in real use.
    vec((key, text()), 0..5).prop_map(Metadata::from_iter)
}

fn trace() -> impl Strategy<Value = Option<TraceContext>> {
    proptest::option::of((1..=u128::MAX, 1..=u64::MAX, any::<bool>()).prop_map(
        |(trace_id, span_id, sampled)| TraceContext {
            trace_id,
            span_id,
            sampled,
        },
    ))
}

fn envelope() -> impl Strategy<Value = Envelope> {
    (
        (
            kind(),
            any::<u64>(),
            text(),
            text(),
            proptest::option::of(text()),
        ),
        (
            any::<u64>(),
            any::<u64>(),
            content_type(),
            status(),
            trace(),
            metadata(),
        ),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(
            |(
                (kind, correlation_id, service, method, reply_to),
                (deadline_ms, sent_at_ms, content_type, status, trace, metadata),
                body,
            )| Envelope {
                header: Header {
                    kind,
                    correlation_id,
                    service: Name::from(service),
                    method: Name::from(method),
                    reply_to: reply_to.map(Address::new),
                    deadline_ms,
                    sent_at_ms,
                    content_type,
                    status,
                    trace,
                    metadata,
                },
                body,
            },
        )
}

fn encoded(envelope: &Envelope) -> Vec<u8> {
    let mut wire = Vec::new();
    frame::encode(envelope, &mut wire, &FrameLimits::default()).expect("small envelopes encode");
    wire
}

/// What must hold for any input: `check` and `decode` agree, neither
/// panics, whatever decodes re-encodes to exactly the bytes consumed, and
/// decoding with known names changes nothing but where names come from.
fn assert_decode_is_sound(buf: &[u8]) -> Result<(), TestCaseError> {
    let limits = FrameLimits::default();
    let checked = frame::check(buf, &limits);
    let decoded = frame::decode(buf, &limits);
    assert_known_names_change_nothing(buf, &decoded)?;
    match (&checked, &decoded) {
        (Err(check_error), Err(decode_error)) => prop_assert_eq!(check_error, decode_error),
        (Ok(size), Err(error)) => {
            prop_assert!(*size <= buf.len());
            prop_assert!(
                !matches!(error, FrameError::Incomplete | FrameError::TooLarge { .. }),
                "check accepted what decode called {:?}",
                error
            );
        }
        (Ok(size), Ok((envelope, used))) => {
            prop_assert_eq!(size, used);
            prop_assert_eq!(encoded(envelope), &buf[..*used]);
        }
        (Err(error), Ok(_)) => {
            prop_assert!(false, "check refused ({:?}) what decode accepted", error)
        }
    }
    Ok(())
}

/// `frame::decode_with` gives what `decode` gave (`decoded`), whatever
/// names it knows: none, short ones random bytes often spell, and the
/// very names of the frame; and it learns an accepted frame's names.
fn assert_known_names_change_nothing(
    buf: &[u8],
    decoded: &Result<(Envelope, usize), FrameError>,
) -> Result<(), TestCaseError> {
    let limits = FrameLimits::default();
    let mut sets = vec![
        KnownNames::new(),
        ["", "a", "b", "ab", "\u{0}"].into_iter().collect(),
    ];
    if let Ok((envelope, _)) = decoded {
        let header = &envelope.header;
        let mut own: KnownNames = [header.service.clone(), header.method.clone()]
            .into_iter()
            .collect();
        if let Some(address) = &header.reply_to {
            own.insert(address.name().clone());
        }
        sets.push(own);
    }
    for mut names in sets {
        let with = frame::decode_with(buf, &limits, &mut names);
        prop_assert_eq!(&with, decoded);
        if let Ok((envelope, _)) = &with {
            prop_assert!(names.get(envelope.header.service.as_bytes()).is_some());
            prop_assert!(names.get(envelope.header.method.as_bytes()).is_some());
        }
    }
    Ok(())
}

/// `rest` as the body of a frame: the right length prefix and version, then `rest`.
fn behind_valid_prefix(rest: &[u8]) -> Vec<u8> {
    let len = u32::try_from(rest.len() + 1).expect("small input");
    let mut wire = len.to_be_bytes().to_vec();
    wire.push(rpc_core::envelope::PROTOCOL_VERSION);
    wire.extend_from_slice(rest);
    wire
}

/// Bytes that are mostly 0..=3: valid codes and tiny lengths, so the parser
/// gets far into the frame instead of stopping at the first code.
fn parser_friendly_bytes() -> impl Strategy<Value = Vec<u8>> {
    // Zero dominates: the upper bytes of every length and of most codes.
    vec(
        prop_oneof![8 => Just(0u8), 3 => 1u8..=3, 1 => any::<u8>()],
        0..96,
    )
}

proptest! {
    // Each case is microseconds; more of them buys coverage of the rarer
    // shapes (error statuses with metadata, cuts inside short fields).
    #![proptest_config(ProptestConfig::with_cases(1_500))]

    #[test]
    fn round_trip(envelope in envelope(), junk in vec(any::<u8>(), 0..8)) {
        let mut wire = encoded(&envelope);
        let size = wire.len();
        prop_assert_eq!(frame::check(&wire, &FrameLimits::default()), Ok(size));
        // Whatever follows the frame belongs to the next one and is left alone.
        wire.extend_from_slice(&junk);
        let (decoded, used) = frame::decode(&wire, &FrameLimits::default()).expect("decodes");
        prop_assert_eq!(used, size);
        prop_assert_eq!(&decoded, &envelope);
        // Twice through one set of names: the second decode takes its names
        // from those the first learned.
        let mut names = KnownNames::new();
        for _ in 0..2 {
            let (decoded, used) = frame::decode_with(&wire, &FrameLimits::default(), &mut names).expect("decodes");
            prop_assert_eq!(used, size);
            prop_assert_eq!(&decoded, &envelope);
        }
    }

    #[test]
    fn every_strict_prefix_of_a_frame_is_incomplete(envelope in envelope(), cut in any::<prop::sample::Index>()) {
        let wire = encoded(&envelope);
        let cut = cut.index(wire.len());
        prop_assert_eq!(frame::check(&wire[..cut], &FrameLimits::default()), Err(FrameError::Incomplete));
        prop_assert_eq!(frame::decode(&wire[..cut], &FrameLimits::default()), Err(FrameError::Incomplete));
    }

    #[test]
    fn a_short_frame_with_a_matching_prefix_is_truncated(envelope in envelope(), cut in any::<prop::sample::Index>()) {
        // A sender that lies about nothing but stops early: the prefix says
        // `cut` bytes and they are all there, but the fields run out.
        let wire = encoded(&envelope);
        let cut = 4 + cut.index(wire.len() - 4);
        let mut short = wire[..cut].to_vec();
        let rest = u32::try_from(cut - 4).expect("small frame");
        short[..4].copy_from_slice(&rest.to_be_bytes());
        let result = frame::decode(&short, &FrameLimits::default());
        prop_assert!(matches!(result, Err(FrameError::Truncated { .. })), "got {:?}", result);
    }

    #[test]
    fn a_mutated_byte_never_panics(envelope in envelope(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut wire = encoded(&envelope);
        let at = at.index(wire.len());
        wire[at] = byte;
        assert_decode_is_sound(&wire)?;
    }

    #[test]
    fn parser_friendly_bytes_behind_a_valid_prefix_never_panic(rest in parser_friendly_bytes()) {
        assert_decode_is_sound(&behind_valid_prefix(&rest))?;
    }
}

proptest! {
    // The decoder's main promise gets the most cases. Inputs stay small (a
    // frame needs 47 bytes to be valid at all) so the run stays in seconds.
    #![proptest_config(ProptestConfig::with_cases(100_000))]

    #[test]
    fn arbitrary_bytes_never_panic(buf in vec(any::<u8>(), 0..64)) {
        // Raw, the bytes mostly test `check` (a random prefix is huge);
        // behind a valid prefix and version they reach the parser.
        assert_decode_is_sound(&buf)?;
        assert_decode_is_sound(&behind_valid_prefix(&buf))?;
    }
}

proptest! {
    // Each case makes ~9 edits per byte of its frame, hundreds of decodes.
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn every_single_byte_edit_decodes_soundly(envelope in envelope()) {
        // Exhaustive over positions, with the values most likely to mean
        // something: small codes and lengths, extremes, neighbours.
        let wire = encoded(&envelope);
        for at in 0..wire.len() {
            let original = wire[at];
            let values = [0, 1, 2, 4, 0x7F, 0x80, 0xFF, original.wrapping_add(1), original.wrapping_sub(1)];
            for value in values.into_iter().filter(|&value| value != original) {
                let mut edited = wire.clone();
                edited[at] = value;
                assert_decode_is_sound(&edited)?;
            }
        }
    }
}
