//! Compile tests of `#[rpc_service]`: what must expand (`ui/pass`) and
//! every diagnostic it emits (`ui/fail/<group>`), with reviewed `.stderr`.
//!
//! Each `ui/fail` file triggers one diagnostic, except:
//! - `combined/`: several mistakes, all reported by one expansion;
//! - `types/`: rustc's own errors when a wire type lacks a serde impl, kept
//!   to watch where they land (on the user's type where the generated code
//!   allows; serde's derive puts one on `#[rpc_service]`).
//!
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p
//! rpc-tests --test ui`, then read every changed `.stderr`: is the error
//! under the right tokens, and does the message say what to do?

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("ui/pass/*.rs");
    cases.compile_fail("ui/fail/*/*.rs");
}
