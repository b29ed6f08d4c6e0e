//! The runtimes emit tracing spans around client and server calls, carrying
//! service, method, correlation id and outcome.

use std::io::Write;
use std::sync::{Arc, Mutex};

use rpc_core::RpcError;
use rpc_tests::conformance::serve_calc;
use rpc_tests::services::CalcClient;
use rpc_transport_mem::MemTransport;
use tracing_subscriber::fmt::format::FmtSpan;

/// Everything the subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }
}

// A current-thread runtime keeps client, server and subscriber on this thread.
#[tokio::test]
async fn client_and_server_spans_name_the_call_and_its_outcome() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_span_events(FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let transport = MemTransport::new();
    let _calc = serve_calc(transport.clone(), 1, 4).await;
    let calc = CalcClient::new(transport);
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);
    assert!(matches!(
        calc.boom("traced".into()).await,
        Err(RpcError::Remote { .. })
    ));

    let lines = captured.lines();
    let closed = |span: &str, method: &str, outcome: &str| {
        lines.iter().any(|line| {
            line.contains(&format!("{span}{{"))
                && line.contains("service=conformance.calc")
                && line.contains(&format!("method={method}"))
                && line.contains("correlation_id=")
                && line.contains(&format!("outcome=\"{outcome}\""))
                && line.contains("close")
        })
    };
    assert!(closed("rpc.call", "add", "ok"), "{lines:#?}");
    assert!(closed("rpc.serve", "add", "ok"), "{lines:#?}");
    assert!(closed("rpc.call", "boom", "remote"), "{lines:#?}");
    assert!(closed("rpc.serve", "boom", "remote"), "{lines:#?}");
}
