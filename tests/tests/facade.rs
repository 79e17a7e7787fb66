//! The README's program, as a user writes it with the one facade dependency: `open` a URL and
//! `run_leading`, on a lock file and on a real redis-server. Two replicas: the first leads, hands
//! over on shutdown, the second leads with a greater fencing token.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use leader_election::{open, CancellationToken, ElectionConfig, LeaderElector, Lock, RunOutcome};
use lock_tests::servers::redis::RedisServer;
use tokio::task::JoinHandle;

/// (identity, fencing token) of every term that started its work.
type Terms = Arc<Mutex<Vec<(String, u64)>>>;

/// One replica, as the README writes it: open, configure, run the work while leading.
fn replica(
    url: &str,
    identity: &str,
    terms: &Terms,
) -> (CancellationToken, JoinHandle<RunOutcome>) {
    let (url, identity, terms) = (url.to_owned(), identity.to_owned(), terms.clone());
    let cancel = CancellationToken::new();
    let shutdown = cancel.clone();
    let task = tokio::spawn(async move {
        let lock = open(&url, "facade").await.expect("a lock URL");
        let config = ElectionConfig::new(identity.as_str()).with_release_on_cancel(true);
        let elector = LeaderElector::new(lock, config).expect("valid config");
        elector
            .run_leading(shutdown, |term| {
                let (terms, identity) = (terms.clone(), identity.clone());
                async move {
                    terms.lock().unwrap().push((identity, term.fencing_token()));
                    std::future::pending::<()>().await;
                }
            })
            .await
    });
    (cancel, task)
}

/// Waits (at most 10 s: far less than the 15 s lease, so only a handover passes) until `count`
/// terms started.
async fn terms_started(terms: &Terms, count: usize) -> Vec<(String, u64)> {
    for _ in 0..200 {
        if terms.lock().unwrap().len() >= count {
            return terms.lock().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{count} terms did not start in 10 s: {:?}",
        terms.lock().unwrap()
    );
}

async fn hand_over(url: &str) {
    let terms = Terms::default();
    let (stop_a, a) = replica(url, "a", &terms);
    assert_eq!(terms_started(&terms, 1).await[0].0, "a");
    let (stop_b, b) = replica(url, "b", &terms);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(terms.lock().unwrap().len(), 1, "b waits while a leads");

    stop_a.cancel();
    assert_eq!(a.await.unwrap(), RunOutcome::Cancelled { released: true });
    let started = terms_started(&terms, 2).await;
    assert_eq!(started[1].0, "b", "{started:?}");
    assert!(started[1].1 > started[0].1, "a greater token: {started:?}");

    stop_b.cancel();
    assert_eq!(b.await.unwrap(), RunOutcome::Cancelled { released: true });
}

#[tokio::test]
async fn the_readme_program_hands_over_on_a_lock_file() {
    let dir = tempfile::tempdir().unwrap();
    hand_over(&format!("file://{}/", dir.path().display())).await;
}

#[tokio::test]
async fn the_readme_program_hands_over_on_redis() {
    let server = RedisServer::start();
    hand_over(&server.url()).await;
}

/// A password with the characters that end other parts of a URL (`/`, `@`, `#`) logs in, given
/// percent-encoded as a URL needs, or with `/` and `@` as written: `open` hands it to redis-rs
/// encoded either way.
#[tokio::test]
async fn a_redis_password_with_slashes_and_ats_logs_in() {
    let server = RedisServer::start_with_password("pa/ss@wo#rd");
    let lock = open(&server.url(), "facade").await.expect("a lock URL");
    assert!(
        lock.get().await.expect("logged in").is_none(),
        "a fresh election"
    );
    assert!(!lock.describe().contains("pa/ss"), "{}", lock.describe());

    let server = RedisServer::start_with_password("pa/ss@word");
    let raw = format!("redis://default:pa/ss@word@127.0.0.1:{}", server.port());
    let lock = open(&raw, "facade").await.expect("a lock URL");
    assert!(lock.get().await.expect("logged in").is_none());
}
