//! Attacks found by review, on tokio's paused clock: a write that started a term and whose
//! reply was lost is adopted later, after someone else wrote over it while keeping its mark (a
//! handover request, an edit that shortened the lease). The adopted term must obey that write
//! as a running term obeys it.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{request_handover, ElectionEvent, LeaderElectionRecord, Lock, StopReason};
use support::{config, start, LEASE, RETRY};

const CALL: Duration = Duration::from_secs(5);

/// Every call of the returned candidate's lock takes `latency` before it reaches the store,
/// and its first write lands but its reply is lost: a window of `latency` opens between that
/// write landing and the read that adopts it.
fn slow_and_lossy(lock: &MemoryLock, latency: Duration) -> FaultyLock<MemoryLock> {
    let faulty = FaultyLock::new(lock.clone());
    faulty.faults().set_latency(latency);
    faulty.faults().lose_replies_next(1);
    faulty
}

/// a's record, once its create landed on `lock` (polled each millisecond).
async fn landed(lock: &MemoryLock) -> lock_core::backend::Versioned {
    tokio::time::timeout(LEASE, async {
        loop {
            if let Some(landed) = lock.get().await.unwrap() {
                return landed;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("a's create landed")
}

#[tokio::test(start_paused = true)]
async fn a_handover_asked_of_an_adopted_write_is_obeyed() {
    let lock = MemoryLock::new("adopted-handover");
    let latency = Duration::from_secs(1);
    // a reads, reads the token floor, creates (its reply lost), and reads again, each call a
    // second after the last: it adopts its write a second after it landed.
    let mut a = start(
        slow_and_lossy(&lock, latency),
        config("a").with_rejoin(true),
    );
    let landed = landed(&lock).await;
    assert_eq!(landed.record.holder_identity, "a");
    // The request lands on a's record between its create and the read that adopts it.
    request_handover(&lock, "b", CALL).await.unwrap();
    let b_config = config("b").with_rejoin(true);
    let mut b = start(lock.clone(), b_config);
    let a_term = a.next_term(RETRY).await;

    // a hands over as any leader asked does: b leads within a few retry periods.
    let b_term = b.next_term(RETRY * 4).await;
    assert!(!a_term.is_leader(), "a's term ended before b's began");
    assert!(b_term.fencing_token() > a_term.fencing_token());
    let mut reason = None;
    while let Ok(event) = a.events.try_recv() {
        if let ElectionEvent::StoppedLeading { reason: why, .. } = event {
            reason = Some(why);
        }
    }
    assert_eq!(reason, Some(StopReason::HandedOver { to: "b".into() }));
    let record = lock.get().await.unwrap().unwrap().record;
    assert_eq!(record.holder_identity, "b");
    assert_eq!(record.preferred_holder, None);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_adopted_write_whose_lease_was_shortened_starts_no_term() {
    let lock = MemoryLock::new("adopted-shortened");
    let latency = Duration::from_secs(1);
    let mut a = start(
        slow_and_lossy(&lock, latency),
        config("a").with_rejoin(true),
    );
    // Someone rewrites a's record, keeping its mark, with a 1 s lease: a running term ends at
    // once on such a write (its lease no longer covers the renew deadline).
    let landed = landed(&lock).await;
    let shortened = LeaderElectionRecord {
        lease_duration_seconds: 1,
        ..landed.record.clone()
    };
    lock.update(&shortened, &landed.version).await.unwrap();
    let mut b = start(lock.clone(), config("b").with_rejoin(true));
    // b waits out the 1 s lease it observed, and takes over.
    let b_term = b.next_term(LEASE).await;
    // However a took in its write, it does not lead alongside b.
    while let Ok(event) = a.events.try_recv() {
        if let ElectionEvent::StartedLeading(a_term) = event {
            assert!(
                !a_term.is_leader(),
                "a's adopted term {} is valid while b's term {} runs",
                a_term.fencing_token(),
                b_term.fencing_token()
            );
        }
    }
    assert!(b_term.is_leader());
    a.stop().await;
    b.stop().await;
}

/// A coordinator (client-go's coordinated election) usually prefers the candidate that leads.
/// When that leader steps down on its own (cancelled, or unready) and releases, the released
/// record must not go on preferring it: every other standby would hold back a retry period
/// for a candidate that just left, instead of taking the lock at once.
#[tokio::test(start_paused = true)]
async fn a_leader_that_leaves_while_preferred_does_not_hold_the_others_back() {
    let lock = MemoryLock::new("preferred-leaves");
    let mut a = start(lock.clone(), config("a").with_release_on_cancel(true));
    let a_term = a.next_term(RETRY).await;
    let mut b = start(lock.clone(), config("b"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let current = lock.get().await.unwrap().unwrap();
    let preferring_a = LeaderElectionRecord {
        strategy: Some("OldestEmulationVersion".into()),
        preferred_holder: Some("a".into()),
        ..current.record.clone()
    };
    lock.update(&preferring_a, &current.version).await.unwrap();
    tokio::time::sleep(RETRY * 2).await;
    assert!(a_term.is_leader());

    let left = tokio::time::Instant::now();
    a.stop().await;
    let b_term = b.next_term(LEASE).await;
    assert!(
        left.elapsed() < RETRY / 4,
        "b took over {:?} after a left",
        left.elapsed()
    );
    assert!(b_term.fencing_token() > a_term.fencing_token());
    b.stop().await;
}
