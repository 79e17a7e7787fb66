//! How a lock finds its cluster and namespace and how long its calls may take.

use std::path::PathBuf;
use std::time::Duration;

use lock_core::{LockError, LockResult};

/// How long the API server may take to answer one call by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of a Kubernetes lock; [`Default`] gives the documented defaults.
///
/// ```
/// use std::time::Duration;
/// use lock_k8s::KubeLockOptions;
///
/// let options = KubeLockOptions::default()
///     .with_namespace("orders")
///     .with_kubeconfig("/etc/elector/kubeconfig")
///     .with_request_timeout(Duration::from_secs(2));
/// assert_eq!(options.namespace.as_deref(), Some("orders"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubeLockOptions {
    /// The namespace of the lock object. Unset: the kubeconfig context's namespace (as
    /// `kubectl` uses it), else the service account's namespace inside a pod (see
    /// [`resolve_namespace`](crate::resolve_namespace)), else `default`.
    pub namespace: Option<String>,
    /// A kubeconfig file to use. Unset: `KUBECONFIG`, `~/.kube/config`, else the in-cluster
    /// configuration, as `kubectl` finds them.
    pub kubeconfig: Option<PathBuf>,
    /// How long the API server may take to answer one call; a slower call fails as
    /// [`Unavailable`](LockError::Unavailable).
    pub request_timeout: Duration,
}

impl Default for KubeLockOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            kubeconfig: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

impl KubeLockOptions {
    /// The defaults: namespace and cluster from the environment, 5 s per call.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the namespace of the lock object.
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Uses this kubeconfig file.
    pub fn with_kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Sets how long one call may take.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    pub(crate) fn validate(&self) -> LockResult<()> {
        if self.request_timeout.is_zero() {
            return Err(LockError::InvalidConfig(
                "request_timeout must be greater than zero".into(),
            ));
        }
        Ok(())
    }
}

/// Checks that `name` can name a Lease, ConfigMap or Endpoints object (a DNS subdomain:
/// at most 253 lower-case letters, digits, `-` and `.`, starting and ending alphanumeric).
pub(crate) fn check_object_name(what: &str, name: &str) -> LockResult<()> {
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| alphanumeric(c) || c == '-' || c == '.')
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric);
    if valid {
        Ok(())
    } else {
        Err(LockError::InvalidConfig(format!(
            "{what} {name:?} is not a valid Kubernetes name: use at most 253 lower-case letters, \
             digits, '-' and '.', starting and ending with a letter or digit"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_object_name("lock name", "orders-1.a").is_ok());
        for bad in ["", "Orders", "-a", "a-", "a_b", "a b"] {
            assert!(check_object_name("lock name", bad).is_err(), "{bad}");
        }
        assert!(KubeLockOptions::new()
            .with_request_timeout(Duration::ZERO)
            .validate()
            .is_err());
    }
}
