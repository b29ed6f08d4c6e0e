//! Which transport a URL's scheme names. Each transport adds its schemes
//! here, one line each, with the function that connects.
//!
//! | scheme | transport | the rest of the URL |
//! |---|---|---|
//! | `amqp`, `amqps` | AMQP 0-9-1 (RabbitMQ) | the broker URL as lapin takes it |
//! | `nats` | NATS, core request/reply | `host:port`, comma-separated for a cluster |
//! | `nats+jetstream` | NATS, durable mode (JetStream) | as `nats` |
//! | `zmq+tcp`, `zmq+ipc` | ZeroMQ (brokerless) | the server's endpoint; comma-separated for several servers |
//! | `kafka` | Kafka | the bootstrap list, `host:port[,host:port...]` |
//!
//! A list repeats the scheme or leaves it out after the first:
//! `nats://a:4222,nats://b:4222` and `nats://a:4222,b:4222` are the same.
//! Each transport is a cargo feature of this package (all on by default),
//! so a build can leave out one it does not need (Kafka's C library).

use std::future::Future;
use std::pin::Pin;

use rpc_core::DynTransport;

use crate::exit::CliError;
#[cfg(any(feature = "nats", feature = "zmq", feature = "kafka"))]
use crate::exit::chain;

#[cfg(not(any(feature = "amqp", feature = "nats", feature = "zmq", feature = "kafka")))]
compile_error!("the `rpc` CLI needs at least one transport feature: amqp, nats, zmq or kafka");

/// What a connection needs beyond the URL.
#[derive(Clone, Debug)]
pub(crate) struct ConnectOptions {
    /// Prefix of the names the servers use, as they were configured: AMQP
    /// `queue_prefix`, NATS `subject_prefix`, Kafka `topic_prefix`.
    /// ZeroMQ names nothing, so it takes none.
    pub(crate) prefix: String,
}

/// A connected transport, and what to do before the process exits.
pub(crate) struct Connection {
    /// The transport the command uses.
    pub(crate) transport: DynTransport,
    /// Removes what connecting left on the broker (Kafka: the reply topic
    /// each client creates), so a CLI run from cron leaves nothing behind.
    pub(crate) cleanup: Option<Finishing>,
}

impl Connection {
    fn new(transport: DynTransport) -> Self {
        Connection {
            transport,
            cleanup: None,
        }
    }
}

/// A cleanup to await.
pub(crate) type Finishing = Pin<Box<dyn Future<Output = ()> + Send>>;

type Connecting = Pin<Box<dyn Future<Output = Result<Connection, CliError>> + Send>>;

/// A URL scheme and how to connect to a URL of it.
pub(crate) struct Scheme {
    /// The scheme, before `://`.
    pub(crate) name: &'static str,
    /// Connects to `url`.
    pub(crate) connect: fn(url: String, options: ConnectOptions) -> Connecting,
}

/// Every scheme this build knows.
pub(crate) const SCHEMES: &[Scheme] = &[
    #[cfg(feature = "amqp")]
    Scheme {
        name: "amqp",
        connect: amqp,
    },
    #[cfg(feature = "amqp")]
    Scheme {
        name: "amqps",
        connect: amqp,
    },
    #[cfg(feature = "nats")]
    Scheme {
        name: "nats",
        connect: nats,
    },
    #[cfg(feature = "nats")]
    Scheme {
        name: "nats+jetstream",
        connect: nats_jetstream,
    },
    #[cfg(feature = "zmq")]
    Scheme {
        name: "zmq+tcp",
        connect: zmq,
    },
    #[cfg(feature = "zmq")]
    Scheme {
        name: "zmq+ipc",
        connect: zmq,
    },
    #[cfg(feature = "kafka")]
    Scheme {
        name: "kafka",
        connect: kafka,
    },
];

/// The name the client gives itself where the transport shows one.
#[cfg(any(feature = "amqp", feature = "nats", feature = "kafka"))]
const CLIENT_NAME: &str = "rpc cli";

#[cfg(feature = "amqp")]
fn amqp(url: String, options: ConnectOptions) -> Connecting {
    Box::pin(async move {
        let transport = rpc_transport_amqp::AmqpTransport::builder(url)
            .queue_prefix(options.prefix)
            .connection_name(CLIENT_NAME)
            .connect()
            .await
            .map_err(|e| CliError::Setup(e.to_string()))?;
        // Its reply queue is exclusive: it goes with the connection.
        Ok(Connection::new(DynTransport::new(transport)))
    })
}

