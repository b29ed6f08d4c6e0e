//! Passwords in broker URLs never show in `Debug`, `Display`, errors or
//! logs. Everything the transport emits at TRACE level is captured into a
//! buffer while it connects (successfully and not), serves and calls, and
//! every text is searched for the password.

mod security_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::Server;
use rpc_tests::broker::{amqp_builder, unique_prefix};
use rpc_tests::services::{CalcClient, CalcImpl, CalcProbe, CalcServer};
use rpc_transport_amqp::AmqpTransport;
use tokio::net::TcpListener;

use security_support::{BrokerUrl, TempUser, escape};

/// Everything written by the log subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A password nothing else in the process contains.
fn secret() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("S3cr3t-pw-{}-{nanos:x}", std::process::id())
}

/// Asserts `text` does not contain `password`, in clear or URL-escaped.
fn assert_clean(what: &str, text: &str, password: &str) {
    for form in [password.to_owned(), escape(password)] {
        assert!(!text.contains(&form), "{what} leaks the password: {text}");
    }
}

// One test function: the log subscriber is process-wide, and lapin logs
// from its own tasks, so a thread-local subscriber would miss them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_debug_errors_or_logs() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let password = secret();
    // Texts to search: Debug and Display of everything we can get hold of.
    let mut seen: Vec<(String, String)> = Vec::new();

    // 1. A builder, formatted before it connects.
    let url = format!("amqp://guest:{}@127.0.0.1:1/%2f", escape(&password));
    let builder = AmqpTransport::builder(url);
    seen.push(("builder Debug".into(), format!("{builder:?}")));
    assert!(format!("{builder:?}").contains("guest:***@"));

    // 2. A closed port.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let url = format!("amqp://guest:{}@127.0.0.1:{port}/%2f", escape(&password));
    let error = AmqpTransport::builder(url)
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect_err("nothing listens there");
    seen.push(("closed-port error".into(), format!("{error} / {error:?}")));

    // 3. An unparsable URL (a port that is no number) echoing the URL back.
    let url = format!("amqp://guest:{}@127.0.0.1:notaport/%2f", escape(&password));
    let error = AmqpTransport::connect(&url).await.expect_err("not a URL");
    seen.push(("bad-URL error".into(), format!("{error} / {error:?}")));

    if amqp_builder("secrets").await.is_some() {
        // 4. The right user, the wrong password.
        let wrong = BrokerUrl {
            password: password.clone(),
            ..BrokerUrl::from_env()
        };
        let error = AmqpTransport::builder(wrong.to_url())
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .expect_err("wrong password");
        seen.push((
            "wrong-password error".into(),
            format!("{error} / {error:?}"),
        ));

        // 5. A user whose password is the secret: log in, serve, call.
        if let Some(user) = TempUser::create("secrets", &password) {
            let transport = AmqpTransport::builder(user.url())
                .queue_prefix(unique_prefix("secrets"))
                .connect()
                .await
                .expect("the temporary user logs in");
            seen.push(("transport Debug".into(), format!("{transport:?}")));
            let (probe, _lines) = CalcProbe::new();
            let server = Server::builder(transport.clone())
                .serve(CalcServer::new(CalcImpl::new(1, probe, &transport)))
                .await
                .expect("serve");
            let calc = CalcClient::new(transport.clone());
            assert_eq!(calc.add(2, 3).await.expect("a call"), 5);
            server.shutdown().await;
            transport.cleanup().await.expect("cleanup");
        }
    }

    let logs = logs.text();
    assert!(
        logs.contains("TRACE"),
        "the subscriber captured no TRACE events; the check would be empty"
    );
    eprintln!(
        "measured: secrets: {} texts and {} bytes of TRACE logs searched",
        seen.len(),
        logs.len()
    );
    for (what, text) in &seen {
        assert_clean(what, text, &password);
    }
    assert_clean("the TRACE log", &logs, &password);
}
