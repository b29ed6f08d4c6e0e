//! The conformance suite on the three-node test cluster, with quorum queues.
//!
//! Participants connect to the nodes in turn (a, b, c, a, ...), so a
//! server and its callers usually sit on different nodes and every request
//! crosses the cluster to its queue's leader. Runs under
//! `.ci/rabbit-cluster run -- cargo test -p rpc-tests --test cluster_conformance`;
//! skips with a notice without a cluster (see `rpc_tests::cluster`).

use rpc_tests::cluster::{Cluster, NODES};
use rpc_tests::conformance::{Fixture, Opened};
use rpc_transport_amqp::AmqpTransport;

/// A namespace on the cluster; each participant connects to the next node.
struct QuorumFixture {
    cluster: Cluster,
    prefix: String,
    opened: Opened<AmqpTransport>,
}

impl QuorumFixture {
    async fn new(test: &str) -> Option<Self> {
        Some(QuorumFixture {
            cluster: Cluster::find(test).await?,
            prefix: Cluster::prefix(test),
            opened: Opened::default(),
        })
    }
}

impl Fixture for QuorumFixture {
    type Transport = AmqpTransport;

    async fn transport(&self) -> AmqpTransport {
        let opened = self.opened.len();
        let (node, role) = (NODES[opened % NODES.len()], opened.to_string());
        let transport = self
            .cluster
            .builder(node, &self.prefix, &role)
            .connect()
            .await
            .expect("connect to the test cluster");
        self.opened.keep(transport)
    }

    /// Broadcasts go through the prefix's fanout exchange.
    fn broadcasts(&self) -> bool {
        true
    }

    async fn finish(self) {
        for transport in self.opened.take() {
            transport.cleanup().await.expect("delete the test's queues");
        }
    }
}

rpc_tests::conformance_suite!(QuorumFixture::new("cluster-conformance"));
