//! What a backend gives the suite: fresh lock handles and raw access to the stored value.

use std::sync::Arc;

use crate::Lock;

/// A backend under test, as the conformance suite sees it.
///
/// Every call of [`lock`](Self::lock) makes a new handle (a new client, as a separate process
/// would have) on the election called `name`; all handles with the same name share one stored
/// record. [`write_raw`](Self::write_raw) and [`read_raw`](Self::read_raw) bypass the lock, the
/// way a person with the backend's command-line client could.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A new handle on the election called `name`.
    async fn lock(&self, name: &str) -> Arc<dyn Lock>;

    /// Stores `bytes` as the value of the election called `name`, bypassing the lock.
    async fn write_raw(&self, name: &str, bytes: &[u8]);

    /// The bytes stored for the election called `name`, if any, read bypassing the lock.
    async fn read_raw(&self, name: &str) -> Option<Vec<u8>>;

    /// What this backend offers beyond the contract every lock keeps; the cases check what it
    /// claims here, so a backend cannot pass by claiming less than it does.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

/// What a backend offers beyond the contract every lock keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Lock::watch`] gives change hints (the default). Without them a standby polls every
    /// retry period, and the hints case checks that `watch` says so (returns `None`).
    pub hints: bool,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self { hints: true }
    }
}

impl Capabilities {
    /// A backend without change hints: its electors poll.
    pub fn without_hints() -> Self {
        Self { hints: false }
    }
}
