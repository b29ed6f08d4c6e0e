//! The conformance suite on the in-memory transport.

use rpc_tests::conformance::Fixture;
use rpc_transport_mem::MemTransport;

/// One in-process broker per test.
struct MemFixture(MemTransport);

impl Fixture for MemFixture {
    type Transport = MemTransport;

    async fn transport(&self) -> MemTransport {
        self.0.clone()
    }

    async fn finish(self) {}
}

rpc_tests::conformance_suite!(async { Some(MemFixture(MemTransport::new())) });
