//! The one wait between reconnect (and resubscribe) attempts: exponential,
//! capped, jittered.
//!
//! Jitter matters for a fleet: after a broker restart every client and
//! server notices the loss in the same instant, and without it they would
//! all knock again in the same instant, attempt after attempt.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use rpc_core::TransportError;

use crate::shared::Shared;

/// The waits of one run of attempts: the first is about `min`, each next
/// about twice the last, never more than `max`; each is drawn uniformly
/// from the upper half of its nominal value (`[d/2, d]`), so waits never
/// grow past the cap and never collapse to zero.
#[derive(Debug)]
pub(crate) struct Backoff {
    nominal: Duration,
    max: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            nominal: min,
            max: max.max(min),
        }
    }

    /// The wait before the next attempt.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let nominal = self.nominal;
        self.nominal = (nominal * 2).min(self.max);
        nominal / 2 + nominal.mul_f64(random_unit() / 2.0)
    }
}

/// Runs `attempt` until it succeeds, backing off between failures; `None`
/// once the transport closes (or an attempt reports `Closed`). `what` names
/// the attempts in the debug log.
pub(crate) async fn retry_until_closed<T, F, Fut>(
    shared: &Shared,
    what: &'static str,
    mut attempt: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TransportError>>,
{
    let mut backoff = Backoff::new(shared.config.reconnect_min, shared.config.reconnect_max);
    loop {
        if shared.is_closed() {
            return None;
        }
        match attempt().await {
            Ok(value) => return Some(value),
            Err(TransportError::Closed) => return None,
            Err(error) => {
                let wait = backoff.next_wait();
                tracing::debug!(%error, ?wait, "{what} failed; trying again");
                tokio::select! {
                    () = shared.closed() => return None,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// A number in `[0, 1)`, different on every call and in every process.
///
/// Jitter needs no cryptographic randomness, only values that differ between
/// processes and calls: std's `RandomState` is seeded randomly per process
/// and per instance, which is that, without a dependency.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    // The top 53 bits: as many as an f64 holds exactly.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_to_the_cap_within_their_jitter_band() {
        let (min, max) = (Duration::from_millis(50), Duration::from_secs(1));
        let mut backoff = Backoff::new(min, max);
        let mut nominal = min;
        for _ in 0..20 {
            let wait = backoff.next_wait();
            assert!(
                wait >= nominal / 2 && wait <= nominal,
                "{wait:?} for {nominal:?}"
            );
            nominal = (nominal * 2).min(max);
        }
    }

    #[test]
    fn waits_are_jittered() {
        let mut waits: Vec<Duration> = (0..32)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(1)).next_wait())
            .collect();
        waits.sort();
        waits.dedup();
        assert!(waits.len() > 16, "{waits:?}");
    }
}
