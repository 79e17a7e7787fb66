//! `open_life`: a [`LifeLock`] (leader-for-life) from a URL, for the backends that can tell
//! when a holder's process is gone.

use std::sync::Arc;
use std::time::Duration;

use lock_core::{LifeLock, LockError, LockResult};

use crate::url::LockUrl;

/// Why Redis cannot hold a lock for life, for the error that refuses it.
pub const REDIS_FOR_LIFE_REFUSAL: &str = "Redis cannot hold a lock for the life of a process: \
     it has no notion of a client's life that others can trust (a key either expires by time, \
     which is a lease, or outlives a dead holder forever). Use leases with fencing tokens on \
     Redis (leave out --leader-for-life), or elect for life on etcd, whose sessions end when \
     their holder stops keeping them alive";

/// The leader-for-life lock of election `name` at `url`, for a
/// [`LifeElector`](crate::LifeElector):
///
/// - `file://`: [`FileLifeLock`](lock_file::FileLifeLock), an OS lock held for the life of the
///   process (`session_ttl` plays no part);
/// - `etcd://`: [`EtcdLifeLock`](lock_etcd::EtcdLifeLock), the key bound to an etcd lease this
///   process keeps alive; `session_ttl` is the lease's TTL (whole seconds, at least 2 s);
/// - `redis://`: refused ([`InvalidConfig`](LockError::InvalidConfig), see
///   [`REDIS_FOR_LIFE_REFUSAL`]);
/// - `k8s://`: [`ForLifeLock`](lock_k8s::ForLifeLock), the ConfigMap `name` owned by this
///   process' Pod, as operator-lib's `leader.Become` keeps it (the identity is the Pod's name,
///   `POD_NAME`; the namespace the URL's, else `POD_NAMESPACE`, else the service account's;
///   the kind `lease` (the default) or `configmap`, `endpoints` is refused; `session_ttl` plays
///   no part).
pub async fn open_life_url(
    url: &LockUrl,
    name: &str,
    session_ttl: Duration,
) -> LockResult<Arc<dyn LifeLock>> {
    let _ = (name, session_ttl);
    match url {
        LockUrl::Redis { .. } => Err(LockError::InvalidConfig(REDIS_FOR_LIFE_REFUSAL.to_owned())),
        #[cfg(feature = "file")]
        LockUrl::File {
            path,
            election_in_dir,
        } => {
            // The same file `open_url` would choose, its name included.
            let path = crate::open::file_path(path, *election_in_dir, name)?;
            Ok(Arc::new(lock_file::FileLifeLock::new(path)))
        }
        #[cfg(feature = "etcd")]
        LockUrl::Etcd {
            endpoints,
            user,
            ca,
            identity,
        } => {
            let lock = crate::open::etcd_lock(
                endpoints,
                user.as_ref(),
                ca.as_ref(),
                identity.as_ref(),
                name,
            )?;
            Ok(Arc::new(lock_etcd::EtcdLifeLock::new(lock, session_ttl)?))
        }
        #[cfg(feature = "k8s")]
        LockUrl::K8s {
            kind,
            namespace,
            kubeconfig,
        } => {
            // operator-lib's leader-for-life lock is a ConfigMap owned by the Pod: the default
            // kind (lease) and configmap both mean it; endpoints is refused.
            if kind.parse::<lock_k8s::LockKind>()? == lock_k8s::LockKind::Endpoints {
                return Err(LockError::InvalidConfig(
                    "leader-for-life on Kubernetes is a ConfigMap owned by the leader's Pod (as \
                     operator-lib's leader.Become keeps it): use --lock-kind configmap (or leave \
                     it out), not endpoints"
                        .to_owned(),
                ));
            }
            let options = crate::open::kube_options(namespace.as_ref(), kubeconfig.as_ref());
            Ok(Arc::new(
                lock_k8s::ForLifeLock::connect(name, options).await?,
            ))
        }
        #[allow(unreachable_patterns)]
        other => Err(crate::open::not_built(other.backend())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn redis_is_refused_saying_why_and_what_instead() {
        let url = LockUrl::parse("redis://127.0.0.1:6379").unwrap();
        let err = open_life_url(&url, "orders", Duration::from_secs(15))
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::InvalidConfig(_)), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("no notion of a client's life"),
            "{message}"
        );
        assert!(message.contains("fencing tokens"), "{message}");
        assert!(message.contains("etcd"), "{message}");
    }

    #[cfg(feature = "file")]
    #[tokio::test]
    async fn a_file_url_gives_the_file_life_lock_of_the_election() {
        let dir = tempfile::tempdir().unwrap();
        let url = LockUrl::parse(&format!("file://{}/", dir.path().display())).unwrap();
        let lock = open_life_url(&url, "orders", Duration::from_secs(15))
            .await
            .unwrap();
        assert!(
            lock.describe().contains("orders.json.life"),
            "{}",
            lock.describe()
        );
        assert_eq!(lock.holder().await.unwrap(), None);
    }
}
