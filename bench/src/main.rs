//! `rpc-bench`: calls/s and latency percentiles of our transports, side by
//! side with baselines measured in the same run.
//!
//! ```sh
//! cargo run --release -p rpc-bench -- [--quick] [--json out.json] [--svg out.svg] [--only mem|amqp]
//! ```
//!
//! # Layout
//!
//! - [`args`]: the command line.
//! - [`plan`]: which configurations run, interleaved over rounds.
//! - [`systems`]: each system under test behind one `Caller` face.
//! - [`load`]: the closed-loop driver shared by every system.
//! - [`stats`]: samples, medians and ranges, within-run ratios.
//! - [`targets`]: the ratios we hold ourselves to.
//! - [`memory`]: resident memory over many calls.
//! - [`count`]: a fixed number of calls, for counting instructions.
//! - [`report`]: the text table, the JSON file and the SVG plot.
//!
//! Method and results: `docs/benchmarks.md`.

mod args;
mod count;
mod error;
mod load;
mod memory;
mod plan;
mod report;
mod stats;
mod systems;
mod targets;

use std::process::ExitCode;
use std::time::Duration;

use args::{Group, Options};
use error::BenchError;
use plan::Plan;
use report::Report;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(BenchError::Usage(message)) if message.is_empty() => {
            println!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("rpc-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), BenchError> {
    let options = args::parse(std::env::args().skip(1))?;
    if options.subscriber {
        // Applications that use tracing install a subscriber. Without one,
        // tracing falls back to `log` (its `log` feature is on here: tarpc
        // turns it on) and every span enter, exit and record pays for a
        // log-level check, in every system alike. A no-op subscriber gives
        // each the cost it has in a traced application: disabled spans.
        let _already_set =
            tracing::subscriber::set_global_default(tracing::subscriber::NoSubscriber::default());
    }
    if let Some(calls) = options.calls {
        let made = count::run(&options, calls)?;
        println!("calls {made} (after {} warm-up calls)", count::WARMUP_CALLS);
        return Ok(());
    }
    let plan = Plan::new(&options)?;
    for notice in &plan.notices {
        eprintln!("notice: {notice}");
    }
    watchdog(plan.time_limit(&options));
    // First, while the heap is fresh, so earlier runs' freed memory cannot
    // hide growth.
    let memory = (options.memory && options.runs_group(Group::Mem))
        .then(|| memory_check(&options))
        .transpose()?;
    let samples = plan.run(&options)?;
    systems::wait_for_kafka_clients(Duration::from_secs(20));
    let report = Report::new(&options, samples, memory, plan.notices);
    report::print(&report);
    if let Some(path) = &options.json {
        report.write_json(path)?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &options.svg {
        report.write_svg(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn memory_check(options: &Options) -> Result<memory::MemoryCheck, BenchError> {
    // Targets: within 10% between 100,000 and 1,000,000 calls; quick mode
    // checks the same ratio over ten times fewer calls.
    let (first, total) = if options.quick {
        (10_000, 100_000)
    } else {
        (100_000, 1_000_000)
    };
    eprintln!("memory check: {first} then {total} calls");
    memory::check(first, total)
}

/// Ends the process if it is still running after `limit`: a system that
/// stops answering must fail CI, not hold it until its own time-out.
fn watchdog(limit: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!(
            "rpc-bench: still running after {} s; a system under test hangs",
            limit.as_secs()
        );
        std::process::exit(3);
    });
}
