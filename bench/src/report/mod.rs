//! Everything a run produced, and its three renderings: a text table on
//! stdout, a JSON file, an SVG plot.

mod svg;
mod table;

use std::path::Path;

use serde::Serialize;

use crate::args::Options;
use crate::error::BenchError;
use crate::memory::MemoryCheck;
use crate::stats::{self, Ratio, Sample, Summary};
use crate::systems::SystemId;
use crate::targets::{self, Target};

pub(crate) use table::print;

/// Each of ours against each of its baselines.
const PAIRS: &[(SystemId, SystemId)] = &[
    (SystemId::OursMem, SystemId::TarpcMem),
    (SystemId::OursMem, SystemId::Mpsc),
    (SystemId::OursMem, SystemId::TypedMin),
    (SystemId::OursMem, SystemId::OursMemNoMetrics),
    (SystemId::OursAmqp, SystemId::LapinQueueConfirms),
    (SystemId::OursAmqp, SystemId::LapinQueue),
    (SystemId::OursAmqp, SystemId::LapinDirect),
    (SystemId::OursAmqpNoConfirms, SystemId::LapinQueue),
    (SystemId::OursAmqpDirectNoConfirms, SystemId::LapinDirect),
    (SystemId::OursAmqpQuorumCluster, SystemId::OursAmqp),
    (SystemId::OursNats, SystemId::NatsRaw),
    (SystemId::OursNats, SystemId::NatsRawHeaders),
    (SystemId::OursZmq, SystemId::ZmqRaw),
    (SystemId::OursKafka, SystemId::KafkaRaw),
    (SystemId::OursKafka, SystemId::KafkaRawHeaders),
];

/// The machine the figures come from.
#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    /// `/proc/cpuinfo`'s model name.
    pub(crate) cpu: String,
    /// Cores available to this process.
    pub(crate) cores: usize,
    /// The kernel release.
    pub(crate) kernel: String,
}

impl Machine {
    fn here() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, name)| name.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel,
        }
    }
}

/// How the figures were taken.
#[derive(Debug, Serialize)]
pub(crate) struct Method {
    /// Quick (CI) mode.
    pub(crate) quick: bool,
    /// Interleaved runs per configuration.
    pub(crate) runs: usize,
    /// Measured seconds per configuration and run.
    pub(crate) measure_secs: f64,
    /// Warm-up seconds before each measurement.
    pub(crate) warmup_secs: f64,
}

/// Everything one invocation measured.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// Where.
    pub(crate) machine: Machine,
    /// How.
    pub(crate) method: Method,
    /// Parts skipped, and why.
    pub(crate) notices: Vec<String>,
    /// Medians and ranges per configuration.
    pub(crate) summaries: Vec<Summary>,
    /// Ours over baselines, taken within runs.
    pub(crate) ratios: Vec<Ratio>,
    /// The targets, met or missed.
    pub(crate) targets: Vec<Target>,
    /// Client memory over many calls.
    pub(crate) memory: Option<MemoryCheck>,
    /// Every single measurement.
    pub(crate) samples: Vec<Sample>,
}

impl Report {
    /// Derives summaries, ratios and targets from the samples.
    pub(crate) fn new(
        options: &Options,
        samples: Vec<Sample>,
        memory: Option<MemoryCheck>,
        notices: Vec<String>,
    ) -> Report {
        let ratios: Vec<Ratio> = PAIRS
            .iter()
            .flat_map(|&(candidate, baseline)| stats::ratios(&samples, candidate, baseline))
            .collect();
        Report {
            machine: Machine::here(),
            method: Method {
                quick: options.quick,
                runs: options.runs,
                measure_secs: options.measure.as_secs_f64(),
                warmup_secs: options.warmup.as_secs_f64(),
            },
            notices,
            summaries: stats::summarize(&samples),
            targets: targets::evaluate(&ratios),
            ratios,
            memory,
            samples,
        }
    }

    /// Writes the report as pretty JSON.
    pub(crate) fn write_json(&self, path: &Path) -> Result<(), BenchError> {
        let text = serde_json::to_string_pretty(self).expect("plain data always serializes");
        write(path, text)
    }

    /// Writes the plot.
    pub(crate) fn write_svg(&self, path: &Path) -> Result<(), BenchError> {
        write(path, svg::render(self))
    }
}

fn write(path: &Path, text: String) -> Result<(), BenchError> {
    std::fs::write(path, text).map_err(|source| BenchError::Output {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_has_its_ratio_taken() {
        for pair in targets::judged_pairs() {
            assert!(
                PAIRS.contains(&pair),
                "no ratio taken for the target {pair:?}"
            );
        }
    }
}
