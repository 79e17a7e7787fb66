//! Planned handover on tokio's paused clock: a request names a candidate, the leader ends its
//! term and releases at once (woken by its hint, or at its next renew without hints), the
//! named candidate takes over while the others hold back for a retry period, and a name
//! nobody uses only delays the election by that period. Tokens grow and terms never overlap.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use lock_core::testing::MemoryLock;
use lock_core::{
    request_handover, ElectionEvent, HandoverError, LeaderElectionRecord, Leadership, Lock,
    StopReason,
};
use support::{config, start, Candidate, LEASE, RETRY};
use tokio::time::Instant;

const CALL: Duration = Duration::from_secs(5);

/// Starts `names` on one lock, the first one alone until it leads. Returns the candidates and
/// the first one's term.
async fn elected(lock: &MemoryLock, names: &[&str], hints: bool) -> (Vec<Candidate>, Leadership) {
    let config = |name: &str| config(name).with_hints(hints).with_release_on_cancel(true);
    let mut first = start(lock.clone(), config(names[0]));
    let term = first.next_term(Duration::from_secs(1)).await;
    let mut candidates = vec![first];
    for name in &names[1..] {
        candidates.push(start(lock.clone(), config(name)));
    }
    // Let the others read the lock and stand by.
    tokio::time::sleep(Duration::from_millis(10)).await;
    (candidates, term)
}

/// The reason the term `token` of `candidate` ended, waiting (bounded) for it.
async fn stop_reason(candidate: &mut Candidate, token: u64) -> StopReason {
    tokio::time::timeout(LEASE * 2, async {
        loop {
            match candidate.events.recv().await {
                Some(ElectionEvent::StoppedLeading {
                    fencing_token,
                    reason,
                }) if fencing_token == token => return reason,
                Some(_) => {}
                None => panic!("events ended before term {token} did"),
            }
        }
    })
    .await
    .expect("the term ends")
}

