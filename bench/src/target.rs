//! Where the benchmark elects: one running server per backend, as something a child process
//! can be told on its command line.

use std::path::PathBuf;
use std::sync::Arc;

use lock_core::{Lock, LockError, LockResult};
use lock_etcd::EtcdLock;
use lock_file::FileLock;
use lock_k8s::{KubeLockOptions, LockKind};
use lock_redis::RedisLock;
use serde::{Deserialize, Serialize};

/// The backends the benchmark runs on, in the order of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A file in a temporary directory.
    File,
    /// A redis-server.
    Redis,
    /// An etcd 3.4.
    Etcd,
    /// A kube-apiserver (a Lease), with its own etcd.
    K8s,
}

impl Backend {
    /// Every backend.
    pub const ALL: [Backend; 4] = [Backend::File, Backend::Redis, Backend::Etcd, Backend::K8s];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Backend::File => "file",
            Backend::Redis => "redis",
            Backend::Etcd => "etcd",
            Backend::K8s => "k8s",
        }
    }
}

/// How to reach one backend's running server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Lock files under this directory: one directory per election (a file lock's change hints
    /// watch its directory, so elections that share one wake each other's watchers).
    File {
        /// The directory.
        dir: PathBuf,
    },
    /// A Redis server.
    Redis {
        /// `redis://127.0.0.1:<port>`.
        url: String,
    },
    /// An etcd server.
    Etcd {
        /// `http://127.0.0.1:<port>`.
        endpoint: String,
    },
    /// A kube-apiserver; elections are Leases in `namespace`.
    K8s {
        /// An admin kubeconfig.
        kubeconfig: PathBuf,
        /// The namespace of the Leases.
        namespace: String,
    },
}

impl Target {
    /// The lock of election `name` on this target, with a connection of its own (as a separate
    /// replica would have).
    pub async fn open(&self, name: &str) -> LockResult<Arc<dyn Lock>> {
        Ok(match self {
            Target::File { dir } => {
                let dir = dir.join(name);
                std::fs::create_dir_all(&dir).map_err(|err| LockError::Unavailable {
                    lock: dir.display().to_string(),
                    reason: format!("cannot create the election's directory: {err}"),
                    source: None,
                })?;
                Arc::new(FileLock::new(dir.join("leader.json")))
            }
            Target::Redis { url } => Arc::new(RedisLock::connect(url, name).await?),
            Target::Etcd { endpoint } => Arc::new(EtcdLock::connect(&[endpoint], name).await?),
            Target::K8s {
                kubeconfig,
                namespace,
            } => {
                let options = KubeLockOptions::default()
                    .with_namespace(namespace.clone())
                    .with_kubeconfig(kubeconfig);
                lock_k8s::connect(LockKind::Lease, name, options).await?
            }
        })
    }
}
