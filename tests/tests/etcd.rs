//! The etcd backend against a real etcd: the whole conformance suite, the elector when etcd dies
//! and comes back on the same data, a user whose role covers only the lock's prefix, and three
//! `demo` processes handing over on CTRL+C.

use std::sync::Arc;
use std::time::Duration;

use lock_core::testing::conformance::{config, unique_name, Backend, Candidate};
use lock_core::Lock;
use lock_etcd::{EtcdLock, EtcdLockOptions, DEFAULT_KEY_PREFIX};
use lock_tests::access::{assert_wrong_password_refused, release_hands_over};
use lock_tests::failover::three_instances_hand_over_on_ctrl_c;
use lock_tests::handover::handover_moves_leadership_to_the_named_instance;
use lock_tests::outage::backend_stops_under_the_leader;
use lock_tests::servers::etcd::EtcdServer;

/// Elections as keys on an etcd of its own, stopped with the backend.
struct EtcdBackend {
    server: EtcdServer,
}

impl EtcdBackend {
    fn key(&self, name: &str) -> String {
        EtcdLock::new(&[self.server.endpoint()], name, EtcdLockOptions::default())
            .expect("a valid endpoint and name")
            .key()
            .to_owned()
    }
}

#[async_trait::async_trait]
impl Backend for EtcdBackend {
    async fn lock(&self, name: &str) -> Arc<dyn Lock> {
        Arc::new(
            EtcdLock::connect(&[self.server.endpoint()], name, Default::default())
                .await
                .expect("connect to the test etcd"),
        )
    }

    async fn write_raw(&self, name: &str, bytes: &[u8]) {
        let value = std::str::from_utf8(bytes).expect("the suite writes text");
        self.server.put(&self.key(name), value);
    }

    async fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        self.server.get(&self.key(name)).map(String::into_bytes)
    }
}

lock_core::conformance_suite!(async {
    EtcdBackend {
        server: EtcdServer::start(),
    }
});

async fn connect(endpoint: &str, name: &str) -> EtcdLock {
    EtcdLock::connect(&[endpoint], name, Default::default())
        .await
        .expect("connect to the test etcd")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_etcd_makes_the_leader_step_down_in_time_and_terms_go_on_after_a_restart() {
    let mut server = EtcdServer::start();
    let endpoint = server.endpoint();
    let name = unique_name("killed-etcd");
    let mut a = Candidate::start(connect(&endpoint, &name).await, config("a"), None);
    let first = a.started(Duration::from_secs(10)).await;
    let mut b = Candidate::start(connect(&endpoint, &name).await, config("b"), None);
    b.sees_leader("a", Duration::from_secs(10)).await;

    backend_stops_under_the_leader(&first, || server.kill()).await;

    // etcd comes back on the same data: the election resumes, and no term number is reused.
    server.restart();
    let deadline = Duration::from_secs(30);
    let next = tokio::select! {
        term = a.started(deadline) => term,
        term = b.started(deadline) => term,
    };
    assert!(next.is_leader());
    assert!(
        next.fencing_token() > first.fencing_token(),
        "fencing token {} after {}",
        next.fencing_token(),
        first.fencing_token()
    );
    let stored = connect(&endpoint, &name)
        .await
        .get()
        .await
        .expect("get")
        .expect("a record");
    assert_eq!(stored.record.holder_identity, next.identity());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_whose_role_covers_only_the_prefix_elects() {
    let server = EtcdServer::builder()
        .user("elector", "s3cret", DEFAULT_KEY_PREFIX)
        .start();
    let endpoint = server.endpoint();
    let name = unique_name("auth");
    let connect = || async {
        let options = EtcdLockOptions::default().with_user("elector", "s3cret");
        EtcdLock::connect(&[&endpoint], &name, options)
            .await
            .expect("connect as elector")
    };
    release_hands_over(connect().await, connect().await).await;

    let wrong = EtcdLockOptions::default().with_user("elector", "pw-5e1d2b");
    assert_wrong_password_refused("pw-5e1d2b", EtcdLock::connect(&[endpoint], &name, wrong)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_handover_moves_leadership_among_three_processes() {
    let server = EtcdServer::start();
    let endpoint = server.endpoint();
    let name = unique_name("handover");
    handover_moves_leadership_to_the_named_instance(&[
        "--backend",
        "etcd",
        "--etcd-endpoints",
        &endpoint,
        "--lock-name",
        &name,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_demo_processes_hand_over_on_ctrl_c() {
    let server = EtcdServer::start();
    let endpoint = server.endpoint();
    let name = unique_name("demo");
    three_instances_hand_over_on_ctrl_c(&[
        "--backend",
        "etcd",
        "--etcd-endpoints",
        &endpoint,
        "--lock-name",
        &name,
    ])
    .await;
}
