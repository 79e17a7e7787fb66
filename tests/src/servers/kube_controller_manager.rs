//! A real `kube-controller-manager` for tests, running only the garbage collector against a
//! [`KubeApiServer`], so that deleting a Pod deletes the objects it owns (the lock ConfigMap of
//! a leader-for-life election). It serves nothing (`--secure-port=0`), keeps its files in a
//! temporary directory and is killed when dropped.
//!
//! The binary is built by `scripts/build-kube-controller-manager` from the Go module proxy and
//! cached outside the repository (see [`kube_controller_manager_binary`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::ResourceExt;
use tempfile::TempDir;

use super::kube::{KubeApiServer, KUBERNETES_VERSION};
use super::process::ServerProcess;

/// How long the garbage collector may take to start collecting (its informers sync first).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// Where `scripts/build-kube-controller-manager` caches the binary, unless
/// `KUBE_CONTROLLER_MANAGER` names another one:
/// `${XDG_CACHE_HOME:-$HOME/.cache}/leader-election/kube-controller-manager-<version>`.
pub fn kube_controller_manager_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBE_CONTROLLER_MANAGER") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache
        .join("leader-election")
        .join(format!("kube-controller-manager-{KUBERNETES_VERSION}"))
}

/// What a missing binary fails with.
fn missing_binary(path: &Path) -> String {
    format!(
        "kube-controller-manager {KUBERNETES_VERSION} not found at {}: build it with \
         `scripts/build-kube-controller-manager` (Go from the module proxy, several minutes \
         once; scripts/test does this), or point KUBE_CONTROLLER_MANAGER at one",
        path.display()
    )
}

/// A running `kube-controller-manager` with the garbage collector only, logged in as the
/// server's admin (in `system:masters`). Dropping it kills it and removes its files.
#[derive(Debug)]
pub struct KubeControllerManager {
    process: ServerProcess,
    /// Kills the controller manager if the test process dies without dropping it.
    _watchdog: ServerProcess,
    dir: TempDir,
}

impl KubeControllerManager {
    /// Starts it against `server` and returns once its garbage collector has collected a
    /// probe: a ConfigMap owned by a Pod that was deleted.
    ///
    /// # Panics
    /// When the binary is missing (naming the command that builds it), or with its log when it
    /// exits or does not collect within 90 s.
    pub async fn start(server: &KubeApiServer) -> Self {
        let binary = kube_controller_manager_binary();
        if !binary.is_file() {
            panic!("{}", missing_binary(&binary));
        }
        let dir = tempfile::Builder::new()
            .prefix("kube-controller-manager-")
            .tempdir()
            .unwrap_or_else(|err| panic!("cannot make a temporary directory: {err}"));
        let log = dir.path().join("kube-controller-manager.log");
        let log_file = std::fs::File::create(&log)
            .unwrap_or_else(|err| panic!("cannot create {}: {err}", log.display()));
        let child = Command::new(&binary)
            .arg(format!(
                "--kubeconfig={}",
                server.admin_kubeconfig().display()
            ))
            .arg("--controllers=garbage-collector-controller")
            .arg("--leader-elect=false")
            .arg("--secure-port=0")
            .arg(format!("--cert-dir={}", dir.path().join("certs").display()))
            .arg("--kube-api-qps=100")
            .arg("--kube-api-burst=200")
            .arg("--v=2")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap_or_else(|err| match err.kind() {
                std::io::ErrorKind::NotFound => panic!("{}", missing_binary(&binary)),
                _ => panic!("cannot run {}: {err}", binary.display()),
            });
        let watchdog = spawn_watchdog(child.id());
        let mut process = ServerProcess::new("kube-controller-manager");
        process.started(child);
        let mut watchdog_process = ServerProcess::new("kube-controller-manager's watchdog");
        if let Some(watchdog) = watchdog {
            watchdog_process.started(watchdog);
        }
        let mut manager = Self {
            process,
            _watchdog: watchdog_process,
            dir,
        };
        let client = admin_client(server).await;
        match tokio::time::timeout(START_TIMEOUT, manager.probe(&client)).await {
            Ok(Ok(())) => manager,
            Ok(Err(reason)) => panic!("kube-controller-manager {reason}; log:\n{}", manager.log()),
            Err(_) => panic!(
                "kube-controller-manager did not collect garbage within {START_TIMEOUT:?}; log:\n{}",
                manager.log()
            ),
        }
    }

    /// The last lines of its log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("kube-controller-manager.log"))
            .unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Creates a Pod and a ConfigMap it owns in `default`, deletes the Pod and waits until the
    /// ConfigMap is gone too (retrying: the collector starts once its informers synced).
    async fn probe(&mut self, client: &kube::Client) -> Result<(), String> {
        static PROBES: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "gc-probe-{}-{}",
            std::process::id(),
            PROBES.fetch_add(1, Ordering::Relaxed)
        );
        let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let pod = create_pod(client, "default", &name).await;
        let map: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "ownerReferences": [{
                "apiVersion": "v1", "kind": "Pod", "name": name, "uid": pod.uid().unwrap_or_default(),
            }]},
        }))
        .expect("a ConfigMap");
        maps.create(&PostParams::default(), &map)
            .await
            .map_err(|err| format!("probe: cannot create ConfigMap {name}: {err}"))?;
        pods.delete(&name, &DeleteParams::default().grace_period(0))
            .await
            .map_err(|err| format!("probe: cannot delete Pod {name}: {err}"))?;
        loop {
            if !self.process.is_running() {
                return Err("exited".to_owned());
            }
            match maps.get_opt(&name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) | Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

/// A process that kills `pid` once the test process is gone (a test killed outright drops
/// nothing).
fn spawn_watchdog(pid: u32) -> Option<std::process::Child> {
    Command::new("sh")
        .arg("-c")
        .arg(r#"while kill -0 "$0" 2>/dev/null; do sleep 1; done; kill -9 "$1" 2>/dev/null"#)
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// A client logged in as the server's admin.
async fn admin_client(server: &KubeApiServer) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(server.admin_kubeconfig())
        .expect("read the admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("use the admin kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

/// Creates the Pod `name` in `namespace` (a Pod object only: no kubelet runs it; it stays
/// Pending, which is enough to own objects), creating the namespace's `default` service account
/// first when missing (no service-account controller runs, and admission requires it).
///
/// # Panics
/// When the API server refuses.
pub async fn create_pod(client: &kube::Client, namespace: &str, name: &str) -> Pod {
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), namespace);
    let account = serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}}))
        .expect("a service account");
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(err) => panic!("cannot create the default service account in {namespace}: {err}"),
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "automountServiceAccountToken": false,
            "containers": [{"name": "operator", "image": "example.invalid/operator:1"}],
        },
    }))
    .expect("a Pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .unwrap_or_else(|err| panic!("cannot create Pod {namespace}/{name}: {err}"))
}
