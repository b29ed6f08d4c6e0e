//! A Prometheus `/metrics` endpoint for the examples: the runtimes' metrics
//! (docs/operations.md) rendered by `metrics-exporter-prometheus`, served
//! as plain text over a bare HTTP/1.1 responder.
//!
//! The exporter's own HTTP listener (hyper) is left out: a scrape is one GET
//! answered with one text body, which takes thirty lines here, and keeping
//! hyper out keeps the examples' build small.

use std::io;
use std::net::SocketAddr;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Latency buckets, seconds: 100 µs to 10 s.
const BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Installs the Prometheus recorder (before any client or server starts, so
/// their meters register with it) and serves it on `addr`; returns the
/// address bound (for port 0).
pub async fn serve(addr: SocketAddr) -> io::Result<SocketAddr> {
    let handle = PrometheusBuilder::new()
        // `_seconds` metrics as histograms (with buckets), not summaries:
        // buckets aggregate across instances, quantiles do not.
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(io::Error::other)?
        .install_recorder()
        .map_err(io::Error::other)?;
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, handle.clone()));
        }
    });
    Ok(bound)
}

/// Answers one request with the current metrics, whatever it asked.
async fn answer(mut stream: tokio::net::TcpStream, handle: PrometheusHandle) {
    // The request line and headers are not needed: every path is /metrics.
    let mut request = [0u8; 1024];
    let _ = stream.read(&mut request).await;
    let body = handle.render();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}
