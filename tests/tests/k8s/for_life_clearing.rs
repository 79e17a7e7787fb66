//! A waiting candidate clears a leader that cannot come back, as operator-lib's `Become` does:
//! it deletes the leader's Pod when it failed as evicted, and the Pod and the lock when the
//! Pod's node is NotReady.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use lock_tests::servers::kube_controller_manager::KubeControllerManager;

use super::backend::NAMESPACE;
use super::for_life_support::{Election, GC_TAKEOVER, OUR_TAKEOVER, STAYS_WAITING};

/// The standby's back-off cap: the Pod's and the node's state change no ConfigMap, so the
/// standby sees them at its next attempt.
const STANDBY_BACKOFF: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicted_leaders_pod_is_deleted_and_its_lock_collected() {
    let election = Election::new("life-evicted").await;
    let manager = KubeControllerManager::start(election.server).await;
    let leader_pod = election.pod("a").await;
    let standby_pod = election.pod("b").await;
    let leader = election
        .candidate(&leader_pod)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("a leads");
    let mut standby = election
        .candidate_with_backoff(&standby_pod, STANDBY_BACKOFF)
        .await;
    assert!(standby.held(STAYS_WAITING).await.is_none());

    let pods: Api<Pod> = Api::namespaced(election.client.clone(), NAMESPACE);
    let evicted = serde_json::json!({"status": {"phase": "Failed", "reason": "Evicted"}});
    pods.patch_status(
        &leader_pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&evicted),
    )
    .await
    .expect("mark the leader's Pod evicted");
    let second = standby.held(GC_TAKEOVER).await.unwrap_or_else(|| {
        panic!(
            "no takeover from an evicted leader; log:\n{}",
            manager.log()
        )
    });
    assert!(second.fencing_token > leader.fencing_token);
    assert!(
        pods.get_opt(&leader_pod.name_any())
            .await
            .expect("get")
            .is_none(),
        "the standby deleted the evicted Pod"
    );
    assert!(leader.lost.is_cancelled());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_on_a_not_ready_node_is_cleared() {
    let election = Election::new("life-not-ready").await;
    let nodes: Api<Node> = Api::all(election.client.clone());
    let node_name = format!("{}-node", election.name);
    let node: Node = serde_json::from_value(serde_json::json!({"metadata": {"name": node_name}}))
        .expect("a Node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create the node");
    let pods: Api<Pod> = Api::namespaced(election.client.clone(), NAMESPACE);
    let leader_pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{}-a", election.name)},
        "spec": {
            "nodeName": node_name,
            "automountServiceAccountToken": false,
            "containers": [{"name": "operator", "image": "example.invalid/operator:1"}],
        },
    }))
    .expect("a Pod");
    election.pod("b").await; // makes the namespace's service account too
    let leader_pod = pods
        .create(&PostParams::default(), &leader_pod)
        .await
        .expect("create the leader's Pod");
    let standby_pod = pods
        .get(&format!("{}-b", election.name))
        .await
        .expect("the standby's Pod");

    let leader = election
        .candidate(&leader_pod)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("a leads");
    let mut cautious = election
        .candidate_with_backoff(&standby_pod, STANDBY_BACKOFF)
        .await;
    assert!(cautious.held(STAYS_WAITING).await.is_none());

    let not_ready = serde_json::json!({"status": {"conditions": [{
        "type": "Ready", "status": "False", "reason": "KubeletNotReady",
        "message": "the test says so",
    }]}});
    nodes
        .patch_status(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(&not_ready),
        )
        .await
        .expect("mark the node NotReady");
    // By default a NotReady node is not taken for a dead leader: it may still be running.
    assert!(
        cautious.held(STAYS_WAITING).await.is_none(),
        "a candidate without NotReady clearing waits"
    );
    assert!(!leader.lost.is_cancelled());
    cautious.cancel.cancel();
    let mut standby = election
        .candidate_clearing_not_ready(&standby_pod, STANDBY_BACKOFF)
        .await;
    let second = standby
        .held(GC_TAKEOVER)
        .await
        .expect("the standby clears a leader on a NotReady node");
    assert!(second.fencing_token > leader.fencing_token);
    assert!(leader.lost.is_cancelled());
    let old = pods
        .get_opt(&leader_pod.name_any())
        .await
        .expect("get the old leader's Pod");
    assert!(
        old.is_none_or(|pod| pod.metadata.deletion_timestamp.is_some()),
        "the old leader's Pod is being deleted"
    );
    nodes
        .delete(&node_name, &Default::default())
        .await
        .expect("delete the node");
}
