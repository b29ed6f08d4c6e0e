//! The systems under test, each behind the same [`Caller`] face.
//!
//! Each system starts fresh for every level of calls in flight (its own
//! server, client, connections and queues), is measured, and is torn down,
//! so nothing carries over from one measurement to the next.

mod kafka_raw;
mod lapin_raw;
mod mpsc;
mod nats_raw;
mod ours;
mod ours_amqp;
mod ours_kafka;
mod ours_mem;
mod ours_nats;
mod ours_zmq;
mod service;
mod tarpc_mem;
mod tarpc_service;
mod tarpc_tcp;
mod typed_min;
mod waiters;
mod zmq_raw;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;

use crate::args::{Group, Options};
use crate::error::BenchError;
use crate::load::{self, Caller, Measured};

pub(crate) use kafka_raw::wait_for_closing as wait_for_kafka_clients;
pub(crate) use lapin_raw::broker_reachable;
pub(crate) use nats_raw::server_reachable as nats_reachable;
pub(crate) use ours_kafka::broker_reachable as kafka_reachable;
pub(crate) use ours_mem::start as start_ours_mem;

/// A started system: its client and how to stop it.
pub(crate) struct Running<C> {
    caller: C,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<C: Caller> Running<C> {
    /// A system whose client is `caller`, stopped by awaiting `stop`.
    pub(crate) fn new(caller: C, stop: impl Future<Output = ()> + Send + 'static) -> Self {
        Running {
            caller,
            stop: Box::pin(stop),
        }
    }

    /// The client.
    pub(crate) fn caller(&self) -> &C {
        &self.caller
    }

    /// Drops the client, then stops the server side.
    pub(crate) async fn stop(self) {
        drop(self.caller);
        self.stop.await;
    }
}

/// One system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum SystemId {
    /// Baseline: tokio mpsc + oneshot, no encoding.
    Mpsc,
    /// Baseline: the minimal typed path (encode, channel, decode, handle,
    /// encode, reply table, decode), our codec and nothing else.
    TypedMin,
    /// Baseline: tarpc over its in-memory channel.
    TarpcMem,
    /// Ours: `#[rpc_service]` over `MemTransport`.
    OursMem,
    /// The same with client and server built with metrics off: the
    /// control for the cost of the `metrics` facade with no recorder.
    OursMemNoMetrics,
    /// Context: tarpc over TCP loopback, bincode.
    TarpcTcp,
    /// Baseline: hand-written lapin request/reply, exclusive reply queue
    /// (the reply path our transport uses by default).
    LapinQueue,
    /// Baseline: hand-written lapin request/reply, exclusive reply queue,
    /// requests published mandatory with their confirms awaited: the
    /// settings of our transport's defaults.
    LapinQueueConfirms,
    /// Baseline: hand-written lapin request/reply, direct reply-to.
    LapinDirect,
    /// Ours: `#[rpc_service]` over `AmqpTransport`, default settings.
    OursAmqp,
    /// Ours over AMQP with publisher confirms off, as the raw baseline runs.
    OursAmqpNoConfirms,
    /// Ours over AMQP in the direct reply-to baseline's settings: direct
    /// reply-to, publisher confirms off.
    OursAmqpDirectNoConfirms,
    /// Ours over AMQP, default settings but a quorum request queue, on the
    /// three-node test cluster (`RABBIT_CLUSTER_URLS`): the price of
    /// replication against [`OursAmqp`](SystemId::OursAmqp) on one node.
    OursAmqpQuorumCluster,
    /// Baseline: hand-written async-nats request/reply (wildcard inbox,
    /// queue-group server).
    NatsRaw,
    /// The same loop whose messages carry the headers ours carries.
    NatsRawHeaders,
    /// Ours: `#[rpc_service]` over `NatsTransport`, core mode.
    OursNats,
    /// Baseline: hand-written rdkafka request/reply with our Kafka settings.
    KafkaRaw,
    /// The same loop whose records carry our envelope header.
    KafkaRawHeaders,
    /// Ours: `#[rpc_service]` over `KafkaTransport`, default settings.
    OursKafka,
    /// Baseline: a hand-written ROUTER/DEALER loop on the `zeromq` crate,
    /// TCP loopback.
    ZmqRaw,
    /// Ours: `#[rpc_service]` over `ZmqTransport`, TCP loopback.
    OursZmq,
}

