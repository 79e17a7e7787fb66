//! Who leads: one candidate alone, and three that contend.

use std::sync::Arc;
use std::time::Duration;

use super::TAKE_LIMIT;
use crate::testing::conformance::{config, sample_leaders, Backend, Candidate, LeadershipLog};

/// Case 7: A candidate alone starts leading, says so, and the record names it.
pub async fn single_candidate_leads(backend: Arc<dyn Backend>, name: &str) {
    let mut alone = Candidate::start(backend.lock(name).await, config("alone"), None);
    let term = alone.started(TAKE_LIMIT).await;
    assert_eq!(term.identity(), "alone");
    assert!(term.is_leader(), "the term just started");
    assert!(alone.handle().is_leader(), "the handle agrees");
    assert_eq!(alone.handle().leader().as_deref(), Some("alone"));

    let stored = backend
        .lock(name)
        .await
        .get()
        .await
        .expect("read the record")
        .expect("the leader wrote a record");
    assert_eq!(
        stored.record.holder_identity, "alone",
        "the record names the leader"
    );
    assert_eq!(
        u64::try_from(stored.record.leader_transitions).ok(),
        Some(term.fencing_token()),
        "the record carries the term's fencing token"
    );
    assert_eq!(stored.record.lease_duration_seconds, 4);

    alone.stop().await;
    assert!(
        !term.is_leader(),
        "the term ends when the election is cancelled"
    );
}

/// Case 8: Three candidates start together: never two leaders at once, and exactly one in the end.
pub async fn three_candidates_never_lead_together(backend: Arc<dyn Backend>, name: &str) {
    let log = LeadershipLog::new();
    let mut candidates = Vec::new();
    for identity in ["a", "b", "c"] {
        let lock = backend.lock(name).await;
        candidates.push(Candidate::start(lock, config(identity), Some(&log)));
    }
    let handles: Vec<_> = candidates.iter().map(|c| c.handle().clone()).collect();

    let samples = sample_leaders(&handles, Duration::from_secs(6), Duration::from_millis(5)).await;
    assert!(
        samples.rounds > 100,
        "sampling must be dense; only {} rounds",
        samples.rounds
    );
    assert!(
        samples.overlaps.is_empty(),
        "two candidates led at the same time in {} of {} rounds, first: {:?}",
        samples.overlaps.len(),
        samples.rounds,
        samples.overlaps.iter().take(5).collect::<Vec<_>>()
    );
    let settled = samples.after_first_leader();
    assert!(
        settled.len() + 100 > samples.rounds,
        "a leader must be elected at once; the first one appeared after {} of {} rounds",
        samples.rounds - settled.len(),
        samples.rounds
    );
    let first = settled[0].clone();
    assert!(
        settled.iter().all(|round| *round == first),
        "once elected, the one leader stays the only leader: {:?}",
        settled
            .iter()
            .filter(|round| **round != first)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(first.len(), 1, "exactly one leader: {first:?}");

    let leading: Vec<_> = candidates
        .iter()
        .filter(|c| c.handle().is_leader())
        .collect();
    assert_eq!(leading.len(), 1, "exactly one candidate leads at the end");
    assert_eq!(leading[0].identity(), first[0]);
    for candidate in &candidates {
        assert_eq!(
            candidate.handle().leader().as_deref(),
            Some(first[0].as_str()),
            "{} knows who leads",
            candidate.identity()
        );
    }

    log.assert_no_overlap();
    let intervals = log.intervals();
    assert_eq!(intervals.len(), 1, "one term in all: {intervals:?}");
    assert_eq!(intervals[0].identity, first[0]);
    assert_eq!(intervals[0].end(), None, "the term is still running");

    for candidate in &mut candidates {
        candidate.stop().await;
    }
}
