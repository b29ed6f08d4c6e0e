//! Which configurations run, and in what order.
//!
//! Runs are interleaved: every configuration runs once per round, and the
//! order reverses every other round (A B B A ...), so slow drift of the
//! machine (thermal, other tenants) hits baseline and candidate alike.
//! Ratios are taken within a round.

use std::time::Duration;

use crate::args::{Group, Options};
use crate::error::BenchError;
use crate::stats::Sample;
use crate::systems::{self, Flavor, SystemId};

/// Calls in flight for in-process systems.
pub(crate) const MEM_LEVELS: &[usize] = &[1, 16, 64, 256];
/// Calls in flight through the broker.
pub(crate) const AMQP_LEVELS: &[usize] = &[1, 16, 256];
/// Levels of calls in flight for the NATS systems (the targets).
pub(crate) const NATS_LEVELS: &[usize] = &[1, 16, 256];
/// Calls in flight through Kafka (the targets are at 16 and 256).
pub(crate) const KAFKA_LEVELS: &[usize] = &[1, 16, 256];

/// One system on one runtime, measured at several levels.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// The system.
    pub(crate) system: SystemId,
    /// The runtime.
    pub(crate) flavor: Flavor,
    /// The levels of calls in flight.
    pub(crate) levels: Vec<usize>,
}

/// The configurations to run, and what was left out and why.
#[derive(Debug)]
pub(crate) struct Plan {
    /// In the order of the first round.
    pub(crate) configs: Vec<Config>,
    /// Things the reader should know (skipped parts).
    pub(crate) notices: Vec<String>,
}

impl Plan {
    /// Plans from the options; probes the broker when AMQP is wanted.
    pub(crate) fn new(options: &Options) -> Result<Plan, BenchError> {
        let mut configs = Vec::new();
        let mut notices = Vec::new();
        if options.runs_group(Group::Mem) {
            // Both flavors: the memory transport with client and server on
            // one thread is the in-process best case; two workers is what a
            // server application runs. Each baseline runs on the same flavor.
            for flavor in [Flavor::CurrentThread, Flavor::MultiThread] {
                if options.flavor.is_some_and(|only| only != flavor) {
                    continue;
                }
                for system in [
                    SystemId::Mpsc,
                    SystemId::TypedMin,
                    SystemId::TarpcMem,
                    SystemId::OursMem,
                    SystemId::OursMemNoMetrics,
                    SystemId::TarpcTcp,
                    SystemId::ZmqRaw,
                    SystemId::OursZmq,
                ] {
                    if !options.runs_system(system) {
                        continue;
                    }
                    configs.push(Config {
                        system,
                        flavor,
                        levels: levels(options, MEM_LEVELS),
                    });
                }
            }
        }
        if options.runs_group(Group::Amqp) {
            match broker_probe(&options.amqp_url)? {
                Ok(()) => {
                    // Multi-thread only: lapin runs its own I/O thread anyway,
                    // and a broker-backed server is a multi-threaded program.
                    for system in [
                        SystemId::LapinQueue,
                        SystemId::LapinQueueConfirms,
                        SystemId::OursAmqp,
                        SystemId::OursAmqpNoConfirms,
                        SystemId::LapinDirect,
                        SystemId::OursAmqpDirectNoConfirms,
                    ] {
                        if !options.runs_system(system) {
                            continue;
                        }
                        configs.push(Config {
                            system,
                            flavor: Flavor::MultiThread,
                            levels: levels(options, AMQP_LEVELS),
                        });
                    }
                    let quorum = SystemId::OursAmqpQuorumCluster;
                    if options.cluster_url.is_some() && options.runs_system(quorum) {
                        configs.push(Config {
                            system: quorum,
                            flavor: Flavor::MultiThread,
                            levels: levels(options, AMQP_LEVELS),
                        });
                    }
                }
                Err(why) if options.quick => {
                    notices.push(format!(
                        "AMQP skipped: no broker at {} ({why})",
                        redact(&options.amqp_url)
                    ));
                }
                Err(why) => {
                    return Err(BenchError::setup(
                        "broker",
                        format!(
                            "{} is unreachable ({why}); use --only mem to skip AMQP",
                            redact(&options.amqp_url)
                        ),
                    ));
                }
            }
        }
        if options.runs_group(Group::Nats) {
            match nats_probe(&options.nats_url)? {
                Ok(()) => {
                    for system in [
                        SystemId::NatsRaw,
                        SystemId::NatsRawHeaders,
                        SystemId::OursNats,
                    ] {
                        if !options.runs_system(system) {
                            continue;
                        }
                        configs.push(Config {
                            system,
                            flavor: Flavor::MultiThread,
                            levels: levels(options, NATS_LEVELS),
                        });
                    }
                }
                Err(why) if options.quick => {
                    notices.push(format!(
                        "NATS skipped: no server at {} ({why})",
                        options.nats_url
                    ));
                }
                Err(why) => {
                    return Err(BenchError::setup(
                        "nats",
                        format!(
                            "{} is unreachable ({why}); use --only mem or amqp to skip NATS",
                            options.nats_url
                        ),
                    ));
                }
            }
        }
        if options.runs_group(Group::Kafka) {
            let runtime = Flavor::CurrentThread.runtime()?;
            match runtime.block_on(systems::kafka_reachable(&options.kafka_bootstrap)) {
                Ok(()) => {
                    for system in [
                        SystemId::KafkaRaw,
                        SystemId::KafkaRawHeaders,
                        SystemId::OursKafka,
                    ] {
                        if options.runs_system(system) {
                            configs.push(Config {
                                system,
                                flavor: Flavor::MultiThread,
                                levels: levels(options, KAFKA_LEVELS),
                            });
                        }
                    }
                }
                // Kafka is opt-in outside CI: without a broker it is skipped
                // with a notice (start one with `.ci/kafka-broker start`).
                Err(why) => notices.push(format!(
                    "Kafka skipped: no broker at {} ({why})",
                    options.kafka_bootstrap
                )),
            }
        }
        Ok(Plan { configs, notices })
    }

