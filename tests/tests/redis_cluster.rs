//! The Redis backend on a Redis Cluster of three primaries with one replica each
//! (`redis+cluster://` URLs): the whole conformance suite, and an election that goes on when
//! the primary of its slot is killed and its replica takes over.

use std::sync::Arc;
use std::time::Duration;

use lock_core::testing::conformance::{config, releasing_config, unique_name, Backend, Candidate};
use lock_core::{Lock, RunOutcome};
use lock_redis::{RedisClient, RedisLock, RedisLockOptions};
use lock_tests::driver::{ended, lead_every_election, redis_stored_record};
use lock_tests::redis_clients::{connections_until, field, ClientInfo};
use lock_tests::servers::redis_cluster::RedisCluster;
use redis::AsyncCommands;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Elections as keys on a cluster of its own, stopped with the backend.
struct ClusterBackend {
    cluster: RedisCluster,
}

impl ClusterBackend {
    async fn start() -> Self {
        let cluster = tokio::task::spawn_blocking(RedisCluster::start)
            .await
            .expect("the cluster forms");
        Self { cluster }
    }

    fn key(&self, name: &str) -> String {
        RedisLock::new(&self.cluster.url(), name, RedisLockOptions::default())
            .expect("a valid URL and name")
            .key()
            .to_owned()
    }

    async fn admin(&self) -> redis::cluster_async::ClusterConnection {
        let nodes: Vec<String> = self
            .cluster
            .url()
            .trim_start_matches("redis+cluster://")
            .split(',')
            .map(|node| format!("redis://{node}"))
            .collect();
        redis::cluster::ClusterClient::new(nodes)
            .expect("a cluster client")
            .get_async_connection()
            .await
            .expect("an admin connection to the test cluster")
    }
}

