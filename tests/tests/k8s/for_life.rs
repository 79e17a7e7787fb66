//! Leader-for-life on the real kube-apiserver: our `ForLifeLock` and operator-lib's
//! `leader.Become` (v0.17.0, `interop/operatorlib/`) exclude each other on one ConfigMap in both
//! directions, and deleting the leader's Pod hands over through the garbage collector of a real
//! kube-controller-manager. Pods are API objects only (no kubelet runs them).

use std::time::Duration;

use kube::api::DeleteParams;
use kube::ResourceExt;
use lock_core::LifeLock;
use lock_k8s::FENCING_TOKEN_ANNOTATION;
use lock_tests::servers::kube_controller_manager::KubeControllerManager;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::for_life_support::{
    owner_fields, owner_name, Election, GC_TAKEOVER, GO_TAKEOVER, OUR_TAKEOVER, STAYS_WAITING,
};

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

/// operator-lib treats a lock its own Pod holds as its own ("I was likely restarted"): so does
/// ours, and each recognises the other's lock in the same Pod, which shows that both write the
/// same owner reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_takes_the_others_lock_in_the_same_pod_as_its_own() {
    let election = Election::new("life-same-pod").await;
    let pod = election.pod("p").await;

    // Ours holds; operator-lib in the same Pod leads at once.
    let ours = election
        .candidate(&pod)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("ours leads");
    let mut go = election.go(&pod);
    go.leading(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| {
            panic!(
                "operator-lib did not take our lock as its own: {:?}",
                go.seen()
            )
        });
    assert!(
        go.seen()
            .iter()
            .any(|event| event.text.contains("Found existing lock with my name")),
        "{:?}",
        go.seen()
    );
    go.kill().await;
    ours.release.release().await.expect("release");

    // operator-lib holds; ours in the same Pod leads at once, with a token written onto it.
    let mut go = election.go(&pod);
    go.leading(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("operator-lib did not lead: {:?}", go.seen()));
    let again = election
        .candidate(&pod)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("ours takes operator-lib's lock of the same Pod as its own");
    assert!(again.fencing_token > ours.fencing_token);
    let map = election.lock_configmap().await.expect("the lock");
    assert_eq!(owner_name(&map), pod.name_any());
    assert_eq!(
        map.annotations().get(FENCING_TOKEN_ANNOTATION),
        Some(&again.fencing_token.to_string())
    );
    go.kill().await;
}

/// A hold ends while the process lives when its ConfigMap is given another owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_given_another_owner_cancels_lost() {
    let election = Election::new("life-owner").await;
    let ours = election.pod("a").await;
    let other = election.pod("b").await;
    let hold = election
        .candidate(&ours)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("a leads");
    assert!(!hold.lost.is_cancelled());

    let mut map = election.lock_configmap().await.expect("the lock");
    map.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: other.name_any(),
            uid: other.uid().expect("a UID"),
            ..Default::default()
        },
    ]);
    election
        .configmaps()
        .replace(&election.name, &Default::default(), &map)
        .await
        .expect("give the lock to b");
    tokio::time::timeout(OUR_TAKEOVER, hold.lost.cancelled())
        .await
        .expect("a learns that the lock is b's now");
    let lock = election.lock().await;
    let (holder, _) = lock.holder().await.expect("holder").expect("held");
    assert_eq!(holder, other.name_any());
}

/// Two live processes of one Pod (a twin, a second container, a restart whose old process
/// still runs): the later one adopts the lock with a greater token, as a restart does; the
/// earlier one's hold ends then, or both lead at once. Its release, if it comes, does not
/// delete the lock the later one now holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_of_the_same_pod_ends_the_first_ones_hold() {
    let election = Election::new("life-twin").await;
    let a = election.pod("a").await;
    let first = election
        .candidate(&a)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("a leads");
    let again = election
        .candidate(&a)
        .await
        .held(OUR_TAKEOVER)
        .await
        .expect("a second process of a leads");
    assert!(again.fencing_token > first.fencing_token);
    tokio::time::timeout(Duration::from_secs(5), first.lost.cancelled())
        .await
        .expect("the first process's hold ends when another process of its Pod adopts the lock");
    first.release.release().await.expect("release");
    assert_eq!(
        election.lock().await.holder().await.expect("holder"),
        Some((a.name_any(), again.fencing_token)),
        "the first process's release deleted the lock the second one holds"
    );
    assert!(!again.lost.is_cancelled());
}
