//! A fixed number of calls, for counting instructions.
//!
//! `rpc-bench --calls N` starts ours over the memory transport (or, with
//! `--system ours-zmq`, over ZeroMQ on a loopback port), warms it up with
//! [`WARMUP_CALLS`] calls, makes exactly `N` more at the first
//! `--in-flight` level (default 1) on the `--flavor` runtime (default
//! current_thread), stops, and prints the count. Run under
//! `valgrind --tool=callgrind` with `N` and with `2N`, the difference of the
//! two totals divided by `N` is the instructions of one call, setup, warm-up
//! and tear-down cancelled: `bench/instructions.sh` does that.

use crate::args::Options;
use crate::error::BenchError;
use crate::load::{Budget, Caller, drive};
use crate::systems::{Flavor, Running, SystemId, start_ours_mem, start_ours_zmq};

/// Calls before the counted ones: lazy setup (meters, inboxes, the clock's
/// anchor) done, allocator pools warm.
pub(crate) const WARMUP_CALLS: u64 = 1_000;

/// Makes `calls` calls of ours-mem (or ours-zmq) after the warm-up;
/// returns the count made.
pub(crate) fn run(options: &Options, calls: u64) -> Result<u64, BenchError> {
    let system = match options.systems.as_slice() {
        [] => SystemId::OursMem,
        [one] if matches!(one, SystemId::OursMem | SystemId::OursZmq) => *one,
        _ => {
            return Err(BenchError::Usage(
                "--calls runs one system: ours-mem (the default) or ours-zmq".to_owned(),
            ));
        }
    };
    let in_flight = options.levels.first().copied().unwrap_or(1);
    let runtime = options.flavor.unwrap_or(Flavor::CurrentThread).runtime()?;
    runtime.block_on(async {
        if system == SystemId::OursZmq {
            let running = start_ours_zmq(in_flight).await?;
            count_calls(running, in_flight, calls).await
        } else {
            let running = start_ours_mem(in_flight).await?;
            count_calls(running, in_flight, calls).await
        }
    })
}

/// The warm-up, then `calls` counted calls, then the stop.
async fn count_calls<C: Caller>(
    running: Running<C>,
    in_flight: usize,
    calls: u64,
) -> Result<u64, BenchError> {
    drive(running.caller(), in_flight, Budget::Calls(WARMUP_CALLS)).await?;
    let measured = drive(running.caller(), in_flight, Budget::Calls(calls)).await;
    running.stop().await;
    Ok(measured?.calls)
}
