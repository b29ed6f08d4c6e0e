//! Shared by the `security_*` and `bad_input_*` tests: URL surgery on the
//! test broker's URL, throw-away broker users, and queue depths.
#![allow(
    dead_code,
    unreachable_pub,
    reason = "a module of each test binary: each uses a subset, and `pub` is for them"
)]

use std::time::{Duration, Instant};

use lapin::options::QueueDeclareOptions;
use lapin::{Channel, Connection, ConnectionProperties};
pub use rpc_tests::broker::BrokerUrl;
#[allow(unused_imports, reason = "some test binaries use it")]
pub use rpc_tests::broker::escape;
use rpc_tests::broker::{amqp_url, unique_prefix};
use rpc_tests::rabbitmqctl::try_rabbitmqctl as rabbitmqctl;

/// A broker user that exists for one test: created with `rabbitmqctl`,
/// given full rights on the test vhost, deleted on drop.
#[derive(Debug)]
pub struct TempUser {
    /// Its name.
    pub name: String,
    /// Its password.
    pub password: String,
}

impl TempUser {
    /// Creates a user with a unique name and `password`, or `None` (after
    /// a notice) when `rabbitmqctl` cannot (e.g. the broker is remote).
    pub fn create(test: &str, password: &str) -> Option<Self> {
        let name = unique_prefix(test).trim_end_matches('.').replace('.', "-");
        let vhost = BrokerUrl::from_env().vhost;
        let user = TempUser {
            name,
            password: password.to_owned(),
        };
        let made = rabbitmqctl(&["add_user", &user.name, password])
            && rabbitmqctl(&[
                "set_permissions",
                "-p",
                &vhost,
                &user.name,
                ".*",
                ".*",
                ".*",
            ]);
        if !made {
            eprintln!("notice: {test}: rabbitmqctl could not create a user; part skipped");
            return None;
        }
        Some(user)
    }

    /// The test broker's URL with this user's credentials.
    pub fn url(&self) -> String {
        BrokerUrl {
            user: self.name.clone(),
            password: self.password.clone(),
            ..BrokerUrl::from_env()
        }
        .to_url()
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        rabbitmqctl(&["delete_user", &self.name]);
    }
}

/// A plain lapin connection to the test broker, for publishing by hand.
pub async fn raw_connection() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("lapin connects to the test broker")
}

/// How many messages wait in `queue` (a passive declare on a fresh channel).
pub async fn depth(connection: &Connection, queue: &str) -> u32 {
    let channel: Channel = connection.create_channel().await.expect("channel");
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare(queue.into(), options, Default::default())
        .await
        .expect("the queue exists");
    let _ = channel.close(200, "done".into()).await;
    queue.message_count()
}

/// Waits (bounded) until `queue` holds `expected` messages; its last depth.
/// The broker moves rejected messages into a dead-letter queue on its own
/// schedule and tells nobody, so polling is the only signal there is.
pub async fn wait_depth(connection: &Connection, queue: &str, expected: u32) -> u32 {
    let since = Instant::now();
    loop {
        let now = depth(connection, queue).await;
        if now == expected || since.elapsed() > Duration::from_secs(10) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