impl SystemId {
    /// Every system, in table order.
    pub(crate) const ALL: [SystemId; 21] = [
        SystemId::Mpsc,
        SystemId::TypedMin,
        SystemId::TarpcMem,
        SystemId::OursMem,
        SystemId::OursMemNoMetrics,
        SystemId::TarpcTcp,
        SystemId::LapinQueue,
        SystemId::LapinQueueConfirms,
        SystemId::LapinDirect,
        SystemId::OursAmqp,
        SystemId::OursAmqpNoConfirms,
        SystemId::OursAmqpDirectNoConfirms,
        SystemId::OursAmqpQuorumCluster,
        SystemId::NatsRaw,
        SystemId::NatsRawHeaders,
        SystemId::OursNats,
        SystemId::KafkaRaw,
        SystemId::KafkaRawHeaders,
        SystemId::OursKafka,
        SystemId::ZmqRaw,
        SystemId::OursZmq,
    ];

    /// Its name on the command line and in JSON.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SystemId::Mpsc => "mpsc",
            SystemId::TypedMin => "typed-min",
            SystemId::TarpcMem => "tarpc-mem",
            SystemId::OursMem => "ours-mem",
            SystemId::OursMemNoMetrics => "ours-mem-no-metrics",
            SystemId::TarpcTcp => "tarpc-tcp",
            SystemId::LapinQueue => "lapin-queue",
            SystemId::LapinQueueConfirms => "lapin-queue-confirms",
            SystemId::LapinDirect => "lapin-direct",
            SystemId::OursAmqp => "ours-amqp",
            SystemId::OursAmqpNoConfirms => "ours-amqp-no-confirms",
            SystemId::OursAmqpDirectNoConfirms => "ours-amqp-direct-no-confirms",
            SystemId::OursAmqpQuorumCluster => "ours-amqp-quorum-cluster",
            SystemId::NatsRaw => "nats-raw",
            SystemId::NatsRawHeaders => "nats-raw-headers",
            SystemId::OursNats => "ours-nats",
            SystemId::KafkaRaw => "kafka-raw",
            SystemId::KafkaRawHeaders => "kafka-raw-headers",
            SystemId::OursKafka => "ours-kafka",
            SystemId::ZmqRaw => "zmq-raw",
            SystemId::OursZmq => "ours-zmq",
        }
    }

    /// Which group it belongs to.
    pub(crate) fn group(self) -> Group {
        match self {
            // Brokerless, in one process over loopback: no service to reach.
            SystemId::Mpsc
            | SystemId::TypedMin
            | SystemId::TarpcMem
            | SystemId::OursMem
            | SystemId::OursMemNoMetrics
            | SystemId::TarpcTcp
            | SystemId::ZmqRaw
            | SystemId::OursZmq => Group::Mem,
            SystemId::LapinQueue
            | SystemId::LapinQueueConfirms
            | SystemId::LapinDirect
            | SystemId::OursAmqp
            | SystemId::OursAmqpNoConfirms
            | SystemId::OursAmqpDirectNoConfirms
            | SystemId::OursAmqpQuorumCluster => Group::Amqp,
            SystemId::NatsRaw | SystemId::NatsRawHeaders | SystemId::OursNats => Group::Nats,
            SystemId::KafkaRaw | SystemId::KafkaRawHeaders | SystemId::OursKafka => Group::Kafka,
        }
    }

    /// The fabric this system is ours over, in its default settings: the
    /// rows of the table of every fabric. `None` for baselines and for our
    /// non-default settings.
    pub(crate) fn fabric(self) -> Option<&'static str> {
        match self {
            SystemId::OursMem => Some("memory"),
            SystemId::OursAmqp => Some("AMQP (RabbitMQ)"),
            SystemId::OursNats => Some("NATS"),
            SystemId::OursZmq => Some("ZeroMQ (tcp)"),
            SystemId::OursAmqpQuorumCluster => Some("AMQP, quorum, 3 nodes"),
            SystemId::OursKafka => Some("Kafka (tansu)"),
            _ => None,
        }
    }

    /// Its name in tables, JSON and the plot.
    pub(crate) fn label(self) -> &'static str {
        match self {
            SystemId::Mpsc => "tokio mpsc+oneshot",
            SystemId::TypedMin => "minimal typed path",
            SystemId::TarpcMem => "tarpc channel",
            SystemId::OursMem => "ours: memory",
            SystemId::OursMemNoMetrics => "ours: memory, metrics off",
            SystemId::TarpcTcp => "tarpc tcp+bincode",
            SystemId::LapinQueue => "raw lapin, reply queue",
            SystemId::LapinQueueConfirms => "raw lapin, reply queue, confirms",
            SystemId::LapinDirect => "raw lapin, direct reply-to",
            SystemId::OursAmqp => "ours: amqp",
            SystemId::OursAmqpNoConfirms => "ours: amqp, no confirms",
            SystemId::OursAmqpDirectNoConfirms => "ours: amqp, direct, no confirms",
            SystemId::OursAmqpQuorumCluster => "ours: amqp, quorum, 3 nodes",
            SystemId::NatsRaw => "raw async-nats request/reply",
            SystemId::NatsRawHeaders => "raw async-nats, our headers",
            SystemId::OursNats => "ours: nats",
            SystemId::KafkaRaw => "raw rdkafka",
            SystemId::KafkaRawHeaders => "raw rdkafka, our headers",
            SystemId::OursKafka => "ours: kafka",
            SystemId::ZmqRaw => "raw zeromq, router/dealer",
            SystemId::OursZmq => "ours: zeromq",
        }
    }
}

