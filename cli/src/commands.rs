//! What each subcommand does.

use rpc_core::introspection::Introspector;
use rpc_core::{Client, ContentType, DynTransport, RpcError, TransportError};
use serde_json::Value;

use crate::exit::CliError;
use crate::output::{self, Format};
use crate::schemes::{self, ConnectOptions};
use crate::{Cli, Command};

/// The broker when neither `--url`, `RPC_URL` nor `AMQP_URL` says.
const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Runs the command line's command.
pub(crate) async fn run(cli: Cli) -> Result<(), CliError> {
    let url = cli
        .url
        .clone()
        .or_else(|| std::env::var("RPC_URL").ok())
        .or_else(|| std::env::var("AMQP_URL").ok())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let options = ConnectOptions {
        prefix: cli.queue_prefix.clone(),
    };
    let connection = schemes::connect(&url, options).await?;
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    let result = command(cli, connection.transport, scheme).await;
    if let Some(cleanup) = connection.cleanup {
        cleanup.await;
    }
    result
}

/// Runs `cli`'s command on `transport`, of the URL scheme `scheme`.
async fn command(cli: Cli, transport: DynTransport, scheme: &str) -> Result<(), CliError> {
    let format = Format::choose(cli.json);
    let wait = cli.timeout;
    match cli.command {
        Command::Ls => {
            let mut ask = Introspector::new(transport).await?;
            let mut fleet = match ask.ping_all(None, wait).await {
                Err(error) if no_broadcast(&error) => {
                    return Err(CliError::Unsupported(format!(
                        "`rpc ls` asks every server at once, and the `{scheme}` transport has no \
                         broadcast: name a service (`rpc ping SERVICE`) to ask one of its instances"
                    )));
                }
                fleet => fleet?,
            };
            fleet.sort_by(|a, b| (&a.service, &a.instance).cmp(&(&b.service, &b.instance)));
            print_pings(format, &fleet);
        }
        Command::Ping { service } => {
            let mut ask = Introspector::new(transport).await?;
            let mut fleet = match ask.ping_all(Some(&service), wait).await {
                Err(error) if no_broadcast(&error) => {
                    let one = ask.ping(&service, wait).await?;
                    one_instance(scheme, &service);
                    vec![one]
                }
                fleet => fleet?,
            };
            if fleet.is_empty() {
                return Err(CliError::NobodyAnswered(service));
            }
            fleet.sort_by(|a, b| a.instance.cmp(&b.instance));
            print_pings(format, &fleet);
        }
        Command::Info { service } => {
            let mut ask = Introspector::new(transport).await?;
            let info = ask.info(&service, wait).await?;
            if format == Format::Json {
                output::json(&info);
                return Ok(());
            }
            println!("{} {}", info.service, info.version);
            if !info.docs.is_empty() {
                println!("  {}", info.docs.replace('\n', "\n  "));
            }
            for method in &info.methods {
                println!();
                println!(
                    "{}  [{}, {}]",
                    method.signature, method.kind, method.delivery
                );
                if !method.docs.is_empty() {
                    println!("    {}", method.docs.replace('\n', "\n    "));
                }
            }
        }
        Command::Stats { service } => {
            let mut ask = Introspector::new(transport).await?;
            let mut all = match ask.stats_all(&service, wait).await {
                Err(error) if no_broadcast(&error) => {
                    let one = ask.stats(&service, wait).await?;
                    one_instance(scheme, &service);
                    vec![one]
                }
                all => all?,
            };
            if all.is_empty() {
                return Err(CliError::NobodyAnswered(service));
            }
            all.sort_by(|a, b| a.instance.cmp(&b.instance));
            if format == Format::Json {
                output::json(&all);
                return Ok(());
            }
            for stats in &all {
                if format == Format::Table {
                    println!(
                        "{} instance {} (up {})",
                        stats.service,
                        stats.instance,
                        output::uptime(stats.uptime_secs)
                    );
                }
                let rows: Vec<Vec<String>> = stats
                    .methods
                    .iter()
                    .map(|m| {
                        let mut row = Vec::new();
                        if format == Format::Plain {
                            row.push(stats.instance.clone());
                        }
                        let errors: Vec<String> =
                            m.errors.iter().map(|(k, n)| format!("{k}={n}")).collect();
                        row.extend([
                            m.method.clone(),
                            m.handled.to_string(),
                            if errors.is_empty() {
                                "-".into()
                            } else {
                                errors.join(",")
                            },
                            m.in_flight.to_string(),
                            output::seconds(m.latency.p50),
                            output::seconds(m.latency.p90),
                            output::seconds(m.latency.p99),
                        ]);
                        row
                    })
                    .collect();
                output::table(
                    format,
                    &[
                        "METHOD",
                        "HANDLED",
                        "ERRORS",
                        "IN FLIGHT",
                        "P50",
                        "P90",
                        "P99",
                    ],
                    &rows,
                );
                if format == Format::Table {
                    println!();
                }
            }
        }
        Command::Call {
            service,
            method,
            args,
        } => {
            let args: Value = serde_json::from_str(&args)
                .map_err(|e| CliError::Usage(format!("the arguments are not JSON: {e}")))?;
            let client = Client::<DynTransport>::new(transport)
                .with_content_type(ContentType::Json)
                .with_timeout(wait);
            // The client names services and methods with `&'static str`, as
            // generated code does; this process makes one call, then exits.
            let service: &'static str = Box::leak(service.into_boxed_str());
            let method: &'static str = Box::leak(method.into_boxed_str());
            let result: Value = client.call(service, method, args).await?;
            output::json(&result);
        }
    }
    Ok(())
}

/// Whether a query to every instance failed for want of a broadcast (every
/// transport but AMQP): servers there answer one at a time, through their
/// request queue.
fn no_broadcast(error: &RpcError) -> bool {
    matches!(
        error,
        RpcError::Transport(TransportError::Unsupported { .. })
    )
}

/// Says on stderr that the answer is one instance's, not the fleet's.
fn one_instance(scheme: &str, service: &str) {
    eprintln!(
        "note: the `{scheme}` transport has no broadcast: one instance of `{service}` answered; \
         others may be serving it too"
    );
}

fn print_pings(format: Format, fleet: &[rpc_core::introspection::Ping]) {
    if format == Format::Json {
        output::json(&fleet);
        return;
    }
    let rows: Vec<Vec<String>> = fleet
        .iter()
        .map(|p| {
            vec![
                p.service.clone(),
                p.instance.clone(),
                p.version.clone(),
                output::uptime(p.uptime_secs),
            ]
        })
        .collect();
    output::table(format, &["SERVICE", "INSTANCE", "VERSION", "UPTIME"], &rows);
}
