//! Compile tests of `#[rpc_service]`: what must expand (`ui/pass`) and
//! every diagnostic it emits (`ui/fail/<group>`), with reviewed `.stderr`.
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
