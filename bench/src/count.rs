//! A fixed number of calls, for counting instructions.
//!
//! `rpc-bench --calls N` starts one system (ours over the memory transport
//! unless `--system` names another in-process, NATS, Kafka or AMQP one), warms it up
//! with [`WARMUP_CALLS`] calls, makes exactly `N` more at the first
//! `--in-flight` level (default 1) on the `--flavor` runtime (default
//! current_thread), stops, and prints the count. Run under
//! `valgrind --tool=callgrind` with `N` and with `2N`, the difference of the
//! two totals divided by `N` is the instructions of one call, setup, warm-up
//! and tear-down cancelled: `bench/instructions.sh` does that. The NATS,
//! Kafka and AMQP systems count this process only (client and server sides, lapin's
//! I/O threads and librdkafka's threads included), not the broker. The AMQP ones are the reply-queue
//! systems: `lapin-queue`, `lapin-queue-confirms`, `ours-amqp` and
//! `ours-amqp-no-confirms`.

use crate::args::{Group, Options};
use crate::error::BenchError;
use crate::systems::{self, Flavor, SystemId};

/// Calls before the counted ones: lazy setup (meters, inboxes, the clock's
/// anchor) done, allocator pools warm.
pub(crate) const WARMUP_CALLS: u64 = 1_000;

/// Makes `calls` calls of the chosen system after the warm-up; returns the
/// count made.
pub(crate) fn run(options: &Options, calls: u64) -> Result<u64, BenchError> {
    let system = match options.systems.as_slice() {
        [] => SystemId::OursMem,
        [one] if matches!(one.group(), Group::Mem | Group::Nats | Group::Kafka) => *one,
        [
            one @ (SystemId::LapinQueue
            | SystemId::LapinQueueConfirms
            | SystemId::OursAmqp
            | SystemId::OursAmqpNoConfirms),
        ] => *one,
        _ => {
            return Err(BenchError::Usage(
                "--calls runs one in-process, NATS, Kafka or reply-queue AMQP system (ours-mem \
                 unless --system names another)"
                    .to_owned(),
            ));
        }
    };
    let in_flight = options.levels.first().copied().unwrap_or(1);
    let flavor = options.flavor.unwrap_or(Flavor::CurrentThread);
    let brokers = (
        options.amqp_url.as_str(),
        options.nats_url.as_str(),
        options.kafka_bootstrap.as_str(),
    );
    let made = systems::count_calls(system, flavor, in_flight, (WARMUP_CALLS, calls), brokers);
    // librdkafka must be done destroying the raw loop's clients before the
    // process ends (it crashed when not).
    systems::wait_for_kafka_clients(std::time::Duration::from_secs(20));
    made
}
