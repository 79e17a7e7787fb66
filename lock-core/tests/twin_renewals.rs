//! A client-go elector given the same identity as one of ours takes any record naming that
//! identity as its own and renews it, keeping `acquireTime` and `leaderTransitions`: our term's
//! mark. Before each term kept the `renewTime`s it sent, our leader took such a renewal for its
//! own record, renewed over it and led beside the twin for as long as both ran; a release (on
//! cancellation, or of an ended term's record) freed the twin's running term. These tests play
//! the twin by hand on the store, as client-go writes.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{ElectionEvent, LeaderElectionRecord, Lock, StopReason};
use support::{config, start, LEASE, RENEW_DEADLINE, RETRY};
use tokio::time::{sleep, Instant};

/// One renew as client-go's elector writes it when the record names its identity: a new
/// `renewTime` (to the microsecond, as a Lease stores it), everything else kept. Returns the
/// record written, or `None` when the record does not name `identity`.
async fn twin_renews(lock: &MemoryLock, identity: &str) -> Option<LeaderElectionRecord> {
    let current = lock.get().await.unwrap()?;
    if current.record.holder_identity != identity {
        return None;
    }
    // Microseconds of its own (the paused clock runs many renewals within one real second),
    // so that a renewal never equals one of ours, or the twin's last, by chance.
    static RENEWALS: AtomicU32 = AtomicU32::new(0);
    let nth = RENEWALS.fetch_add(1, Ordering::Relaxed);
    let now = chrono::Utc::now().timestamp();
    let renewed = LeaderElectionRecord {
        renew_time: chrono::DateTime::from_timestamp(now, ((nth % 999) * 1_000 + 777) * 1_000),
        ..current.record
    };
    assert_ne!(renewed.renew_time, current.record.renew_time);
    lock.update(&renewed, &current.version).await.ok()?;
    Some(renewed)
}