impl fmt::Display for SystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Where replies come back, in the AMQP systems (raw and ours alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplyMode {
    /// RabbitMQ's direct reply-to (no queue).
    DirectReplyTo,
    /// An exclusive, auto-deleted reply queue named by the client.
    ExclusiveQueue,
}

/// Which tokio runtime a measurement runs on. Client and server always
/// share it (one process, as the benchmark is in-process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Flavor {
    /// One thread runs client and server: no cross-thread wake-ups.
    CurrentThread,
    /// Two worker threads (the machine's cores).
    MultiThread,
}

impl Flavor {
    /// Its name in tables and JSON.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "current_thread",
            Flavor::MultiThread => "multi_thread(2)",
        }
    }

    /// A fresh runtime of this flavor.
    pub(crate) fn runtime(self) -> Result<tokio::runtime::Runtime, BenchError> {
        let mut builder = match self {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(2);
                builder
            }
        };
        builder.enable_all().build().map_err(BenchError::Runtime)
    }
}

/// Starts `system` once per level in `levels` on a fresh `flavor` runtime,
/// measures each, and returns what each level measured.
pub(crate) fn measure_levels(
    system: SystemId,
    flavor: Flavor,
    levels: &[usize],
    options: &Options,
) -> Result<Vec<(usize, Measured)>, BenchError> {
    let runtime = flavor.runtime()?;
    runtime.block_on(async {
        let url = options.amqp_url.as_str();
        let nats_url = options.nats_url.as_str();
        let kafka = options.kafka_bootstrap.as_str();
        match system {
            SystemId::Mpsc => each_level(levels, options, mpsc::start).await,
            SystemId::TypedMin => each_level(levels, options, typed_min::start).await,
            SystemId::TarpcMem => each_level(levels, options, tarpc_mem::start).await,
            SystemId::OursMem => each_level(levels, options, ours_mem::start).await,
            SystemId::OursMemNoMetrics => {
                each_level(levels, options, ours_mem::start_without_metrics).await
            }
            SystemId::TarpcTcp => each_level(levels, options, tarpc_tcp::start).await,
            SystemId::ZmqRaw => each_level(levels, options, zmq_raw::start).await,
            SystemId::OursZmq => each_level(levels, options, ours_zmq::start).await,
            SystemId::LapinQueue => {
                each_level(levels, options, |n| {
                    lapin_raw::start(n, url, ReplyMode::ExclusiveQueue, false)
                })
                .await
            }
            SystemId::LapinQueueConfirms => {
                each_level(levels, options, |n| {
                    lapin_raw::start(n, url, ReplyMode::ExclusiveQueue, true)
                })
                .await
            }
            SystemId::LapinDirect => {
                each_level(levels, options, |n| {
                    lapin_raw::start(n, url, ReplyMode::DirectReplyTo, false)
                })
                .await
            }
            SystemId::OursAmqp => {
                each_level(levels, options, |n| {
                    ours_amqp::start(n, url, true, ReplyMode::ExclusiveQueue)
                })
                .await
            }
            SystemId::OursAmqpQuorumCluster => {
                let url = options.cluster_url.as_deref().ok_or_else(|| {
                    BenchError::setup(SystemId::OursAmqpQuorumCluster.label(), "no cluster")
                })?;
                each_level(levels, options, |n| ours_amqp::start_quorum(n, url)).await
            }
            SystemId::OursAmqpNoConfirms => {
                each_level(levels, options, |n| {
                    ours_amqp::start(n, url, false, ReplyMode::ExclusiveQueue)
                })
                .await
            }
            SystemId::OursAmqpDirectNoConfirms => {
                each_level(levels, options, |n| {
                    ours_amqp::start(n, url, false, ReplyMode::DirectReplyTo)
                })
                .await
            }
            SystemId::NatsRaw => {
                each_level(levels, options, |n| {
                    nats_raw::start(n, nats_url, nats_raw::Headers::None)
                })
                .await
            }
            SystemId::NatsRawHeaders => {
                each_level(levels, options, |n| {
                    nats_raw::start(n, nats_url, nats_raw::Headers::Ours)
                })
                .await
            }
            SystemId::OursNats => {
                each_level(levels, options, |n| ours_nats::start(n, nats_url)).await
            }
            SystemId::KafkaRaw => {
                each_level(levels, options, |n| {
                    kafka_raw::start(n, kafka, kafka_raw::Headers::Minimal)
                })
                .await
            }
            SystemId::KafkaRawHeaders => {
                each_level(levels, options, |n| {
                    kafka_raw::start(n, kafka, kafka_raw::Headers::Ours)
                })
                .await
            }
            SystemId::OursKafka => {
                each_level(levels, options, |n| ours_kafka::start(n, kafka)).await
            }
        }
    })
}

