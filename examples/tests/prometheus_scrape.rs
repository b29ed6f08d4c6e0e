//! The AMQP server example exposes /metrics: after a few calls a scrape
//! finds the call counters and latency histograms.

use std::process::Stdio;

use rpc_core::Client;
use rpc_examples::calculator::CalculatorClient;
use rpc_tests::broker::{amqp_builder, amqp_url, unique_prefix};
use rpc_tests::rabbitmqctl;
use rpc_transport_amqp::AmqpTransport;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

async fn scrape(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_finds_the_call_counters_and_histograms() {
    if amqp_builder("prometheus_scrape").await.is_none() {
        return;
    }
    let prefix = unique_prefix("prometheus_scrape");
    let mut server = Command::new(env!("CARGO_BIN_EXE_amqp_server"))
        .env("AMQP_URL", amqp_url())
        .env("RPC_QUEUE_PREFIX", &prefix)
        .env("METRICS_ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn the example");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let mut addr = None;
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            addr = rest.strip_suffix("/metrics").map(str::to_owned);
        }
        if line.starts_with("serving") {
            break;
        }
    }
    let addr = addr.expect("the example printed its metrics address");

    let transport = AmqpTransport::builder(amqp_url())
        .queue_prefix(prefix.clone())
        .connect()
        .await
        .expect("connect");
    let calc = CalculatorClient::from_client(Client::new(transport.clone()));
    for i in 0..5 {
        assert_eq!(calc.add(i, 1).await.unwrap(), i + 1);
    }
    assert!(calc.div(1, 0).await.unwrap().is_err());

    let text = scrape(&addr).await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    let labels = r#"service="calc.v1",method="add",outcome="ok""#;
    let finished = format!("rpc_server_requests_finished_total{{{labels}}} 5");
    assert!(text.contains(&finished), "no `{finished}` in:\n{text}");
    assert!(
        text.contains("# TYPE rpc_server_request_duration_seconds histogram"),
        "{text}"
    );
    let count = format!("rpc_server_request_duration_seconds_count{{{labels}}} 5");
    assert!(text.contains(&count), "no `{count}` in:\n{text}");
    assert!(
        text.contains("rpc_server_request_duration_seconds_bucket{"),
        "{text}"
    );
    assert!(
        text.contains(r#"rpc_server_requests_started_total{service="calc.v1",method="div"} 1"#),
        "{text}"
    );
    assert!(text.contains("rpc_server_requests_in_flight"), "{text}");

    server.kill().await.unwrap();
    let _ = transport.cleanup().await;
    transport.close().await;
    // The example server declared its queues and broadcast exchange; the
    // shared broker keeps none of them.
    rabbitmqctl::delete_everything_under(&prefix);
}
