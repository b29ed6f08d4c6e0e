//! Why a benchmark run failed.

/// A failure while setting up a system or driving calls through it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum BenchError {
    /// A call returned an error.
    #[error("{system}: call failed: {message}")]
    Call {
        /// Which system.
        system: &'static str,
        /// The error, as text (each system has its own error type).
        message: String,
    },
    /// A call returned, but not the sum it was asked for.
    #[error("{system}: add({a}, 1) returned {got}")]
    WrongAnswer {
        /// Which system.
        system: &'static str,
        /// The first argument.
        a: u64,
        /// What came back.
        got: u64,
    },
    /// Starting a server, a client or a connection failed.
    #[error("{system}: setup failed: {message}")]
    Setup {
        /// Which system.
        system: &'static str,
        /// The error, as text.
        message: String,
    },
    /// A worker task panicked or was cancelled.
    #[error("a load worker died: {0}")]
    Worker(#[from] tokio::task::JoinError),
    /// Building a tokio runtime failed.
    #[error("could not build a tokio runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Writing an output file failed.
    #[error("could not write {path}: {source}")]
    Output {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A command-line argument was not understood.
    #[error("{0}\n\n{usage}", usage = crate::args::USAGE)]
    Usage(String),
}

impl BenchError {
    /// A call failure of `system`.
    pub(crate) fn call(system: &'static str, error: impl std::fmt::Display) -> Self {
        BenchError::Call {
            system,
            message: error.to_string(),
        }
    }

    /// A setup failure of `system`.
    pub(crate) fn setup(system: &'static str, error: impl std::fmt::Display) -> Self {
        BenchError::Setup {
            system,
            message: error.to_string(),
        }
    }

    /// A setup failure of `system` from an error with sources: each cause
    /// is named, since "transport failed" alone does not say why.
    pub(crate) fn setup_from(system: &'static str, error: &dyn std::error::Error) -> Self {
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        BenchError::Setup { system, message }
    }
}
