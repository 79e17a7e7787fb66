//! Many Lease elections of one [`LeaseLocks`] are one watch on the API server, counted by the
//! server itself (`apiserver_longrunning_requests`, the WATCH requests it serves on Leases), on
//! a kube-apiserver of this test's own so that no other test's watch is counted.

use std::time::Duration;

use lock_core::RunOutcome;
use lock_k8s::{KubeLockOptions, LeaseLocks};
use lock_tests::driver::{
    a_watch_joined_during_shutdown_ends, ended, lead_every_election, measure_until,
};
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};
use tokio_util::sync::CancellationToken;

use super::backend::client_as;

/// How many elections the process holds.
const ELECTIONS: usize = 100;
/// Longest wait for anything that should happen promptly (two loaded cores).
const PROMPTLY: Duration = Duration::from_secs(60);

/// The WATCH requests on Leases the API server serves now.
async fn lease_watches(client: &kube::Client) -> u64 {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a valid request");
    let text = client
        .request_text(request)
        .await
        .expect("the API server's /metrics");
    text.lines()
        .filter(|line| line.starts_with("apiserver_longrunning_requests{"))
        .filter(|line| line.contains("verb=\"WATCH\"") && line.contains("resource=\"leases\""))
        .filter_map(|line| line.rsplit_once(' '))
        .map(|(_, value)| value.parse::<f64>().expect("a gauge's value") as u64)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_lease_elections_of_one_lease_locks_are_one_watch_on_the_server() {
    let server = tokio::task::spawn_blocking(KubeApiServer::start)
        .await
        .expect("start a kube-apiserver");
    let admin = client_as(&server, ADMIN_USER).await;
    // The API server's own controllers may watch Leases: count from what they do.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = lease_watches(&admin).await;

    let locks = LeaseLocks::new(
        admin.clone(),
        KubeLockOptions::default().with_namespace("default"),
    )
    .expect("valid options");
    let cancel = CancellationToken::new();
    let shards =
        (0..ELECTIONS).map(|shard| locks.lock(&format!("shard-{shard}")).expect("a valid name"));
    let runs = lead_every_election(shards, "a", &cancel, PROMPTLY).await;
    measure_until(
        "100 elections of one LeaseLocks: Lease watches",
        PROMPTLY,
        before + 1,
        || lease_watches(&admin),
    )
    .await;

    cancel.cancel();
    for outcome in ended(runs, PROMPTLY).await {
        assert!(
            matches!(outcome, RunOutcome::Cancelled { .. }),
            "{outcome:?}"
        );
    }
    measure_until(
        "every election ended: Lease watches",
        PROMPTLY,
        before,
        || lease_watches(&admin),
    )
    .await;

    // The facade's `Locks` from a URL shares the same way.
    let url = format!(
        "k8s://lease/default?kubeconfig={}",
        server.kubeconfig(ADMIN_USER).display()
    );
    let locks = leader_election::Locks::connect(&url)
        .await
        .expect("a k8s:// URL");
    let cancel = CancellationToken::new();
    let shards = (0..ELECTIONS / 5).map(|shard| {
        locks
            .lock(&format!("facade-{shard}"))
            .expect("a valid name")
    });
    let runs = lead_every_election(shards, "a", &cancel, PROMPTLY).await;
    measure_until(
        "20 elections of the facade's Locks: Lease watches",
        PROMPTLY,
        before + 1,
        || lease_watches(&admin),
    )
    .await;
    cancel.cancel();
    ended(runs, PROMPTLY).await;
}

/// Adversarial review: the hub spawned its task while holding its own lock; a runtime that
/// shuts down drops a refused task at once, and dropping it re-locked that lock: a hang.
#[test]
fn a_watch_joined_while_the_runtime_shuts_down_ends_instead_of_hanging() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let lock = runtime.block_on(async {
        let config = kube::Config::new("http://127.0.0.1:1".parse().expect("a URL"));
        let client = kube::Client::try_from(config).expect("a client");
        let leases = LeaseLocks::new(client, KubeLockOptions::default().with_namespace("shards"))
            .expect("valid options");
        leases.lock("a").expect("a valid name")
    });
    drop(runtime);
    a_watch_joined_during_shutdown_ends(lock);
}