#[cfg(feature = "nats")]
fn nats(url: String, options: ConnectOptions) -> Connecting {
    Box::pin(nats_in(url, options, rpc_transport_nats::Mode::Core))
}

#[cfg(feature = "nats")]
fn nats_jetstream(url: String, options: ConnectOptions) -> Connecting {
    Box::pin(nats_in(url, options, rpc_transport_nats::Mode::Durable))
}

/// NATS in `mode`: the servers' mode, since a core client's requests never
/// reach a durable server's stream (nor the other way round).
#[cfg(feature = "nats")]
async fn nats_in(
    url: String,
    options: ConnectOptions,
    mode: rpc_transport_nats::Mode,
) -> Result<Connection, CliError> {
    let servers = list(&url)?
        .iter()
        .map(|(_, rest)| format!("nats://{rest}"))
        .collect::<Vec<_>>()
        .join(",");
    let transport = rpc_transport_nats::NatsTransport::builder(servers)
        .subject_prefix(options.prefix)
        .connection_name(CLIENT_NAME)
        .mode(mode)
        .connect()
        .await
        .map_err(|e| CliError::Setup(chain(&e)))?;
    // Core NATS stores nothing; in durable mode only servers make streams.
    Ok(Connection::new(DynTransport::new(transport)))
}

#[cfg(feature = "zmq")]
fn zmq(url: String, options: ConnectOptions) -> Connecting {
    Box::pin(async move {
        if !options.prefix.is_empty() {
            return Err(CliError::Usage(
                "ZeroMQ names no queues or subjects: drop --queue-prefix".into(),
            ));
        }
        let endpoints = zmq_endpoints(&url)?;
        let mut builder = rpc_transport_zmq::ZmqTransport::builder();
        for endpoint in &endpoints {
            builder = builder.connect(endpoint.clone());
        }
        // Waits (up to the connect timeout) for each server's READY.
        let transport = builder
            .build()
            .await
            .map_err(|e| CliError::Setup(chain(&e)))?;
        let ready = transport.ready_servers();
        if ready.is_empty() {
            return Err(CliError::Setup(format!(
                "no ZeroMQ server answered at {}",
                endpoints.join(", ")
            )));
        }
        for endpoint in endpoints.iter().filter(|e| !ready.contains(e)) {
            eprintln!("note: no ZeroMQ server answered at {endpoint}; asking the others");
        }
        Ok(Connection::new(DynTransport::new(transport)))
    })
}

/// The ZeroMQ endpoints of a `zmq+tcp://` or `zmq+ipc://` URL (a list may
/// mix them): `tcp://...` and `ipc://...`.
#[cfg(any(feature = "zmq", test))]
fn zmq_endpoints(url: &str) -> Result<Vec<String>, CliError> {
    list(url)?
        .into_iter()
        .map(|(scheme, rest)| match scheme.strip_prefix("zmq+") {
            Some(kind @ ("tcp" | "ipc")) => Ok(format!("{kind}://{rest}")),
            _ => Err(CliError::Usage(format!(
                "`{scheme}://{rest}`: a ZeroMQ endpoint is zmq+tcp://HOST:PORT or zmq+ipc://PATH"
            ))),
        })
        .collect()
}

#[cfg(feature = "kafka")]
fn kafka(url: String, options: ConnectOptions) -> Connecting {
    Box::pin(async move {
        let bootstrap = kafka_bootstrap(&url)?;
        let transport = rpc_transport_kafka::KafkaTransport::builder(bootstrap)
            .topic_prefix(options.prefix)
            .client_id(CLIENT_NAME.replace(' ', "-"))
            .connect()
            .await
            .map_err(|e| CliError::Setup(chain(&e)))?;
        let cleanup: Finishing = Box::pin({
            let transport = transport.clone();
            async move {
                // The reply topic this client created for its answers.
                if let Err(error) = transport.cleanup().await {
                    eprintln!(
                        "note: could not delete the reply topic {}: {}",
                        transport.reply_topic(),
                        chain(&error)
                    );
                }
            }
        });
        Ok(Connection {
            transport: DynTransport::new(transport),
            cleanup: Some(cleanup),
        })
    })
}