/// Starts `system` (in-process, or on the AMQP, NATS or Kafka broker) on a fresh
/// `flavor` runtime, makes `warmup` calls then exactly `calls` more with
/// `in_flight` in flight, and returns the count of the latter (for counting
/// instructions).
pub(crate) fn count_calls(
    system: SystemId,
    flavor: Flavor,
    in_flight: usize,
    (warmup, calls): (u64, u64),
    (amqp_url, nats_url, kafka): (&str, &str, &str),
) -> Result<u64, BenchError> {
    let runtime = flavor.runtime()?;
    runtime.block_on(async {
        match system {
            SystemId::KafkaRaw | SystemId::KafkaRawHeaders => {
                let headers = match system {
                    SystemId::KafkaRaw => kafka_raw::Headers::Minimal,
                    _ => kafka_raw::Headers::Ours,
                };
                let running = kafka_raw::start(in_flight, kafka, headers).await?;
                count_with(running, in_flight, warmup, calls).await
            }
            SystemId::OursKafka => {
                let running = ours_kafka::start(in_flight, kafka).await?;
                count_with(running, in_flight, warmup, calls).await
            }
            SystemId::LapinQueue | SystemId::LapinQueueConfirms => {
                let confirms = system == SystemId::LapinQueueConfirms;
                let running =
                    lapin_raw::start(in_flight, amqp_url, ReplyMode::ExclusiveQueue, confirms)
                        .await?;
                count_with(running, in_flight, warmup, calls).await
            }
            SystemId::OursAmqp | SystemId::OursAmqpNoConfirms => {
                let confirms = system == SystemId::OursAmqp;
                let running =
                    ours_amqp::start(in_flight, amqp_url, confirms, ReplyMode::ExclusiveQueue)
                        .await?;
                count_with(running, in_flight, warmup, calls).await
            }
            SystemId::OursNats => {
                let running = ours_nats::start(in_flight, nats_url).await?;
                count_with(running, in_flight, warmup, calls).await
            }
            SystemId::NatsRaw => {
                let running = nats_raw::start(in_flight, nats_url, nats_raw::Headers::None).await?;
                count_with(running, in_flight, warmup, calls).await
            }
            SystemId::NatsRawHeaders => {
                let running = nats_raw::start(in_flight, nats_url, nats_raw::Headers::Ours).await?;
                count_with(running, in_flight, warmup, calls).await
            }
            SystemId::Mpsc => {
                count_with(mpsc::start(in_flight).await?, in_flight, warmup, calls).await
            }
            SystemId::TypedMin => {
                count_with(typed_min::start(in_flight).await?, in_flight, warmup, calls).await
            }
            SystemId::TarpcMem => {
                count_with(tarpc_mem::start(in_flight).await?, in_flight, warmup, calls).await
            }
            SystemId::TarpcTcp => {
                count_with(tarpc_tcp::start(in_flight).await?, in_flight, warmup, calls).await
            }
            SystemId::ZmqRaw => {
                count_with(zmq_raw::start(in_flight).await?, in_flight, warmup, calls).await
            }
            SystemId::OursZmq => {
                count_with(ours_zmq::start(in_flight).await?, in_flight, warmup, calls).await
            }
            SystemId::OursMemNoMetrics => {
                let running = ours_mem::start_without_metrics(in_flight).await?;
                count_with(running, in_flight, warmup, calls).await
            }
            _ => count_with(ours_mem::start(in_flight).await?, in_flight, warmup, calls).await,
        }
    })
}

async fn count_with<C: Caller>(
    running: Running<C>,
    in_flight: usize,
    warmup: u64,
    calls: u64,
) -> Result<u64, BenchError> {
    load::drive(running.caller(), in_flight, load::Budget::Calls(warmup)).await?;
    let measured = load::drive(running.caller(), in_flight, load::Budget::Calls(calls)).await;
    running.stop().await;
    Ok(measured?.calls)
}

async fn each_level<C, F, Fut>(
    levels: &[usize],
    options: &Options,
    start: F,
) -> Result<Vec<(usize, Measured)>, BenchError>
where
    C: Caller,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<Running<C>, BenchError>>,
{
    let mut measured = Vec::with_capacity(levels.len());
    for &in_flight in levels {
        let running = start(in_flight).await?;
        let result =
            load::measure(running.caller(), in_flight, options.warmup, options.measure).await;
        running.stop().await;
        measured.push((in_flight, result?));
    }
    Ok(measured)
}

#[cfg(test)]
mod tests {
    use super::SystemId;

    #[test]
    fn command_line_names_are_the_json_names() {
        for system in SystemId::ALL {
            let json = serde_json::to_value(system).unwrap();
            assert_eq!(json, system.name(), "{system:?}");
        }
    }
}
