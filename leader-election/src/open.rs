//! `open`: a lock from a URL, for whichever backends this build has.

use std::sync::Arc;

use lock_core::{Lock, LockError, LockResult};

use crate::url::{Backend, LockUrl};

/// The lock of election `name` at `url` (see [`LockUrl`] for the forms), ready for
/// [`LeaderElector::new`](crate::LeaderElector::new).
///
/// No I/O happens here but reading a kubeconfig (Kubernetes): the lock connects on its first
/// call and reconnects after failures, so an unreachable server shows as retried errors once
/// the election runs, and a service may start before its store. A URL that cannot be read, a
/// bad election name, a TLS file that cannot be loaded or a backend left out of this build
/// (its cargo feature is off) is an [`InvalidConfig`](LockError::InvalidConfig) error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let lock = leader_election::open(&format!("file://{}/", dir.path().display()), "orders").await?;
/// assert!(lock.describe().ends_with("orders.json"));
/// # Ok(())
/// # }
/// ```
pub async fn open(url: &str, name: &str) -> LockResult<Arc<dyn Lock>> {
    let url = LockUrl::parse(url).map_err(|err| LockError::InvalidConfig(err.to_string()))?;
    open_url(&url, name).await
}

/// [`open`] for a URL parsed already.
pub async fn open_url(url: &LockUrl, name: &str) -> LockResult<Arc<dyn Lock>> {
    // Unused in a build without any backend.
    let _ = name;
    match url {
        #[cfg(feature = "file")]
        LockUrl::File {
            path,
            election_in_dir,
        } => Ok(Arc::new(lock_file::FileLock::new(file_path(
            path,
            *election_in_dir,
            name,
        )?))),
        #[cfg(feature = "redis")]
        LockUrl::Redis {
            url,
            ca,
            min_replicas,
        } => Ok(Arc::new(lock_redis::RedisLock::new(
            url,
            name,
            redis_options(ca.as_ref(), *min_replicas),
        )?)),
        #[cfg(feature = "etcd")]
        LockUrl::Etcd {
            endpoints,
            user,
            ca,
            identity,
        } => Ok(Arc::new(etcd_lock(
            endpoints,
            user.as_ref(),
            ca.as_ref(),
            identity.as_ref(),
            name,
        )?)),
        #[cfg(feature = "k8s")]
        LockUrl::K8s {
            kind,
            namespace,
            kubeconfig,
        } => {
            lock_k8s::connect(
                kind.parse()?,
                name,
                kube_options(namespace.as_ref(), kubeconfig.as_ref()),
            )
            .await
        }
        #[allow(unreachable_patterns)]
        other => Err(not_built(other.backend())),
    }
}

/// The error for a URL whose backend this build left out.
#[allow(dead_code)]
pub(crate) fn not_built(backend: Backend) -> LockError {
    LockError::InvalidConfig(format!(
        "{backend}:// locks are not in this build: turn on the `{backend}` feature of the \
         leader-election crate (features = [\"{backend}\"] in Cargo.toml)"
    ))
}

/// The record file of election `name` for a `file://` URL: the URL's file, or `NAME.json` in
/// its directory (`election_in_dir`), where `name` must be a plain file name.
#[cfg(feature = "file")]
pub(crate) fn file_path(
    path: &std::path::Path,
    election_in_dir: bool,
    name: &str,
) -> LockResult<std::path::PathBuf> {
    if !election_in_dir {
        return Ok(path.to_path_buf());
    }
    // Letters, digits, `-`, `_` and `.` only (no leading `.`): nothing that a path could read as
    // a separator, a drive or a parent, on any platform.
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() || !name.chars().all(plain) || name.starts_with('.') {
        return Err(LockError::InvalidConfig(format!(
            "election name `{name}` cannot be a file name in {}: use letters, digits, `-`, `_` and `.` (not first)",
            path.display()
        )));
    }
    Ok(path.join(format!("{name}.json")))
}

/// The etcd lock of election `name` for an `etcd://` URL's parts.
#[cfg(feature = "etcd")]
pub(crate) fn etcd_lock(
    endpoints: &[String],
    user: Option<&(String, String)>,
    ca: Option<&std::path::PathBuf>,
    identity: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    name: &str,
) -> LockResult<lock_etcd::EtcdLock> {
    lock_etcd::EtcdLock::new(endpoints, name, etcd_options(user, ca, identity))
}

/// The etcd options an `etcd://` URL's parts ask for.
#[cfg(feature = "etcd")]
pub(crate) fn etcd_options(
    user: Option<&(String, String)>,
    ca: Option<&std::path::PathBuf>,
    identity: Option<&(std::path::PathBuf, std::path::PathBuf)>,
) -> lock_etcd::EtcdLockOptions {
    let mut options = lock_etcd::EtcdLockOptions::default();
    if let Some((user, password)) = user {
        options = options.with_user(user.clone(), password.clone());
    }
    if let Some(ca) = ca {
        options = options.with_tls_ca(ca.clone());
    }
    if let Some((cert, key)) = identity {
        options = options.with_client_identity(cert.clone(), key.clone());
    }
    options
}

/// The Redis options a `redis://` URL's query asks for.
#[cfg(feature = "redis")]
pub(crate) fn redis_options(
    ca: Option<&std::path::PathBuf>,
    min_replicas: u32,
) -> lock_redis::RedisLockOptions {
    let options = lock_redis::RedisLockOptions::default().with_min_replicas(min_replicas);
    match ca {
        Some(ca) => options.with_tls_ca(ca.clone()),
        None => options,
    }
}

/// The Kubernetes options a `k8s://` URL asks for.
#[cfg(feature = "k8s")]
pub(crate) fn kube_options(
    namespace: Option<&String>,
    kubeconfig: Option<&std::path::PathBuf>,
) -> lock_k8s::KubeLockOptions {
    let mut options = lock_k8s::KubeLockOptions::default();
    if let Some(namespace) = namespace {
        options = options.with_namespace(namespace.clone());
    }
    if let Some(kubeconfig) = kubeconfig {
        options = options.with_kubeconfig(kubeconfig.clone());
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_lock_file_in_a_directory_is_named_after_the_election() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/", dir.path().display());
        let lock = open(&url, "orders").await.unwrap();
        assert_eq!(
            lock.describe(),
            format!("file://{}", dir.path().join("orders.json").display())
        );
        for bad in ["../escape", "a/b", "x\\..\\evil", "c:evil", ".hidden", ""] {
            let err = open(&url, bad).await.unwrap_err().to_string();
            assert!(err.contains("cannot be a file name"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn a_bad_url_is_an_invalid_config_that_says_what_is_expected() {
        let err = open("localhost:6379", "orders").await.unwrap_err();
        assert!(matches!(err, LockError::InvalidConfig(_)), "{err:?}");
        assert!(err.to_string().contains("SCHEME://"), "{err}");
    }

    #[cfg(not(feature = "redis"))]
    #[tokio::test]
    async fn a_backend_left_out_names_its_feature() {
        let err = open("redis://127.0.0.1:6379", "orders").await.unwrap_err();
        assert!(err.to_string().contains("`redis` feature"), "{err}");
    }
}
