//! Handing leadership over: released on purpose, or left behind by a leader that died.

use std::sync::Arc;
use std::time::Duration;

use crate::RunOutcome;
use tokio::time::Instant;

use super::TAKE_LIMIT;
use crate::testing::conformance::{
    config, releasing_config, Backend, Candidate, LeadershipLog, LEASE, RETRY_PERIOD,
};

/// How soon a released lock must be taken by a standby, and how late after the lease a dead
/// leader's lock may be: one second with change hints (well under the retry period, so that
/// only a standby woken by a hint, not by its next poll, makes it); without hints, one second
/// after the longest poll interval (the retry period plus client-go's jitter).
fn wake_limit(backend: &dyn Backend) -> Duration {
    let slack = Duration::from_secs(1);
    if backend.capabilities().hints {
        slack
    } else {
        RETRY_PERIOD.mul_f64(1.0 + crate::JITTER_FACTOR) + slack
    }
}

/// How many handovers the fencing case makes.
const HANDOVERS: usize = 20;

/// Case 9: A leader that is cancelled with release on hands over within a second, although the
/// standby would poll only every two seconds (on a backend with change hints; see
/// [`Capabilities`](crate::testing::conformance::Capabilities)).
pub async fn graceful_release_hands_over_within_a_second(backend: Arc<dyn Backend>, name: &str) {
    let log = LeadershipLog::new();
    let mut leader = Candidate::start(
        backend.lock(name).await,
        releasing_config("leaving"),
        Some(&log),
    );
    let old_term = leader.started(TAKE_LIMIT).await;
    let mut standby = Candidate::start(backend.lock(name).await, config("staying"), Some(&log));
    standby.sees_leader("leaving", TAKE_LIMIT).await;

    // The standby has just read the lock, so its next poll is a retry period away.
    let cancelled_at = Instant::now();
    leader.cancel_token().cancel();
    let (outcome, new_term) = tokio::join!(leader.finished(Duration::from_secs(10)), async {
        let term = standby.started(Duration::from_secs(10)).await;
        (term, Instant::now())
    });
    let (new_term, arrived) = new_term;
    let handover = arrived - cancelled_at;
    let limit = wake_limit(backend.as_ref());
    assert!(
        handover < limit,
        "the standby started leading {handover:?} after the leader was cancelled; a released \
         lock must be taken within {limit:?} (the retry period is {RETRY_PERIOD:?})"
    );
    assert_eq!(
        outcome,
        RunOutcome::Cancelled { released: true },
        "the cancelled leader released the lock"
    );
    assert!(!old_term.is_leader(), "the old term ended");
    assert!(old_term.cancellation_token().is_cancelled());
    assert!(new_term.is_leader());
    assert!(
        new_term.fencing_token() > old_term.fencing_token(),
        "the new term has a larger fencing token"
    );
    log.assert_no_overlap();

    standby.stop().await;
}

/// Waits until `term` renews (its `renewed_at` moves), so that the next renew is a whole retry
/// period away; returns the new `renewed_at`.
async fn next_renew(term: &crate::Leadership) -> Instant {
    let before = term.renewed_at();
    let limit = RETRY_PERIOD + Duration::from_secs(3);
    let waited = tokio::time::timeout(limit, async {
        while term.renewed_at() == before {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "the leader did not renew within {limit:?}");
    term.renewed_at()
}

/// Case 10: A leader that dies without releasing (its run task is aborted, as a killed process
/// ends) is replaced no earlier than a lease after its last renew, and not much later.
pub async fn killed_leader_is_replaced_after_the_lease(backend: Arc<dyn Backend>, name: &str) {
    let log = LeadershipLog::new();
    let mut leader = Candidate::start(backend.lock(name).await, config("doomed"), Some(&log));
    let old_term = leader.started(TAKE_LIMIT).await;
    let mut standby = Candidate::start(backend.lock(name).await, config("heir"), Some(&log));
    standby.sees_leader("doomed", TAKE_LIMIT).await;

    let renewed_at = next_renew(&old_term).await;
    leader.kill().await;
    assert_eq!(
        old_term.renewed_at(),
        renewed_at,
        "no renew may happen after the kill"
    );

    let new_term = standby.started(LEASE + Duration::from_secs(5)).await;
    let arrived = Instant::now();
    let earliest = renewed_at + LEASE;
    assert!(
        new_term.renewed_at() >= earliest,
        "the standby took the lock {:?} before the lease of the last renew ran out",
        earliest - new_term.renewed_at()
    );
    assert!(arrived >= earliest);
    let slack = wake_limit(backend.as_ref());
    assert!(
        arrived <= earliest + slack,
        "the standby started leading {:?} after the lease of the last renew ran out; at most \
         {slack:?} is allowed",
        arrived - earliest
    );
    assert!(
        !old_term.is_leader(),
        "the dead leader's term is over on the clock"
    );
    assert!(new_term.fencing_token() > old_term.fencing_token());
    log.assert_no_overlap();

    standby.stop().await;
}

/// Case 12: Fencing tokens strictly increase over twenty graceful handovers, also when an identity
/// leads again after it had stopped.
pub async fn fencing_tokens_increase_over_handovers(backend: Arc<dyn Backend>, name: &str) {
    let log = LeadershipLog::new();
    let identities = ["even", "odd"];
    let mut current = Candidate::start(
        backend.lock(name).await,
        releasing_config(identities[0]),
        Some(&log),
    );
    let mut tokens = vec![current.started(TAKE_LIMIT).await.fencing_token()];
    for handover in 1..=HANDOVERS {
        let mut next = Candidate::start(
            backend.lock(name).await,
            releasing_config(identities[handover % 2]),
            Some(&log),
        );
        next.sees_leader(current.identity(), TAKE_LIMIT).await;
        let (outcome, term) = tokio::join!(current.stop(), next.started(TAKE_LIMIT));
        assert_eq!(
            outcome,
            RunOutcome::Cancelled { released: true },
            "handover {handover}: the leader released the lock"
        );
        assert_eq!(term.identity(), identities[handover % 2]);
        tokens.push(term.fencing_token());
        current = next;
    }
    current.stop().await;

    assert_eq!(
        tokens.len(),
        HANDOVERS + 1,
        "one term per handover, plus the first"
    );
    assert!(
        tokens.windows(2).all(|pair| pair[0] < pair[1]),
        "fencing tokens must strictly increase: {tokens:?}"
    );
    log.assert_no_overlap();
    let intervals = log.intervals();
    assert!(
        intervals.iter().all(|term| term.stopped.is_some()),
        "every term was announced over: {intervals:#?}"
    );
    let logged: Vec<u64> = intervals.iter().map(|term| term.fencing_token).collect();
    assert_eq!(
        logged, tokens,
        "the log saw the same terms, in the same order"
    );
}
