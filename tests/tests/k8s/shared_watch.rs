//! Many Lease elections of one [`LeaseLocks`] are one watch on the API server, counted by the
//! server itself (`apiserver_longrunning_requests`, the WATCH requests it serves on Leases), on
//! a kube-apiserver of this test's own so that no other test's watch is counted.

use std::time::Duration;

use lock_core::{ElectionConfig, ElectionEvent, LeaderElector, RunOutcome};
use lock_k8s::{KubeLockOptions, LeaseLocks};
use lock_tests::driver::within;
use lock_tests::servers::kube::{KubeApiServer, ADMIN_USER};
use tokio::time::Instant;
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

/// Waits until the API server serves `expected` Lease watches, for at most [`PROMPTLY`].
async fn wait_for_lease_watches(client: &kube::Client, expected: u64, when: &str) {
    let deadline = Instant::now() + PROMPTLY;
    loop {
        let now = lease_watches(client).await;
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{when}: the API server serves {now} Lease watches, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
    let mut events = Vec::new();
    let mut runs = Vec::new();
    for shard in 0..ELECTIONS {
        let lock = locks.lock(&format!("shard-{shard}")).expect("a valid name");
        let elector = LeaderElector::new(lock, ElectionConfig::new("a")).expect("valid config");
        events.push(elector.subscribe());
        runs.push(tokio::spawn(elector.run(cancel.clone())));
    }
    for (shard, events) in events.iter_mut().enumerate() {
        let led = within(PROMPTLY, async {
            while let Some(event) = events.recv().await {
                if matches!(event, ElectionEvent::StartedLeading(_)) {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(led, "election shard-{shard} has a leader");
    }
    wait_for_lease_watches(&admin, before + 1, "100 elections of one LeaseLocks").await;

    cancel.cancel();
    for run in runs {
        let outcome = within(PROMPTLY, run).await.expect("the elector task");
        assert!(
            matches!(outcome, RunOutcome::Cancelled { .. }),
            "{outcome:?}"
        );
    }
    wait_for_lease_watches(&admin, before, "every election ended").await;
}
