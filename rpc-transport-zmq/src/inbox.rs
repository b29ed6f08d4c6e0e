//! [`ZmqInbox`]: the guard that keeps a reply inbox open.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::client::ClientSide;

/// An open reply inbox. Its id travels with each request as the tag frame
/// and comes back with the reply on the same connection; dropping the
/// inbox closes it, and later replies to it are counted as undeliverable.
pub struct ZmqInbox {
    client: Arc<ClientSide>,
    id: u64,
    /// `id` as the tag frame, made once: each request shares it instead of
    /// allocating its own.
    tag: Bytes,
}

impl ZmqInbox {
    pub(crate) fn new(client: Arc<ClientSide>, id: u64) -> Self {
        let tag = Bytes::copy_from_slice(&id.to_be_bytes());
        ZmqInbox { client, id, tag }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The tag frame of this inbox's requests.
    pub(crate) fn tag(&self) -> Bytes {
        self.tag.clone()
    }
}

impl Drop for ZmqInbox {
    fn drop(&mut self) {
        self.client.close_inbox(self.id);
    }
}

impl fmt::Debug for ZmqInbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ZmqInbox").field(&self.id).finish()
    }
}