/// Our leader and a client-go twin renewing the same record never lead together past the
/// moment our leader hears of the twin's first renewal: ours steps down and leaves the lock
/// to the twin, which goes on renewing.
#[tokio::test(start_paused = true)]
async fn a_leader_steps_down_when_a_twin_renews_its_record() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let lock = MemoryLock::new("twin-renews");
    let mut a = start(lock.clone(), config("a"));
    let term = a.next_term(LEASE).await;
    sleep(RETRY + Duration::from_millis(300)).await;
    assert!(term.is_leader());

    let first = twin_renews(&lock, "a")
        .await
        .expect("the twin adopted a's record");
    let twin_since = Instant::now();
    let mut twin_renewals = 1;
    let mut next_twin_renew = Instant::now() + RETRY;
    let end = Instant::now() + LEASE * 4;
    while Instant::now() < end {
        if Instant::now() >= next_twin_renew {
            twin_renewals += u32::from(twin_renews(&lock, "a").await.is_some());
            next_twin_renew += RETRY;
        }
        // Milliseconds after the twin's first renewal (a hears of it by a hint and reads),
        // a has stopped leading, and it never leads again while the twin renews.
        if Instant::now() > twin_since + Duration::from_millis(100) {
            assert!(
                !a.handle.is_leader(),
                "a leads {:?} after a twin began renewing its record: two leaders",
                Instant::now() - twin_since
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    assert!(!term.is_leader());
    assert!(
        twin_renewals > 20,
        "the twin renewed all along ({twin_renewals} renewals): a never wrote over it"
    );
    let stored = lock.get().await.unwrap().unwrap().record;
    assert_eq!(
        stored.acquire_time, first.acquire_time,
        "the twin's term goes on"
    );
    let mut superseded = false;
    while let Ok(event) = a.events.try_recv() {
        superseded |= matches!(
            event,
            ElectionEvent::StoppedLeading { reason: StopReason::Superseded { holder: Some(ref h) }, .. } if h == "a"
        );
    }
    assert!(
        superseded,
        "a's term ended as superseded by a holder named a"
    );
    a.stop().await;
}

/// A leader cancelled (with release) after a twin renewed its record, before it heard of it
/// (no hints), leaves the twin's renewal in place: releasing it would free the twin's running
/// term for anyone to take while the twin still leads.
#[tokio::test(start_paused = true)]
async fn a_cancelled_leader_does_not_release_a_twins_renewal() {
    let lock = MemoryLock::new("twin-release");
    let mut a = start(
        lock.clone(),
        config("a").with_hints(false).with_release_on_cancel(true),
    );
    a.next_term(LEASE).await;
    sleep(Duration::from_millis(500)).await;
    let renewed = twin_renews(&lock, "a")
        .await
        .expect("the twin adopted a's record");
    sleep(Duration::from_millis(10)).await;
    a.stop().await;
    assert_eq!(
        lock.get().await.unwrap().unwrap().record,
        renewed,
        "the twin's renewal is left alone"
    );
}

/// A leader cut off from the store ends its term at the renew deadline; meanwhile a twin,
/// which still reaches the store, renews the term's record. When the network heals, the stand-by's first
/// read must not take that record for its ended term's and release it.
#[tokio::test(start_paused = true)]
async fn the_stand_by_leaves_a_twins_renewal_of_its_ended_term() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let inner = MemoryLock::new("twin-ended");
    let faulty = FaultyLock::new(inner.clone());
    let faults = faulty.faults();
    let mut a = start(faulty, config("a").with_rejoin(true));
    let term = a.next_term(LEASE).await;
    faults.set_unavailable(true);
    let mut renewed = twin_renews(&inner, "a")
        .await
        .expect("the twin adopted a's record");
    let cut_at = Instant::now();
    while Instant::now() < cut_at + RENEW_DEADLINE + RETRY {
        sleep(RETRY).await;
        renewed = twin_renews(&inner, "a").await.expect("the twin renews");
    }
    assert!(!term.is_leader(), "a's term ended at its renew deadline");
    faults.set_unavailable(false);
    // The twin goes on renewing; a reads (and would release at its first read).
    for _ in 0..4 {
        sleep(RETRY).await;
        assert_eq!(
            inner.get().await.unwrap().unwrap().record,
            renewed,
            "the twin's running term is left alone"
        );
        renewed = twin_renews(&inner, "a").await.expect("the twin renews");
        assert!(!a.handle.is_leader(), "a never leads beside the twin");
    }
    let mut released = false;
    while let Ok(event) = a.events.try_recv() {
        released |= matches!(event, ElectionEvent::Released { .. });
    }
    assert!(!released, "a announced no release");
    a.stop().await;
}

/// Keeping the `renewTime`s a term sent must not end it for its own writes: a store rolled back
/// to an earlier renew of the term (a failover that lost the last writes), and a renew whose
/// reply was lost but that landed, are still the term's record, renewed over as before.
#[tokio::test(start_paused = true)]
async fn a_rolled_back_store_and_a_lost_reply_keep_the_term() {
    let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    let inner = MemoryLock::new("own-writes");
    let faulty = FaultyLock::new(inner.clone());
    let faults = faulty.faults();
    let mut a = start(faulty, config("a"));
    let term = a.next_term(LEASE).await;
    sleep(RETRY + Duration::from_millis(300)).await;
    let earlier = inner.get().await.unwrap().unwrap();
    sleep(RETRY * 2).await;
    let current = inner.get().await.unwrap().unwrap();
    assert_ne!(earlier.record.renew_time, current.record.renew_time);

    // The store rolls back two renews (at a new version, as after a failover).
    inner
        .update(&earlier.record, &current.version)
        .await
        .unwrap();
    sleep(RETRY * 2).await;
    assert!(
        term.is_leader(),
        "a rollback to a's own renew keeps the term"
    );
    let after = inner.get().await.unwrap().unwrap().record;
    assert_eq!(after.acquire_time, earlier.record.acquire_time);
    assert_ne!(
        after.renew_time, earlier.record.renew_time,
        "a renewed over it"
    );

    // The next renew lands but its answer is lost: the retry conflicts, reads it, renews on.
    faults.lose_replies_next(1);
    sleep(RETRY * 4).await;
    assert!(
        term.is_leader(),
        "a renew of a's whose reply was lost keeps the term"
    );
    while let Ok(event) = a.events.try_recv() {
        assert!(
            !matches!(event, ElectionEvent::StoppedLeading { .. }),
            "a's term never ended: {event:?}"
        );
    }
    a.stop().await;
}
