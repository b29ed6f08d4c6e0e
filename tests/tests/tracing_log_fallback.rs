//! With no tracing subscriber, `tracing`'s `log` fallback shows the
//! runtime's `rpc.call` and `rpc.serve` spans to a logger that takes DEBUG;
//! where nothing can see them they cost nothing (rpc-core's `spans.rs`),
//! and turning the logger's level up later shows them again. A binary of
//! its own: a `log` logger is process-wide, and no subscriber may be set.

use std::sync::Mutex;

use log::{LevelFilter, Log, Metadata, Record};
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;
use rpc_transport_mem::MemTransport;

/// Every line logged, as text.
struct Captured(Mutex<Vec<String>>);

impl Log for Captured {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let line = format!("{} {}", record.target(), record.args());
        self.0.lock().unwrap().push(line);
    }

    fn flush(&self) {}
}

static CAPTURED: Captured = Captured(Mutex::new(Vec::new()));

/// The lines logged since the last call, naming `rpc.call` or `rpc.serve`.
fn take_span_lines() -> Vec<String> {
    let lines = std::mem::take(&mut *CAPTURED.0.lock().unwrap());
    lines
        .into_iter()
        .filter(|line| line.contains("rpc.call") || line.contains("rpc.serve"))
        .collect()
}

// A current-thread runtime: client and server log from this thread.
#[tokio::test]
async fn a_logger_sees_the_call_spans_when_no_subscriber_is_set() {
    log::set_logger(&CAPTURED).expect("the only logger of this binary");
    let transport = MemTransport::new();
    let _calc = serve_calc(transport.clone(), 1, 4).await;
    let calc = CalcClient::new(transport);

    // The control: with the logger at INFO nothing can see a DEBUG span.
    log::set_max_level(LevelFilter::Info);
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);
    assert_eq!(take_span_lines(), Vec::<String>::new());

    log::set_max_level(LevelFilter::Trace);
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    let lines = take_span_lines();
    assert!(
        lines.iter().any(|line| line.contains("rpc.call")),
        "the client's span was logged: {lines:#?}"
    );
    assert!(
        lines.iter().any(|line| line.contains("rpc.serve")),
        "the server's span was logged: {lines:#?}"
    );
}
