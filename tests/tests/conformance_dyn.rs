//! The conformance suite through `DynTransport`, the run-time-chosen
//! transport, wrapping the in-memory one: erasing the type changes nothing.

use rpc_core::DynTransport;
use rpc_tests::conformance::Fixture;
use rpc_transport_mem::MemTransport;

/// One in-process broker per test, seen through the erased type.
/// The erased transport, and the memory transport under it (for its faults).
struct DynFixture(DynTransport, MemTransport);

impl Fixture for DynFixture {
    type Transport = DynTransport;

    async fn transport(&self) -> DynTransport {
        self.0.clone()
    }

    async fn finish(self) {}

    fn broadcasts(&self) -> bool {
        true
    }

    async fn break_connection(&self, _: &DynTransport) -> bool {
        let faults = self.1.faults();
        faults.disconnect();
        faults.reconnect();
        true
    }
}

rpc_tests::conformance_suite!(async {
    let memory = MemTransport::new();
    Some(DynFixture(DynTransport::new(memory.clone()), memory))
});

/// A generated client names no transport by default: `CalcClient` is
/// `CalcClient<DynTransport>`, so application structs need no type parameter.
struct App {
    calc: rpc_tests::services::CalcClient,
}

#[tokio::test]
async fn generated_clients_default_to_the_erased_transport() {
    let transport = DynTransport::new(MemTransport::new());
    let _server = rpc_tests::conformance::serve_calc(transport.clone(), 1, 4).await;
    let app = App {
        calc: rpc_tests::services::CalcClient::new(transport),
    };
    assert_eq!(app.calc.add(40, 2).await.unwrap(), 42);
}
