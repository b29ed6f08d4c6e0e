//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::BenchError;
use crate::systems::{Flavor, SystemId};

/// How to call the program.
pub(crate) const USAGE: &str = "\
usage: rpc-bench [--quick] [--json FILE] [--svg FILE] [--only mem|amqp|nats|kafka] [--runs N] [--secs S]
                 [--system NAME]... [--flavor current|multi] [--in-flight N]... [--no-memory]
                 [--no-subscriber] [--calls N]

  --quick        a few seconds in all: one short run per configuration, a reduced
                 memory check; skips AMQP with a notice when no broker answers
  --json FILE    write every figure (each run, medians, ratios) as JSON
  --svg FILE     draw calls/s by calls in flight and latency percentiles as SVG
  --only GROUP   mem: in-process systems only; amqp: RabbitMQ systems only;
                 nats: NATS systems only; kafka: Kafka systems only
  --runs N       interleaved runs per configuration (default 5; quick: 1)
  --secs S       measured seconds per configuration and run (default 2; quick: 0.15)
  --system NAME  run only this system (repeatable; for profiling): mpsc,
                 typed-min, tarpc-mem, ours-mem, ours-mem-no-metrics, tarpc-tcp,
                 lapin-queue, lapin-queue-confirms, lapin-direct, ours-amqp, ours-amqp-no-confirms,
                 ours-amqp-direct-no-confirms, ours-amqp-quorum-cluster, nats-raw,
                 nats-raw-headers, ours-nats, zmq-raw, ours-zmq, kafka-raw, kafka-raw-headers,
                 ours-kafka
  --flavor F     in-process systems on this runtime only: current or multi
  --in-flight N  measure at this many calls in flight only (repeatable)
  --no-memory    skip the resident-memory check
  --no-subscriber  leave tracing without a subscriber (its `log` fallback then
                 runs on every span enter, exit and record, in every system)
  --calls N      no table: one in-process, NATS, Kafka or reply-queue AMQP
                 system (ours-mem unless --system names another: lapin-queue,
                 lapin-queue-confirms, ours-amqp, ours-amqp-no-confirms for
                 AMQP), 1,000 warm-up calls then exactly N
                 calls (at the first --in-flight level, default 1; on --flavor,
                 default current), for counting instructions under callgrind
                 (bench/instructions.sh)

The broker is AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f), the NATS
server NATS_URL (default nats://127.0.0.1:4222). With RABBIT_CLUSTER_URLS set
(`.ci/rabbit-cluster run -- ...` sets it), ours also runs with a quorum queue on
the first node of that cluster. The Kafka broker is KAFKA_BOOTSTRAP (default
127.0.0.1:19092); RPC_BENCH_KAFKA_SET=key=value,... gives every Kafka client,
ours and the raw loops alike, those librdkafka settings (e.g. linger.ms=0.5).";

/// Which systems to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    /// In-process: our memory transport, mpsc, tarpc (channel and TCP loopback).
    Mem,
    /// Through the broker: our AMQP transport and raw lapin.
    Amqp,
    /// Through a NATS server: our NATS transport and raw async-nats.
    Nats,
    /// Through a Kafka broker: our Kafka transport and raw rdkafka.
    Kafka,
}

/// What the command line asked for.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Short runs, for CI.
    pub(crate) quick: bool,
    /// Where to write the JSON figures.
    pub(crate) json: Option<PathBuf>,
    /// Where to write the SVG plot.
    pub(crate) svg: Option<PathBuf>,
    /// Run one group only.
    pub(crate) only: Option<Group>,
    /// Run these systems only (all when empty).
    pub(crate) systems: Vec<SystemId>,
    /// Run in-process systems on this flavor only.
    pub(crate) flavor: Option<Flavor>,
    /// Levels of calls in flight to measure (the defaults when empty).
    pub(crate) levels: Vec<usize>,
    /// Run the resident-memory check.
    pub(crate) memory: bool,
    /// Install a no-op tracing subscriber.
    pub(crate) subscriber: bool,
    /// Make this many calls of ours-mem and stop (`--calls`).
    pub(crate) calls: Option<u64>,
    /// Interleaved runs per configuration.
    pub(crate) runs: usize,
    /// Measured time per configuration and run.
    pub(crate) measure: Duration,
    /// Unmeasured time before it, to reach a steady state.
    pub(crate) warmup: Duration,
    /// The broker's URL.
    pub(crate) amqp_url: String,
    /// The first node of the test cluster (`RABBIT_CLUSTER_URLS`), when set:
    /// the quorum-queue system runs there.
    pub(crate) cluster_url: Option<String>,
    /// The NATS server's URL.
    pub(crate) nats_url: String,
    /// The Kafka broker (`KAFKA_BOOTSTRAP`, default 127.0.0.1:19092).
    pub(crate) kafka_bootstrap: String,
}

impl Options {
    /// Whether `group` is to be run.
    pub(crate) fn runs_group(&self, group: Group) -> bool {
        self.only.is_none_or(|only| only == group)
            && (self.systems.is_empty() || self.systems.iter().any(|s| s.group() == group))
    }

    /// Whether `system` is to be run.
    pub(crate) fn runs_system(&self, system: SystemId) -> bool {
        self.runs_group(system.group())
            && (self.systems.is_empty() || self.systems.contains(&system))
    }
}

