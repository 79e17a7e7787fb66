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
}
