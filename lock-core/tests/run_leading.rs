//! `run_leading`: the leader's work runs with each term and stops when it ends; event streams end
//! with the election. On tokio's paused clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{
    ElectionConfig, ElectionEvent, LeaderElector, Lock, RunOutcome, WorkReturned,
    DEFAULT_LEASE_DURATION as LEASE, DEFAULT_RENEW_DEADLINE as RENEW_DEADLINE,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the work saw: (fencing token, started at, stopped at) per run of the work.
type Runs = Arc<Mutex<Vec<(u64, Instant, Option<Instant>)>>>;

/// Records when it is dropped: the moment the work was stopped.
struct StopStamp {
    runs: Runs,
    index: usize,
}

impl Drop for StopStamp {
    fn drop(&mut self) {
        self.runs.lock().unwrap()[self.index].2 = Some(Instant::now());
    }
}

/// Work that runs until it is stopped, recording its start and stop.
fn endless_work(
    runs: &Runs,
) -> impl FnMut(lock_core::Leadership) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
{
    let runs = runs.clone();
    move |term| {
        let runs = runs.clone();
        Box::pin(async move {
            let index = {
                let mut runs = runs.lock().unwrap();
                runs.push((term.fencing_token(), Instant::now(), None));
                runs.len() - 1
            };
            let _stamp = StopStamp { runs, index };
            std::future::pending::<()>().await;
        })
    }
}

/// The store goes away under the leader: the work is stopped no later than the term's clock
/// deadline; when the store is back, a new term starts the work again with a greater token.
#[tokio::test(start_paused = true)]
async fn work_stops_with_its_term_and_starts_with_the_next() {
    let lock = FaultyLock::new(MemoryLock::new("orders"));
    let faults = lock.faults();
    let elector = LeaderElector::new(lock, ElectionConfig::new("a").with_rejoin(true)).unwrap();
    let handle = elector.handle();
    let runs: Runs = Arc::default();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(elector.run_leading(cancel.clone(), endless_work(&runs)));

    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = handle.leadership().expect("a leads");
    faults.set_unavailable(true);
    tokio::time::sleep(RENEW_DEADLINE + Duration::from_secs(1)).await;
    {
        let runs = runs.lock().unwrap();
        assert_eq!(runs.len(), 1);
        let stopped = runs[0].2.expect("the work was stopped when the term ended");
        assert!(
            stopped <= first.valid_until(),
            "stopped after the term's deadline"
        );
    }
    faults.set_unavailable(false);
    tokio::time::sleep(LEASE * 2).await;
    {
        let runs = runs.lock().unwrap();
        assert_eq!(
            runs.len(),
            2,
            "a second term starts the work again: {runs:?}"
        );
        assert!(runs[1].0 > runs[0].0, "a greater token: {runs:?}");
        assert!(runs[1].2.is_none());
    }
    cancel.cancel();
    assert_eq!(
        running.await.unwrap(),
        RunOutcome::Cancelled { released: false }
    );
    assert!(runs.lock().unwrap()[1].2.is_some(), "cancel stops the work");
}

/// Work that returns ends the term and the election; with release on, the lock is free at once.
#[tokio::test(start_paused = true)]
async fn work_that_returns_releases_the_lock() {
    let lock = MemoryLock::new("orders");
    let config = ElectionConfig::new("a").with_release_on_cancel(true);
    let elector = LeaderElector::new(lock.clone(), config).unwrap();
    let outcome = elector
        .run_leading(CancellationToken::new(), |term| async move {
            assert!(term.is_leader());
            tokio::time::sleep(Duration::from_secs(3)).await;
        })
        .await;
    assert_eq!(outcome, RunOutcome::WorkReturned { released: true });
    let record = lock.get().await.unwrap().expect("a record").record;
    assert_eq!(record.holder_identity, "", "released");
}

/// Under `Restart`, work that returns at once is started again at most once a second, with the
/// same term.
#[tokio::test(start_paused = true)]
async fn restarted_work_waits_between_starts() {
    let elector = LeaderElector::new(MemoryLock::new("orders"), ElectionConfig::new("a")).unwrap();
    let starts: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let cancel = CancellationToken::new();
    let recorded = starts.clone();
    let running = tokio::spawn(elector.run_leading_with(
        cancel.clone(),
        WorkReturned::Restart,
        move |term| {
            recorded
                .lock()
                .unwrap()
                .push((term.fencing_token(), Instant::now()));
            async {}
        },
    ));
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    cancel.cancel();
    assert_eq!(
        running.await.unwrap(),
        RunOutcome::Cancelled { released: false }
    );
    let starts = starts.lock().unwrap();
    assert_eq!(starts.len(), 4, "{starts:?}");
    for pair in starts.windows(2) {
        assert_eq!(pair[0].0, pair[1].0, "one term");
        assert!(
            pair[1].1 - pair[0].1 >= Duration::from_secs(1),
            "{starts:?}"
        );
    }
}

/// Dropping `run_leading`'s future stops the election too: the lock is released.
#[tokio::test(start_paused = true)]
async fn dropping_run_leading_stops_the_election() {
    let lock = MemoryLock::new("orders");
    let config = ElectionConfig::new("a").with_release_on_cancel(true);
    let elector = LeaderElector::new(lock.clone(), config).unwrap();
    let handle = elector.handle();
    let runs: Runs = Arc::default();
    let running = elector.run_leading(CancellationToken::new(), endless_work(&runs));
    let _ = tokio::time::timeout(Duration::from_secs(2), running).await;
    assert!(runs.lock().unwrap()[0].2.is_some(), "the work was stopped");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!handle.is_leader());
    let record = lock.get().await.unwrap().expect("a record").record;
    assert_eq!(record.holder_identity, "", "released");
}

/// Event streams end (after their queued events) when `run` returns, and a stream opened
/// afterwards is ended already: loops over them need no `break`.
#[tokio::test(start_paused = true)]
async fn event_streams_end_when_the_election_does() {
    let elector = LeaderElector::new(MemoryLock::new("orders"), ElectionConfig::new("a")).unwrap();
    let handle = elector.handle();
    let mut events = elector.subscribe();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(elector.run(cancel.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cancel.cancel();
    running.await.unwrap();
    let mut seen = Vec::new();
    while let Some(event) = events.recv().await {
        seen.push(event);
    }
    assert!(
        seen.iter()
            .any(|event| matches!(event, ElectionEvent::StartedLeading(_))),
        "{seen:?}"
    );
    assert!(
        matches!(seen.last(), Some(ElectionEvent::StoppedLeading { .. })),
        "{seen:?}"
    );
    assert!(handle.subscribe().recv().await.is_none());
}
