//! Access to the test Kafka broker (tansu, started by `.ci/kafka-broker`):
//! its address, the skip-or-fail policy, and brokers a test owns.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rpc_transport_kafka::{KafkaTransport, KafkaTransportBuilder};

use crate::broker::{broker_required, unique_prefix};

/// The broker tests use when `KAFKA_BOOTSTRAP` is not set (the default port
/// of `.ci/kafka-broker`).
pub const DEFAULT_KAFKA_BOOTSTRAP: &str = "127.0.0.1:19092";

/// The broker address: `KAFKA_BOOTSTRAP`, else [`DEFAULT_KAFKA_BOOTSTRAP`].
pub fn kafka_bootstrap() -> String {
    std::env::var("KAFKA_BOOTSTRAP").unwrap_or_else(|_| DEFAULT_KAFKA_BOOTSTRAP.to_owned())
}

/// A builder on the test broker with a unique topic prefix, or `None` after
/// printing a notice when no broker is reachable. Panics instead of
/// skipping when [`broker_required`].
pub async fn kafka_builder(test: &str) -> Option<KafkaTransportBuilder> {
    let bootstrap = kafka_bootstrap();
    // Where a missing broker is a failure, the probe may wait as long as a
    // loaded machine makes tansu take (many test binaries start clients on
    // it at once); where it is a skip, a short wait keeps the skip quick.
    let patience = if broker_required() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(3)
    };
    let probe = KafkaTransport::builder(bootstrap.clone())
        .connect_timeout(patience)
        .connect()
        .await;
    match probe {
        Ok(probe) => probe.close().await,
        Err(error) if broker_required() => {
            panic!("RPC_REQUIRE_BROKER=1 but no Kafka broker is reachable at {bootstrap}: {error}")
        }
        Err(error) => {
            eprintln!(
                "notice: skipping {test}: no Kafka broker at {bootstrap} ({error}); \
                 start one with `.ci/kafka-broker start`"
            );
            return None;
        }
    }
    Some(
        KafkaTransport::builder(bootstrap)
            .topic_prefix(unique_prefix(test))
            .client_id(format!("rpc-tests-{test}")),
    )
}

/// A tansu broker a test started on its own port with `.ci/kafka-broker`;
/// stopped when dropped, also when the test fails.
pub struct OwnBroker {
    port: u16,
    /// The port it tells clients to use, when not its own.
    advertised: Option<u16>,
}

impl OwnBroker {
    /// Starts a broker on `port`; `None` (with a notice) when the script
    /// cannot (no tansu binary to be had), a panic under
    /// [`broker_required`].
    pub fn start(port: u16) -> Option<Self> {
        OwnBroker::start_advertising(port, None)
    }

    /// As [`start`](Self::start), the broker telling clients to connect to
    /// `advertised` (a relay's port) instead of its own.
    pub fn start_advertising(port: u16, advertised: Option<u16>) -> Option<Self> {
        let broker = OwnBroker { port, advertised };
        match broker.script("start") {
            Ok(()) => Some(broker),
            Err(error) if broker_required() => panic!("cannot start tansu on {port}: {error}"),
            Err(error) => {
                eprintln!("notice: cannot start tansu on {port}: {error}");
                None
            }
        }
    }

    /// The address to bootstrap from.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGTERM, then SIGKILL).
    pub fn stop(&self) {
        let _ = self.script("stop");
    }

    /// Kills the broker with SIGKILL (a crash, for fault tests).
    pub fn kill(&self) {
        self.script("kill").expect("kill tansu");
    }

    /// Starts it again after [`stop`](Self::stop): empty (memory storage).
    pub fn restart(&self) {
        self.script("start").expect("restart tansu");
    }

    /// Freezes the broker (SIGSTOP): its connections stay open and nothing
    /// on them is answered any more, until it is killed or stopped.
    pub fn freeze(&self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .arg("-STOP")
            .arg(&pid)
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -STOP {pid}: {status}");
    }

    /// The broker's pid, from the script's `status` ("running: pid N, ...").
    fn pid(&self) -> String {
        let output = self
            .command("status")
            .output()
            .expect("run .ci/kafka-broker status");
        let status = String::from_utf8_lossy(&output.stdout);
        status
            .strip_prefix("running: pid ")
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_else(|| panic!("no broker on {}: {status}", self.port))
            .to_owned()
    }

    fn script(&self, command: &str) -> Result<(), String> {
        let output = self.command(command).output().map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

impl OwnBroker {
    /// `.ci/kafka-broker COMMAND PORT`, not yet run.
    fn command(&self, command: &str) -> Command {
        let script_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.ci/kafka-broker");
        let mut script = Command::new("bash");
        script
            .arg(script_path)
            .arg(command)
            .arg(self.port.to_string());
        if let Some(advertised) = self.advertised {
            script.env("KAFKA_ADVERTISED_PORT", advertised.to_string());
        }
        script
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}