    /// A generous bound on how long [`run`](Plan::run) takes: measured time
    /// twice over plus setup, so only a hang exceeds it.
    pub(crate) fn time_limit(&self, options: &Options) -> Duration {
        let levels: usize = self.configs.iter().map(|c| c.levels.len()).sum();
        let per_level = options.warmup + options.measure;
        // Setup and teardown of one level, broker connections included.
        let setup = Duration::from_secs(3);
        (per_level * 2 + setup) * u32::try_from(levels * options.runs).unwrap_or(u32::MAX)
            + Duration::from_secs(120)
    }

    /// Runs every configuration `options.runs` times, interleaved.
    pub(crate) fn run(&self, options: &Options) -> Result<Vec<Sample>, BenchError> {
        let mut samples = Vec::new();
        for run in 0..options.runs {
            let order: Vec<&Config> = if run % 2 == 0 {
                self.configs.iter().collect()
            } else {
                self.configs.iter().rev().collect()
            };
            for config in order {
                eprintln!(
                    "run {}/{}: {} on {}",
                    run + 1,
                    options.runs,
                    config.system,
                    config.flavor.label()
                );
                let measured =
                    systems::measure_levels(config.system, config.flavor, &config.levels, options)?;
                for (in_flight, m) in &measured {
                    samples.push(Sample::new(
                        config.system,
                        config.flavor,
                        *in_flight,
                        run,
                        m,
                    ));
                }
            }
        }
        Ok(samples)
    }
}

/// The levels asked for on the command line, else `default`.
fn levels(options: &Options, default: &[usize]) -> Vec<usize> {
    if options.levels.is_empty() {
        default.to_vec()
    } else {
        options.levels.clone()
    }
}

/// `Ok(Err(why))` when no broker answers.
fn broker_probe(url: &str) -> Result<Result<(), String>, BenchError> {
    let runtime = Flavor::CurrentThread.runtime()?;
    Ok(runtime.block_on(systems::broker_reachable(url, Duration::from_secs(3))))
}

/// `Ok(Err(why))` when no NATS server answers.
fn nats_probe(url: &str) -> Result<Result<(), String>, BenchError> {
    let runtime = Flavor::CurrentThread.runtime()?;
    Ok(runtime.block_on(systems::nats_reachable(url, Duration::from_secs(3))))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_do_not_reach_messages() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
