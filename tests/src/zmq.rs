//! ZeroMQ fabrics for tests: transports on loopback endpoints that all
//! know each other, so no service needs starting.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rpc_transport_zmq::{ZmqTransport, ZmqTransportBuilder};
use tokio::sync::Mutex;

/// Heartbeats fast enough that a dead server is noticed in a test's time.
pub const HEARTBEAT: Duration = Duration::from_millis(100);

/// Which kind of endpoint a fabric binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `tcp://127.0.0.1:0`.
    Tcp,
    /// `ipc://` paths in a temporary directory of the fabric's own.
    Ipc,
}

/// Transports that each bind a loopback endpoint and connect to every
/// endpoint of the fabric (their own included).
pub struct ZmqFabric {
    scheme: Scheme,
    /// Every participant's `batch_above`, when not the default.
    batch_above: Option<usize>,
    dir: PathBuf,
    joined: Mutex<Vec<ZmqTransport>>,
}

impl ZmqFabric {
    /// A fabric on tcp loopback ports.
    pub fn tcp() -> Self {
        Self::new(Scheme::Tcp)
    }

    /// A fabric on ipc paths.
    pub fn ipc() -> Self {
        Self::new(Scheme::Ipc)
    }

    /// A fabric on tcp loopback ports whose every request and reply is a
    /// message of its own (`batch_above(usize::MAX)`), however many are in
    /// flight together.
    pub fn tcp_unbatched() -> Self {
        ZmqFabric {
            batch_above: Some(usize::MAX),
            ..Self::new(Scheme::Tcp)
        }
    }

    fn new(scheme: Scheme) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rpc-zmq-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        if scheme == Scheme::Ipc {
            std::fs::create_dir_all(&dir).expect("make the ipc directory");
        }
        ZmqFabric {
            scheme,
            batch_above: None,
            dir,
            joined: Mutex::new(Vec::new()),
        }
    }

    /// A fresh loopback endpoint of this fabric's scheme.
    pub fn endpoint(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        match self.scheme {
            Scheme::Tcp => "tcp://127.0.0.1:0".to_owned(),
            Scheme::Ipc => format!(
                "ipc://{}/{}.sock",
                self.dir.display(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    /// A builder with the test heartbeat and reconnect settings.
    pub fn builder() -> ZmqTransportBuilder {
        ZmqTransport::builder()
            .heartbeat_interval(HEARTBEAT)
            .reconnect_interval(HEARTBEAT)
            .connect_timeout(Duration::from_secs(2))
    }

    /// A new participant: binds an endpoint, connects to every endpoint of
    /// the fabric, and every earlier participant connects to it.
    ///
    /// Liveness is 100 heartbeats (10 s) here, not 3: a peer busy reading or
    /// decoding a message near the 16 MiB limit sends nothing meanwhile, and
    /// a debug build on a loaded machine took longer than 300 ms for that.
    pub async fn join(&self) -> ZmqTransport {
        let mut joined = self.joined.lock().await;
        let mut builder = Self::builder().liveness(100).bind(self.endpoint());
        if let Some(calls) = self.batch_above {
            builder = builder.batch_above(calls);
        }
        for earlier in joined.iter() {
            for endpoint in earlier.endpoints() {
                builder = builder.connect(endpoint.clone());
            }
        }
        let transport = builder.build().await.expect("bind a loopback endpoint");
        for endpoint in transport.endpoints().to_vec() {
            assert!(
                transport.connect(endpoint.clone()).await,
                "connect to itself"
            );
            for earlier in joined.iter() {
                assert!(
                    earlier.connect(endpoint.clone()).await,
                    "connect to {endpoint}"
                );
            }
        }
        joined.push(transport.clone());
        transport
    }

    /// Closes every participant and removes the ipc directory.
    pub async fn finish(self) {
        for transport in self.joined.lock().await.drain(..) {
            transport.close();
        }
        if self.scheme == Scheme::Ipc {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
