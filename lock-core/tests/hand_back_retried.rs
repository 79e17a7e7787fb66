//! A hand-back (a takeover of this candidate that landed but cannot start a term: its reply
//! was lost and it was found too late, or the lock said it was not confirmed durable) whose
//! release failed. Found by the sentinel fault test in CI: during a long failover the release
//! failed, the candidate held its own record for a whole lease without a word, and the others
//! named it as leader all that time. The release is tried again, a poll apart, while a read
//! shows exactly the record it found; found by an adversarial review of that retry: it must
//! not release a record renewed since (a client-go twin keeps the mark), must not stop a
//! candidate from giving up on a permanent refusal, and hints (forged ones too) must not make
//! it write.

// This file uses only part of the shared support.
#[allow(dead_code)]
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lock_core::backend::{Hint, HintStream, Version, Versioned};
use lock_core::testing::{FaultyLock, MemoryLock};
use lock_core::{
    ElectionEvent, LeaderElectionRecord, LeaderElector, Lock, LockError, LockResult, RunOutcome,
};
use support::{config, held_by, start, Refusal, RefusingUpdates, LEASE, RETRY};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// x holds the lock at token 7; a's takeover (at x's lease end, about t=15 s) lands but is not
/// confirmed durable, so a hands it back; every update after it is refused with `refusal` until
/// the returned flag is set.
fn refusing_after_the_takeover(
    name: &str,
    refusal: Refusal,
) -> (
    MemoryLock,
    FaultyLock<RefusingUpdates<MemoryLock>>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let inner = MemoryLock::new(name);
    futures::executor::block_on(inner.create(&held_by("x", 7))).unwrap();
    let (refusing, open) = RefusingUpdates::new(inner.clone(), 1, refusal);
    let lock = FaultyLock::new(refusing);
    lock.faults().unreplicate_next(1);
    (inner, lock, open)
}

#[tokio::test(start_paused = true)]
async fn a_hand_back_whose_release_failed_is_tried_again_at_the_next_reads() {
    let t0 = Instant::now();
    let (inner, lock, open) =
        refusing_after_the_takeover("hand-back-retried", Refusal::Unavailable);
    let mut a = start(lock, config("a"));
    let mut events = a.handle.subscribe();
    // The release's own retries give up at about t=25 s (its deadline is the renew deadline).
    tokio::time::sleep_until(t0 + LEASE + Duration::from_secs(12)).await;
    let stored = inner.get().await.unwrap().unwrap().record;
    assert_eq!(
        (stored.holder_identity.as_str(), stored.leader_transitions),
        ("a", 8),
        "the unconfirmed takeover is in place, not yet released"
    );
    open.store(true, Ordering::SeqCst);
    // Well before that record's lease (from about t=15 s) runs out at about t=30 s.
    tokio::time::sleep(RETRY * 2 + Duration::from_millis(500)).await;
    let mut handed_back = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let ElectionEvent::HandedBack { fencing_token } = event {
            handed_back.push(fencing_token);
        }
    }
    assert_eq!(
        handed_back,
        [8],
        "the hand-back was tried again once the store took writes"
    );
    let term = a.next_term(LEASE).await;
    assert!(term.fencing_token() > 8, "token {}", term.fencing_token());
    a.stop().await;
}

/// Every write is refused with a permanent error from just after a's takeover landed, and the
/// elector was told to give up after 30 s of that: the pending hand-back must not keep it
/// waiting for ever. It waits out its own record, its takeover is refused too, and it gives up.
#[tokio::test(start_paused = true)]
async fn a_forbidden_hand_back_still_gives_up() {
    let (inner, lock, _open) =
        refusing_after_the_takeover("hand-back-forbidden", Refusal::Forbidden);
    let elector = LeaderElector::new(lock, config("a").with_random_seed(5))
        .unwrap()
        .give_up_after(Duration::from_secs(30));
    let cancel = CancellationToken::new();
    let task = tokio::spawn(elector.run(cancel.clone()));
    let outcome = tokio::time::timeout(Duration::from_secs(600), task).await;
    let stored = inner.get().await.unwrap().unwrap().record;
    assert_eq!(
        stored.holder_identity, "a",
        "a's takeover landed: {stored:?}"
    );
    match outcome {
        Ok(Ok(RunOutcome::GaveUp(_))) => {}
        Ok(other) => panic!("unexpected outcome {other:?}"),
        Err(_) => {
            cancel.cancel();
            panic!("a did not give up within 600 s with every write forbidden (after 30 s)")
        }
    }
}

