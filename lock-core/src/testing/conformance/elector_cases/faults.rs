//! A backend that stops answering: the leader steps down before anyone may take over.

use std::sync::Arc;
use std::time::Duration;

use crate::testing::FaultyLock;
use crate::{ElectionEvent, RunOutcome, StopReason};
use tokio::time::Instant;

use super::TAKE_LIMIT;
use crate::testing::conformance::{
    config, Backend, Candidate, LeadershipLog, LEASE, RENEW_DEADLINE,
};

/// How much earlier than the renew deadline the step-down may be seen (clock granularity).
const EPSILON: Duration = Duration::from_millis(50);

/// Case 11: When the leader cannot reach the backend for longer than the renew deadline, its term
/// ends (token cancelled, `is_leader()` false) after the renew deadline and before the lease
/// could run out for anybody else; a healthy standby then takes over with a larger token.
pub async fn unavailable_backend_makes_the_leader_step_down_first(
    backend: Arc<dyn Backend>,
    name: &str,
) {
    let log = LeadershipLog::new();
    let faulty = FaultyLock::new(backend.lock(name).await);
    let faults = faulty.faults();
    let mut leader = Candidate::start(faulty, config("cut-off").with_rejoin(false), Some(&log));
    let term = leader.started(TAKE_LIMIT).await;
    let mut standby = Candidate::start(backend.lock(name).await, config("healthy"), Some(&log));
    standby.sees_leader("cut-off", TAKE_LIMIT).await;

    faults.set_unavailable(true);
    let limit = LEASE + Duration::from_secs(2);
    let token = term.cancellation_token();
    let (not_leader_at, cancelled_at) = tokio::join!(
        async {
            let stepped_down = tokio::time::timeout(limit, async {
                while term.is_leader() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            assert!(
                stepped_down.is_ok(),
                "the leader still said is_leader() {limit:?} after losing the backend"
            );
            Instant::now()
        },
        async {
            let cancelled = tokio::time::timeout(limit, token.cancelled()).await;
            assert!(
                cancelled.is_ok(),
                "the leader's term was not cancelled within {limit:?} of losing the backend"
            );
            Instant::now()
        }
    );
    // No renew can succeed any more, so this is the last one.
    let renewed_at = term.renewed_at();
    assert!(token.is_cancelled());
    assert!(!term.is_leader());
    assert!(!leader.handle().is_leader(), "the handle agrees");
    for (what, at) in [
        ("is_leader() turned false", not_leader_at),
        ("the term was cancelled", cancelled_at),
    ] {
        assert!(
            at < renewed_at + LEASE,
            "{what} {:?} after the last renew, not before the lease ({LEASE:?}) ran out",
            at - renewed_at
        );
        assert!(
            at + EPSILON >= renewed_at + RENEW_DEADLINE,
            "{what} {:?} after the last renew, before the renew deadline ({RENEW_DEADLINE:?})",
            at - renewed_at
        );
    }
    assert_eq!(
        leader.finished(Duration::from_secs(5)).await,
        RunOutcome::LostLeadership(StopReason::RenewDeadlineExceeded)
    );
    let stopped = leader
        .pending_events()
        .into_iter()
        .find(|event| matches!(event, ElectionEvent::StoppedLeading { .. }));
    let expected_stop = |event: &ElectionEvent| match event {
        ElectionEvent::StoppedLeading {
            fencing_token,
            reason,
        } => *fencing_token == term.fencing_token() && *reason == StopReason::RenewDeadlineExceeded,
        _ => false,
    };
    assert!(
        stopped.as_ref().is_some_and(expected_stop),
        "the leader reported why it stopped: {stopped:?}"
    );

    let new_term = standby.started(LEASE + Duration::from_secs(5)).await;
    assert!(
        new_term.renewed_at() >= renewed_at + LEASE,
        "the standby took over before the lease of the last renew ran out"
    );
    assert!(
        new_term.fencing_token() > term.fencing_token(),
        "the new term's fencing token {} must be larger than the old one {}",
        new_term.fencing_token(),
        term.fencing_token()
    );
    let stored = backend
        .lock(name)
        .await
        .get()
        .await
        .expect("read the record")
        .expect("a record");
    assert_eq!(stored.record.holder_identity, "healthy");
    log.assert_no_overlap();

    standby.stop().await;
}
