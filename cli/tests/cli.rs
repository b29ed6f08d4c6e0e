//! `rpc` end to end: the binary against the example calculator served
//! over AMQP (skipped with a notice when no broker answers, failed when
//! `RPC_REQUIRE_BROKER=1`).

mod common;

use common::{failure, stderr, stdout};
use rpc_tests::broker::{amqp_builder, amqp_url, unique_prefix};
use rpc_transport_amqp::AmqpTransport;

/// Runs `rpc` with `args` against the broker, under `prefix`.
async fn rpc(prefix: &str, args: &[&str]) -> std::process::Output {
    common::rpc(&amqp_url(), prefix, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_describes_measures_and_calls_a_served_example() {
    if amqp_builder("cli").await.is_none() {
        return;
    }
    let prefix = unique_prefix("cli");
    let transport = AmqpTransport::builder(amqp_url())
        .queue_prefix(prefix.clone())
        .connect()
        .await
        .expect("connect");
    let server = common::serve_calculator(&transport).await;

    // JSON in, JSON out.
    let sum = rpc(&prefix, &["call", "calc.v1", "add", r#"{"a": 2, "b": 3}"#]).await;
    assert!(sum.status.success(), "{}", failure(&sum));
    assert_eq!(stdout(&sum).trim(), "5");
    // An application error is a value.
    let div = rpc(&prefix, &["call", "calc.v1", "div", r#"{"a": 1, "b": 0}"#]).await;
    assert!(div.status.success(), "{}", failure(&div));
    assert!(stdout(&div).contains("DivideByZero"), "{}", stdout(&div));

    // Typed errors on stderr, a distinct exit code each.
    let cases: [(&[&str], i32, &str); 5] = [
        (
            &["call", "calc.v1", "sqrt", "{}"],
            6,
            "error[no_such_method]",
        ),
        (&["call", "nobody.v1", "add", "{}"], 5, "error[no_route]"),
        (
            &["call", "calc.v1", "add", r#"{"a": "two"}"#],
            7,
            "error[decode]",
        ),
        (&["call", "calc.v1", "add", "not json"], 2, "error[usage]"),
        (&["ping", "nobody.v1"], 5, "error[no_route]"),
    ];
    for (args, code, kind) in cases {
        let out = rpc(&prefix, args).await;
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with(kind), "{args:?}: {}", stderr(&out));
        assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));
    }

    // Introspection: piped output is plain, one tab-separated line per row.
    let ls = rpc(&prefix, &["ls"]).await;
    assert!(ls.status.success(), "{}", failure(&ls));
    let lines: Vec<_> = stdout(&ls).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("calc.v1\t"), "{lines:?}");
    let ping = rpc(&prefix, &["ping", "calc.v1", "--json"]).await;
    let fleet: serde_json::Value = serde_json::from_slice(&ping.stdout).unwrap();
    assert_eq!(fleet.as_array().map(Vec::len), Some(1), "{fleet}");
    let info = rpc(&prefix, &["info", "calc.v1"]).await;
    let text = stdout(&info);
    assert!(
        text.contains("async fn add(&self, a: i64, b: i64) -> i64"),
        "{text}"
    );
    assert!(text.contains("Adds two numbers."), "{text}");
    let stats = rpc(&prefix, &["stats", "calc.v1", "--json"]).await;
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    let add = common::method_stats(&stats, "add");
    assert_eq!(add["handled"], 1, "{stats}");
    assert_eq!(add["errors"]["decode"], 1, "{stats}");

    // A URL whose scheme no transport registered.
    let unknown = rpc(&prefix, &["--url", "carrier-pigeon://coop", "ls"]).await;
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));

    server.shutdown().await;
    let _ = transport.cleanup().await;
    transport.close().await;
}
