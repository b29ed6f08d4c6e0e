//! The runtimes report to the `metrics` facade: after a few calls a
//! recording recorder holds the documented names with their labels.
//!
//! One test in this binary: the recorder is global to the process.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use rpc_core::metrics::names;
use rpc_core::{RpcError, Server};
use rpc_tests::services::{CALC_DESCRIPTOR, CalcClient, CalcImpl, CalcProbe, CalcServer};
use rpc_transport_mem::MemTransport;

type Entry = (
    CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
);

fn find<'a>(entries: &'a [Entry], name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    entries
        .iter()
        .find(|(key, ..)| {
            key.key().name() == name
                && labels
                    .iter()
                    .all(|(k, v)| key.key().labels().any(|l| l.key() == *k && l.value() == *v))
        })
        .map(|(.., value)| value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_leave_counters_histograms_and_gauges_with_their_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter: Snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this process");

    let transport = MemTransport::new();
    let (probe, _lines) = CalcProbe::new();
    let calc = CalcImpl::new(1, probe.clone(), &transport);
    let server = Server::builder(transport.clone())
        .serve(CalcServer::new(calc))
        .await
        .unwrap();
    let client = CalcClient::new(transport);
    for i in 0..3 {
        assert_eq!(client.add(i, 1).await.unwrap(), i + 1);
    }
    let failed = client.boom("on purpose".into()).await;
    assert!(matches!(failed, Err(RpcError::Remote { .. })), "{failed:?}");
    // A call dropped while its handler runs counts as cancelled, once.
    {
        let mut gated = pin!(client.gated(7));
        std::future::poll_fn(|cx| {
            assert!(gated.as_mut().poll(cx).is_pending(), "the gate is shut");
            Poll::Ready(())
        })
        .await;
        probe.wait_in_gate(1).await;
    }
    probe.gate.add_permits(1);
    server.shutdown().await;

    let entries = snapshotter.snapshot().into_vec();
    let service = CALC_DESCRIPTOR.name;
    let add = [("service", service), ("method", "add")];
    let counter = |name, labels: &[(&str, &str)]| match find(&entries, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{name} {labels:?}: {other:?}"),
    };
    let observations = |name, labels: &[(&str, &str)]| match find(&entries, name, labels) {
        Some(DebugValue::Histogram(values)) => values.len(),
        other => panic!("{name} {labels:?}: {other:?}"),
    };
    let ok = [add[0], add[1], ("outcome", "ok")];
    assert_eq!(counter(names::CLIENT_CALLS_STARTED, &add), 3);
    assert_eq!(counter(names::CLIENT_CALLS_FINISHED, &ok), 3);
    assert_eq!(observations(names::CLIENT_CALL_DURATION, &ok), 3);
    assert_eq!(counter(names::SERVER_REQUESTS_STARTED, &add), 3);
    assert_eq!(counter(names::SERVER_REQUESTS_FINISHED, &ok), 3);
    assert_eq!(observations(names::SERVER_REQUEST_DURATION, &ok), 3);

    let failed = [
        ("service", service),
        ("method", "boom"),
        ("outcome", "remote"),
    ];
    assert_eq!(counter(names::CLIENT_CALLS_FINISHED, &failed), 1);
    assert_eq!(counter(names::SERVER_REQUESTS_FINISHED, &failed), 1);
    assert_eq!(counter(names::SERVER_REQUESTS_DEAD_LETTERED, &failed), 1);
    let cancelled = [
        ("service", service),
        ("method", "gated"),
        ("outcome", "cancelled"),
    ];
    assert_eq!(counter(names::CLIENT_CALLS_FINISHED, &cancelled), 1);
    assert_eq!(observations(names::CLIENT_CALL_DURATION, &cancelled), 1);
    let gated = [("service", service), ("method", "gated")];
    match find(&entries, names::CLIENT_CALLS_IN_FLIGHT, &gated) {
        Some(DebugValue::Gauge(value)) => assert_eq!(value.into_inner(), 0.0, "gated"),
        other => panic!("gated in flight: {other:?}"),
    }
    for name in [
        names::CLIENT_CALLS_IN_FLIGHT,
        names::SERVER_REQUESTS_IN_FLIGHT,
    ] {
        match find(&entries, name, &add) {
            Some(DebugValue::Gauge(value)) => assert_eq!(value.into_inner(), 0.0, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let kinds: BTreeSet<_> = entries
        .iter()
        .filter(|(key, ..)| key.key().name().starts_with("rpc_"))
        .map(|(key, ..)| (key.kind(), key.key().name().to_owned()))
        .collect();
    for (kind, name) in &kinds {
        let suffix_ok = match kind {
            MetricKind::Counter => name.ends_with("_total"),
            MetricKind::Histogram => name.ends_with("_seconds"),
            MetricKind::Gauge => !name.ends_with("_total"),
        };
        assert!(suffix_ok, "{kind:?} {name} breaks the naming conventions");
    }
}
