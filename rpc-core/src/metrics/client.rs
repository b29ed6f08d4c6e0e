//! A client's per-method meters, registered on a method's first call.

use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use ::metrics::{Counter, Gauge};

use super::{FinishedMeters, Outcome, names};
use crate::transport::support::lock_unpoisoned;

/// Methods whose meters one [`Chunk`] holds.
const CHUNK: usize = 8;

/// The meters of every method a client (and its clones) called.
///
/// Read without locks on every call: slots filled in order and never
/// emptied, found by the address of the `&'static str` names generated
/// code passes, and lent to the call for as long as it borrows the client
/// (no reference count to touch).
#[derive(Default)]
pub(crate) struct ClientMeters {
    first: Chunk,
    adding: Mutex<()>,
}

/// A run of slots, and the next run once these are full.
#[derive(Default)]
struct Chunk {
    slots: [OnceLock<Box<MethodMeter>>; CHUNK],
    next: OnceLock<Box<Chunk>>,
}

pub(crate) struct MethodMeter {
    service: &'static str,
    method: &'static str,
    started: Counter,
    in_flight: Gauge,
    finished: FinishedMeters,
}

impl ClientMeters {
    /// Counts a call to `service.method`, started at `started`, as started.
    pub(crate) fn start(
        &self,
        service: &'static str,
        method: &'static str,
        started: tokio::time::Instant,
    ) -> CallMeter<'_> {
        let meter = match self.find(service, method) {
            Some(meter) => meter,
            None => self.add(service, method),
        };
        meter.started.increment(1);
        meter.in_flight.increment(1.0);
        CallMeter {
            meter,
            started: started.into_std(),
        }
    }

    /// The meters of `service.method`, if registered.
    fn find(&self, service: &'static str, method: &'static str) -> Option<&MethodMeter> {
        let mut chunk = &self.first;
        loop {
            for slot in &chunk.slots {
                // Filled in order: an empty slot ends the list.
                let meter = slot.get()?;
                if same(meter.method, method) && same(meter.service, service) {
                    return Some(meter);
                }
            }
            chunk = chunk.next.get()?;
        }
    }

    /// Registers the meters of `service.method` (once, whoever races).
    fn add(&self, service: &'static str, method: &'static str) -> &MethodMeter {
        let _adding = lock_unpoisoned(&self.adding);
        if let Some(meter) = self.find(service, method) {
            return meter;
        }
        let mut chunk = &self.first;
        loop {
            if let Some(slot) = chunk.slots.iter().find(|slot| slot.get().is_none()) {
                return slot.get_or_init(|| Box::new(MethodMeter::new(service, method)));
            }
            chunk = chunk.next.get_or_init(Box::default);
        }
    }
}

/// Equal names: the same address (the usual case), else the same text.
fn same(a: &'static str, b: &'static str) -> bool {
    std::ptr::eq(a, b) || a == b
}

impl MethodMeter {
    fn new(service: &'static str, method: &'static str) -> Self {
        let labels = [("service", service), ("method", method)];
        MethodMeter {
            service,
            method,
            started: ::metrics::counter!(names::CLIENT_CALLS_STARTED, &labels),
            in_flight: ::metrics::gauge!(names::CLIENT_CALLS_IN_FLIGHT, &labels),
            finished: FinishedMeters::new(
                names::CLIENT_CALLS_FINISHED,
                names::CLIENT_CALL_DURATION,
            ),
        }
    }
}

/// One call in flight. Finished by [`finish`](Self::finish); dropped
/// before that, it counts as cancelled.
pub(crate) struct CallMeter<'a> {
    meter: &'a MethodMeter,
    started: Instant,
}

impl CallMeter<'_> {
    /// Counts the call's outcome. Takes the meter, so a call is counted
    /// once, with no flag to keep.
    pub(crate) fn finish(self, outcome: Outcome) {
        self.count(outcome);
        // Counted: what is left of `drop` is done here.
        std::mem::forget(self);
    }

    /// Counts the call as finished with `outcome`, and no longer in flight.
    fn count(&self, outcome: Outcome) {
        let meter = self.meter;
        meter
            .finished
            .record(meter.service, meter.method, outcome, self.started.elapsed());
        meter.in_flight.decrement(1.0);
    }
}

impl Drop for CallMeter<'_> {
    fn drop(&mut self) {
        self.count(Outcome::Cancelled);
    }
}
