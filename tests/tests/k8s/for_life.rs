//! Leader-for-life on the real kube-apiserver: our `ForLifeLock` and operator-lib's
//! `leader.Become` (v0.17.0, `interop/operatorlib/`) exclude each other on one ConfigMap in both
//! directions, and deleting the leader's Pod hands over through the garbage collector of a real
//! kube-controller-manager. Pods are API objects only (no kubelet runs them).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams};
use kube::ResourceExt;
use lock_core::testing::conformance::unique_name;
use lock_core::{LifeHold, LifeLock, LockResult};
use lock_k8s::{ForLifeLock, KubeLockOptions, FENCING_TOKEN_ANNOTATION};
use lock_tests::operator_lib::GoBecome;
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};
use lock_tests::servers::kube_controller_manager::{create_pod, KubeControllerManager};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::backend::{client_as, KubeBackend, NAMESPACE};

/// How long a waiting candidate is watched to show that it does not take a held lock.
const STAYS_WAITING: Duration = Duration::from_secs(4);
/// The bound on a takeover once the lock is free: our candidate is woken by its watch.
const OUR_TAKEOVER: Duration = Duration::from_secs(5);
/// The bound on operator-lib's takeover: it re-reads only after its back-off (up to 16 s).
const GO_TAKEOVER: Duration = Duration::from_secs(40);
/// The bound on a handover through the garbage collector.
const GC_TAKEOVER: Duration = Duration::from_secs(30);

/// One election on the shared kube-apiserver.
struct Election {
    server: &'static KubeApiServer,
    client: kube::Client,
    name: String,
}

impl Election {
    async fn new(case: &str) -> Self {
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
    async fn pod(&self, who: &str) -> Pod {
        create_pod(&self.client, NAMESPACE, &format!("{}-{who}", self.name)).await
    }

    /// Our lock on the election, with a short back-off cap so that the tests stay quick.
    async fn lock(&self) -> ForLifeLock {
        let options = KubeLockOptions::default()
            .with_namespace(NAMESPACE)
            .with_kubeconfig(self.server.admin_kubeconfig());
        ForLifeLock::connect(&self.name, options)
            .await
            .expect("a ForLifeLock")
    }

    /// Our candidate for `pod`, acquiring in the background.
    async fn candidate(&self, pod: &Pod) -> Candidate {
        let lock = self.lock().await;
        let cancel = CancellationToken::new();
        let identity = pod.name_any();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { lock.acquire(&identity, &cancel).await }
        });
        Candidate { cancel, task }
    }

    fn go(&self, pod: &Pod) -> GoBecome {
        GoBecome::start(
            &self.server.admin_kubeconfig(),
            NAMESPACE,
            &pod.name_any(),
            &self.name,
        )
    }

    fn configmaps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), NAMESPACE)
    }

    async fn lock_configmap(&self) -> Option<ConfigMap> {
        self.configmaps().get_opt(&self.name).await.expect("get")
    }

    async fn delete_pod(&self, pod: &Pod) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        pods.delete(&pod.name_any(), &DeleteParams::default().grace_period(0))
            .await
            .expect("delete the Pod");
    }
}

/// Our `acquire` running in a task.
struct Candidate {
    cancel: CancellationToken,
    task: JoinHandle<LockResult<Option<LifeHold>>>,
}

