//! The full expansion of an example service, pretty-printed and compared
//! with the checked-in `tests/snapshots/calculator.expanded.rs`, so every
//! change to the generated code shows up in review as a diff of that file.
//!
//! `RPC_BLESS=1 cargo test -p rpc-macros snapshot` rewrites it.

use std::path::PathBuf;
use std::{env, fs};

use proc_macro2::TokenStream;
use quote::quote;

fn snapshot_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.expanded.rs"))
}

/// Expands `item` with `args` and formats the result like rustfmt would.
fn expand_pretty(args: TokenStream, item: TokenStream) -> String {
    let tokens = crate::rpc_service_tokens(args, item);
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as Rust");
    prettyplease::unparse(&file)
}

/// Compares `actual` with the snapshot `name`, or rewrites it when blessing.
fn assert_snapshot(name: &str, actual: &str) {
    let path = snapshot_path(name);
    if env::var_os("RPC_BLESS").is_some() {
        fs::write(&path, actual).expect("write snapshot");
        return;
    }
    let expected = fs::read_to_string(&path).unwrap_or_default();
    if actual == expected {
        return;
    }
    let first_diff = actual
        .lines()
        .zip(expected.lines())
        .position(|(a, e)| a != e)
        .unwrap_or_else(|| actual.lines().count().min(expected.lines().count()));
    let context = |text: &str| {
        text.lines()
            .enumerate()
            .skip(first_diff.saturating_sub(3))
            .take(8)
            .map(|(i, line)| format!("{:>4} | {line}\n", i + 1))
            .collect::<String>()
    };
    panic!(
        "the expansion differs from {path} from line {line} on.\n\
         \n--- expected ---\n{expected}\n--- actual ---\n{actual}\n\
         If the change is intended, bless it and review the diff:\n\
         \n    RPC_BLESS=1 cargo test -p rpc-macros snapshot\n",
        path = path.display(),
        line = first_diff + 1,
        expected = context(&expected),
        actual = context(actual),
    );
}

#[test]
fn calculator_expansion_matches_snapshot() {
    let actual = expand_pretty(
        quote!(name = "calc.v1"),
        quote! {
            /// Arithmetic over the wire.
            pub trait Calculator {
                /// Adds two numbers.
                async fn add(&self, a: i64, b: i64) -> i64;
                /// Divides `a` by `b`; dividing by zero is an application error.
                async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
                /// Appends a line to the server's log; nobody waits for it.
                #[rpc(oneway)]
                async fn log(&self, line: String);
                /// Charges once at most, even if the server crashes midway.
                #[rpc(at_most_once)]
                async fn charge(&self, cents: u64) -> u64;
                async fn reset(&self);
            }
        },
    );
    assert_snapshot("calculator", &actual);
}

#[test]
fn failed_expansion_keeps_the_trait_and_reports_every_error() {
    let actual = expand_pretty(
        quote!(),
        quote! {
            pub trait Calculator {
                #[rpc(oneway)]
                async fn log(&self, line: &str) -> bool;
                fn add(&mut self, (a, b): (i64, i64)) -> i64;
            }
        },
    );
    assert_snapshot("calculator_errors", &actual);
}
