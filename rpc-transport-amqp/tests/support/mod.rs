//! Shared test fixtures: broker access, unique names, a hand-written
//! service, a cuttable TCP relay, rabbitmqctl helpers.
#![allow(dead_code, unreachable_pub, missing_docs)] // each test binary uses a subset

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{
    DeliveryMode, MethodDescriptor, MethodKind, Request, Response, Service, ServiceDescriptor,
};
use rpc_transport_amqp::{AmqpTransport, AmqpTransportBuilder};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

pub fn broker_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// A queue prefix no other test (or test run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "test.{test}.{}.{:x}.{}.",
        std::process::id(),
        nanos & 0xffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A builder on the test broker with a unique prefix, or `None` (with a
/// notice) when no broker is reachable and `RPC_REQUIRE_BROKER` is not set.
pub async fn builder(test: &str) -> Option<AmqpTransportBuilder> {
    let url = broker_url();
    match AmqpTransport::builder(url.clone())
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
    {
        Ok(probe) => probe.close().await,
        Err(error) => {
            if std::env::var("RPC_REQUIRE_BROKER").as_deref() == Ok("1") {
                panic!("RPC_REQUIRE_BROKER=1 but the broker at {url} is unreachable: {error}");
            }
            eprintln!("notice: skipping {test}: no AMQP broker at {url} ({error})");
            return None;
        }
    }
    Some(
        AmqpTransport::builder(url)
            .queue_prefix(unique_prefix(test))
            .connection_name(format!("rpc-test-{test}-{}", std::process::id())),
    )
}

// ---- a hand-written service -------------------------------------------------

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct AddArgs {
    pub a: i64,
    pub b: i64,
}

pub static CALC: ServiceDescriptor = ServiceDescriptor {
    name: "calc",
    version: "0.0.0",
    docs: "test calculator",
    methods: &[
        method("add"),
        method("sleep_ms"),
        method("whoami"),
        method("panic"),
    ],
};

const fn method(name: &'static str) -> MethodDescriptor {
    MethodDescriptor {
        name,
        kind: MethodKind::Call,
        delivery: DeliveryMode::AtLeastOnce,
        signature: "",
        docs: "",
    }
}

/// `add`, `sleep_ms` (returns its argument), `whoami` (returns the
/// server's id), `panic`.
pub struct Calc {
    pub id: u32,
    /// Told when a `sleep_ms` call starts running.
    pub started: Option<tokio::sync::mpsc::UnboundedSender<u64>>,
}

impl Calc {
    pub fn new(id: u32) -> Self {
        Calc { id, started: None }
    }

    /// A calc that reports each `sleep_ms` call as it starts.
    pub fn reporting(id: u32) -> (Self, tokio::sync::mpsc::UnboundedReceiver<u64>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (
            Calc {
                id,
                started: Some(tx),
            },
            rx,
        )
    }
}

impl Service for Calc {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        &CALC
    }

    async fn call(&self, request: &Request) -> Response {
        match request.method() {
            "add" => {
                request
                    .respond(|args: AddArgs| async move { args.a + args.b })
                    .await
            }
            "sleep_ms" => {
                let started = self.started.clone();
                request
                    .respond(|ms: u64| async move {
                        if let Some(started) = started {
                            let _ = started.send(ms);
                        }
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        ms
                    })
                    .await
            }
            "whoami" => {
                let id = self.id;
                request.respond(|(): ()| async move { id }).await
            }
            "panic" => {
                request
                    .respond(|(): ()| async move {
                        if true {
                            panic!("boom");
                        }
                    })
                    .await
            }
            _ => request.no_such_method(),
        }
    }
}

// ---- a TCP relay that can cut its connections -------------------------------

/// Forwards 127.0.0.1:<port> to the broker; `cut()` drops every open
/// connection at once (like a network failure).
pub struct Relay {
    pub port: u16,
    upstream: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Relay {
    pub async fn start() -> Relay {
        let uri: rpc_transport_amqp::lapin::uri::AMQPUri = broker_url().parse().unwrap();
        let upstream = format!("{}:{}", uri.authority.host, uri.authority.port);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let conns = conns.clone();
            let upstream = upstream.clone();
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    conns.lock().unwrap().push(task);
                }
            }
        });
        Relay {
            port,
            upstream,
            conns,
            accept,
        }
    }

    /// The broker URL through this relay.
    pub fn url(&self) -> String {
        let uri: rpc_transport_amqp::lapin::uri::AMQPUri = broker_url().parse().unwrap();
        format!(
            "amqp://{}:{}@127.0.0.1:{}/{}",
            uri.authority.userinfo.username,
            uri.authority.userinfo.password,
            self.port,
            urlencode(&uri.vhost)
        )
    }

    /// Drops every connection through the relay.
    pub fn cut(&self) -> usize {
        let conns: Vec<_> = std::mem::take(&mut *self.conns.lock().unwrap());
        let n = conns.len();
        for task in conns {
            task.abort();
        }
        n
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

fn urlencode(vhost: &str) -> String {
    vhost.replace('%', "%25").replace('/', "%2f")
}

// ---- rabbitmqctl ------------------------------------------------------------

/// Closes, broker-side, the connections whose name is `name`; returns how many.
pub fn close_connections_named(name: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "pid", "client_properties", "--silent"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&out.stdout);
    let quoted = format!("\"{name}\"");
    let mut closed = 0;
    for line in listing.lines().filter(|line| line.contains(&quoted)) {
        let pid = line.split_whitespace().next().expect("a pid column");
        let status = std::process::Command::new("rabbitmqctl")
            .args(["close_connection", pid, "test closes it"])
            .output()
            .expect("rabbitmqctl runs");
        assert!(status.status.success(), "{status:?}");
        closed += 1;
    }
    closed
}
