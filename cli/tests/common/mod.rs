//! Running the `rpc` binary from the end-to-end tests.

#![allow(dead_code, unreachable_pub)]

use std::process::Output;
use std::time::{Duration, Instant};

use rpc_core::{Server, ServerHandle, Transport};
use rpc_examples::calculator::{Calc, CalculatorServer};

/// Runs `rpc` with `args` against `url`, under `prefix` (none when empty),
/// with a 3 s timeout; also says how long it took.
pub async fn rpc_timed(url: &str, prefix: &str, args: &[&str]) -> (Output, Duration) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_rpc"));
    command.args(["--url", url, "--timeout", "3s"]);
    if !prefix.is_empty() {
        command.args(["--queue-prefix", prefix]);
    }
    command.args(args);
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = command.output().expect("runs");
        (output, started.elapsed())
    })
    .await
    .unwrap()
}

/// Runs `rpc` with `args` against `url`, under `prefix` (none when empty).
pub async fn rpc(url: &str, prefix: &str, args: &[&str]) -> Output {
    rpc_timed(url, prefix, args).await.0
}

/// Standard output, as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Standard error, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// How a run ended and what it said on stderr, for a failed assertion: a
/// run killed by a signal says nothing itself.
pub fn failure(output: &Output) -> String {
    format!("{}; stderr:\n{}", output.status, stderr(output))
}

/// `call calc.v1 add {"a": 2, "b": 3}` printed 5.
pub async fn adds(url: &str, prefix: &str) {
    let sum = rpc(
        url,
        prefix,
        &["call", "calc.v1", "add", r#"{"a": 2, "b": 3}"#],
    )
    .await;
    assert!(sum.status.success(), "{}", failure(&sum));
    assert_eq!(stdout(&sum).trim(), "5");
}

/// `info calc.v1` printed the calculator's methods and docs.
pub async fn describes(url: &str, prefix: &str) {
    let info = rpc(url, prefix, &["info", "calc.v1"]).await;
    assert!(info.status.success(), "{}", failure(&info));
    let text = stdout(&info);
    assert!(text.starts_with("calc.v1 "), "{text}");
    assert!(
        text.contains("async fn add(&self, a: i64, b: i64) -> i64"),
        "{text}"
    );
    assert!(text.contains("Adds two numbers."), "{text}");
}

/// On a transport without broadcasts: `ping` and `stats` answer with the
/// one instance they reached and say so on stderr; `ls` refuses at once,
/// saying why (exit 11), rather than gathering nothing for the timeout.
pub async fn introspects_one_instance(url: &str, prefix: &str, scheme: &str) {
    let note = format!(
        "note: the `{scheme}` transport has no broadcast: one instance of `calc.v1` answered"
    );

    let ping = rpc(url, prefix, &["ping", "calc.v1"]).await;
    assert!(ping.status.success(), "{}", failure(&ping));
    let lines: Vec<_> = stdout(&ping).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("calc.v1\t"), "{lines:?}");
    assert!(stderr(&ping).contains(&note), "{}", stderr(&ping));

    let ping = rpc(url, prefix, &["ping", "calc.v1", "--json"]).await;
    assert!(ping.status.success(), "{}", failure(&ping));
    let fleet: serde_json::Value = serde_json::from_slice(&ping.stdout).unwrap();
    assert_eq!(fleet.as_array().map(Vec::len), Some(1), "{fleet}");
    assert_eq!(fleet[0]["service"], "calc.v1", "{fleet}");

    let stats = rpc(url, prefix, &["stats", "calc.v1", "--json"]).await;
    assert!(stats.status.success(), "{}", failure(&stats));
    assert!(stderr(&stats).contains(&note), "{}", stderr(&stats));
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(stats.as_array().map(Vec::len), Some(1), "{stats}");
    let add = method_stats(&stats, "add");
    assert!(add["handled"].as_u64() >= Some(1), "{stats}");

    let (ls, took) = rpc_timed(url, prefix, &["ls"]).await;
    assert_eq!(ls.status.code(), Some(11), "{}", stderr(&ls));
    let text = stderr(&ls);
    assert!(text.starts_with("error[unsupported]: `rpc ls`"), "{text}");
    assert!(
        text.contains(&format!("the `{scheme}` transport has no broadcast")),
        "{text}"
    );
    assert!(text.contains("rpc ping SERVICE"), "{text}");
    assert!(stdout(&ls).is_empty(), "{}", stdout(&ls));
    // Refused at once, not after gathering for the 3 s timeout.
    assert!(took < Duration::from_secs(3), "ls took {took:?}");

    // A service nobody serves: no route, at once.
    let (nobody, took) = rpc_timed(url, prefix, &["ping", "nobody.v1"]).await;
    assert_eq!(nobody.status.code(), Some(5), "{}", stderr(&nobody));
    assert!(
        stderr(&nobody).starts_with("error[no_route]"),
        "{}",
        stderr(&nobody)
    );
    assert!(took < Duration::from_secs(3), "ping took {took:?}");
}

/// Serves the example calculator on `transport`, as the CLI tests ask it.
pub async fn serve_calculator<T: Transport>(transport: &T) -> ServerHandle {
    Server::builder(transport.clone())
        .serve(CalculatorServer::new(Calc::new(1)))
        .await
        .expect("serve the example calculator")
}

/// The first instance's stats of `method`, from `rpc stats --json`.
pub fn method_stats(stats: &serde_json::Value, method: &str) -> serde_json::Value {
    stats[0]["methods"]
        .as_array()
        .expect("a methods array")
        .iter()
        .find(|m| m["method"] == method)
        .cloned()
        .unwrap_or_else(|| panic!("no stats for {method}: {stats}"))
}
