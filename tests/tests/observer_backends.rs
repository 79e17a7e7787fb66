//! The observer on every backend, in process: two electors hand the leadership over 20 times,
//! and an `Observer` on a lock of its own (a separate client), wrapped in a counting
//! `FaultyLock`, names every term in order and never creates, updates or reads a token floor.

use std::sync::Arc;

use lock_core::testing::conformance::unique_name;
use lock_core::Lock;
use lock_k8s::{KubeLockOptions, LockKind};
use lock_tests::observing::{observer_follows_handovers_without_writing, HANDOVERS};
use lock_tests::servers::etcd::EtcdServer;
use lock_tests::servers::kube::KubeApiServer;
use lock_tests::servers::redis::RedisServer;

async fn open(url: &str, name: &str) -> Arc<dyn Lock> {
    leader_election::open(url, name)
        .await
        .unwrap_or_else(|err| panic!("open {url}: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("file://{}", dir.path().join("election.json").display());
    observer_follows_handovers_without_writing(|| open(&url, "observed"), HANDOVERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis() {
    let server = RedisServer::start();
    let (url, name) = (server.url(), unique_name("observed"));
    observer_follows_handovers_without_writing(|| open(&url, &name), HANDOVERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd() {
    let server = EtcdServer::start();
    let url = server.endpoint().replace("http://", "etcd://");
    let name = unique_name("observed");
    observer_follows_handovers_without_writing(|| open(&url, &name), HANDOVERS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8s_lease() {
    let server = KubeApiServer::start();
    let kubeconfig = server.admin_kubeconfig();
    let name = unique_name("observed");
    let lock = || async {
        let options = KubeLockOptions::default()
            .with_namespace("default")
            .with_kubeconfig(&kubeconfig);
        lock_k8s::connect(LockKind::Lease, &name, options)
            .await
            .expect("a Lease lock as the admin")
    };
    observer_follows_handovers_without_writing(lock, HANDOVERS).await;
}