/// While the hand-back is pending, change hints (anyone who may publish can forge them) make no
/// writes: the release is tried a poll apart, whatever the hints.
#[tokio::test(start_paused = true)]
async fn forged_hints_make_no_release_writes_while_a_hand_back_is_pending() {
    let (_inner, lock, _open) = refusing_after_the_takeover("hand-back-hinted", Refusal::Forbidden);
    let faults = lock.faults();
    let mut a = start(lock, config("a").with_random_seed(5));
    // Past x's lease: the takeover landed and its hand-back failed.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let before = faults.counts().updates();
    for _ in 0..1_000 {
        faults.forge_hint(Hint::Changed);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let writes = faults.counts().updates() - before;
    a.cancel.cancel();
    let _ = (&mut a.task).await;
    // A second of polls: one release, maybe two.
    assert!(
        writes <= 2,
        "1000 forged hints in one second made {writes} release writes"
    );
}

/// The retry releases only the record the hand-back was decided on. Here a client-go elector
/// that shares the identity "a" renews it meanwhile (client-go adopts any record naming its
/// identity and keeps acquireTime and leaderTransitions, so a's mark stays): that is its
/// running term, not a's hand-back, and nobody may start a term before it ends.
#[tokio::test(start_paused = true)]
async fn a_retried_hand_back_leaves_a_record_renewed_by_a_twin() {
    let t0 = Instant::now();
    let (inner, lock, open) =
        refusing_after_the_takeover("hand-back-renewed", Refusal::Unavailable);
    let mut a = start(lock, config("a").with_random_seed(5));
    tokio::time::sleep_until(t0 + Duration::from_secs(26)).await;
    let landed = inner.get().await.unwrap().unwrap();
    assert_eq!(landed.record.holder_identity, "a");
    // The twin renews it at t=26 s with its own lease (10 s); it leads until its renew deadline
    // (say 8 s): t=34 s.
    let renewed = LeaderElectionRecord {
        lease_duration_seconds: 10,
        renew_time: Some(chrono::Utc::now()),
        ..landed.record.clone()
    };
    inner.update(&renewed, &landed.version).await.unwrap();
    let twin_valid_until = t0 + Duration::from_secs(34);
    open.store(true, Ordering::SeqCst);
    let mut b = start(inner.clone(), config("b").with_random_seed(6));
    let (who, token) = tokio::select! {
        term = a.next_term(Duration::from_secs(60)) => ("a (this process)", term.fencing_token()),
        term = b.next_term(Duration::from_secs(60)) => ("b", term.fencing_token()),
    };
    let at = Instant::now();
    assert!(
        at >= twin_valid_until,
        "{who} started a term (token {token}) at t={:?}, while the twin that renewed a's record \
         at t=26 s still leads (until t=34 s)",
        at - t0
    );
}

/// Passes every call; when a's first write lands, a client-go elector with the identity "a"
/// renews it at once (same lease, its own renewTime, acquireTime and token kept), and a hears
/// that its write was not confirmed durable.
#[derive(Debug)]
struct TwinRenewsFirst {
    inner: MemoryLock,
    done: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Lock for TwinRenewsFirst {
    async fn get(&self) -> LockResult<Option<Versioned>> {
        self.inner.get().await
    }
    async fn create(&self, record: &LeaderElectionRecord) -> LockResult<Version> {
        self.inner.create(record).await
    }
    async fn update(
        &self,
        record: &LeaderElectionRecord,
        expected: &Version,
    ) -> LockResult<Version> {
        let version = self.inner.update(record, expected).await?;
        if record.holder_identity == "a" && !self.done.swap(true, Ordering::SeqCst) {
            let renewed = LeaderElectionRecord {
                renew_time: Some(chrono::Utc::now() + chrono::Duration::milliseconds(300)),
                ..record.clone()
            };
            self.inner.update(&renewed, &version).await.unwrap();
            return Err(LockError::NotReplicated {
                lock: self.inner.describe(),
                reason: "injected".into(),
            });
        }
        Ok(version)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn watch(&self) -> Option<HintStream> {
        self.inner.watch()
    }
}

/// The record the hand-back is decided on may itself be a twin's renewal: a's takeover lands
/// unconfirmed and, before a reads it, a client-go elector with the identity "a" renews it
/// with the same lease, keeping a's mark. That is the twin's running term: a neither adopts
/// nor hands it back, and nobody starts a term before it ends.
#[tokio::test(start_paused = true)]
async fn a_takeover_renewed_by_a_twin_before_the_read_is_not_handed_back() {
    let t0 = Instant::now();
    let inner = MemoryLock::new("twin-renews-first");
    inner.create(&held_by("x", 7)).await.unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let lock = TwinRenewsFirst {
        inner: inner.clone(),
        done: done.clone(),
    };
    let mut a = start(lock, config("a").with_random_seed(5));
    let mut events = a.handle.subscribe();
    while !done.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let renewed_at = Instant::now();
    // The twin leads until its renew deadline (10 s) after that renew.
    let twin_valid_until = renewed_at + Duration::from_secs(10);
    let mut b = start(inner.clone(), config("b").with_random_seed(6));
    let (who, token) = tokio::select! {
        term = a.next_term(Duration::from_secs(60)) => ("a (this process)", term.fencing_token()),
        term = b.next_term(Duration::from_secs(60)) => ("b", term.fencing_token()),
    };
    let at = Instant::now();
    let mut handed = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let ElectionEvent::HandedBack { fencing_token } = event {
            handed.push(fencing_token);
        }
    }
    assert!(
        at >= twin_valid_until,
        "{who} started a term (token {token}) at t={:?} while the twin that renewed a's record \
         at t={:?} still leads; a's hand-backs: {handed:?}",
        at - t0,
        renewed_at - t0
    );
    assert!(
        handed.is_empty(),
        "the twin's term was handed back: {handed:?}"
    );
}
