//! A TCP relay between a client and a broker, for fault tests.
//!
//! The relay listens on `127.0.0.1:0` and forwards every accepted connection
//! to one upstream address. A test points a transport at
//! [`Relay::addr`] instead of the broker and then breaks the network on
//! demand, without touching the broker or the code under test:
//!
//! - [`cut`](Relay::cut) closes every open connection at once, as a failed
//!   link or a restarted load balancer does;
//! - [`black_hole`](Relay::black_hole) stops forwarding bytes in both
//!   directions but keeps every socket open, as a dead peer behind a
//!   stateful firewall does: nothing fails until heartbeats notice;
//! - [`resume`](Relay::resume) forwards again.
//!
//! New connections are accepted in every mode; while black-holed they stall
//! like the others (a TCP connect succeeds, the protocol handshake does not).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// Whether the relay passes bytes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    BlackHole,
}

/// A running relay; dropping it closes the listener and every connection.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    state: Arc<RelayState>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct RelayState {
    upstream: String,
    mode: watch::Sender<Mode>,
    /// Open connections by id, so `cut` can end them and each can remove
    /// itself when it ends on its own.
    open: Mutex<HashMap<u64, AbortHandle>>,
    next_id: AtomicU64,
    accepted: AtomicUsize,
}

impl Relay {
    /// Starts a relay on `127.0.0.1:0` to `upstream` (`host:port`).
    pub async fn start(upstream: impl Into<String>) -> io::Result<Relay> {
        Relay::start_on(upstream, 0).await
    }

    /// A relay on a given loopback port (0: any): `start_on(up, old_port)`
    /// after dropping the old relay brings the "broker" back at the address
    /// clients know, as a restarted broker comes back.
    pub async fn start_on(upstream: impl Into<String>, port: u16) -> io::Result<Relay> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(RelayState {
            upstream: upstream.into(),
            mode: watch::Sender::new(Mode::Forward),
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            accepted: AtomicUsize::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, state.clone()));
        Ok(Relay {
            addr,
            state,
            accept,
        })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every open connection; returns how many there were. The relay
    /// keeps accepting, so clients can reconnect through it.
    pub fn cut(&self) -> usize {
        let open: Vec<AbortHandle> = self.state.lock_open().drain().map(|(_, h)| h).collect();
        for connection in &open {
            // Aborting the task drops both sockets: the client and the
            // broker each see the connection close.
            connection.abort();
        }
        open.len()
    }

    /// Stops forwarding in both directions; sockets stay open.
    pub fn black_hole(&self) {
        self.state.mode.send_replace(Mode::BlackHole);
    }

    /// Forwards again, starting with whatever was held back.
    pub fn resume(&self) {
        self.state.mode.send_replace(Mode::Forward);
    }

    /// Connections open right now.
    pub fn open_connections(&self) -> usize {
        self.state.lock_open().len()
    }

    /// Connections accepted since the start.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

impl RelayState {
    fn lock_open(&self) -> MutexGuard<'_, HashMap<u64, AbortHandle>> {
        // Each critical section is one map call: a poisoned map is consistent.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<RelayState>) {
    while let Ok((client, _)) = listener.accept().await {
        state.accepted.fetch_add(1, Ordering::SeqCst);
        let id = state.next_id.fetch_add(1, Ordering::Relaxed);
        // Hold the map lock across the spawn so the task's own removal
        // (when it ends at once) cannot run before its insertion.
        let mut open = state.lock_open();
        let task = tokio::spawn({
            let state = state.clone();
            async move {
                let _ = relay_connection(client, &state).await;
                state.lock_open().remove(&id);
            }
        });
        open.insert(id, task.abort_handle());
    }
}

async fn relay_connection(client: TcpStream, state: &RelayState) -> io::Result<()> {
    let upstream = TcpStream::connect(&state.upstream).await?;
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    // Either direction ending (EOF or error) ends the connection: AMQP has
    // no use for a half-closed socket.
    tokio::select! {
        result = pump(client_read, upstream_write, state.mode.subscribe()) => result,
        result = pump(upstream_read, client_write, state.mode.subscribe()) => result,
    }
}

/// Copies `from` to `to` while the mode is `Forward`. While black-holed it
/// neither reads nor writes, so bytes pile up in kernel buffers and nobody
/// sees an error.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) -> io::Result<()> {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        wait_forwarding(&mut mode).await?;
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        // A read that completed just as the relay went dark is held back too.
        wait_forwarding(&mut mode).await?;
        to.write_all(&buffer[..n]).await?;
    }
}

async fn wait_forwarding(mode: &mut watch::Receiver<Mode>) -> io::Result<()> {
    mode.wait_for(|mode| *mode == Mode::Forward)
        .await
        .map(drop)
        .map_err(|_| io::Error::other("relay stopped"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An upstream that echoes every byte back.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = socket.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(stream: &mut TcpStream, byte: u8) -> io::Result<u8> {
        stream.write_all(&[byte]).await?;
        let mut back = [0u8; 1];
        stream.read_exact(&mut back).await?;
        Ok(back[0])
    }

    #[tokio::test]
    async fn forwards_cuts_and_black_holes() {
        let relay = Relay::start(echo_server().await.to_string()).await.unwrap();
        let mut stream = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut stream, 7).await.unwrap(), 7);
        assert_eq!(relay.open_connections(), 1);

        relay.black_hole();
        let stalled =
            tokio::time::timeout(Duration::from_millis(200), round_trip(&mut stream, 8)).await;
        assert!(stalled.is_err(), "a black hole forwarded bytes");
        relay.resume();
        // The byte held back arrives now.
        let mut back = [0u8; 1];
        stream.read_exact(&mut back).await.unwrap();
        assert_eq!(back[0], 8);

        assert_eq!(relay.cut(), 1);
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("a cut connection closes");
        assert!(closed.is_err() || rest.is_empty(), "{closed:?} {rest:?}");

        let mut again = TcpStream::connect(relay.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, 9).await.unwrap(), 9);
        assert_eq!(relay.accepted(), 2);
    }
}
