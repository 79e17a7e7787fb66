//! Where the benchmark elects: one running server per backend, as a lock URL a child process
//! can be told on its command line. The facade crate's `open` makes the locks.

use std::sync::Arc;

use leader_election::{Lock, LockError, LockResult, LockUrl};
use serde::{Deserialize, Serialize};

/// How to reach one backend's running server: a lock URL.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    /// `file:///DIR/`, `redis://…`, `etcd://…` or `k8s://lease/NAMESPACE?kubeconfig=…`.
    pub url: String,
}

impl Target {
    /// The target at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into() }
    }

    /// The URL, parsed.
    pub fn lock_url(&self) -> LockResult<LockUrl> {
        LockUrl::parse(&self.url).map_err(|err| LockError::InvalidConfig(err.to_string()))
    }

    /// The lock of election `name` on this target, with a connection of its own (as a separate
    /// replica would have).
    pub async fn open(&self, name: &str) -> LockResult<Arc<dyn Lock>> {
        match self.lock_url()? {
            // One directory per election: a file lock's change hints watch its directory, so
            // elections that share one would wake each other's watchers.
            LockUrl::File {
                path,
                election_in_dir: true,
            } => {
                let dir = path.join(name);
                std::fs::create_dir_all(&dir).map_err(|err| LockError::Unavailable {
                    lock: dir.display().to_string(),
                    reason: format!("cannot create the election's directory: {err}"),
                    source: None,
                })?;
                leader_election::open(&format!("file://{}/", dir.display()), "leader").await
            }
            url => leader_election::open_url(&url, name).await,
        }
    }
}
