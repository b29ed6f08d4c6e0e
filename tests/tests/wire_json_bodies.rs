//! docs/wire.md, "JSON bodies": every example on the page decodes to the
//! value it stands for, and that value encodes back to the same text.
//!
//! Each example is looked up in the page's section verbatim, so the page
//! and this test cannot drift apart.

use std::collections::HashMap;
use std::time::Duration;

use rpc_core::{ContentType, rpc_service};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const WIRE_MD: &str = include_str!("../../docs/wire.md");

/// The section of docs/wire.md the examples come from.
fn section() -> &'static str {
    let start = WIRE_MD
        .find("### JSON bodies")
        .expect("docs/wire.md has a JSON bodies section");
    let rest = &WIRE_MD[start..];
    let end = rest[4..].find("\n### ").map_or(rest.len(), |at| at + 4);
    &rest[..end]
}

/// `json` is on the page (as inline code), decodes as `T` to `value`, and
/// `value` encodes back to `json`.
#[track_caller]
fn example<T>(json: &str, value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert!(
        section().contains(&format!("`{json}`")),
        "`{json}` is not an example in docs/wire.md's JSON bodies section"
    );
    let decoded: T = ContentType::Json.decode(json.as_bytes()).expect("decodes");
    assert_eq!(decoded, value, "{json}");
    let encoded = ContentType::Json.encode(&value).expect("encodes");
    assert_eq!(String::from_utf8(encoded).unwrap(), json);
}

/// Like [`example`] for a generated argument struct, which has no
/// `PartialEq`: decodes `json` and hands the value to `check`, and checks
/// that it encodes back to `json`.
#[track_caller]
fn args_example<T: Serialize + DeserializeOwned>(json: &str, check: impl FnOnce(&T)) {
    assert!(
        section().contains(&format!("`{json}`")),
        "`{json}` is not an example in docs/wire.md's JSON bodies section"
    );
    let decoded: T = ContentType::Json.decode(json.as_bytes()).expect("decodes");
    check(&decoded);
    let encoded = ContentType::Json.encode(&decoded).expect("encodes");
    assert_eq!(String::from_utf8(encoded).unwrap(), json);
}

/// The methods the page's examples come from.
#[rpc_service(name = "docs.shop")]
pub trait Shop {
    /// Adds two numbers.
    async fn add(&self, a: i64, b: i64) -> i64;
    /// A method without arguments.
    async fn stock(&self) -> u32;
    /// An application error inside `Ok`.
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// An optional struct.
    async fn find(&self, sku: String) -> Option<Item>;
    /// An enum argument, nothing returned.
    async fn ship(&self, how: Shipping);
}

/// Why `div` said no.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum MathError {
    /// A unit variant.
    DivideByZero,
    /// A struct variant.
    Overflow {
        /// What overflowed.
        operation: String,
    },
}

/// A struct.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Its stock-keeping unit.
    pub sku: String,
    /// Its price.
    pub price_cents: u32,
}

/// One of each kind of enum variant.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum Shipping {
    /// A unit variant.
    Pickup,
    /// A newtype variant.
    Courier(String),
    /// A struct variant.
    Freight {
        /// How long it takes.
        days: u32,
    },
}

fn item() -> Item {
    Item {
        sku: "A-1".into(),
        price_cents: 999,
    }
}

#[test]
fn arguments_are_an_object_by_name() {
    args_example(r#"{"a":2,"b":3}"#, |args: &ShopAddArgs| {
        assert_eq!((args.a, args.b), (2, 3))
    });
    args_example("{}", |_: &ShopStockArgs| {});
    // Any order; the encoding above is the canonical one.
    let reordered: ShopAddArgs = ContentType::Json.decode(br#"{"b":3,"a":2}"#).unwrap();
    assert_eq!((reordered.a, reordered.b), (2, 3));
    let extra: ShopAddArgs = ContentType::Json.decode(br#"{"a":2,"b":3,"c":4}"#).unwrap();
    assert_eq!((extra.a, extra.b), (2, 3), "unknown members are ignored");
    assert!(
        ContentType::Json
            .decode::<ShopAddArgs>(br#"{"a":2}"#)
            .is_err(),
        "none missing"
    );
    assert!(
        ContentType::Json.decode::<ShopStockArgs>(b"null").is_err(),
        "a method without arguments takes `{{}}`, not `null`"
    );
}

#[test]
fn return_values() {
    example("null", ());
    example("18446744073709551615", u64::MAX);
    example(r#""é""#, 'é');
    example("null", None::<Item>);
    example(r#"{"sku":"A-1","price_cents":999}"#, Some(item()));
    example(r#"[true,"é"]"#, (true, 'é'));
    example("[1,2,255]", vec![1u8, 2, 255]);
    example(r#"{"red":1}"#, HashMap::from([("red".to_owned(), 1)]));
    example(
        r#"{"secs":1,"nanos":500000000}"#,
        Duration::from_millis(1500),
    );
}

#[test]
fn results_and_enums_are_externally_tagged() {
    example(r#"{"Ok":2}"#, Ok::<i64, MathError>(2));
    example(
        r#"{"Err":"DivideByZero"}"#,
        Err::<i64, _>(MathError::DivideByZero),
    );
    example(
        r#"{"Err":{"Overflow":{"operation":"div"}}}"#,
        Err::<i64, _>(MathError::Overflow {
            operation: "div".into(),
        }),
    );
    example(r#""Pickup""#, Shipping::Pickup);
    example(r#"{"Courier":"DHL"}"#, Shipping::Courier("DHL".into()));
    example(r#"{"Freight":{"days":3}}"#, Shipping::Freight { days: 3 });
    args_example(r#"{"a":7,"b":0}"#, |args: &ShopDivArgs| {
        assert_eq!((args.a, args.b), (7, 0))
    });
}
