//! What can stop a benchmark run.

use lock_core::{ConfigError, LockError};

/// Why a scenario could not produce its figures.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A lock call failed where the scenario needed it to succeed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The elector refused the scenario's timings.
    #[error("invalid election config: {0}")]
    Config(#[from] ConfigError),
    /// A process, file or pipe failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Something the scenario waits for did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A server or a child process could not be set up.
    #[error("setup: {0}")]
    Setup(String),
    /// A server's figures could not be read.
    #[error("cannot count requests at the server: {0}")]
    Counter(String),
    /// Two leaders at once, or a lost lease where none may be lost: the run is void.
    #[error("safety violated: {0}")]
    Safety(String),
}

impl BenchError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// The result of a benchmark step.
pub type BenchResult<T> = Result<T, BenchError>;
