//! Helpers of the leader-for-life tests: one election on the shared kube-apiserver, Pods for
//! its candidates, our candidates acquiring in the background, operator-lib's as processes.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams};
use kube::ResourceExt;
use lock_core::testing::conformance::unique_name;
use lock_core::{LifeHold, LifeLock, LockResult};
use lock_k8s::{ForLifeLock, KubeLockOptions};
use lock_tests::operator_lib::GoBecome;
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};
use lock_tests::servers::kube_controller_manager::create_pod;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backend::{client_as, KubeBackend, NAMESPACE};

/// How long a waiting candidate is watched to show that it does not take a held lock.
pub const STAYS_WAITING: Duration = Duration::from_secs(4);
/// The bound on a takeover once the lock is free: our candidate is woken by its watch.
pub const OUR_TAKEOVER: Duration = Duration::from_secs(5);
/// The bound on operator-lib's takeover: it re-reads only after its back-off (up to 16 s).
pub const GO_TAKEOVER: Duration = Duration::from_secs(40);
/// The bound on a handover through the garbage collector.
pub const GC_TAKEOVER: Duration = Duration::from_secs(30);

/// One election on the shared kube-apiserver.
pub struct Election {
    pub server: &'static KubeApiServer,
    pub client: kube::Client,
    pub name: String,
}

impl Election {
    pub async fn new(case: &str) -> Self {
        let server = KubeBackend::start(lock_k8s::LockKind::ConfigMap)
            .await
            .server;
        Self {
            server,
            client: client_as(server, ADMIN_USER).await,
            name: unique_name(case),
        }
    }

    /// A Pod object for a candidate.
    pub async fn pod(&self, who: &str) -> Pod {
        create_pod(&self.client, NAMESPACE, &format!("{}-{who}", self.name)).await
    }

    /// Our lock on the election.
    pub async fn lock(&self) -> ForLifeLock {
        let options = KubeLockOptions::default()
            .with_namespace(NAMESPACE)
            .with_kubeconfig(self.server.admin_kubeconfig());
        ForLifeLock::connect(&self.name, options)
            .await
            .expect("a ForLifeLock")
    }

    /// Our candidate for `pod`, acquiring in the background.
    pub async fn candidate(&self, pod: &Pod) -> Candidate {
        Self::acquire(self.lock().await, pod)
    }

    /// Our candidate for `pod` whose back-off is capped at `max_backoff`.
    pub async fn candidate_with_backoff(&self, pod: &Pod, max_backoff: Duration) -> Candidate {
        let lock = self
            .lock()
            .await
            .with_max_backoff(max_backoff)
            .expect("a back-off cap");
        Self::acquire(lock, pod)
    }

    /// Our candidate for `pod` whose back-off is capped at `max_backoff` and that clears a
    /// leader on a NotReady node.
    pub async fn candidate_clearing_not_ready(
        &self,
        pod: &Pod,
        max_backoff: Duration,
    ) -> Candidate {
        let lock = self
            .lock()
            .await
            .with_max_backoff(max_backoff)
            .expect("a back-off cap")
            .with_not_ready_clearing(true);
        Self::acquire(lock, pod)
    }

    /// Runs `lock.acquire` for `pod` in a task.
    pub fn acquire(lock: ForLifeLock, pod: &Pod) -> Candidate {
        let cancel = CancellationToken::new();
        let identity = pod.name_any();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { lock.acquire(&identity, &cancel).await }
        });
        Candidate { cancel, task }
    }

    pub fn go(&self, pod: &Pod) -> GoBecome {
        GoBecome::start(
            &self.server.admin_kubeconfig(),
            NAMESPACE,
            &pod.name_any(),
            &self.name,
        )
    }

    pub fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    pub async fn lock_configmap(&self) -> Option<ConfigMap> {
        self.configmaps().get_opt(&self.name).await.expect("get")
    }

    pub async fn delete_pod(&self, pod: &Pod) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        pods.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await
            .expect("delete the Pod");
    }
}

/// Our `acquire` running in a task.
pub struct Candidate {
    pub cancel: CancellationToken,
    pub task: JoinHandle<LockResult<Option<LifeHold>>>,
}

impl Candidate {
    /// The hold, once acquired within `within`.
    pub async fn held(&mut self, within: Duration) -> Option<LifeHold> {
        match tokio::time::timeout(within, &mut self.task).await {
            Ok(result) => Some(
                result
                    .expect("the acquire task")
                    .expect("acquire")
                    .expect("not cancelled"),
            ),
            Err(_) => None,
        }
    }

    /// Cancels a candidate that must still be waiting.
    pub async fn cancel_waiting(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("acquire returns once cancelled")
            .expect("the acquire task")
            .expect("acquire");
        assert!(result.is_none(), "it acquired after all");
    }
}

/// The owner references of a lock ConfigMap as JSON, with the Pod's name and UID blanked: the
/// fields the lock sets.
pub fn owner_fields(map: &ConfigMap) -> serde_json::Value {
    let mut owners = serde_json::to_value(map.owner_references()).expect("JSON");
    for owner in owners.as_array_mut().expect("a list") {
        owner["name"] = "".into();
        owner["uid"] = "".into();
    }
    owners
}

pub fn owner_name(map: &ConfigMap) -> String {
    map.owner_references()
        .first()
        .map(|owner| owner.name.clone())
        .unwrap_or_default()
}
