//! `LeaderElector::on_renew` on tokio's paused clock: every renew attempt of a leader is
//! reported with its latency and outcome (fast path, slow path after a conflict, failure,
//! superseded), inline, before the elector acts on it.

#[allow(dead_code)] // shared with elector_paused_clock.rs; not every helper is used here
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{LeaderElectionRecord, LeaderElector, Lock, RenewOutcome, RenewReport};
use support::{config, Candidate, RETRY};
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;

/// Starts a candidate whose renew reports are collected.
fn start_reporting(
    lock: impl Lock + 'static,
    identity: &str,
    rejoin: bool,
) -> (Candidate, Arc<Mutex<Vec<RenewReport>>>) {
    let elector =
        LeaderElector::new(lock, config(identity).with_rejoin(rejoin)).expect("valid config");
    let reports = Arc::new(Mutex::new(Vec::new()));
    elector.on_renew({
        let reports = reports.clone();
        move |report| reports.lock().unwrap().push(report.clone())
    });
    let handle = elector.handle();
    let events = elector.subscribe();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(elector.run(cancel.clone()));
    (
        Candidate {
            handle,
            events,
            cancel,
            task,
        },
        reports,
    )
}

fn taken(reports: &Mutex<Vec<RenewReport>>) -> Vec<RenewReport> {
    std::mem::take(&mut *reports.lock().unwrap())
}

#[tokio::test(start_paused = true)]
async fn fast_path_renewals_are_reported_with_the_backends_latency() {
    let lock = FaultyLock::new(MemoryLock::new("fast"));
    let faults = lock.faults();
    let (mut a, reports) = start_reporting(lock, "a", true);
    let term = a.next_term(Duration::from_secs(1)).await;
    faults.set_latency(Duration::from_millis(120));
    sleep(RETRY * 3 + Duration::from_millis(500)).await;
    let reports = taken(&reports);
    assert!(reports.len() >= 2, "{reports:?}");
    for report in &reports {
        assert_eq!(report.fencing_token, term.fencing_token());
        assert_eq!(report.outcome, RenewOutcome::Renewed { slow_path: false });
        assert!(report.outcome.is_renewed());
    }
    // The latency of the last ones is exactly the injected one (the paused clock only moves
    // while the lock sleeps).
    let last = reports.last().unwrap();
    assert_eq!(last.latency, Duration::from_millis(120));
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_renew_after_a_conflict_is_reported_as_the_slow_path() {
    let lock = FaultyLock::new(MemoryLock::new("slow"));
    let faults = lock.faults();
    let (mut a, reports) = start_reporting(lock, "a", true);
    a.next_term(Duration::from_secs(1)).await;
    taken(&reports);
    faults.conflict_next(1);
    sleep(RETRY + Duration::from_millis(100)).await;
    let reports = taken(&reports);
    assert_eq!(
        reports
            .iter()
            .map(|r| r.outcome.clone())
            .collect::<Vec<_>>(),
        [RenewOutcome::Renewed { slow_path: true }],
        "{reports:?}"
    );
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failed_renewals_are_reported_and_the_leader_retries() {
    let lock = FaultyLock::new(MemoryLock::new("failing"));
    let faults = lock.faults();
    let (mut a, reports) = start_reporting(lock, "a", true);
    let term = a.next_term(Duration::from_secs(1)).await;
    taken(&reports);
    faults.fail_next(1);
    sleep(RETRY * 2 + Duration::from_millis(100)).await;
    let reports = taken(&reports);
    assert!(
        matches!(reports[0].outcome, RenewOutcome::Failed { .. }),
        "{reports:?}"
    );
    assert!(
        reports[1..].iter().all(|r| r.outcome.is_renewed()),
        "{reports:?}"
    );
    assert!(reports.len() >= 2, "{reports:?}");
    assert!(term.is_leader());
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_renew_that_finds_another_holder_is_reported_as_superseded() {
    let lock = MemoryLock::new("superseded");
    // Without hints, so that the renew (not the check a hint triggers) finds the new holder.
    let deaf = lock_core::testing::FaultyLock::new(lock.clone());
    deaf.faults().set_drop_hints(true);
    let (mut a, reports) = start_reporting(deaf, "a", false);
    let term = a.next_term(Duration::from_secs(1)).await;
    taken(&reports);
    // Another writer takes the record.
    let current = lock.get().await.unwrap().expect("a record");
    let theirs = LeaderElectionRecord {
        holder_identity: "z".into(),
        leader_transitions: current.record.leader_transitions + 1,
        ..current.record
    };
    lock.update(&theirs, &current.version).await.unwrap();
    term.lost().await;
    let reports = taken(&reports);
    assert_eq!(
        reports.last().map(|r| r.outcome.clone()),
        Some(RenewOutcome::Superseded {
            holder: Some("z".into())
        }),
        "{reports:?}"
    );
    assert_eq!(
        reports
            .iter()
            .filter(|r| matches!(r.outcome, RenewOutcome::Renewed { slow_path: true }))
            .count(),
        0
    );
    a.stop().await;
}
