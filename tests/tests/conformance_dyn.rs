//! The conformance suite through `DynTransport`, the run-time-chosen
//! transport, wrapping the in-memory one: erasing the type changes nothing.

use rpc_core::DynTransport;
use rpc_tests::conformance::Fixture;
use rpc_transport_mem::MemTransport;

/// One in-process broker per test, seen through the erased type.
struct DynFixture(DynTransport);

impl Fixture for DynFixture {
    type Transport = DynTransport;

    async fn transport(&self) -> DynTransport {
        self.0.clone()
    }

    async fn finish(self) {}
}

rpc_tests::conformance_suite!(async { Some(DynFixture(DynTransport::new(MemTransport::new()))) });
