//! The Redis backend against a real redis-server: the whole conformance suite, the elector when
//! the server dies and comes back empty, an ACL-restricted user electing, and three `demo`
//! processes handing over on CTRL+C.

use std::sync::Arc;
use std::time::Duration;

use lock_core::testing::conformance::{config, unique_name, Backend, Candidate};
use lock_core::Lock;
use lock_redis::{acl_rules, RedisLock, RedisLockOptions, DEFAULT_KEY_PREFIX};
use lock_tests::access::{assert_wrong_password_refused, release_hands_over};
use lock_tests::driver::redis_stored_record;
use lock_tests::failover::three_instances_hand_over_on_ctrl_c;
use lock_tests::handover::handover_moves_leadership_to_the_named_instance;
use lock_tests::outage::backend_stops_under_the_leader;
use lock_tests::servers::redis::RedisServer;
use redis::AsyncCommands;

/// Elections as keys on a redis-server of its own, stopped with the backend.
struct RedisBackend {
    server: RedisServer,
}

impl RedisBackend {
    fn key(&self, name: &str) -> String {
        RedisLock::new(&self.server.url(), name, RedisLockOptions::default())
            .expect("a valid URL and name")
            .key()
            .to_owned()
    }

    async fn admin(&self) -> redis::aio::MultiplexedConnection {
        self.server
            .admin_client()
            .get_multiplexed_async_connection()
            .await
            .expect("an admin connection to the test server")
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    async fn lock(&self, name: &str) -> Arc<dyn Lock> {
        Arc::new(
            RedisLock::connect(&self.server.url(), name, Default::default())
                .await
                .expect("connect to the test server"),
        )
    }

    async fn write_raw(&self, name: &str, bytes: &[u8]) {
        let _: () = self
            .admin()
            .await
            .set(self.key(name), bytes)
            .await
            .expect("SET");
    }

    async fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        redis_stored_record(&mut self.admin().await, &self.key(name)).await
    }
}

lock_core::conformance_suite!(async {
    RedisBackend {
        server: RedisServer::start(),
    }
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_makes_the_leader_step_down_in_time_and_a_restart_elects_again() {
    let mut server = RedisServer::start();
    let name = unique_name("killed-server");
    let url = server.url();
    let lock = |url: String, name: String| async move {
        RedisLock::connect(&url, &name, Default::default())
            .await
            .expect("connect")
    };
    let mut a = Candidate::start(lock(url.clone(), name.clone()).await, config("a"), None);
    let first = a.started(Duration::from_secs(10)).await;
    let mut b = Candidate::start(lock(url.clone(), name.clone()).await, config("b"), None);
    b.sees_leader("a", Duration::from_secs(10)).await;

    backend_stops_under_the_leader(&first, || server.kill()).await;

    // The server comes back with no data: an election completes again.
    server.restart();
    let deadline = Duration::from_secs(30);
    let winner = tokio::select! {
        term = a.started(deadline) => term,
        term = b.started(deadline) => term,
    };
    assert!(winner.is_leader());
    let check = lock(url, name).await;
    let stored = check.get().await.expect("get").expect("a record");
    assert_eq!(stored.record.holder_identity, winner.identity());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_restricted_to_the_documented_acl_elects() {
    let server = RedisServer::builder()
        .acl_user("elector", "s3cret", acl_rules(DEFAULT_KEY_PREFIX))
        .start();
    let url = server.url_as("elector", "s3cret");
    let name = unique_name("acl");
    let connect = || async {
        RedisLock::connect(&url, &name, Default::default())
            .await
            .expect("connect as elector")
    };
    release_hands_over(connect().await, connect().await).await;
    let mut admin = server
        .admin_client()
        .get_multiplexed_async_connection()
        .await
        .expect("admin");
    let denied: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut admin)
        .await
        .expect("ACL LOG");
    assert!(denied.is_empty(), "the ACL refused something: {denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_authentication_error() {
    let server = RedisServer::builder()
        .acl_user("elector", "s3cret", acl_rules(DEFAULT_KEY_PREFIX))
        .start();
    let url = server.url_as("elector", "pw-7f3a9c");
    assert_wrong_password_refused(
        "pw-7f3a9c",
        RedisLock::connect(&url, "auth", Default::default()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_handover_moves_leadership_among_three_processes() {
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("handover");
    handover_moves_leadership_to_the_named_instance(&[
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--lock-name",
        &name,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_demo_processes_hand_over_on_ctrl_c() {
    let server = RedisServer::start();
    let url = server.url();
    let name = unique_name("demo");
    three_instances_hand_over_on_ctrl_c(&[
        "--backend",
        "redis",
        "--redis-url",
        &url,
        "--lock-name",
        &name,
    ])
    .await;
}
