//! Does a client's memory stay flat over many calls?
//!
//! Resident memory (`/proc/self/statm`) after a first batch of calls is
//! compared with after ten times as many. Pending entries, spans or
//! buffers that leak per call would show up as growth; allocator noise
//! stays well under the 10% allowed. Server and client share the process
//! (memory transport), so this bounds both.

use serde::Serialize;

use crate::error::BenchError;
use crate::load::{Budget, drive};
use crate::systems::{Flavor, start_ours_mem};

/// Calls in flight during the check.
const IN_FLIGHT: usize = 16;

/// Growth allowed between the two readings.
pub(crate) const ALLOWED_GROWTH: f64 = 0.10;

/// What the check found.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct MemoryCheck {
    /// Calls made before the first reading.
    pub(crate) first_calls: u64,
    /// Calls made in all before the second reading.
    pub(crate) total_calls: u64,
    /// Resident memory at the first reading, KiB.
    pub(crate) rss_first_kib: u64,
    /// Resident memory at the second reading, KiB.
    pub(crate) rss_total_kib: u64,
    /// `rss_total / rss_first - 1`.
    pub(crate) growth: f64,
    /// Whether growth stayed within [`ALLOWED_GROWTH`].
    pub(crate) within_limit: bool,
}

/// Runs our memory-transport client for `first_calls`, reads RSS, runs on
/// to `total_calls`, reads again.
pub(crate) fn check(first_calls: u64, total_calls: u64) -> Result<MemoryCheck, BenchError> {
    let runtime = Flavor::CurrentThread.runtime()?;
    runtime.block_on(async {
        let running = start_ours_mem(IN_FLIGHT).await?;
        drive(running.caller(), IN_FLIGHT, Budget::Calls(first_calls)).await?;
        let rss_first_kib = resident_kib();
        drive(
            running.caller(),
            IN_FLIGHT,
            Budget::Calls(total_calls.saturating_sub(first_calls)),
        )
        .await?;
        let rss_total_kib = resident_kib();
        running.stop().await;
        let growth = rss_total_kib as f64 / rss_first_kib.max(1) as f64 - 1.0;
        Ok(MemoryCheck {
            first_calls,
            total_calls,
            rss_first_kib,
            rss_total_kib,
            growth,
            within_limit: growth <= ALLOWED_GROWTH,
        })
    })
}

/// This process's resident memory in KiB, 0 where `/proc` is missing.
fn resident_kib() -> u64 {
    // statm: size resident shared text lib data dt, in pages. 4 KiB pages:
    // true on x86_64 Linux, which is where these figures are taken.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_on_linux() {
        let kib = resident_kib();
        assert!(
            kib > 100,
            "a running test binary uses more than 100 KiB, got {kib}"
        );
    }
}
