//! Broadcasts: every `serve_broadcast` stream gets a private queue of its
//! own, and a broadcast is copied into each live one of its service (or of
//! every service).

use std::sync::{Arc, Mutex};

use rpc_core::{EVERY_SERVICE, Envelope, Name};

use crate::queue::ServiceQueue;
use rpc_core::transport::support::lock_unpoisoned;

/// The broadcast subscribers of one broker.
#[derive(Debug, Default)]
pub(crate) struct Broadcasts {
    subscribers: Mutex<Vec<(Name, Arc<ServiceQueue>)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Broadcasts {
    /// A private queue name for a new subscriber of `service`.
    pub(crate) fn queue_name(&self, service: &str) -> Name {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Name::from(format!("broadcast/{service}/{n}"))
    }

    /// Adds `queue` as a subscriber of `service`.
    pub(crate) fn subscribe(&self, service: Name, queue: Arc<ServiceQueue>) {
        self.lock().push((service, queue));
    }

    /// Copies `envelope` into every live subscriber it is addressed to, and
    /// forgets the subscribers whose stream was dropped.
    pub(crate) fn send(&self, envelope: &Envelope) {
        let to = envelope.header.service.as_str();
        let mut subscribers = self.lock();
        subscribers.retain(|(_, queue)| queue.consumers() > 0);
        for (service, queue) in subscribers.iter() {
            if to == EVERY_SERVICE || to == service.as_str() {
                queue.enqueue(envelope.clone());
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Name, Arc<ServiceQueue>)>> {
        lock_unpoisoned(&self.subscribers)
    }
}