/// Parses the arguments (without the program name).
pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, BenchError> {
    let mut quick = false;
    let mut json = None;
    let mut svg = None;
    let mut only = None;
    let mut runs = None;
    let mut secs = None;
    let mut systems = Vec::new();
    let mut flavor = None;
    let mut memory = true;
    let mut subscriber = true;
    let mut levels = Vec::new();
    let mut calls = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .ok_or_else(|| BenchError::Usage(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json = Some(PathBuf::from(value("--json")?)),
            "--svg" => svg = Some(PathBuf::from(value("--svg")?)),
            "--only" => {
                only = Some(match value("--only")?.as_str() {
                    "mem" => Group::Mem,
                    "amqp" => Group::Amqp,
                    "nats" => Group::Nats,
                    "kafka" => Group::Kafka,
                    other => return Err(BenchError::Usage(format!("unknown group `{other}`"))),
                })
            }
            "--runs" => {
                let text = value("--runs")?;
                let n: usize = text
                    .parse()
                    .map_err(|_| BenchError::Usage(format!("--runs: `{text}` is not a count")))?;
                runs = Some(n.max(1));
            }
            "--secs" => {
                let text = value("--secs")?;
                let s: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        BenchError::Usage(format!("--secs: `{text}` is not a duration"))
                    })?;
                secs = Some(Duration::from_secs_f64(s));
            }
            "--system" => {
                let name = value("--system")?;
                let system = SystemId::ALL
                    .into_iter()
                    .find(|s| s.name() == name)
                    .ok_or_else(|| BenchError::Usage(format!("unknown system `{name}`")))?;
                systems.push(system);
            }
            "--flavor" => {
                flavor = Some(match value("--flavor")?.as_str() {
                    "current" => Flavor::CurrentThread,
                    "multi" => Flavor::MultiThread,
                    other => return Err(BenchError::Usage(format!("unknown flavor `{other}`"))),
                })
            }
            "--in-flight" => {
                let text = value("--in-flight")?;
                let n: usize = text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    BenchError::Usage(format!("--in-flight: `{text}` is not a count"))
                })?;
                levels.push(n);
            }
            "--calls" => {
                let text = value("--calls")?;
                let n: u64 = text.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    BenchError::Usage(format!("--calls: `{text}` is not a count"))
                })?;
                calls = Some(n);
            }
            "--no-memory" => memory = false,
            "--no-subscriber" => subscriber = false,
            "-h" | "--help" => return Err(BenchError::Usage(String::new())),
            other => return Err(BenchError::Usage(format!("unknown argument `{other}`"))),
        }
    }
    let measure = secs.unwrap_or(if quick {
        Duration::from_millis(150)
    } else {
        Duration::from_secs(2)
    });
    Ok(Options {
        quick,
        json,
        svg,
        only,
        systems,
        flavor,
        memory,
        subscriber,
        levels,
        calls,
        runs: runs.unwrap_or(if quick { 1 } else { 5 }),
        measure,
        // A fifth of the measured time, at least enough for lazy setup
        // (inboxes, channels, JIT-free but cache-cold paths) to be done.
        warmup: (measure / 5).max(Duration::from_millis(30)),
        amqp_url: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        cluster_url: std::env::var("RABBIT_CLUSTER_URLS").ok().and_then(|urls| {
            let first = urls.split(',').next()?.trim();
            (!first.is_empty()).then(|| first.to_owned())
        }),
        nats_url: std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned()),
        kafka_bootstrap: std::env::var("KAFKA_BOOTSTRAP")
            .unwrap_or_else(|_| "127.0.0.1:19092".to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Options, BenchError> {
        parse(line.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn quick_mode_is_one_short_run() {
        let options = parse_str("--quick").expect("valid");
        assert!(options.quick);
        assert_eq!(options.runs, 1);
        assert!(options.measure < Duration::from_secs(1));
    }

    #[test]
    fn full_mode_defaults_to_five_runs() {
        let options = parse_str("--json out.json --only amqp").expect("valid");
        assert_eq!(options.runs, 5);
        assert_eq!(options.only, Some(Group::Amqp));
        assert!(!options.runs_group(Group::Mem));
        assert_eq!(
            options.json.as_deref(),
            Some(std::path::Path::new("out.json"))
        );
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse_str("--only disk").is_err());
        assert!(parse_str("--runs many").is_err());
        assert!(parse_str("--secs -1").is_err());
        assert!(parse_str("--json").is_err());
        assert!(parse_str("--fast").is_err());
        assert!(parse_str("--system grpc").is_err());
        assert!(parse_str("--flavor both").is_err());
        assert!(parse_str("--calls 0").is_err());
    }

    #[test]
    fn systems_narrow_the_run() {
        let options = parse_str("--system ours-mem --system tarpc-mem").expect("valid");
        assert!(options.runs_system(SystemId::OursMem));
        assert!(!options.runs_system(SystemId::Mpsc));
        assert!(!options.runs_group(Group::Amqp));
    }

    #[test]
    fn a_call_count_is_read() {
        let options = parse_str("--calls 20000 --in-flight 1").expect("valid");
        assert_eq!(options.calls, Some(20_000));
        assert_eq!(parse_str("").expect("valid").calls, None);
    }
}
