//! A fixed number of calls, for counting instructions.
//!
//! `rpc-bench --calls N` starts ours over the memory transport, warms it up
//! with [`WARMUP_CALLS`] calls, makes exactly `N` more at the first
//! `--in-flight` level (default 1) on the `--flavor` runtime (default
//! current_thread), stops, and prints the count. Run under
//! `valgrind --tool=callgrind` with `N` and with `2N`, the difference of the
//! two totals divided by `N` is the instructions of one call, setup, warm-up
//! and tear-down cancelled: `bench/instructions.sh` does that.

use crate::args::Options;
use crate::error::BenchError;
use crate::load::{Budget, drive};
use crate::systems::{Flavor, SystemId, start_ours_mem};

/// Calls before the counted ones: lazy setup (meters, inboxes, the clock's
/// anchor) done, allocator pools warm.
pub(crate) const WARMUP_CALLS: u64 = 1_000;

/// Makes `calls` calls of ours-mem after the warm-up; returns the count made.
pub(crate) fn run(options: &Options, calls: u64) -> Result<u64, BenchError> {
    if let Some(other) = options.systems.iter().find(|s| **s != SystemId::OursMem) {
        return Err(BenchError::Usage(format!(
            "--calls runs ours-mem only, not `{}`",
            other.name()
        )));
    }
    let in_flight = options.levels.first().copied().unwrap_or(1);
    let runtime = options.flavor.unwrap_or(Flavor::CurrentThread).runtime()?;
    runtime.block_on(async {
        let running = start_ours_mem(in_flight).await?;
        drive(running.caller(), in_flight, Budget::Calls(WARMUP_CALLS)).await?;
        let measured = drive(running.caller(), in_flight, Budget::Calls(calls)).await;
        running.stop().await;
        Ok(measured?.calls)
    })
}