impl Candidate {
    /// The hold, once acquired within `within`.
    async fn held(&mut self, within: Duration) -> Option<LifeHold> {
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
    async fn cancel_waiting(self) {
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
fn owner_fields(map: &ConfigMap) -> serde_json::Value {
    let mut owners = serde_json::to_value(map.owner_references()).expect("JSON");
    for owner in owners.as_array_mut().expect("a list") {
        owner["name"] = "".into();
        owner["uid"] = "".into();
    }
    owners
}

fn owner_name(map: &ConfigMap) -> String {
    map.owner_references()
        .first()
        .map(|owner| owner.name.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_lib_holds_ours_waits_and_takes_over_once_its_pod_is_collected() {
    let election = Election::new("life-go-first").await;
    let manager = KubeControllerManager::start(election.server).await;
    let go_pod = election.pod("go").await;
    let our_pod = election.pod("rust").await;

    let mut go = election.go(&go_pod);
    go.leading(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("operator-lib did not lead: {:?}", go.seen()));
    let go_map = election
        .lock_configmap()
        .await
        .expect("operator-lib's lock");
    assert_eq!(owner_name(&go_map), go_pod.name_any());

    let lock = election.lock().await;
    let (holder, token) = lock.holder().await.expect("holder").expect("held");
    assert_eq!(holder, go_pod.name_any());
    assert_eq!(token, 0, "operator-lib writes no fencing token");

    let mut ours = election.candidate(&our_pod).await;
    assert!(
        ours.held(STAYS_WAITING).await.is_none(),
        "ours acquired a lock operator-lib holds"
    );
    assert_eq!(
        owner_name(&election.lock_configmap().await.expect("still there")),
        go_pod.name_any()
    );

    // The Go operator's Pod goes; the garbage collector deletes its ConfigMap.
    go.kill().await;
    let deleted = Instant::now();
    election.delete_pod(&go_pod).await;
    let hold = ours
        .held(GC_TAKEOVER)
        .await
        .unwrap_or_else(|| panic!("no takeover after the GC; log:\n{}", manager.log()));
    let took = deleted.elapsed();
    println!("operator-lib's Pod deleted -> ours leads: {took:?}");
    assert!(hold.fencing_token >= 1);
    let our_map = election.lock_configmap().await.expect("our lock");
    assert_eq!(owner_name(&our_map), our_pod.name_any());
    assert_eq!(
        owner_fields(&our_map),
        owner_fields(&go_map),
        "our owner reference has exactly operator-lib's fields"
    );
    assert_eq!(
        our_map.annotations().get(FENCING_TOKEN_ANNOTATION),
        Some(&hold.fencing_token.to_string())
    );
    assert!(!hold.lost.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ours_holds_operator_lib_waits_and_takes_over_once_the_configmap_is_deleted() {
    let election = Election::new("life-rust-first").await;
    let our_pod = election.pod("rust").await;
    let go_pod = election.pod("go").await;

    let hold = election
        .candidate(&our_pod)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("ours leads a free lock");

    let mut go = election.go(&go_pod);
    go.logged("Not the leader. Waiting.", Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("operator-lib did not see our lock: {:?}", go.seen()));
    assert!(
        go.leading(STAYS_WAITING).await.is_none(),
        "operator-lib led while ours held the lock: {:?}",
        go.seen()
    );
    let lock = election.lock().await;
    assert_eq!(
        lock.holder().await.expect("holder"),
        Some((our_pod.name_any(), hold.fencing_token))
    );

    // Deleted by hand: ours is told it lost, operator-lib takes over.
    let deleted = Instant::now();
    election
        .configmaps()
        .delete(&election.name, &DeleteParams::default())
        .await
        .expect("delete the lock");
    tokio::time::timeout(OUR_TAKEOVER, hold.lost.cancelled())
        .await
        .expect("ours notices that its lock is gone");
    go.leading(GO_TAKEOVER)
        .await
        .unwrap_or_else(|| panic!("operator-lib did not take over: {:?}", go.seen()));
    println!(
        "our ConfigMap deleted -> operator-lib leads: {:?}",
        deleted.elapsed()
    );
    let (holder, _) = lock.holder().await.expect("holder").expect("held");
    assert_eq!(holder, go_pod.name_any());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_leaders_pod_hands_over_through_the_garbage_collector() {
    let election = Election::new("life-gc").await;
    let manager = KubeControllerManager::start(election.server).await;
    let leader_pod = election.pod("a").await;
    let standby_pod = election.pod("b").await;

    let first = election
        .candidate(&leader_pod)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("the first candidate leads");
    let mut standby = election.candidate(&standby_pod).await;
    assert!(
        standby.held(STAYS_WAITING).await.is_none(),
        "two leaders for life"
    );

    let deleted = Instant::now();
    election.delete_pod(&leader_pod).await;
    let second = standby
        .held(GC_TAKEOVER)
        .await
        .unwrap_or_else(|| panic!("no handover; log:\n{}", manager.log()));
    let took = deleted.elapsed();
    println!("leader's Pod deleted -> standby leads: {took:?}");
    assert!(
        first.lost.is_cancelled(),
        "the old leader learns that its lock was collected"
    );
    assert!(
        second.fencing_token > first.fencing_token,
        "{} then {}",
        first.fencing_token,
        second.fencing_token
    );
    let lock = election.lock().await;
    assert_eq!(
        lock.holder().await.expect("holder"),
        Some((standby_pod.name_any(), second.fencing_token))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_over_at_once_and_a_restart_in_the_same_pod_leads_again() {
    let election = Election::new("life-release").await;
    let a = election.pod("a").await;
    let b = election.pod("b").await;

    let first = election
        .candidate(&a)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("a leads");
    // The process restarts in the same Pod: it leads again, with a new token.
    let again = election
        .candidate(&a)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("a leads again after a restart");
    assert!(again.fencing_token > first.fencing_token);

    let mut standby = election.candidate(&b).await;
    assert!(standby.held(STAYS_WAITING).await.is_none());
    let released = Instant::now();
    again.release.release().await.expect("release");
    let second = standby
        .held(OUR_TAKEOVER)
        .await
        .expect("b leads after the release");
    println!("released -> standby leads: {:?}", released.elapsed());
    assert!(second.fencing_token > again.fencing_token);
    assert!(!second.lost.is_cancelled());

    // A candidate that gives up while waiting acquires nothing.
    let waiting = election.candidate(&a).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    waiting.cancel_waiting().await;
    assert_eq!(
        election.lock().await.holder().await.expect("holder"),
        Some((b.name_any(), second.fencing_token))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_that_is_no_pod_is_refused() {
    let election = Election::new("life-no-pod").await;
    let lock = election.lock().await;
    let err = lock
        .acquire("no-such-pod", &CancellationToken::new())
        .await
        .expect_err("no Pod");
    assert!(err.to_string().contains("POD_NAME"), "{err}");
    assert_eq!(lock.holder().await.expect("holder"), None);
}
