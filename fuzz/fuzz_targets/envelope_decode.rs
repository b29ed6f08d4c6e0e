//! Feeds arbitrary bytes to the envelope frame decoder.
//!
//! Beyond "never panics", it checks the decoder's two contracts that a crash
//! would not reveal: `check` and `decode` agree on every input, and a frame
//! that decodes re-encodes to exactly the bytes it was read from (the
//! encoding is canonical, so anything else is a decoder that accepts junk).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_core::frame::{self, FrameError, FrameLimits};

fuzz_target!(|data: &[u8]| {
    // A small limit keeps the interesting "too large" paths reachable with
    // short inputs; the decoder's logic does not depend on the number.
    let limits = FrameLimits {
        max_message_size: 4096,
        ..FrameLimits::default()
    };
    let checked = frame::check(data, &limits);
    match frame::decode(data, &limits) {
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
