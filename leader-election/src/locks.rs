//! Many elections on one backend: one client for all their locks.

use std::sync::Arc;

use lock_core::{Lock, LockError, LockResult};

use crate::url::LockUrl;

/// The locks of many elections on one backend, sharing one client: one connection (two on
/// Redis, commands and pub/sub) and one change watch on etcd and Kubernetes, whatever the number
/// of elections. [`open`](crate::open) gives each lock a client of its own, which suits one
/// election per process; a process that elects per shard, partition or tenant wants this.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let url = format!("file://{}/", dir.path().display());
/// // url is "file:///run/app/", "redis://…", "etcd://…" or "k8s://lease/NAMESPACE"
/// let locks = leader_election::Locks::connect(&url).await?;
/// let shards: Vec<_> = (0..8)
///     .map(|shard| locks.lock(&format!("shard-{shard}")))
///     .collect::<Result<_, _>>()?;
/// assert_eq!(shards.len(), 8);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Locks {
    shared: Shared,
}

#[derive(Clone)]
enum Shared {
    /// Files share nothing: each election's file is watched in its directory.
    #[cfg(feature = "file")]
    File {
        path: std::path::PathBuf,
        election_in_dir: bool,
    },
    #[cfg(feature = "redis")]
    Redis(lock_redis::RedisClient),
    #[cfg(feature = "etcd")]
    Etcd(lock_etcd::EtcdClient),
    #[cfg(feature = "k8s")]
    Lease(lock_k8s::ObjectLocks<lock_k8s::k8s_openapi::api::coordination::v1::Lease>),
    #[cfg(feature = "k8s")]
    ConfigMap(lock_k8s::ObjectLocks<lock_k8s::k8s_openapi::api::core::v1::ConfigMap>),
    #[cfg(feature = "k8s")]
    Endpoints(lock_k8s::ObjectLocks<lock_k8s::k8s_openapi::api::core::v1::Endpoints>),
}

impl std::fmt::Debug for Locks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let backend = match &self.shared {
            #[cfg(feature = "file")]
            Shared::File { .. } => "file",
            #[cfg(feature = "redis")]
            Shared::Redis(_) => "redis",
            #[cfg(feature = "etcd")]
            Shared::Etcd(_) => "etcd",
            #[cfg(feature = "k8s")]
            Shared::Lease(_) | Shared::ConfigMap(_) | Shared::Endpoints(_) => "k8s",
        };
        f.debug_struct("Locks").field("backend", &backend).finish()
    }
}

impl Locks {
    /// The shared client for a lock URL (the forms of [`LockUrl`]). Redis and etcd are
    /// contacted (a server that cannot be reached, or refuses the login, fails here);
    /// Kubernetes reads its configuration and contacts nothing yet.
    pub async fn connect(url: &str) -> LockResult<Self> {
        let url = LockUrl::parse(url).map_err(|err| LockError::InvalidConfig(err.to_string()))?;
        Self::connect_url(&url).await
    }

    /// [`connect`](Self::connect) for a URL parsed already.
    pub async fn connect_url(url: &LockUrl) -> LockResult<Self> {
        let shared = match url {
            #[cfg(feature = "file")]
            LockUrl::File {
                path,
                election_in_dir,
            } => Shared::File {
                path: path.clone(),
                election_in_dir: *election_in_dir,
            },
            #[cfg(feature = "redis")]
            LockUrl::Redis {
                url,
                ca,
                min_replicas,
            } => Shared::Redis(
                lock_redis::RedisClient::connect(
                    url,
                    crate::open::redis_options(ca.as_ref(), *min_replicas),
                )
                .await?,
            ),
            #[cfg(feature = "etcd")]
            LockUrl::Etcd {
                endpoints,
                user,
                ca,
                identity,
            } => Shared::Etcd(
                lock_etcd::EtcdClient::connect(
                    endpoints,
                    crate::open::etcd_options(user.as_ref(), ca.as_ref(), identity.as_ref()),
                )
                .await?,
            ),
            #[cfg(feature = "k8s")]
            LockUrl::K8s {
                kind,
                namespace,
                kubeconfig,
            } => {
                let options = crate::open::kube_options(namespace.as_ref(), kubeconfig.as_ref());
                match kind.parse()? {
                    lock_k8s::LockKind::Lease => {
                        Shared::Lease(lock_k8s::ObjectLocks::connect(options).await?)
                    }
                    lock_k8s::LockKind::ConfigMap => {
                        Shared::ConfigMap(lock_k8s::ObjectLocks::connect(options).await?)
                    }
                    lock_k8s::LockKind::Endpoints => {
                        Shared::Endpoints(lock_k8s::ObjectLocks::connect(options).await?)
                    }
                }
            }
            #[allow(unreachable_patterns)]
            other => return Err(crate::open::not_built(other.backend())),
        };
        Ok(Self { shared })
    }

    /// The lock of the election `name`, on the shared client. Contacts nothing; fails as
    /// `InvalidConfig` for a name the backend cannot use (see [`open`](crate::open)).
    pub fn lock(&self, name: &str) -> LockResult<Arc<dyn Lock>> {
        // Unused in a build without any backend.
        let _ = name;
        Ok(match &self.shared {
            #[cfg(feature = "file")]
            Shared::File {
                path,
                election_in_dir,
            } => Arc::new(lock_file::FileLock::new(crate::open::file_path(
                path,
                *election_in_dir,
                name,
            )?)),
            #[cfg(feature = "redis")]
            Shared::Redis(client) => Arc::new(client.lock(name)?),
            #[cfg(feature = "etcd")]
            Shared::Etcd(client) => Arc::new(client.lock(name)?),
            #[cfg(feature = "k8s")]
            Shared::Lease(locks) => Arc::new(locks.lock(name)?),
            #[cfg(feature = "k8s")]
            Shared::ConfigMap(locks) => Arc::new(locks.lock(name)?),
            #[cfg(feature = "k8s")]
            Shared::Endpoints(locks) => Arc::new(locks.lock(name)?),
        })
    }
}
