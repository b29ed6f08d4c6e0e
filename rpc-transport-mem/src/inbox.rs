//! The guard that keeps a reply inbox open.

use std::fmt;
use std::sync::Arc;

use rpc_core::Address;

use crate::broker::Broker;

/// An open reply inbox. Replies sent to its [`address`](MemInbox::address)
/// go straight to the sink it was opened with, on the sender's thread.
/// Dropping it closes the inbox; later replies to it are dropped and
/// counted in [`MemStats::undeliverable_replies`](crate::MemStats).
pub struct MemInbox {
    broker: Arc<Broker>,
    address: Address,
}

impl MemInbox {
    pub(crate) fn new(broker: Arc<Broker>, address: Address) -> Self {
        MemInbox { broker, address }
    }

    /// Where replies to this inbox are sent (`mem.inbox.<n>`).
    pub fn address(&self) -> &Address {
        &self.address
    }
}

impl Drop for MemInbox {
    fn drop(&mut self) {
        self.broker.close_inbox(&self.address);
    }
}

impl fmt::Debug for MemInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MemInbox").field(&self.address).finish()
    }
}
