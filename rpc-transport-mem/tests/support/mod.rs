//! Shared helpers: a recording reply sink, envelope builders and a small
//! hand-written service for driving the full client/server stack.

#![allow(dead_code, unreachable_pub, reason = "each test file uses a subset")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::transport::{ReplyHandler, ReplySink};
use rpc_core::{
    Client, ContentType, DeliveryMode, Envelope, Header, Kind, MethodDescriptor, MethodKind,
    Request, Response, Server, ServerHandle, Service, ServiceDescriptor, Status,
};
use rpc_transport_mem::MemTransport;
use serde::{Deserialize, Serialize};
use tokio::sync::{Barrier, Notify};

/// A reply handler that records what the transport pushes into it.
#[derive(Default)]
pub struct Recorder {
    delivered: Mutex<Vec<Envelope>>,
    lost: AtomicUsize,
    closed: AtomicUsize,
    arrived: Notify,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    pub fn sink(self: &Arc<Self>) -> ReplySink {
        ReplySink::new(self.clone())
    }

    /// Correlation ids of the replies delivered so far, in order.
    pub fn ids(&self) -> Vec<u64> {
        let delivered = self.delivered.lock().unwrap();
        delivered.iter().map(|e| e.header.correlation_id).collect()
    }

    pub fn connection_losses(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn closes(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` replies arrived.
    pub async fn wait_for(&self, count: usize) {
        loop {
            let arrived = self.arrived.notified();
            if self.delivered.lock().unwrap().len() >= count {
                return;
            }
            arrived.await;
        }
    }
}

impl ReplyHandler for Recorder {
    fn deliver(&self, envelope: Envelope) {
        self.delivered.lock().unwrap().push(envelope);
        self.arrived.notify_waiters();
    }

    fn connection_lost(&self) {
        self.lost.fetch_add(1, Ordering::SeqCst);
    }

    fn closed(&self) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A request to `service` with correlation id `id` and a one-byte body.
pub fn request(service: &'static str, id: u64) -> Envelope {
    let mut header = Header::request(service.into(), "m".into(), ContentType::Json);
    header.correlation_id = id;
    Envelope {
        header,
        body: vec![id as u8],
    }
}

/// A reply with correlation id `id`.
pub fn reply(id: u64) -> Envelope {
    let header = request("svc", id).header.reply(Status::Ok);
    Envelope {
        header,
        body: Vec::new(),
    }
}

/// A oneway message to `service`.
pub fn oneway(service: &'static str, id: u64) -> Envelope {
    let mut envelope = request(service, id);
    envelope.header.kind = Kind::Oneway;
    envelope
}

/// Arguments of `math.add`.
#[derive(Serialize, Deserialize)]
pub struct Add {
    pub a: i64,
    pub b: i64,
}

/// Arguments of `math.sleep`.
#[derive(Serialize, Deserialize)]
pub struct Sleep {
    pub ms: u64,
}

/// Arguments of methods that take none.
#[derive(Serialize, Deserialize)]
pub struct NoArgs {}

const fn method(name: &'static str, kind: MethodKind) -> MethodDescriptor {
    MethodDescriptor {
        name,
        kind,
        delivery: DeliveryMode::AtLeastOnce,
        run_to_completion: false,
        signature: "",
        docs: "",
    }
}

static MATH: ServiceDescriptor = ServiceDescriptor {
    name: "math",
    version: "0.0.0",
    docs: "A hand-written service for transport tests.",
    methods: &[
        method("add", MethodKind::Call),
        method("sleep", MethodKind::Call),
        method("panic", MethodKind::Call),
        method("rendezvous", MethodKind::Call),
        method("hold", MethodKind::Call),
        method("count", MethodKind::Oneway),
    ],
};

/// What the `math` service's handlers share with the test.
pub struct MathState {
    /// `count` calls seen.
    pub counted: AtomicUsize,
    /// Signals each `count` call.
    pub count_seen: Notify,
    /// `rendezvous` returns once this many calls are inside it at once.
    pub rendezvous: Barrier,
    /// `hold` calls in progress.
    pub holding: AtomicUsize,
    /// `hold` returns when notified.
    pub release: Notify,
    /// Signals that a `hold` call has started.
    pub held: Notify,
}

/// The `math` service: add, sleep, panic, rendezvous, hold, count (oneway).
#[derive(Clone)]
pub struct Math(pub Arc<MathState>);

impl Math {
    pub fn new(rendezvous: usize) -> Self {
        Math(Arc::new(MathState {
            counted: AtomicUsize::new(0),
            count_seen: Notify::new(),
            rendezvous: Barrier::new(rendezvous),
            holding: AtomicUsize::new(0),
            release: Notify::new(),
            held: Notify::new(),
        }))
    }
}

impl Service for Math {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        &MATH
    }

    async fn call(&self, request: &Request) -> Response {
        let state = &self.0;
        match request.method() {
            "add" => request.respond(|Add { a, b }| async move { a + b }).await,
            "sleep" => {
                request
                    .respond(|Sleep { ms }| async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await
                    })
                    .await
            }
            "panic" => {
                request
                    .respond(|NoArgs {}| async move {
                        if true {
                            panic!("boom");
                        }
                    })
                    .await
            }
            "rendezvous" => {
                request
                    .respond(|NoArgs {}| async move {
                        state.rendezvous.wait().await;
                    })
                    .await
            }
            "hold" => {
                request
                    .respond(|NoArgs {}| async move {
                        let released = state.release.notified();
                        state.holding.fetch_add(1, Ordering::SeqCst);
                        state.held.notify_one();
                        released.await;
                        state.holding.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }
            "count" => {
                request
                    .respond(|NoArgs {}| async move {
                        state.counted.fetch_add(1, Ordering::SeqCst);
                        state.count_seen.notify_one();
                    })
                    .await
            }
            _ => request.no_such_method(),
        }
    }
}

/// A server of `math` on `transport`, in the default settings.
pub async fn serve_math(transport: &MemTransport, math: Math) -> ServerHandle {
    Server::builder(transport.clone())
        .serve(math)
        .await
        .expect("serve math")
}

/// A transport serving `Math::new(1)`, and a client on it.
pub async fn math_stack() -> (MemTransport, ServerHandle, Client<MemTransport>) {
    let transport = MemTransport::new();
    let server = serve_math(&transport, Math::new(1)).await;
    let client = Client::new(transport.clone());
    (transport, server, client)
}
