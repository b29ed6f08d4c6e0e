//! The reconnect loop: notices a lost connection, fails calls in flight at
//! once, reconnects with backoff and re-declares the reply queues before
//! the new connection is handed out.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::Event;

use crate::backoff;
use crate::inbox;
use crate::session::Session;
use crate::shared::{Shared, State};

/// How often the supervisor looks at the connection status, as a backstop
/// for the ways a loss is noticed at once (lapin error events, consumers
/// ending, failed publishes).
const WATCHDOG_PERIOD: Duration = Duration::from_millis(200);

pub(crate) async fn run(shared: Arc<Shared>, mut session: Arc<Session>) {
    loop {
        tokio::select! {
            () = shared.closed() => break,
            () = lost(&session) => {}
        }
        session.mark_lost();
        tracing::warn!(
            generation = session.generation,
            "AMQP connection lost; reconnecting"
        );
        // Replies to calls in flight were addressed to the old connection's
        // queues or channels: fail them now rather than by timeout. Before
        // the state says `Connecting`: a call that sees that state waits to
        // be sent, and must not be failed as if it had been.
        for entry in shared.inbox_entries() {
            entry.sink.connection_lost();
        }
        shared.set_state(State::Connecting);
        let old = session.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), old.close(320, "lost")).await;
        });

        match reconnect(&shared, &session).await {
            Some(new) => session = new,
            None => break,
        }
        tracing::info!(
            generation = session.generation,
            "AMQP connection re-established"
        );
        rpc_core::metrics::transport_reconnected("amqp");
        shared.set_state(State::Up(session.clone()));
    }
    // Bounded: a broker that stopped answering must not keep this task.
    let _ = tokio::time::timeout(shared.config.connect_timeout, session.close(200, "closed")).await;
}

/// Resolves when `session` is lost, however that shows.
async fn lost(session: &Session) {
    let mut events = session.connection.events_listener();
    let errored = async {
        while let Some(event) = events.next().await {
            let Event::Error(error) = event else { continue };
            // lapin reports a channel the broker closed (a passive declare
            // of a missing queue, a refused publish) as an error event too;
            // a connection error has already left the connected state when
            // its event arrives. Only that one is a loss: tearing the
            // connection down for a channel error would fail every call.
            if session.connection.status().connected() {
                tracing::debug!(%error, "AMQP channel error; the connection is fine");
                continue;
            }
            tracing::debug!(%error, "AMQP connection error");
            return;
        }
    };
    let watchdog = async {
        let mut tick = tokio::time::interval(WATCHDOG_PERIOD);
        loop {
            tick.tick().await;
            if !session.is_alive() {
                return;
            }
        }
    };
    tokio::select! {
        () = session.lost() => {}
        () = errored => {}
        () = watchdog => {}
    }
}

/// Connects again, backing off between rounds; `None` once closed. Each
/// round tries every broker, starting with the one after `lost`'s: the
/// broker that just dropped us is the least likely to answer.
async fn reconnect(shared: &Shared, lost: &Session) -> Option<Arc<Session>> {
    let generation = lost.generation + 1;
    let first = (lost.url_index + 1) % shared.config.urls.len();
    backoff::retry_until_closed(shared, "AMQP reconnect", || async {
        let session = Session::open(&shared.config, generation, first).await?;
        inbox::redeclare_reply_queues(shared, &session).await?;
        Ok(Arc::new(session))
    })
    .await
}
