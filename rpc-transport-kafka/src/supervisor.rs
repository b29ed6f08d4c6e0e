//! The reconnect loop: when a generation of clients loses the broker, every
//! inbox hears of it at once, the records its producer still holds are
//! purged (which ends every send waiting on one), the clients are dropped
//! (off the runtime), and
//! a new generation is built, with the reply topic, the reply consumer and
//! every served service's topics and consumers made again.

use std::sync::Arc;

use rpc_core::transport::support::Connection;

use crate::session::Session;
use crate::transport::Shared;
use crate::{inbox, requests};

pub(crate) async fn run(shared: Arc<Shared>, mut session: Arc<Session>) {
    loop {
        tokio::select! {
            () = session.health.lost() => {}
            () = shared.connection.closed() => return,
        }
        shared.connection.set(Connection::Connecting);
        for sink in shared.inbox_sinks() {
            sink.connection_lost();
        }
        let generation = session.generation + 1;
        // Sends waiting for an acknowledgement of this generation end now,
        // with `ConnectionLost`.
        session.purge();
        let Some(next) = reconnect(&shared, generation).await else {
            return;
        };
        session = next;
        // Replies must have somewhere to go before calls resume.
        if shared.has_inboxes()
            && let Err(error) = inbox::start(&shared, &session).await
        {
            tracing::warn!(%error, "could not resume the reply consumer");
            session.health.mark_lost();
            continue;
        }
        shared.connection.set(Connection::Up(session.clone()));
        tracing::info!(generation, "Kafka transport reconnected");
        // Joining the groups again takes seconds; not awaited here.
        for entry in shared.serve_entries() {
            let (shared, session) = (shared.clone(), session.clone());
            tokio::spawn(async move {
                if let Err(error) = requests::start(&shared, &entry, &session).await {
                    tracing::warn!(%error, "could not resume serving");
                    session.health.mark_lost();
                }
            });
        }
    }
}

/// Builds a new generation, with exponential backoff; `None` once closed.
async fn reconnect(shared: &Shared, generation: u64) -> Option<Arc<Session>> {
    let mut backoff = shared.config.reconnect_min;
    loop {
        if shared.connection.is_closed() {
            return None;
        }
        match Session::open(&shared.config, generation, &shared.live).await {
            Ok(session) => return Some(Arc::new(session)),
            Err(error) => tracing::debug!(%error, "reconnect attempt failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shared.connection.closed() => return None,
        }
        backoff = (backoff * 2).min(shared.config.reconnect_max);
    }
}
