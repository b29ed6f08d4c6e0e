//! `rabbitmqctl` on the test broker: queue and connection readings, and
//! closing connections broker-side. Every test that asks the broker
//! something behind the client's back goes through here.

use std::process::Command;

/// Runs `rabbitmqctl <args> --silent` and returns its output; panics when
/// it fails (broker tests need it on `PATH`).
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .arg("--silent")
        .output()
        .expect("rabbitmqctl runs (broker tests need it on PATH)");
    assert!(out.status.success(), "rabbitmqctl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `rabbitmqctl -q <args>`; whether it succeeded (for set-up steps a
/// test can skip, e.g. when the broker is remote).
pub fn try_rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The `connection_name` in a `client_properties` column.
pub fn connection_name_in(line: &str) -> Option<String> {
    let start = line.find("{\"connection_name\",\"")? + "{\"connection_name\",\"".len();
    let rest = &line[start..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// Closes, broker-side, every connection whose name `matches`; how many.
pub fn close_connections_where(matches: impl Fn(&str) -> bool) -> usize {
    let out = rabbitmqctl(&["list_connections", "pid", "client_properties"]);
    let pids: Vec<String> = out
        .lines()
        .filter(|line| connection_name_in(line).is_some_and(|name| matches(&name)))
        .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
        .collect();
    for pid in &pids {
        // A connection that closed on its own meanwhile is not a failure.
        try_rabbitmqctl(&["close_connection", pid, "a test closes it"]);
    }
    pids.len()
}

/// Closes, broker-side, the connections named `name`; how many.
pub fn close_connections_named(name: &str) -> usize {
    close_connections_where(|found| found == name)
}

/// Open channels per connection whose name starts with `prefix`, sorted.
pub fn channels_of_connections(prefix: &str) -> Vec<(String, usize)> {
    let out = rabbitmqctl(&["list_connections", "client_properties", "channels"]);
    let mut rows: Vec<(String, usize)> = out
        .lines()
        .filter_map(|line| {
            let name = connection_name_in(line)?;
            if !name.starts_with(prefix) {
                return None;
            }
            let channels = line.split_whitespace().last()?.parse().ok()?;
            Some((name, channels))
        })
        .collect();
    rows.sort();
    rows
}

/// One queue in `rabbitmqctl list_queues`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueRow {
    /// Its name.
    pub name: String,
    /// Ready to deliver.
    pub ready: u64,
    /// Delivered and not settled.
    pub unacked: u64,
    /// Consumers on it.
    pub consumers: u64,
}

/// Every queue of the default vhost.
pub fn list_queues() -> Vec<QueueRow> {
    let out = rabbitmqctl(&[
        "list_queues",
        "name",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
    ]);
    out.lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next()?.to_owned();
            let mut number = || fields.next()?.trim().parse::<u64>().ok();
            Some(QueueRow {
                name,
                ready: number()?,
                unacked: number()?,
                consumers: number()?,
            })
        })
        .collect()
}

/// Deletes an exchange of the default vhost (the transports never delete
/// exchanges: they may be shared; tests do, for the ones they made).
pub fn delete_exchange(name: &str) -> bool {
    let erlang = format!(
        "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"{name}\">>), false, <<\"test\">>)."
    );
    try_rabbitmqctl(&["eval", &erlang])
}

/// Deletes what a server under `prefix` declared: every queue whose name
/// starts with it and its broadcast exchange (`<prefix>rpc.broadcast`).
/// For servers in other processes, whose transport the test cannot clean
/// up itself.
pub fn delete_everything_under(prefix: &str) {
    for queue in list_queues() {
        if queue.name.starts_with(prefix) {
            try_rabbitmqctl(&["delete_queue", &queue.name]);
        }
    }
    delete_exchange(&format!("{prefix}rpc.broadcast"));
}
