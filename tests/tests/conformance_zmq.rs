//! The conformance suite on ZeroMQ, over tcp and over ipc with default
//! settings (the calls made together batched), and over tcp with every
//! request and reply a message of its own.
//!
//! No service to start: every participant's transport binds its own
//! loopback endpoint (port 0, or an ipc path in a temporary directory) and
//! connects to every endpoint of the fixture, its own included, so any
//! participant can serve and any can call, as on a broker.

use rpc_tests::conformance::{Fabric, Fixture};
use rpc_tests::zmq::ZmqFabric;
use rpc_transport_zmq::ZmqTransport;

/// One fabric of transports that all know each other.
struct ZmqFixture(ZmqFabric);

impl Fixture for ZmqFixture {
    type Transport = ZmqTransport;

    async fn transport(&self) -> ZmqTransport {
        self.0.join().await
    }

    async fn finish(self) {
        self.0.finish().await;
    }

    /// No broker keeps a request: one taken and dropped is gone.
    fn fabric(&self) -> Fabric {
        Fabric::AT_MOST_ONCE
    }
}

mod tcp {
    use super::*;

    rpc_tests::conformance_suite!(async { Some(ZmqFixture(ZmqFabric::tcp())) });
}

mod ipc {
    use super::*;

    rpc_tests::conformance_suite!(async { Some(ZmqFixture(ZmqFabric::ipc())) });
}

mod tcp_unbatched {
    use super::*;

    rpc_tests::conformance_suite!(async { Some(ZmqFixture(ZmqFabric::tcp_unbatched())) });
}
