//! A bounded property run of the AMQP-properties-to-envelope decoder
//! (`rpc_transport_amqp::properties::decode`): 100,000 arbitrary inputs, no
//! panic, and whatever decodes keeps the invariants the server relies on.
//!
//! Inputs are byte strings turned into `BasicProperties` two ways: read as a
//! content-header property list by lapin's own wire parser (what a broker
//! can hand us), and spelled out by [`Recipe`], which picks fields, header
//! keys and values from a dictionary of meaningful ones, so that many
//! inputs get deep into the decoder. Bytes from a seed rather than
//! structured proptest strategies keep 100,000 cases to seconds in a debug
//! build. The unbounded twin is the `amqp_properties_decode` fuzz target
//! (fuzz/README.md).

use rpc_tests::noise::noise;
use std::cell::Cell;

use lapin::BasicProperties;
use lapin::protocol::basic::parse_properties;
use lapin::types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString, ShortString};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rpc_core::{Kind, Name};
use rpc_transport_amqp::properties::{self, Arrival, CALLER_METADATA, RESERVED_PREFIX};

/// How many inputs one run decodes.
const CASES: u32 = 100_000;

/// Texts the decoder gives meaning to.
const WORDS: &[&str] = &[
    "application/json",
    "application/x-bincode",
    "request",
    "reply",
    "oneway",
    "cancel",
    "ok",
    "decode",
    "too_large",
    "calc",
    "add",
    "guest",
    "1",
    "18446744073709551615",
    "18446744073709551616",
    "+1",
    "-1",
    "",
    properties::VERSION_HEADER,
    properties::KIND_HEADER,
    properties::SERVICE_HEADER,
    properties::DEADLINE_HEADER,
    properties::STATUS_HEADER,
    properties::ERROR_HEADER,
    CALLER_METADATA,
    "x-death",
    "tenant",
];

/// Reads choices off a byte string; zeros once it runs out.
struct Recipe<'a>(&'a [u8]);

impl Recipe<'_> {
    fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }

    fn raw(&mut self) -> Vec<u8> {
        let len = usize::from(self.byte() % 12).min(self.0.len());
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        taken.to_vec()
    }

    /// Usually `likely` (a value that passes the field's checks), else
    /// anything.
    fn text_or(&mut self, likely: &str) -> String {
        match self.byte() % 8 {
            0..=4 => likely.to_owned(),
            _ => self.text(),
        }
    }

    fn text(&mut self) -> String {
        match self.byte() % 4 {
            0 => String::from_utf8_lossy(&self.raw()).into_owned(),
            1 => self
                .raw()
                .iter()
                .map(|b| char::from(b'0' + b % 10))
                .collect(),
            _ => WORDS[usize::from(self.byte()) % WORDS.len()].to_owned(),
        }
    }

    fn value(&mut self, depth: u8) -> AMQPValue {
        let pick = self.byte() % if depth == 0 { 12 } else { 10 };
        let wide = u64::from_le_bytes([
            self.byte(),
            self.byte(),
            self.byte(),
            self.byte(),
            0,
            0,
            0,
            self.byte(),
        ]);
        match pick {
            0 | 1 => AMQPValue::LongString(LongString::from(self.text())),
            2 => AMQPValue::ShortString(ShortString::from(self.text())),
            3 => AMQPValue::LongString(LongString::from(self.raw())),
            4 => AMQPValue::LongLongInt(wide as i64),
            5 => AMQPValue::ShortShortInt(wide as i8),
            6 => AMQPValue::LongUInt(wide as u32),
            7 => AMQPValue::Timestamp(wide),
            8 => AMQPValue::Boolean(wide & 1 == 1),
            9 => AMQPValue::ByteArray(ByteArray::from(self.raw())),
            10 => AMQPValue::FieldArray(FieldArray::from(vec![self.value(depth + 1)])),
            _ => AMQPValue::FieldTable(self.table(depth + 1)),
        }
    }

    fn table(&mut self, depth: u8) -> FieldTable {
        let mut table = FieldTable::default();
        for _ in 0..self.byte() % 6 {
            let key = self.text();
            table.insert(ShortString::from(key), self.value(depth));
        }
        table
    }

    fn props(&mut self) -> BasicProperties {
        // Fields are present unless a bit says otherwise.
        let present = !u16::from_le_bytes([self.byte(), self.byte()]);
        let has = |bit: u16| present & (1 << bit) != 0;
        let mut p = BasicProperties::default();
        if has(0) {
            p = p.with_correlation_id(self.text_or("7").into());
        }
        if has(1) {
            p = p.with_reply_to(self.text_or("reply.q").into());
        }
        if has(2) {
            p = p.with_type(self.text_or("add").into());
        }
        if has(3) {
            p = p.with_content_type(self.text_or("application/json").into());
        }
        if has(4) {
            p = p.with_expiration(self.text_or("5000").into());
        }
        if has(5) {
            p = p.with_user_id(self.text_or("guest").into());
        }
        if has(6) {
            p = p.with_timestamp(u64::from(self.byte()) << 40);
        }
        if has(7) {
            p = p.with_headers(self.table(0));
        }
        p
    }
}

/// Checks one input; `Err` names a broken invariant. Whether it decoded.
fn check(props: &BasicProperties, on_queue: bool) -> Result<bool, TestCaseError> {
    let service = Name::from_static("calc");
    let arrival = if on_queue {
        Arrival::RequestQueue { service: &service }
    } else {
        Arrival::Inbox
    };
    let Ok(envelope) = properties::decode(props, Vec::new(), arrival) else {
        return Ok(false);
    };
    let header = &envelope.header;
    if header.kind == Kind::Request {
        prop_assert!(header.reply_to.is_some(), "a request without reply_to");
    }
    prop_assert!(header.metadata.len() <= properties::MAX_METADATA_ENTRIES + 1);
    for (key, _) in header.metadata.iter() {
        prop_assert!(
            !key.starts_with(RESERVED_PREFIX) || key == CALLER_METADATA,
            "reserved key {key} leaked into metadata"
        );
    }
    // The caller is the validated user_id, on request queues only, never a
    // header a client sent.
    let user = props.user_id().as_ref().map(|u| u.as_str());
    prop_assert_eq!(
        header.metadata.get(CALLER_METADATA),
        if on_queue { user } else { None }
    );
    Ok(true)
}

#[test]
fn the_properties_decoder_never_panics_and_keeps_its_invariants() {
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let decoded = Cell::new(0u32);
    let from_wire = Cell::new(0u32);
    let started = std::time::Instant::now();
    // A seed per input rather than a proptest byte vector: generating 96
    // value trees per case made the debug run 3-10x slower. A failure
    // prints the seed, which replays it exactly.
    let input = (any::<u64>(), 0..96usize, any::<u8>());
    let result = runner.run(&input, |(seed, len, mode)| {
        let bytes = noise(seed, len);
        let on_queue = mode & 1 == 1;
        let props = if mode & 2 == 2 {
            // lapin's parser of a content header's property list.
            match parse_properties(&bytes[..]) {
                Ok((_, props)) => {
                    from_wire.set(from_wire.get() + 1);
                    props
                }
                Err(_) => return Ok(()),
            }
        } else {
            Recipe(&bytes).props()
        };
        if check(&props, on_queue)? {
            decoded.set(decoded.get() + 1);
        }
        Ok(())
    });
    eprintln!(
        "measured: properties proptest: {CASES} inputs ({} parsed from wire bytes), {} decoded \
         to an envelope, 0 panics, {:?}",
        from_wire.get(),
        decoded.get(),
        started.elapsed()
    );
    result.unwrap();
}
