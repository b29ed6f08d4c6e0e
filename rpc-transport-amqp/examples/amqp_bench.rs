//! Informal speed check (the real harness lives in bench/): calls/s and p50
//! of this transport against a hand-written lapin RPC loop, interleaved in
//! one run. `cargo run --release -p rpc-transport-amqp --example amqp_bench`

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rpc_core::{
    Client, DeliveryMode, MethodDescriptor, MethodKind, Request, Response, Server, Service,
    ServiceDescriptor,
};
use rpc_transport_amqp::AmqpTransport;
use rpc_transport_amqp::lapin::options::*;
use rpc_transport_amqp::lapin::types::FieldTable;
use rpc_transport_amqp::lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::oneshot;

static ECHO: ServiceDescriptor = ServiceDescriptor {
    name: "bench",
    version: "0",
    docs: "",
    methods: &[MethodDescriptor {
        name: "add",
        kind: MethodKind::Call,
        delivery: DeliveryMode::AtLeastOnce,
        signature: "",
        docs: "",
    }],
};

struct Add;
impl Service for Add {
    fn descriptor(&self) -> &'static ServiceDescriptor {
        &ECHO
    }
    async fn call(&self, request: &Request) -> Response {
        request
            .respond(|(a, b): (i64, i64)| async move { a + b })
            .await
    }
}

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

struct Figures {
    calls_per_s: f64,
    p50_us: u128,
}

async fn drive<F, Fut>(in_flight: usize, total: usize, call: F) -> Figures
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let lat = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let started = Instant::now();
    let per = total / in_flight;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let call = call.clone();
            let lat = lat.clone();
            tokio::spawn(async move {
                let mut mine = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    call().await;
                    mine.push(t.elapsed().as_micros());
                }
                lat.lock().unwrap().extend(mine);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let mut lat = lat.lock().unwrap().clone();
    lat.sort_unstable();
    Figures {
        calls_per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: lat[lat.len() / 2],
    }
}

/// The hand-written loop: exclusive reply queue, no confirms, server
/// prefetch 256, one task per delivery, reply awaited before the ack.
struct Raw {
    _conn: Connection,
    publish: Channel,
    reply_queue: String,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>,
    next: std::sync::atomic::AtomicU64,
    queue: String,
}

async fn raw_setup(queue: &str) -> Arc<Raw> {
    let conn = Connection::connect(&url(), ConnectionProperties::default())
        .await
        .unwrap();
    let server = conn.create_channel().await.unwrap();
    server
        .basic_qos(256, BasicQosOptions::default())
        .await
        .unwrap();
    server
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = server
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let reply_ch = conn.create_channel().await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(d)) = consumer.next().await {
            let ch = reply_ch.clone();
            let acks = server.clone();
            tokio::spawn(async move {
                let (a, b): (i64, i64) = serde_json::from_slice(&d.data).unwrap();
                let body = serde_json::to_vec(&(a + b)).unwrap();
                let props = BasicProperties::default()
                    .with_correlation_id(d.properties.correlation_id().clone().unwrap());
                let to = d.properties.reply_to().clone().unwrap();
                // Errors only at exit, when the connection goes away.
                if let Ok(confirm) = ch
                    .basic_publish("".into(), to, BasicPublishOptions::default(), &body, props)
                    .await
                {
                    let _ = confirm.await;
                    // Acked on the channel it arrived on.
                    let _ = acks
                        .basic_ack(d.delivery_tag, BasicAckOptions::default())
                        .await;
                }
            });
        }
    });
    let client = conn.create_channel().await.unwrap();
    let reply_queue = format!("{queue}.reply");
    client
        .queue_declare(
            reply_queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replies = client
        .basic_consume(
            reply_queue.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>> = Arc::default();
    let p = pending.clone();
    tokio::spawn(async move {
        while let Some(Ok(d)) = replies.next().await {
            let id: u64 = d
                .properties
                .correlation_id()
                .as_ref()
                .unwrap()
                .as_str()
                .parse()
                .unwrap();
            if let Some(tx) = p.lock().unwrap().remove(&id) {
                let _ = tx.send(d.data);
            }
        }
    });
    let publish = conn.create_channel().await.unwrap();
    Arc::new(Raw {
        _conn: conn,
        publish,
        reply_queue,
        pending,
        next: 0.into(),
        queue: queue.into(),
    })
}

impl Raw {
    async fn call(&self) {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let props = BasicProperties::default()
            .with_correlation_id(id.to_string().into())
            .with_reply_to(self.reply_queue.as_str().into());
        let body = serde_json::to_vec(&(2i64, 3i64)).unwrap();
        self.publish
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        let reply = rx.await.unwrap();
        assert_eq!(reply, b"5");
    }
}

async fn ours(confirms: bool) -> (AmqpTransport, Client<AmqpTransport>, rpc_core::ServerHandle) {
    let prefix = format!("bench.{}.{confirms}.", std::process::id());
    let t = AmqpTransport::builder(url())
        .queue_prefix(prefix)
        .durable(false)
        .publisher_confirms(confirms)
        .connect()
        .await
        .unwrap();
    let server = Server::builder(t.clone())
        .concurrency(256)
        .serve(Add)
        .await
        .unwrap();
    let client = Client::with_config(
        t.clone(),
        rpc_core::ClientConfig::default().content_type(rpc_core::ContentType::Json),
    );
    client.connect().await.unwrap();
    (t, client, server)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let raw = raw_setup(&format!("bench.raw.{}", std::process::id())).await;
    let (t1, with_confirms, s1) = ours(true).await;
    let (t2, without_confirms, s2) = ours(false).await;
    let rounds = 3;
    for (in_flight, total) in [(1usize, 3000usize), (256, 40_000)] {
        let mut rows: HashMap<&str, Vec<Figures>> = HashMap::new();
        for _ in 0..rounds {
            let r = raw.clone();
            rows.entry("lapin loop, no confirms").or_default().push(
                drive(in_flight, total, move || {
                    let r = r.clone();
                    async move { r.call().await }
                })
                .await,
            );
            let c = without_confirms.clone();
            rows.entry("AmqpTransport, no confirms").or_default().push(
                drive(in_flight, total, move || {
                    let c = c.clone();
                    async move {
                        let s: i64 = c.call("bench", "add", &(2i64, 3i64)).await.unwrap();
                        assert_eq!(s, 5)
                    }
                })
                .await,
            );
            let c = with_confirms.clone();
            rows.entry("AmqpTransport, confirms (default)")
                .or_default()
                .push(
                    drive(in_flight, total, move || {
                        let c = c.clone();
                        async move {
                            let s: i64 = c.call("bench", "add", &(2i64, 3i64)).await.unwrap();
                            assert_eq!(s, 5)
                        }
                    })
                    .await,
                );
        }
        let mut names: Vec<_> = rows.keys().copied().collect();
        names.sort();
        for name in names {
            let figs = &rows[name];
            let mut cps: Vec<f64> = figs.iter().map(|f| f.calls_per_s).collect();
            let mut p50: Vec<u128> = figs.iter().map(|f| f.p50_us).collect();
            cps.sort_by(f64::total_cmp);
            p50.sort();
            println!(
                "in flight {in_flight:>3}  {name:<36} median calls/s {:>8.0}  p50 {:>6} us   (runs: {:?})",
                cps[cps.len() / 2],
                p50[p50.len() / 2],
                cps.iter().map(|c| *c as u64).collect::<Vec<_>>()
            );
        }
    }
    drop((s1, s2));
    tokio::time::sleep(Duration::from_millis(100)).await;
    t1.cleanup().await.unwrap();
    t2.cleanup().await.unwrap();
}
