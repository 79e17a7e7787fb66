//! A release that lands but is not confirmed durable (a Redis whose replicas have not
//! reattached after a failover: every write lands on the new primary, none is acknowledged in
//! time). The retry reads the free record its first attempt wrote; that is this release, done,
//! not "the lock no longer belongs to this term". Before, the release was reported as not done:
//! no `Released` or `HandedBack` event, although the lock was free. The sentinel fault test
//! saw it: standbys named a candidate whose unconfirmed takeover they had read, and nothing
//! told that the candidate had handed it back.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{ElectionEvent, Lock, RunOutcome};
use support::{config, held_by, start, LEASE, RETRY};
use tokio::sync::mpsc::UnboundedReceiver;

fn seen(events: &mut UnboundedReceiver<ElectionEvent>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(match event {
            ElectionEvent::NewLeader(leader) => {
                format!("new_leader:{}", leader.as_deref().unwrap_or("-"))
            }
            ElectionEvent::StartedLeading(term) => format!("started:{}", term.fencing_token()),
            ElectionEvent::StoppedLeading { .. } => "stopped".into(),
            ElectionEvent::Released { fencing_token } => format!("released:{fencing_token}"),
            ElectionEvent::HandedBack { fencing_token } => format!("handed_back:{fencing_token}"),
        });
    }
    seen
}

#[tokio::test(start_paused = true)]
async fn an_unconfirmed_takeover_handed_back_by_an_unconfirmed_release_is_announced() {
    let lock = FaultyLock::new(MemoryLock::new("unconfirmed-hand-back"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    inner.create(&held_by("x", 7)).await.unwrap();
    // The takeover and its release both land unconfirmed.
    faults.unreplicate_next(2);
    let mut a = start(lock, config("a"));
    let mut events = a.handle.subscribe();
    let term = a.next_term(LEASE * 3).await;
    assert!(term.fencing_token() > 8, "token {}", term.fencing_token());
    let seen = seen(&mut events);
    assert!(
        seen.iter().any(|label| label == "handed_back:8"),
        "the hand-back of token 8 is announced although its release was not confirmed: {seen:?}"
    );
    a.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_release_lands_unconfirmed_reports_it_released() {
    let lock = FaultyLock::new(MemoryLock::new("unconfirmed-release"));
    let faults = lock.faults();
    let inner = lock.inner().clone();
    let mut a = start(lock, config("a").with_release_on_cancel(true));
    let term = a.next_term(Duration::from_secs(1)).await;
    tokio::time::sleep(RETRY).await;
    faults.unreplicate_next(1);
    let mut events = a.handle.subscribe();
    let outcome = a.stop().await;
    assert_eq!(outcome, RunOutcome::Cancelled { released: true });
    let stored = inner.get().await.unwrap().unwrap().record;
    assert_eq!(stored.holder_identity, "", "the release landed");
    let released = format!("released:{}", term.fencing_token());
    let seen = seen(&mut events);
    assert_eq!(
        seen.iter().filter(|label| **label == released).count(),
        1,
        "one Released for the term: {seen:?}"
    );
}
