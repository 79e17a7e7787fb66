//! Many elections on one etcd client put one watch on the server: the locks of an
//! [`EtcdClient`] share a watch on the key prefix, which hands each lock the events of its own
//! key. Counted by etcd itself (`etcd_debugging_mvcc_watcher_total`, the watchers it serves,
//! and `etcd_debugging_mvcc_watch_stream_total`, the gRPC watch streams). The whole
//! conformance suite also runs on locks of one client, their hints from the shared watch.

use std::sync::Arc;
use std::time::Duration;

use lock_core::backend::Hint;
use lock_core::testing::conformance::Backend;
use lock_core::{Lock, RunOutcome};
use lock_etcd::{EtcdClient, EtcdLockOptions};
use lock_tests::driver::{
    a_watch_joined_during_shutdown_ends, ended, lead_every_election, measure_until, next_hint,
    next_record, record, within,
};
use lock_tests::servers::etcd::EtcdServer;
use tokio_util::sync::CancellationToken;

/// How many elections the process holds.
const ELECTIONS: usize = 200;
/// Longest wait for anything that should happen promptly (two loaded cores).
const PROMPTLY: Duration = Duration::from_secs(30);

fn options() -> EtcdLockOptions {
    EtcdLockOptions::default()
        .with_connect_timeout(Duration::from_secs(1))
        .with_request_timeout(Duration::from_secs(1))
}

/// A gauge of etcd's `/metrics`.
async fn gauge(server: &EtcdServer, name: &str) -> u64 {
    let text = reqwest::get(format!("{}/metrics", server.endpoint()))
        .await
        .expect("etcd's /metrics answers")
        .text()
        .await
        .expect("etcd's /metrics");
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} is not in etcd's /metrics"));
    value
        .trim()
        .parse::<f64>()
        .unwrap_or_else(|err| panic!("{name} {value}: {err}")) as u64
}

/// The watchers and the watch streams etcd serves now.
async fn watches(server: &EtcdServer) -> (u64, u64) {
    (
        gauge(server, "etcd_debugging_mvcc_watcher_total").await,
        gauge(server, "etcd_debugging_mvcc_watch_stream_total").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_elections_on_one_client_are_one_watch_on_the_server() {
    let server = EtcdServer::start();
    assert_eq!(watches(&server).await, (0, 0), "a new etcd serves no watch");
    let client = within(
        PROMPTLY,
        EtcdClient::connect(&[server.endpoint()], options()),
    )
    .await
    .expect("connect");
    let cancel = CancellationToken::new();
    let locks = (0..ELECTIONS).map(|shard| {
        client
            .lock(&format!("shard-{shard}"))
            .expect("a valid name")
    });
    let runs = lead_every_election(locks, "a", &cancel, PROMPTLY).await;
    measure_until("200 elections on one client", PROMPTLY, (1, 1), || {
        watches(&server)
    })
    .await;

    // A second client with a standby's view of two elections: its own one watch, and each
    // lock hears its own key only.
    let other = EtcdClient::new(&[server.endpoint()], options()).expect("a client");
    let seven = other.lock("shard-7").expect("a valid name");
    let eight = other.lock("shard-8").expect("a valid name");
    let mut seven_hints = seven.watch().expect("etcd gives hints");
    let mut eight_hints = eight.watch().expect("etcd gives hints");
    assert!(matches!(next_hint(&mut seven_hints).await, Hint::Changed));
    assert!(matches!(next_hint(&mut eight_hints).await, Hint::Changed));
    measure_until(
        "a second client watching two elections",
        PROMPTLY,
        (2, 2),
        || watches(&server),
    )
    .await;
    let current = seven.get().await.expect("read").expect("a record");
    let written = seven
        .update(&record("b", 5), &current.version)
        .await
        .expect("a write from the second client");
    let (hinted, version) = next_record(&mut seven_hints).await;
    assert_eq!((hinted.holder_identity.as_str(), version), ("b", written));
    let (hinted, _) = next_record(&mut eight_hints).await;
    assert_eq!(
        hinted.holder_identity, "a",
        "shard-8's stream carries shard-8's renews, not shard-7's write"
    );
    drop(seven_hints);
    drop(eight_hints);
    measure_until(
        "the second client's streams dropped",
        PROMPTLY,
        (1, 1),
        || watches(&server),
    )
    .await;

    cancel.cancel();
    for outcome in ended(runs, PROMPTLY).await {
        assert!(
            matches!(
                outcome,
                RunOutcome::Cancelled { .. } | RunOutcome::LostLeadership(_)
            ),
            "{outcome:?}"
        );
    }
    measure_until("every election ended", PROMPTLY, (0, 0), || {
        watches(&server)
    })
    .await;

    // The facade's `Locks` from a URL shares the same way.
    let url = format!("etcd://127.0.0.1:{}", server.client_port());
    let locks = within(PROMPTLY, leader_election::Locks::connect(&url))
        .await
        .expect("an etcd:// URL");
    let cancel = CancellationToken::new();
    let shards = (0..ELECTIONS / 10).map(|shard| {
        locks
            .lock(&format!("facade-{shard}"))
            .expect("a valid name")
    });
    let runs = lead_every_election(shards, "a", &cancel, PROMPTLY).await;
    measure_until(
        "20 elections of the facade's Locks",
        PROMPTLY,
        (1, 1),
        || watches(&server),
    )
    .await;
    cancel.cancel();
    ended(runs, PROMPTLY).await;
}

/// Adversarial review: the hub spawned its task while holding its own lock; a runtime that
/// shuts down drops a refused task at once, and dropping it re-locked that lock: a hang.
#[test]
fn a_watch_joined_while_the_runtime_shuts_down_ends_instead_of_hanging() {
    let client = EtcdClient::new(&["127.0.0.1:1"], options()).expect("a client");
    a_watch_joined_during_shutdown_ends(client.lock("a").expect("a valid name"));
}

/// Elections as keys on an etcd of its own, every lock made by one [`EtcdClient`].
struct SharedClientBackend {
    server: EtcdServer,
    client: EtcdClient,
}

impl SharedClientBackend {
    fn key(&self, name: &str) -> String {
        self.client
            .lock(name)
            .expect("a valid name")
            .key()
            .to_owned()
    }
}

#[async_trait::async_trait]
impl Backend for SharedClientBackend {
    async fn lock(&self, name: &str) -> Arc<dyn Lock> {
        Arc::new(self.client.lock(name).expect("a valid name"))
    }

    async fn write_raw(&self, name: &str, bytes: &[u8]) {
        let value = std::str::from_utf8(bytes).expect("the suite writes text");
        self.server.put(&self.key(name), value);
    }

    async fn read_raw(&self, name: &str) -> Option<Vec<u8>> {
        self.server.get(&self.key(name)).map(String::into_bytes)
    }
}

mod conformance {
    use super::*;
    lock_core::conformance_suite!(async {
        let server = EtcdServer::start();
        let client =
            EtcdClient::new(&[server.endpoint()], EtcdLockOptions::default()).expect("a client");
        SharedClientBackend { server, client }
    });
}