#[async_trait::async_trait]
impl Backend for ClusterBackend {
    async fn lock(&self, name: &str) -> Arc<dyn Lock> {
        Arc::new(
            RedisLock::connect(&self.cluster.url(), name, Default::default())
                .await
                .expect("connect to the test cluster"),
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

lock_core::conformance_suite!(ClusterBackend::start());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_goes_on_when_the_primary_of_its_slot_fails_over() {
    let backend = ClusterBackend::start().await;
    let name = unique_name("cluster-failover");
    let lock = |name: String| {
        let url = backend.cluster.url();
        async move {
            RedisLock::connect(&url, &name, Default::default())
                .await
                .expect("connect")
        }
    };
    let mut a = Candidate::start(lock(name.clone()).await, config("a"), None);
    let first = a.started(Duration::from_secs(10)).await;
    let mut b = Candidate::start(lock(name.clone()).await, config("b"), None);
    b.sees_leader("a", Duration::from_secs(10)).await;

    let channel = format!("{}:changes", backend.key(&name));
    let port = backend.cluster.primary_of(&backend.key(&name));
    assert_sharded_watch(&backend.cluster, &channel).await;
    let mut backend = backend;
    let cluster = tokio::task::spawn_blocking(move || {
        backend.cluster.kill_and_fail_over(port);
        backend
    })
    .await
    .expect("the failover");
    // The replica had the record: the term goes on, or a new one starts with a greater token.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leaders: Vec<_> = [&a, &b]
            .into_iter()
            .filter_map(|candidate| candidate.handle().leadership())
            .collect();
        assert!(leaders.len() <= 1, "two leaders after the failover");
        if let Some(term) = leaders.first() {
            assert!(term.fencing_token() >= first.fencing_token());
            break;
        }
        assert!(Instant::now() < deadline, "nobody leads after the failover");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // b's next watch found the slot's new primary.
    assert_sharded_watch(&cluster.cluster, &channel).await;
    a.stop().await;
    b.stop().await;
    drop(cluster);
}

/// Waits until the primary that serves `channel`'s slot has a sharded subscriber to it and no
/// node has a classic one: hints go by sharded pub/sub, on the slot's node only.
async fn assert_sharded_watch(cluster: &RedisCluster, channel: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let primary = cluster.primary_of(channel);
        let sharded = cluster
            .subscribers(primary, channel)
            .is_some_and(|(sharded, _)| sharded > 0);
        let classic: i64 = cluster
            .ports()
            .into_iter()
            .filter_map(|port| cluster.subscribers(port, channel))
            .map(|(_, classic)| classic)
            .sum();
        assert_eq!(classic, 0, "a classic SUBSCRIBE to {channel}");
        if sharded {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no sharded subscriber to {channel} on its primary {primary}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_to_another_node_keeps_the_election_and_its_hints() {
    let backend = ClusterBackend::start().await;
    let name = unique_name("slot-moved");
    let url = backend.cluster.url();
    let connect = |url: String, name: String| async move {
        RedisLock::connect(&url, &name, Default::default())
            .await
            .expect("connect")
    };
    let mut a = Candidate::start(
        connect(url.clone(), name.clone()).await,
        releasing_config("a"),
        None,
    );
    let first = a.started(Duration::from_secs(10)).await;
    let mut b = Candidate::start(connect(url.clone(), name.clone()).await, config("b"), None);
    b.sees_leader("a", Duration::from_secs(10)).await;
    let key = backend.key(&name);
    let channel = format!("{key}:changes");
    assert_sharded_watch(&backend.cluster, &channel).await;

    // The server ends the sharded subscriptions of a slot it gives away: b's watch ends, and
    // its next one subscribes on the slot's new node. a renews there (MOVED is followed).
    let moved_to = tokio::task::block_in_place(|| backend.cluster.migrate_slot_of(&key));
    assert_eq!(backend.cluster.primary_of(&key), moved_to);
    assert_sharded_watch(&backend.cluster, &channel).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(first.is_leader(), "a kept its term across the move");
    assert!(!b.handle().is_leader());

    // Hints work on the new node: a's release hands over within a second.
    let released = Instant::now();
    a.stop().await;
    let second = b.started(Duration::from_secs(10)).await;
    assert!(second.fencing_token() > first.fencing_token());
    assert!(
        released.elapsed() < Duration::from_secs(1),
        "the handover took {:?}: b was not woken by a hint",
        released.elapsed()
    );
    b.stop().await;
}

/// Many elections on one client share its connections on a cluster too: each node sees at
/// most one command connection and one sharded pub/sub connection from the process, however
/// many elections there are, and every election's watch is a sharded subscription on the
/// primary that serves its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_elections_on_one_client_share_a_connection_or_two_per_node() {
    const ELECTIONS: usize = 300;
    let backend = ClusterBackend::start().await;
    let client = RedisClient::connect(&backend.cluster.url(), RedisLockOptions::default())
        .await
        .expect("connect");
    let cancel = CancellationToken::new();
    let names: Vec<String> = (0..ELECTIONS).map(|i| format!("shard-{i}")).collect();
    let locks = names
        .iter()
        .map(|name| client.lock(name).expect("a valid name"));
    let runs = lead_every_election(locks, "a", &cancel, Duration::from_secs(60)).await;

    // The elections' slots spread over the three primaries; each serves some of them.
    let mut primaries: Vec<u16> = names
        .iter()
        .map(|name| backend.cluster.primary_of(&backend.key(name)))
        .collect();
    primaries.sort_unstable();
    primaries.dedup();
    assert_eq!(primaries.len(), 3, "the slots of {ELECTIONS} elections");
    let mut sharded_total = 0;
    for port in backend.cluster.ports() {
        let mut admin = backend
            .cluster
            .admin_client(port)
            .get_multiplexed_async_connection()
            .await
            .expect("an admin connection");
        // The process's connections: not replication links (flags S and M) nor the test's own.
        let ours = |connections: &[ClientInfo]| -> Vec<ClientInfo> {
            connections
                .iter()
                .filter(|info| {
                    let flags = field(info, "flags");
                    !flags.contains('S') && !flags.contains('M')
                })
                .cloned()
                .collect()
        };
        let serves = primaries.contains(&port);
        let connections = connections_until(&mut admin, Duration::from_secs(30), |listed| {
            let ours = ours(listed);
            !serves || ours.iter().any(|info| field(info, "ssub") != "0")
        })
        .await;
        let ours = ours(&connections);
        assert!(
            ours.len() <= 2,
            "node {port}: at most a command and a pub/sub connection for {ELECTIONS} elections: {ours:#?}"
        );
        let sharded: Vec<&ClientInfo> = ours
            .iter()
            .filter(|info| field(info, "ssub") != "0")
            .collect();
        assert!(sharded.len() <= 1, "node {port}: {sharded:#?}");
        if serves {
            assert_eq!(sharded.len(), 1, "node {port} serves slots: {ours:#?}");
        }
        for info in &ours {
            assert_eq!(field(info, "sub"), "0", "no classic subscription: {info:?}");
        }
        sharded_total += sharded
            .iter()
            .map(|info| field(info, "ssub").parse::<usize>().expect("a count"))
            .sum::<usize>();
    }
    assert_eq!(
        sharded_total, ELECTIONS,
        "one sharded subscription per election, on its slot's primary"
    );

    cancel.cancel();
    for outcome in ended(runs, Duration::from_secs(30)).await {
        assert!(
            matches!(outcome, RunOutcome::Cancelled { .. }),
            "{outcome:?}"
        );
    }
}
