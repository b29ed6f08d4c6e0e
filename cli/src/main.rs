//! `rpc`: list, ping, describe, measure and call services from a terminal.
//!
//! ```sh
//! rpc ls                                   # every service instance that answers
//! rpc ping calc.v1                         # the instances of one service
//! rpc info calc.v1                         # methods, signatures, docs
//! rpc stats calc.v1                        # per instance, per method
//! rpc call calc.v1 add '{"a": 2, "b": 3}'  # JSON in, JSON out
//! ```
//!
//! The broker is `--url` (or `RPC_URL`, else `AMQP_URL`); its scheme picks the
//! transport ([`schemes`]): AMQP, NATS, ZeroMQ or Kafka. On a transport
//! without broadcasts (all but AMQP) `ls` cannot list, and `ping`/`stats`
//! reach one instance, saying so on stderr. Errors go to stderr with an exit code per kind
//! ([`exit`]). docs/operations.md has the full guide.

mod commands;
mod exit;
mod output;
mod schemes;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// List, ping, describe, measure and call services.
#[derive(Debug, Parser)]
#[command(name = "rpc", version)]
struct Cli {
    /// The broker or servers; the scheme picks the transport:
    /// amqp://guest:guest@127.0.0.1:5672/%2f, amqps://..., nats://HOST:4222,
    /// nats+jetstream://HOST:4222 (durable servers), zmq+tcp://HOST:PORT,
    /// zmq+ipc://PATH, kafka://HOST:PORT (lists: comma-separated). Default:
    /// RPC_URL, else AMQP_URL, else the local RabbitMQ.
    #[arg(long, global = true)]
    url: Option<String>,
    /// Prefix of the names the servers use, as they were configured: AMQP
    /// `queue_prefix`, NATS `subject_prefix`, Kafka `topic_prefix`.
    #[arg(long, visible_alias = "prefix", global = true, default_value = "")]
    queue_prefix: String,
    /// How long to wait: a call's deadline, or how long answers are gathered.
    #[arg(long, global = true, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print machine-readable JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Every service instance that answers before the timeout.
    Ls,
    /// Every instance of SERVICE that answers before the timeout.
    Ping {
        /// The service's wire name.
        service: String,
    },
    /// The methods of SERVICE, with signatures and docs.
    Info {
        /// The service's wire name.
        service: String,
    },
    /// Per-method counts and latency of every instance of SERVICE.
    Stats {
        /// The service's wire name.
        service: String,
    },
    /// Calls SERVICE.METHOD with JSON arguments (an object of the
    /// parameters by name) and prints the JSON result.
    Call {
        /// The service's wire name.
        service: String,
        /// The method's name.
        method: String,
        /// The arguments, e.g. '{"a": 2, "b": 3}'.
        #[arg(default_value = "{}")]
        args: String,
    },
}

/// `250ms`, `2s`, `1m`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is no duration"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("`{text}`: use ms, s or m")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return exit::report(&exit::CliError::Setup(error.to_string())),
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => exit::report(&error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("2h").is_err());
    }
}