/// The bootstrap list of a `kafka://` URL: `host:port[,host:port...]`.
#[cfg(any(feature = "kafka", test))]
fn kafka_bootstrap(url: &str) -> Result<String, CliError> {
    let brokers = list(url)?;
    for (scheme, rest) in &brokers {
        if *scheme != "kafka" || rest.is_empty() || rest.contains('/') {
            return Err(CliError::Usage(format!(
                "`{scheme}://{rest}`: a Kafka URL is kafka://HOST:PORT[,HOST:PORT...]"
            )));
        }
    }
    Ok(brokers
        .iter()
        .map(|(_, rest)| *rest)
        .collect::<Vec<_>>()
        .join(","))
}

/// The parts of a comma-separated list of URLs, each as (scheme, rest); a
/// part without `://` has the scheme of the part before it.
#[cfg_attr(
    not(any(feature = "nats", feature = "zmq", feature = "kafka")),
    allow(dead_code)
)]
fn list(url: &str) -> Result<Vec<(&str, &str)>, CliError> {
    let mut parts = Vec::new();
    let mut scheme = "";
    for part in url.split(',').map(str::trim) {
        let rest = match part.split_once("://") {
            Some((named, rest)) => {
                scheme = named;
                rest
            }
            None => part,
        };
        if scheme.is_empty() || rest.is_empty() {
            return Err(CliError::Usage(format!("`{url}` is no URL list")));
        }
        parts.push((scheme, rest));
    }
    Ok(parts)
}

/// Connects to `url` through the transport its scheme names.
pub(crate) async fn connect(url: &str, options: ConnectOptions) -> Result<Connection, CliError> {
    let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
    match SCHEMES.iter().find(|s| s.name == scheme) {
        Some(found) => (found.connect)(url.to_owned(), options).await,
        None => Err(CliError::Usage(format!(
            "no transport for the URL scheme `{scheme}` (known: {})",
            SCHEMES
                .iter()
                .map(|s| s.name)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(result: Result<impl std::fmt::Debug, CliError>) -> String {
        match result {
            Err(CliError::Usage(message)) => message,
            other => panic!("not a usage error: {other:?}"),
        }
    }

    #[test]
    fn lists_repeat_or_inherit_the_scheme() {
        let parts = list("nats://a:4222, nats://b:4222,c:4222").unwrap();
        assert_eq!(
            parts,
            [("nats", "a:4222"), ("nats", "b:4222"), ("nats", "c:4222")]
        );
        usage(list("a:4222"));
        usage(list("nats://a:4222,"));
    }

    #[test]
    fn kafka_urls_are_bootstrap_lists() {
        assert_eq!(
            kafka_bootstrap("kafka://127.0.0.1:19092").unwrap(),
            "127.0.0.1:19092"
        );
        assert_eq!(
            kafka_bootstrap("kafka://k1:9092,kafka://k2:9092,k3:9092").unwrap(),
            "k1:9092,k2:9092,k3:9092"
        );
        let message = usage(kafka_bootstrap("kafka://k1:9092/topic"));
        assert!(message.contains("kafka://HOST:PORT"), "{message}");
        usage(kafka_bootstrap("kafka://k1:9092,nats://n:4222"));
    }

    #[test]
    fn zmq_urls_are_endpoints() {
        assert_eq!(
            zmq_endpoints("zmq+tcp://127.0.0.1:5555,zmq+ipc:///run/calc.sock").unwrap(),
            ["tcp://127.0.0.1:5555", "ipc:///run/calc.sock"]
        );
        assert_eq!(
            zmq_endpoints("zmq+tcp://a:1,b:2").unwrap(),
            ["tcp://a:1", "tcp://b:2"]
        );
        let message = usage(zmq_endpoints("zmq+inproc://x"));
        assert!(message.contains("zmq+tcp://HOST:PORT"), "{message}");
    }

    #[test]
    fn every_scheme_is_known_once() {
        let mut names: Vec<_> = SCHEMES.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCHEMES.len());
        for name in [
            "amqp",
            "amqps",
            "nats",
            "nats+jetstream",
            "zmq+tcp",
            "zmq+ipc",
            "kafka",
        ] {
            assert!(
                cfg!(not(all(
                    feature = "amqp",
                    feature = "nats",
                    feature = "zmq",
                    feature = "kafka"
                ))) || names.contains(&name),
                "{name}"
            );
        }
    }
}
