//! Feeds arbitrary multipart messages to the ZeroMQ transport's parsers
//! (`rpc_transport_zmq::wire`), both directions. The input is cut into
//! frames at every 0xFE byte, so frame counts and frame contents vary.
//!
//! Beyond "never panics": an envelope that parses re-encodes to the very
//! frame it came from (the encoding is canonical), and nothing larger than
//! the limit is accepted. The bounded CI twin is
//! rpc-transport-zmq/tests/wire.rs.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rpc_core::FrameLimits;
use rpc_transport_zmq::wire::{self, FromClient, FromServer};

fuzz_target!(|data: &[u8]| {
    let frames: Vec<Bytes> = data
        .split(|byte| *byte == 0xFE)
        .map(Bytes::copy_from_slice)
        .collect();
    let limits = FrameLimits {
        max_message_size: 4096,
        ..FrameLimits::default()
    };
    let size: usize = frames.iter().map(|f| f.len()).sum();
    match wire::parse_from_client(&frames, &limits) {
        Ok(FromClient::Request { envelope, .. } | FromClient::Oneway(envelope)) => {
            assert!(size <= limits.max_message_size + 1024);
            let again = wire::encode_envelope(&envelope, &limits).expect("re-encodes");
            assert_eq!(Some(&again), frames.last());
        }
        Ok(FromClient::Requests(pairs)) => {
            assert!(size <= limits.max_message_size + 1024);
            each_pair_re_encodes(&frames, &pairs, &limits);
        }
        Ok(_) | Err(_) => {}
    }
    match wire::parse_from_server(&frames, &limits) {
        Ok(FromServer::Reply { envelope, .. }) => {
            let again = wire::encode_envelope(&envelope, &limits).expect("re-encodes");
            assert_eq!(Some(&again), frames.last());
        }
        Ok(FromServer::Replies(pairs)) => each_pair_re_encodes(&frames, &pairs, &limits),
        Ok(_) | Err(_) => {}
    }
});

/// Each pair of a batch that parsed re-encodes to its own frame: the
/// pairs are the frames after the command, two by two.
fn each_pair_re_encodes(frames: &[Bytes], pairs: &[wire::Pair], limits: &FrameLimits) {
    assert_eq!(pairs.len() * 2 + 1, frames.len());
    for (i, (tag, envelope)) in pairs.iter().enumerate() {
        assert_eq!(tag, &frames[1 + 2 * i]);
        if let Ok(envelope) = envelope {
            let again = wire::encode_envelope(envelope, limits).expect("re-encodes");
            assert_eq!(again, frames[2 + 2 * i]);
        }
    }
}
