//! Feeds arbitrary bytes to the envelope frame decoder.
//!
//! Beyond "never panics", it checks the decoder's contracts that a crash
//! would not reveal: `check` and `decode` agree on every input, a frame
//! that decodes re-encodes to exactly the bytes it was read from (the
//! encoding is canonical, so anything else is a decoder that accepts junk),
//! and `decode_with` decodes what `decode` does, whatever names it knows.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_core::KnownNames;
use rpc_core::frame::{self, FrameError, FrameLimits};

fuzz_target!(|data: &[u8]| {
    // A small limit keeps the interesting "too large" paths reachable with
    // short inputs; the decoder's logic does not depend on the number.
    let limits = FrameLimits {
        max_message_size: 4096,
        ..FrameLimits::default()
    };
    let checked = frame::check(data, &limits);
    let decoded = frame::decode(data, &limits);
    // Names random bytes often spell, and then those the first decode learned.
    let mut names: KnownNames = ["", "a", "b"].into_iter().collect();
    for _ in 0..2 {
        assert_eq!(
            frame::decode_with(data, &limits, &mut names),
            decoded,
            "decode_with disagrees with decode"
        );
    }
    match decoded {
        Ok((envelope, used)) => {
            assert_eq!(
                checked,
                Ok(used),
                "check disagrees with a successful decode"
            );
            let mut again = Vec::new();
            frame::encode(&envelope, &mut again, &limits).expect("a decoded envelope re-encodes");
            assert_eq!(
                again,
                &data[..used],
                "decode accepted a non-canonical frame"
            );
        }
        Err(error) => match checked {
            Err(check_error) => assert_eq!(check_error, error, "check and decode disagree"),
            Ok(size) => {
                assert!(size <= data.len());
                assert!(
                    !matches!(error, FrameError::Incomplete | FrameError::TooLarge { .. }),
                    "check accepted a frame that decode called {error:?}"
                );
            }
        },
    }
});
