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

    fn broadcasts(&self) -> bool {
        true
    }

    /// Every participant shares one broker: the link drops for all of
    /// them, and comes back at once.
    async fn break_connection(&self, _: &MemTransport) -> bool {
        let faults = self.0.faults();
        faults.disconnect();
        faults.reconnect();
        true
    }
}

rpc_tests::conformance_suite!(async { Some(MemFixture(MemTransport::new())) });

/// The suite again with every envelope through the binary frame and back,
/// as a byte-stream fabric carries it.
mod framed {
    use super::MemFixture;
    use rpc_transport_mem::MemTransport;

    rpc_tests::conformance_suite!(async {
        Some(MemFixture(
            MemTransport::builder().frame_round_trip(true).build(),
        ))
    });
}
