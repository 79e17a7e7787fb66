//! `demo --leader-for-life --backend k8s` as real processes, each the operator of a Pod: one
//! leads on the ConfigMap, the other follows; the leader killed and its Pod deleted, the
//! garbage collector of a real kube-controller-manager frees the lock and the other leads.

use std::time::Duration;

use kube::ResourceExt;
use lock_tests::demo::Demo;
use lock_tests::servers::kube_controller_manager::KubeControllerManager;
use nix::sys::signal::Signal;
use tokio::time::Instant;

use super::backend::NAMESPACE;
use super::for_life_support::{Election, GC_TAKEOVER};

const STARTUP: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_demo_leaders_pod_deleted_hands_over_through_the_garbage_collector() {
    let election = Election::new("life-demo").await;
    let manager = KubeControllerManager::start(election.server).await;
    let a = election.pod("a").await;
    let b = election.pod("b").await;
    let kubeconfig = election.server.admin_kubeconfig();
    let kubeconfig = kubeconfig.to_str().expect("a UTF-8 path");
    let args = [
        "--leader-for-life",
        "--backend",
        "k8s",
        "--namespace",
        NAMESPACE,
        "--kubeconfig",
        kubeconfig,
        "--lock-name",
        &election.name,
    ];
    let first = Demo::start(&a.name_any(), &args);
    let led = first
        .wait_for("leading", STARTUP, |event| event.event == "leading")
        .await;
    let second = Demo::start(&b.name_any(), &args);
    second
        .wait_for("following", STARTUP, |event| {
            event.event == "following" && event.leader.as_deref() == Some(a.name_any().as_str())
        })
        .await;
    assert!(
        second.events().iter().all(|event| event.event != "leading"),
        "{}",
        second.report()
    );

    first.signal(Signal::SIGKILL);
    let deleted = Instant::now();
    election.delete_pod(&a).await;
    let took_over = second
        .wait_for("leading", GC_TAKEOVER, |event| event.event == "leading")
        .await;
    println!(
        "demo leader killed and its Pod deleted -> the other demo leads: {:?}",
        took_over.arrived - deleted
    );
    assert!(
        took_over.term > led.term,
        "{:?} then {:?}; log:\n{}",
        led.term,
        took_over.term,
        manager.log()
    );
    second.interrupt();
}
