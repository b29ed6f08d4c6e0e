//! One trace across a client, a server that calls a second service, and
//! that second service: W3C `traceparent` travels with each call, each
//! server continues its caller's trace in a span of its own. On the memory
//! transport and over AMQP.

use rpc_core::trace::{TRACEPARENT, TRACESTATE, TraceContext};
use rpc_core::{Client, Context, Server, Transport, rpc_service};
use rpc_tests::broker::amqp_builder;
use rpc_transport_mem::MemTransport;
use serde::{Deserialize, Serialize};

/// What a handler saw of its trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    /// The `traceparent` the caller sent.
    pub caller: String,
    /// The `tracestate` the caller sent.
    pub state: Option<String>,
    /// The handler's own place in the trace.
    pub own: String,
}

impl Seen {
    fn now() -> Seen {
        let cx = Context::current().expect("in a handler");
        Seen {
            caller: cx
                .caller_trace()
                .map(|caller| caller.to_traceparent())
                .unwrap_or_default(),
            state: cx.metadata().get(TRACESTATE).map(str::to_owned),
            own: cx
                .trace()
                .expect("servers give handlers a trace")
                .to_traceparent(),
        }
    }
}

/// The second service.
#[rpc_service(name = "trace.back")]
pub trait Back {
    /// What this handler saw.
    async fn seen(&self) -> Seen;
}

/// The first service: calls the second.
#[rpc_service(name = "trace.front")]
pub trait Front {
    /// What this handler and the second service's saw.
    async fn relay(&self) -> (Seen, Seen);
}

struct BackImpl;
impl Back for BackImpl {
    async fn seen(&self) -> Seen {
        Seen::now()
    }
}

struct FrontImpl<T: Transport>(BackClient<T>);
impl<T: Transport> Front for FrontImpl<T> {
    async fn relay(&self) -> (Seen, Seen) {
        let front = Seen::now();
        (front, self.0.seen().await.expect("onward call"))
    }
}

fn parse(traceparent: &str) -> TraceContext {
    TraceContext::parse(traceparent).unwrap_or_else(|| panic!("`{traceparent}` is no traceparent"))
}

async fn one_trace_across_two_hops<T: Transport>(transport: T) {
    let back = Server::builder(transport.clone())
        .serve(BackServer::new(BackImpl))
        .await
        .unwrap();
    let front = Server::builder(transport.clone())
        .serve(FrontServer::new(FrontImpl(BackClient::new(
            transport.clone(),
        ))))
        .await
        .unwrap();
    let client = FrontClient::new(transport.clone());

    // A trace the client starts by itself.
    let (a, b) = client.relay().await.unwrap();
    let (a_caller, a_own) = (parse(&a.caller), parse(&a.own));
    let (b_caller, b_own) = (parse(&b.caller), parse(&b.own));
    let trace = a_caller.trace_id;
    for hop in [a_own, b_caller, b_own] {
        assert_eq!(hop.trace_id, trace, "{a:?} {b:?}");
    }
    let spans = [
        a_caller.span_id,
        a_own.span_id,
        b_caller.span_id,
        b_own.span_id,
    ];
    for (i, span) in spans.iter().enumerate() {
        assert!(
            !spans[i + 1..].contains(span),
            "every hop is a span of its own: {spans:x?}"
        );
    }

    // Two calls are two traces.
    let (again, _) = client.relay().await.unwrap();
    assert_ne!(parse(&again.caller).trace_id, trace);

    // A trace the caller's own tracer started, with vendor state: continued as is.
    let root = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = FrontClient::from_client(
        Client::new(transport)
            .with_metadata(TRACEPARENT, root)
            .with_metadata(TRACESTATE, "vendor=opaque"),
    );
    let (a, b) = traced.relay().await.unwrap();
    assert_eq!(a.caller, root);
    assert_eq!(parse(&b.own).trace_id, parse(root).trace_id);
    assert_eq!(
        b.state.as_deref(),
        Some("vendor=opaque"),
        "tracestate passed on"
    );

    front.shutdown().await;
    back.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_two_hops_in_memory() {
    one_trace_across_two_hops(MemTransport::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_across_two_hops_over_amqp() {
    let Some(builder) = amqp_builder("trace_context").await else {
        return;
    };
    let transport = builder.connect().await.expect("connect");
    one_trace_across_two_hops(transport.clone()).await;
    // The shared broker keeps nothing of the test's: its queues and its
    // broadcast exchange go.
    transport.cleanup().await.expect("delete the test's queues");
}