#[tokio::test(start_paused = true)]
async fn the_named_candidate_takes_over_within_milliseconds_and_the_others_hold_back() {
    let lock = MemoryLock::new("handover");
    let (mut candidates, a_term) = elected(&lock, &["a", "b", "c"], true).await;
    let asked = Instant::now();
    let request = request_handover(&lock, "c", CALL).await.unwrap();
    assert_eq!(request.from, "a");
    assert_eq!(request.to, "c");
    assert_eq!(request.fencing_token, a_term.fencing_token());

    let c_term = candidates[2].next_term(LEASE).await;
    let took = asked.elapsed();
    assert!(
        took < RETRY / 4,
        "c took {took:?}, more than a quarter retry period"
    );
    assert!(!a_term.is_leader(), "a's term ended before c's started");
    assert!(c_term.fencing_token() > a_term.fencing_token());
    assert_eq!(
        stop_reason(&mut candidates[0], a_term.fencing_token()).await,
        StopReason::HandedOver { to: "c".into() }
    );
    // The new term settles the request: the record prefers nobody any more.
    let record = lock.get().await.unwrap().unwrap().record;
    assert_eq!(record.holder_identity, "c");
    assert_eq!(record.preferred_holder, None);

    // Nobody else starts a term while c leads.
    tokio::time::sleep(LEASE * 2).await;
    assert!(c_term.is_leader());
    for candidate in &mut candidates[..2] {
        while let Ok(event) = candidate.events.try_recv() {
            assert!(
                !matches!(event, ElectionEvent::StartedLeading(_)),
                "{} led while c did",
                candidate.handle.identity()
            );
        }
    }
    for candidate in candidates {
        candidate.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn without_hints_the_leader_hands_over_at_its_next_renew() {
    let lock = MemoryLock::new("handover-polling");
    let (mut candidates, a_term) = elected(&lock, &["a", "b"], false).await;
    let asked = Instant::now();
    request_handover(&lock, "b", CALL).await.unwrap();
    let b_term = candidates[1].next_term(LEASE).await;
    let took = asked.elapsed();
    // The leader's next renew (a retry period at most) plus b's next poll (a retry period and
    // its jitter at most): well inside a lease.
    assert!(took <= RETRY * 4, "b took {took:?}");
    assert!(!a_term.is_leader());
    assert!(b_term.fencing_token() > a_term.fencing_token());
    assert_eq!(
        stop_reason(&mut candidates[0], a_term.fencing_token()).await,
        StopReason::HandedOver { to: "b".into() }
    );
    for candidate in candidates {
        candidate.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_name_nobody_uses_delays_the_election_by_one_retry_period() {
    let lock = MemoryLock::new("handover-ghost");
    let (mut candidates, a_term) = elected(&lock, &["a", "b"], true).await;
    let asked = Instant::now();
    request_handover(&lock, "ghost", CALL).await.unwrap();
    // a (rejoining) or b takes the lock once the ghost's retry period is over.
    let next = tokio::time::timeout(LEASE, async {
        loop {
            for candidate in candidates.iter_mut() {
                while let Ok(event) = candidate.events.try_recv() {
                    if let ElectionEvent::StartedLeading(term) = event {
                        return term;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("someone leads after the ghost's turn");
    let took = asked.elapsed();
    assert!(took >= RETRY, "the ghost's retry period was kept: {took:?}");
    assert!(took < RETRY * 3, "and not much more: {took:?}");
    assert!(next.fencing_token() > a_term.fencing_token());
    assert_eq!(
        lock.get().await.unwrap().unwrap().record.preferred_holder,
        None
    );
    for candidate in candidates {
        candidate.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn requests_that_make_no_sense_are_refused_and_write_nothing() {
    let lock = MemoryLock::new("handover-refused");
    assert!(matches!(
        request_handover(&lock, "b", CALL).await,
        Err(HandoverError::NoRecord { .. })
    ));
    let (candidates, a_term) = elected(&lock, &["a"], true).await;
    assert!(matches!(
        request_handover(&lock, "", CALL).await,
        Err(HandoverError::EmptyName)
    ));
    let before = lock.get().await.unwrap().unwrap();
    match request_handover(&lock, "a", CALL).await {
        Err(HandoverError::AlreadyLeads {
            to, fencing_token, ..
        }) => {
            assert_eq!(to, "a");
            assert_eq!(fencing_token, a_term.fencing_token());
        }
        other => panic!("expected AlreadyLeads, got {other:?}"),
    }
    assert_eq!(lock.get().await.unwrap().unwrap().version, before.version);
    for candidate in candidates {
        candidate.stop().await;
    }
    // a released on cancellation: the lock is free.
    assert!(matches!(
        request_handover(&lock, "b", CALL).await,
        Err(HandoverError::NoLeader { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_record_that_prefers_the_leader_itself_changes_nothing() {
    let lock = MemoryLock::new("handover-self");
    let (mut candidates, a_term) = elected(&lock, &["a", "b"], true).await;
    // As a coordinator would write it: the leader is the preferred holder.
    let current = lock.get().await.unwrap().unwrap();
    let preferring_a = LeaderElectionRecord {
        strategy: Some("OldestEmulationVersion".into()),
        preferred_holder: Some("a".into()),
        ..current.record.clone()
    };
    lock.update(&preferring_a, &current.version).await.unwrap();
    tokio::time::sleep(LEASE * 2).await;
    assert!(a_term.is_leader(), "a kept leading");
    while let Ok(event) = candidates[1].events.try_recv() {
        assert!(!matches!(event, ElectionEvent::StartedLeading(_)));
    }
    // The renews kept the coordinator's fields.
    let record = lock.get().await.unwrap().unwrap().record;
    assert_eq!(record.preferred_holder.as_deref(), Some("a"));
    assert_eq!(record.strategy.as_deref(), Some("OldestEmulationVersion"));
    for candidate in candidates.drain(..) {
        candidate.stop().await;
    }
}
