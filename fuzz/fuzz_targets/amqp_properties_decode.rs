//! Feeds arbitrary bytes, read as an AMQP content header's property list by
//! lapin's own wire parser (so every `BasicProperties` a broker could hand
//! the transport is reachable), to `rpc_transport_amqp::properties::decode`
//! (public behind the crate's `fuzzing` feature), on a request queue and on
//! a reply inbox.
//!
//! Beyond "never panics" it checks what the server relies on: a decoded
//! request has a reply address, no reserved `x-rpc-` header leaks into
//! metadata except the caller, and the caller is exactly the `user_id`
//! property (request queues) or absent (inboxes). The bounded CI twin is
//! tests/tests/bad_input_properties.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rpc_core::{Kind, Name};
use lapin::protocol::basic::parse_properties;
use rpc_transport_amqp::properties::{self, Arrival, CALLER_METADATA, RESERVED_PREFIX};

fuzz_target!(|data: &[u8]| {
    let Ok((body, props)) = parse_properties(data) else {
        return;
    };
    let service = Name::from_static("calc");
    for on_queue in [true, false] {
        let arrival = if on_queue {
            Arrival::RequestQueue { service: &service }
        } else {
            Arrival::Inbox
        };
        let Ok(envelope) = properties::decode(&props, body.to_vec(), arrival) else {
            continue;
        };
        let header = &envelope.header;
        if header.kind == Kind::Request {
            assert!(header.reply_to.is_some(), "a request without reply_to");
        }
        for (key, _) in header.metadata.iter() {
            assert!(
                !key.starts_with(RESERVED_PREFIX) || key == CALLER_METADATA,
                "reserved key {key} in metadata"
            );
        }
        let user = props.user_id().as_ref().map(|u| u.as_str());
        assert_eq!(
            header.metadata.get(CALLER_METADATA),
            if on_queue { user } else { None }
        );
    }
});
