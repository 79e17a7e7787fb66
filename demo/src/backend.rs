//! The choice of backend: which store holds the election record.

use std::sync::Arc;

use lock_core::{Lock, LockError};
use lock_etcd::{EtcdLock, EtcdLockOptions};
use lock_k8s::KubeLockOptions;
use lock_redis::{RedisLock, RedisLockOptions};

use crate::cli::Cli;

/// A store for the election record. Each variant is one backend crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// A JSON record in a local file (--lock-file), for instances on one machine; no server
    /// needed.
    File,
    /// A Redis key named after --lock-name on the server at --redis-url; standbys are woken by
    /// pub/sub.
    Redis,
    /// An etcd key named after --lock-name on the cluster at --etcd-endpoints; standbys are
    /// woken by etcd watches.
    Etcd,
    /// A Kubernetes Lease (or ConfigMap, Endpoints: --lock-kind) named after --lock-name in
    /// --namespace; standbys are woken by a watch.
    K8s,
}

impl Backend {
    /// Opens the lock this backend keeps, as the flags describe it. Opening a server backend
    /// does no IO (Kubernetes reads its kubeconfig): an unreachable store shows up as retried
    /// errors in the logs once the election runs. Flags that cannot describe a lock (a
    /// malformed URL, say) are an error.
    pub async fn open(self, cli: &Cli) -> Result<Arc<dyn Lock>, LockError> {
        Ok(match self {
            Self::File => Arc::new(lock_file::FileLock::new(cli.lock_file.clone())),
            Self::Redis => {
                let mut options = RedisLockOptions::default();
                if let Some(ca) = &cli.redis_ca {
                    options = options.with_tls_ca(ca.clone());
                }
                Arc::new(RedisLock::new(&cli.redis_url, &cli.lock_name, options)?)
            }
            Self::Etcd => Arc::new(EtcdLock::new(
                &cli.etcd_endpoints,
                &cli.lock_name,
                EtcdLockOptions::default(),
            )?),
            Self::K8s => {
                let mut options = KubeLockOptions::default();
                if let Some(namespace) = &cli.namespace {
                    options = options.with_namespace(namespace.clone());
                }
                if let Some(kubeconfig) = &cli.kubeconfig {
                    options = options.with_kubeconfig(kubeconfig.clone());
                }
                lock_k8s::connect(cli.lock_kind.parse()?, &cli.lock_name, options).await?
            }
        })
    }
}
