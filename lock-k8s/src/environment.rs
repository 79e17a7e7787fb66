//! Where a lock finds its cluster, its namespace and its identity: a kubeconfig or the
//! in-cluster configuration, the service account's namespace, the pod's name.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};
use lock_core::{LockError, LockResult};

/// The file in which Kubernetes tells a pod its service account's namespace.
pub const SERVICE_ACCOUNT_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace used when neither a flag nor the service account names one.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The namespace for a lock: `flag` when given (and not empty), else the namespace in
/// [`SERVICE_ACCOUNT_NAMESPACE_FILE`] (inside a pod), else `"default"`.
///
/// ```
/// assert_eq!(lock_k8s::resolve_namespace(Some("orders")), "orders");
/// ```
pub fn resolve_namespace(flag: Option<&str>) -> String {
    resolve_namespace_from(flag, Path::new(SERVICE_ACCOUNT_NAMESPACE_FILE))
}

/// [`resolve_namespace`] with another service-account namespace file.
pub fn resolve_namespace_from(flag: Option<&str>, service_account_file: &Path) -> String {
    if let Some(namespace) = flag
        .map(str::trim)
        .filter(|namespace| !namespace.is_empty())
    {
        return namespace.to_owned();
    }
    if let Ok(text) = std::fs::read_to_string(service_account_file) {
        let namespace = text.trim();
        if !namespace.is_empty() {
            return namespace.to_owned();
        }
    }
    DEFAULT_NAMESPACE.to_owned()
}

/// The client configuration for the cluster: from the kubeconfig file at `kubeconfig` when
/// given; otherwise inferred as `kubectl` and client-go do: the `KUBECONFIG` variable or
/// `~/.kube/config`, else the in-cluster configuration of a pod's service account.
pub async fn kube_config(kubeconfig: Option<&Path>) -> LockResult<kube::Config> {
    match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|err| {
                LockError::InvalidConfig(format!(
                    "cannot read the kubeconfig {}: {err}",
                    path.display()
                ))
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|err| {
                    LockError::InvalidConfig(format!(
                        "cannot use the kubeconfig {}: {err}",
                        path.display()
                    ))
                })
        }
        None => kube::Config::infer().await.map_err(|err| {
            LockError::InvalidConfig(format!(
                "no Kubernetes configuration: {err} (set KUBECONFIG, write ~/.kube/config, or run in a pod)"
            ))
        }),
    }
}

/// `options` with the namespace `config` names (its kubeconfig context's, as `kubectl` uses it,
/// or the pod's own in a cluster) when the options name none and that is not `default`: a
/// lock made from a config elects where `kubectl` with that config would look.
pub(crate) fn with_config_namespace(
    config: &kube::Config,
    options: crate::KubeLockOptions,
) -> crate::KubeLockOptions {
    match &options.namespace {
        None if config.default_namespace != DEFAULT_NAMESPACE => {
            options.with_namespace(config.default_namespace.clone())
        }
        _ => options,
    }
}

/// The locks' client (see `client`) for `config`.
pub(crate) fn client(config: kube::Config) -> LockResult<kube::Client> {
    crate::client::client(config)
        .map_err(|err| LockError::InvalidConfig(format!("cannot make a Kubernetes client: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_comes_from_the_flag_then_the_file_then_default() {
        let dir = std::env::temp_dir().join(format!("lock-k8s-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("namespace");
        assert_eq!(resolve_namespace_from(None, &file), "default");
        std::fs::write(&file, "team-a\n").unwrap();
        assert_eq!(resolve_namespace_from(None, &file), "team-a");
        assert_eq!(resolve_namespace_from(Some(""), &file), "team-a");
        assert_eq!(resolve_namespace_from(Some("flag"), &file), "flag");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
