//! Built-in introspection: every server answers ping, info and stats over
//! its transport, to one instance or by broadcast to all of them; a server
//! built with introspection off does not. On memory and over AMQP.

use std::collections::BTreeSet;
use std::time::Duration;

use rpc_core::introspection::Introspector;
use rpc_core::{RpcError, Server, ServerHandle, Transport};
use rpc_tests::broker::amqp_builder;
use rpc_tests::services::{
    CALC_DESCRIPTOR, CalcClient, CalcImpl, CalcProbe, CalcServer, ECHO_DESCRIPTOR, EchoImpl,
    EchoServer,
};
use rpc_transport_mem::MemTransport;

/// Long enough for every live server to answer on a loaded machine; the
/// test waits it out only for broadcasts.
const GATHER: Duration = Duration::from_millis(1500);
const TIMEOUT: Duration = Duration::from_secs(10);

async fn calc<T: Transport>(transport: &T, id: u32, introspection: bool) -> ServerHandle {
    let (probe, _lines) = CalcProbe::new();
    let calc = CalcImpl::new(id, probe, transport);
    Server::builder(transport.clone())
        .introspection(introspection)
        .serve(CalcServer::new(calc))
        .await
        .unwrap()
}

async fn servers_describe_themselves<T: Transport>(transport: T) {
    let one = calc(&transport, 1, true).await;
    let two = calc(&transport, 2, true).await;
    let quiet = calc(&transport, 3, false).await;
    let echo = Server::builder(transport.clone())
        .serve(EchoServer::new(EchoImpl))
        .await
        .unwrap();
    let client = CalcClient::new(transport.clone());
    for i in 0..4 {
        assert_eq!(client.add(i, 1).await.unwrap(), i + 1);
    }
    let mut ask = Introspector::new(transport.clone()).await.unwrap();
    let service = CALC_DESCRIPTOR.name;

    // One instance, through the service's queue (the quiet server may take
    // it: then the query is refused as an unknown method).
    let pinged = loop {
        match ask.ping(service, TIMEOUT).await {
            Ok(ping) => break ping,
            Err(RpcError::NoSuchMethod { .. }) => continue,
            Err(other) => panic!("{other:?}"),
        }
    };
    assert_eq!(pinged.service, service);
    assert_eq!(pinged.version, CALC_DESCRIPTOR.version);

    // Every instance that has introspection on, and only those.
    let fleet = ask.ping_all(Some(service), GATHER).await.unwrap();
    let instances: BTreeSet<_> = fleet.iter().map(|p| p.instance.clone()).collect();
    assert_eq!(instances.len(), 2, "{fleet:?}");
    assert!(instances.contains(&pinged.instance));
    let everyone = ask.ping_all(None, GATHER).await.unwrap();
    let services: BTreeSet<_> = everyone.iter().map(|p| p.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from([service, ECHO_DESCRIPTOR.name]),
        "{everyone:?}"
    );
    assert_eq!(everyone.len(), 3);

    // The descriptor: methods, signatures, docs, delivery modes.
    let info = ask.info_all(service, GATHER).await.unwrap().remove(0);
    assert_eq!(info.methods.len(), CALC_DESCRIPTOR.methods.len());
    let add = info.methods.iter().find(|m| m.name == "add").unwrap();
    assert!(add.signature.contains("fn add"), "{add:?}");
    assert_eq!(add.kind, "call");
    assert!(info.methods.iter().any(|m| m.kind == "oneway"));
    assert!(info.methods.iter().any(|m| m.delivery == "at_most_once"));

    // Stats: per method, per instance; the four calls are spread over
    // the three servers, and the introspecting ones count theirs.
    let stats = ask.stats_all(service, GATHER).await.unwrap();
    assert_eq!(stats.len(), 2);
    let counted: u64 = stats
        .iter()
        .flat_map(|s| &s.methods)
        .filter(|m| m.method == "add")
        .map(|m| m.handled)
        .sum();
    assert!(counted <= 4, "{stats:?}");
    for s in &stats {
        let add = s.methods.iter().find(|m| m.method == "add").unwrap();
        assert_eq!(add.in_flight, 0);
        assert_eq!(add.latency.count, add.handled);
    }

    for server in [one, two, quiet, echo] {
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_describe_themselves_in_memory() {
    servers_describe_themselves(MemTransport::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_describe_themselves_over_amqp() {
    let Some(builder) = amqp_builder("introspection").await else {
        return;
    };
    let transport = builder.connect().await.expect("connect");
    servers_describe_themselves(transport.clone()).await;
    // The shared broker keeps nothing of the test's: its queues and its
    // broadcast exchange go.
    transport.cleanup().await.expect("delete the test's queues");
}
