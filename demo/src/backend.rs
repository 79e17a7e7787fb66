//! The choice of backend: which store holds the election record.

use std::sync::Arc;

use lock_core::Lock;

use crate::cli::Cli;

/// A store for the election record. Each variant is one backend crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A JSON record in a local file (--lock-file), for instances on one machine; no server
    /// needed.
    File,
}

impl Backend {
    /// Opens the lock this backend keeps, as the flags describe it. Opening does no IO: an
    /// unreachable store shows up as retried errors in the logs once the election runs.
    pub fn open(self, cli: &Cli) -> Arc<dyn Lock> {
        match self {
            Self::File => Arc::new(lock_file::FileLock::new(cli.lock_file.clone())),
        }
    }
}
