//! Errors and their exit codes: one code per kind, so scripts can tell a
//! service that is not there from one that failed.

use std::process::ExitCode;

use rpc_core::RpcError;

/// What went wrong, as the CLI reports it.
#[derive(Debug)]
pub(crate) enum CliError {
    /// The arguments were not usable (bad JSON, unknown URL scheme).
    Usage(String),
    /// Connecting failed, or setting up the runtime did.
    Setup(String),
    /// The call or query failed.
    Rpc(RpcError),
    /// Nobody answered a broadcast query.
    NobodyAnswered(String),
    /// The transport cannot do what the command needs (`ls` without
    /// broadcasts).
    Unsupported(String),
}

impl From<RpcError> for CliError {
    fn from(error: RpcError) -> Self {
        CliError::Rpc(error)
    }
}

/// The exit codes (also in docs/operations.md).
pub(crate) mod code {
    /// Bad arguments (clap's own usage errors exit with 2 as well).
    pub(crate) const USAGE: u8 = 2;
    /// Could not connect.
    pub(crate) const CONNECT: u8 = 3;
    /// The deadline passed.
    pub(crate) const TIMEOUT: u8 = 4;
    /// Nobody serves the service (or no instance answered).
    pub(crate) const NO_ROUTE: u8 = 5;
    /// The service has no such method.
    pub(crate) const NO_SUCH_METHOD: u8 = 6;
    /// Arguments or result did not encode or decode.
    pub(crate) const CODEC: u8 = 7;
    /// The handler failed (panicked).
    pub(crate) const REMOTE: u8 = 8;
    /// The server or client refused for lack of capacity, or size.
    pub(crate) const REFUSED: u8 = 9;
    /// The connection was lost, or the transport failed.
    pub(crate) const TRANSPORT: u8 = 10;
    /// The transport cannot do what the command needs.
    pub(crate) const UNSUPPORTED: u8 = 11;
}

fn code_of(error: &CliError) -> u8 {
    match error {
        CliError::Usage(_) => code::USAGE,
        CliError::Setup(_) => code::CONNECT,
        CliError::NobodyAnswered(_) => code::NO_ROUTE,
        CliError::Unsupported(_) => code::UNSUPPORTED,
        CliError::Rpc(error) => match error {
            RpcError::Timeout => code::TIMEOUT,
            RpcError::NoRoute { .. } => code::NO_ROUTE,
            RpcError::NoSuchMethod { .. } => code::NO_SUCH_METHOD,
            RpcError::Decode { .. } | RpcError::Encode { .. } => code::CODEC,
            RpcError::Remote { .. } => code::REMOTE,
            RpcError::Overloaded | RpcError::TooLarge { .. } => code::REFUSED,
            _ => code::TRANSPORT,
        },
    }
}

/// Prints `error` on stderr and returns its exit code.
pub(crate) fn report(error: &CliError) -> ExitCode {
    let (kind, message) = match error {
        CliError::Usage(message) => ("usage", message.clone()),
        CliError::Setup(message) => ("connect", message.clone()),
        CliError::NobodyAnswered(service) => {
            ("no_route", format!("no instance of `{service}` answered"))
        }
        CliError::Unsupported(message) => ("unsupported", message.clone()),
        CliError::Rpc(error) => (
            rpc_core::metrics::Outcome::of_result::<()>(&Err(clone(error))).as_str(),
            chain(error),
        ),
    };
    eprintln!("error[{kind}]: {message}");
    ExitCode::from(code_of(error))
}

/// The error and its sources, one sentence (async-nats and rdkafka say
/// what went wrong in the source).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An error of the same kind, for naming it (`RpcError` is not `Clone`).
fn clone(error: &RpcError) -> RpcError {
    match error {
        RpcError::Timeout => RpcError::Timeout,
        RpcError::NoRoute { service } => RpcError::NoRoute {
            service: service.clone(),
        },
        RpcError::NoSuchMethod { service, method } => RpcError::NoSuchMethod {
            service: service.clone(),
            method: method.clone(),
        },
        RpcError::Decode { message } => RpcError::Decode {
            message: message.clone(),
        },
        RpcError::Encode { message } => RpcError::Encode {
            message: message.clone(),
        },
        RpcError::Remote { message } => RpcError::Remote {
            message: message.clone(),
        },
        RpcError::Overloaded => RpcError::Overloaded,
        RpcError::ConnectionLost => RpcError::ConnectionLost,
        RpcError::Closed => RpcError::Closed,
        RpcError::TooLarge { size, limit } => RpcError::TooLarge {
            size: *size,
            limit: *limit,
        },
        _ => RpcError::ConnectionLost,
    }
}
