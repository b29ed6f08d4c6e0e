//! A fixed number of calls, for counting instructions.
//!
//! `rpc-bench --calls N` starts one system (ours-mem unless `--system`
//! names ours-nats, nats-raw or nats-raw-headers), warms it up with
//! [`WARMUP_CALLS`] calls, makes exactly `N` more at the first
//! `--in-flight` level (default 1) on the `--flavor` runtime (default
//! current_thread), stops, and prints the count. Run under
//! `valgrind --tool=callgrind` with `N` and with `2N`, the difference of the
//! two totals divided by `N` is the instructions of one call, setup, warm-up
//! and tear-down cancelled: `bench/instructions.sh` does that. The NATS
//! systems count this process only (client and server sides), not the NATS
//! server.

use crate::args::Options;
use crate::error::BenchError;
use crate::load::{Budget, Caller, drive};
use crate::systems::{
    Flavor, NatsRawHeaders, Running, SystemId, start_nats_raw, start_ours_mem, start_ours_nats,
};

/// Calls before the counted ones: lazy setup (meters, inboxes, the clock's
/// anchor) done, allocator pools warm.
pub(crate) const WARMUP_CALLS: u64 = 1_000;

/// Makes `calls` calls of the chosen system after the warm-up; returns the
/// count made.
pub(crate) fn run(options: &Options, calls: u64) -> Result<u64, BenchError> {
    let system = match options.systems.as_slice() {
        [] => SystemId::OursMem,
        [one] => *one,
        _ => return Err(BenchError::Usage("--calls runs one --system".into())),
    };
    let in_flight = options.levels.first().copied().unwrap_or(1);
    let runtime = options.flavor.unwrap_or(Flavor::CurrentThread).runtime()?;
    let url = options.nats_url.as_str();
    runtime.block_on(async {
        match system {
            SystemId::OursMem => count(start_ours_mem(in_flight).await?, in_flight, calls).await,
            SystemId::OursNats => {
                count(start_ours_nats(in_flight, url).await?, in_flight, calls).await
            }
            SystemId::NatsRaw => {
                let running = start_nats_raw(in_flight, url, NatsRawHeaders::None).await?;
                count(running, in_flight, calls).await
            }
            SystemId::NatsRawHeaders => {
                let running = start_nats_raw(in_flight, url, NatsRawHeaders::Ours).await?;
                count(running, in_flight, calls).await
            }
            other => Err(BenchError::Usage(format!(
                "--calls runs ours-mem, ours-nats, nats-raw or nats-raw-headers, not `{}`",
                other.name()
            ))),
        }
    })
}

/// Warms `running` up, makes `calls` calls, stops it.
async fn count<C: Caller>(
    running: Running<C>,
    in_flight: usize,
    calls: u64,
) -> Result<u64, BenchError> {
    drive(running.caller(), in_flight, Budget::Calls(WARMUP_CALLS)).await?;
    let measured = drive(running.caller(), in_flight, Budget::Calls(calls)).await;
    running.stop().await;
    Ok(measured?.calls)
}
